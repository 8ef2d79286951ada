# cloudvod-concat-exporter container image (`make image` passes the build arguments).
#   docker build -t cloudvod-concat-exporter:0.2.0 .
#   docker run --rm -p 9877:9877 cloudvod-concat-exporter:0.2.0 --demo
#   docker run --rm -p 9877:9877 -v "$PWD/config.yaml:/etc/cloudvod/config.yaml:ro" \
#       -v cloudvod-data:/data -e CLOUDVOD_ACCESS_KEY_ID -e CLOUDVOD_ACCESS_KEY_SECRET \
#       cloudvod-concat-exporter:0.2.0

# --- builder: install the package and its dependencies into /install ----------------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
# Only what the build needs (.dockerignore is an allow-list too).
COPY pyproject.toml README.md LICENSE ./
COPY exporter/ exporter/
RUN pip install --no-cache-dir --prefix=/install .

# --- final: the interpreter, the installed package, nothing else -------------------------
FROM python:3.11-slim

# VERSION's default is exporter/__init__.py's __version__ (a test keeps them equal).
ARG VERSION=0.2.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="cloudvod-concat-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Cloud VoD (CDNetworks/Wangsu) video splicing tasks" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=builder /install /usr/local

# A fixed, unprivileged UID/GID (matches runAsUser in deploy/kubernetes/deployment.yaml), and
# the state store's folder owned by it: a named volume mounted at /data starts as a copy of it.
RUN groupadd --system --gid 10001 cloudvod \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin cloudvod \
    && mkdir /data && chown 10001:10001 /data && chmod 0750 /data
VOLUME ["/data"]
USER 10001

EXPOSE 9877

# /-/healthy answers without basic auth, so this works with --web.config.file's basic_auth_users.
# It speaks plain HTTP on the default port: with TLS or another --web.listen-address, override it
# (HEALTHCHECK in a derived image, `healthcheck:` in compose) or disable it (HEALTHCHECK NONE).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9877/-/healthy', timeout=4)"]

ENTRYPOINT ["cloudvod-concat-exporter"]
CMD ["--config.file=/etc/cloudvod/config.yaml", "--storage.path=/data"]
