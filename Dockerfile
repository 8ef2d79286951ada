# cloudvod-concat-exporter container image.
#   docker build -t cloudvod-concat-exporter .
#   docker run --rm -p 9877:9877 cloudvod-concat-exporter --demo
#   docker run --rm -p 9877:9877 -v "$PWD/config.yaml:/etc/cloudvod/config.yaml:ro" \
#       -e CLOUDVOD_ACCESS_KEY_ID -e CLOUDVOD_ACCESS_KEY_SECRET cloudvod-concat-exporter

# --- builder: install the package and its dependencies into /install ----------------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
# Only what the build needs (.dockerignore is an allow-list too).
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN pip install --no-cache-dir --prefix=/install .

# --- final: the interpreter, the installed package, nothing else -------------------------
FROM python:3.11-slim

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="cloudvod-concat-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Cloud VoD (CDNetworks/Wangsu) video splicing tasks" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=builder /install /usr/local

# A fixed, unprivileged UID/GID (matches runAsUser in deploy/kubernetes/deployment.yaml).
RUN groupadd --system --gid 10001 cloudvod \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin cloudvod
USER 10001

EXPOSE 9877

# Plain HTTP on the default port: adjust (or disable with HEALTHCHECK NONE in a derived image)
# when --web.listen-address or --web.config.file (TLS, basic auth) is used.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9877/-/healthy', timeout=4)"]

ENTRYPOINT ["cloudvod-concat-exporter"]
CMD ["--config.file=/etc/cloudvod/config.yaml"]
