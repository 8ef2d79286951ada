"""The `--web.config.file` format of the Prometheus exporter-toolkit: TLS, basic auth, headers.

The file is the one Go exporters read, so operators can reuse theirs::

    tls_server_config:
      cert_file: server.crt            # relative paths resolve against this file's folder
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12               # default TLS12, like the exporter-toolkit
      max_version: TLS13
    http_server_config:
      headers: {X-Frame-Options: deny}
    basic_auth_users:
      alice: $2y$10$...                # bcrypt hashes: $2a$, $2b$ and $2y$

Differences from the Go implementation, all forced by Python's `ssl` module:

- `cipher_suites`, `curve_preferences` and `prefer_server_cipher_suites` are checked and accepted
  but not applied: OpenSSL's defaults (as configured by Python) are used.
- `RequestClientCert` does not ask the client for a certificate. Nothing is verified in either
  case, so who gets in is the same.
- `RequireAnyClientCert` needs `client_ca_file` here and verifies the certificate against it,
  because Python cannot require a certificate without verifying it.
- `http_server_config.http2` is accepted and ignored: the server speaks HTTP/1.x.
- Inline `cert`, `key`, `client_ca` and the `rate_limit` section are rejected as unsupported.
- Certificates are loaded when the server starts, not on every handshake.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import re
import ssl
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import bcrypt
import yaml

__all__ = [
    "CLIENT_AUTH_TYPES",
    "REALM",
    "TLS_VERSIONS",
    "BasicAuth",
    "TLSConfig",
    "WSGIApp",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "protect",
]

WSGIApp = WSGIApplication

REALM = "cloudvod-concat-exporter"

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType(
    {
        "TLS10": ssl.TLSVersion.TLSv1,
        "TLS11": ssl.TLSVersion.TLSv1_1,
        "TLS12": ssl.TLSVersion.TLSv1_2,
        "TLS13": ssl.TLSVersion.TLSv1_3,
    }
)

# client_auth_type -> verify mode. See the module docstring for the two that differ from Go.
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = MappingProxyType(
    {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_NONE,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }
)
_CLIENT_AUTH_ALIASES = {"RequireClientCert": "RequireAnyClientCert"}  # old Go spelling
_NEEDS_CA = ("RequireAnyClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
_SANS_NEED = ("RequireAnyClientCert", "RequireAndVerifyClientCert")

# The exporter-toolkit allows exactly these headers (None: any value), for consistency across
# the Prometheus ecosystem.
_ALLOWED_HEADERS: Mapping[str, tuple[str, ...] | None] = MappingProxyType(
    {
        "Strict-Transport-Security": None,
        "X-Content-Type-Options": ("nosniff",),
        "X-Frame-Options": ("deny", "sameorigin"),
        "X-XSS-Protection": None,
        "Content-Security-Policy": None,
    }
)
_CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")
_CIPHER_NAME = re.compile(r"TLS_[A-Z0-9_]+")
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(?P<cost>0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_BCRYPT_MAX_PASSWORD = 72  # bcrypt only ever uses the first 72 bytes

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
)
_HTTP_KEYS = ("headers", "http2")
_UNSUPPORTED = {
    "rate_limit": "not supported by this exporter",
    "tls_server_config.cert": "inline certificates are not supported; use cert_file",
    "tls_server_config.key": "inline keys are not supported; use key_file",
    "tls_server_config.client_ca": "inline CAs are not supported; use client_ca_file",
}


class WebConfigError(Exception):
    """The web configuration file is invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class TLSConfig:
    """The validated `tls_server_config` section, with absolute file paths."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str | None = None
    max_version: str | None = None
    client_allowed_sans: tuple[str, ...] = ()

    def ssl_context(self) -> ssl.SSLContext:
        """Build a server-side SSL context; raises ssl.SSLError/OSError if the files are bad."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version or "TLS12"]
        ctx.maximum_version = TLS_VERSIONS[self.max_version or "TLS13"]
        # An encrypted key must fail, not prompt on the terminal for a passphrase.
        ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_passphrase)
        mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        if mode != ssl.CERT_NONE:
            if self.client_ca_file is None:
                raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
            ctx.load_verify_locations(cafile=self.client_ca_file)
            ctx.verify_mode = mode
        return ctx

    def client_allowed(self, peercert: Mapping[str, Any] | None) -> bool:
        """True when client_allowed_sans is unset or the verified client cert has one of them."""
        if not self.client_allowed_sans:
            return True
        if not peercert:
            return False
        allowed = {_normalize_san(s) for s in self.client_allowed_sans}
        return any(_normalize_san(value) in allowed for value in _san_values(peercert))


@dataclass(frozen=True)
class WebConfig:
    """The validated web configuration: TLS, basic-auth users and extra response headers."""

    tls: TLSConfig | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A fresh server-side SSL context, or None when TLS is off."""
        return None if self.tls is None else self.tls.ssl_context()


def load_web_config(path: str | os.PathLike[str] | None) -> WebConfig:
    """Read and validate a web configuration file; None means plain HTTP without auth."""
    if path is None:
        return WebConfig()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError([f"{file}: cannot read web config file: {_reason(exc)}"]) from None
    except UnicodeDecodeError:
        raise WebConfigError([f"{file}: not a UTF-8 text file"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError([f"{file}: invalid YAML: {_yaml_problem(exc)}"]) from None
    if data is None:  # an empty file, as in the exporter-toolkit
        return WebConfig()
    if not isinstance(data, dict):
        raise WebConfigError([f"{file}: must be a mapping with keys {', '.join(_TOP_KEYS)}"])

    problems: list[str] = []
    _check_keys(data, "", _TOP_KEYS, problems)
    base = file.absolute().parent
    tls = _parse_tls(data.get("tls_server_config"), base, problems)
    headers = _parse_http(data.get("http_server_config"), problems)
    users = _parse_users(data.get("basic_auth_users"), problems)
    if problems:
        raise WebConfigError(problems)
    return WebConfig(tls=tls, basic_auth_users=users, headers=headers)


def _parse_tls(raw: object, base: Path, problems: list[str]) -> TLSConfig | None:
    section = "tls_server_config"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"{section}: must be a mapping")
        return None
    if not raw:
        return None
    before = len(problems)
    _check_keys(raw, section, _TLS_KEYS, problems)

    cert = _parse_path(raw, "cert_file", section, base, problems, required=True)
    key = _parse_path(raw, "key_file", section, base, problems, required=True)
    ca = _parse_path(raw, "client_ca_file", section, base, problems, required=False)

    auth = _parse_str(raw, "client_auth_type", section, problems) or "NoClientCert"
    auth = _CLIENT_AUTH_ALIASES.get(auth, auth)
    if auth not in CLIENT_AUTH_TYPES:
        problems.append(
            f"{section}.client_auth_type: unknown value {auth!r} "
            f"(expected one of {', '.join(CLIENT_AUTH_TYPES)})"
        )
    elif auth in _NEEDS_CA and "client_ca_file" not in raw:
        why = (
            " (Python cannot require a client certificate without verifying it)"
            if auth == "RequireAnyClientCert"
            else ""
        )
        problems.append(f"{section}.client_ca_file: required when client_auth_type is {auth}{why}")
    elif auth == "NoClientCert" and "client_ca_file" in raw:
        problems.append(
            f"{section}.client_ca_file: set, but client_auth_type is NoClientCert, so client "
            "certificates would not be checked (set e.g. RequireAndVerifyClientCert)"
        )

    versions: dict[str, str | None] = {}
    for name in ("min_version", "max_version"):
        value = _parse_str(raw, name, section, problems)
        if value is not None and value not in TLS_VERSIONS:
            problems.append(
                f"{section}.{name}: unknown TLS version {value!r} "
                f"(expected one of {', '.join(TLS_VERSIONS)})"
            )
            value = None
        versions[name] = value
    low = TLS_VERSIONS[versions["min_version"] or "TLS12"]
    high = TLS_VERSIONS[versions["max_version"] or "TLS13"]
    if low > high:
        problems.append(
            f"{section}.min_version: {versions['min_version'] or 'TLS12'} is above "
            f"max_version {versions['max_version'] or 'TLS13'}"
        )

    for name, allowed in (("cipher_suites", None), ("curve_preferences", _CURVES)):
        for i, item in _parse_str_list(raw, name, section, problems):
            if allowed is None and not _CIPHER_NAME.fullmatch(item):
                problems.append(f"{section}.{name}[{i}]: not a Go cipher suite name: {item!r}")
            elif allowed is not None and item not in allowed:
                problems.append(
                    f"{section}.{name}[{i}]: unknown curve {item!r} "
                    f"(expected one of {', '.join(allowed)})"
                )
    if not isinstance(raw.get("prefer_server_cipher_suites", True), bool):
        problems.append(f"{section}.prefer_server_cipher_suites: must be true or false")

    sans = tuple(item for _, item in _parse_str_list(raw, "client_allowed_sans", section, problems))
    if "client_allowed_sans" in raw:
        if not sans and isinstance(raw["client_allowed_sans"], list):
            problems.append(f"{section}.client_allowed_sans: must list at least one SAN")
        if auth in CLIENT_AUTH_TYPES and auth not in _SANS_NEED:
            problems.append(
                f"{section}.client_allowed_sans: requires client_auth_type "
                f"RequireAndVerifyClientCert or RequireAnyClientCert, not {auth}"
            )

    if len(problems) > before or cert is None or key is None:
        return None
    tls = TLSConfig(
        cert_file=cert,
        key_file=key,
        client_auth_type=auth,
        client_ca_file=ca,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        client_allowed_sans=sans,
    )
    _prove_tls(tls, section, problems)
    return tls


def _prove_tls(tls: TLSConfig, section: str, problems: list[str]) -> None:
    """Load the certificate, key and CA once, so a bad file fails at start-up, not per scrape."""
    before = len(problems)
    for name, path, marker in (
        ("cert_file", tls.cert_file, b"-----BEGIN CERTIFICATE-----"),
        ("key_file", tls.key_file, b"PRIVATE KEY-----"),
    ):
        try:
            found = marker in path.read_bytes()
        except OSError as exc:
            problems.append(f"{section}.{name}: cannot read {path}: {_reason(exc)}")
            continue
        if not found:
            kind = "certificate" if name == "cert_file" else "private key"
            problems.append(f"{section}.{name}: {path}: no PEM {kind} found")
    if len(problems) > before:
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_passphrase)
    except (ssl.SSLError, OSError) as exc:
        problems.append(
            f"{section}.key_file: cannot be loaded together with cert_file "
            f"(mismatched, encrypted or malformed): {_reason(exc)}"
        )
    if tls.client_ca_file is not None and CLIENT_AUTH_TYPES[tls.client_auth_type] != ssl.CERT_NONE:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            problems.append(
                f"{section}.client_ca_file: {tls.client_ca_file}: no usable CA certificate: "
                f"{_reason(exc)}"
            )


def _parse_http(raw: object, problems: list[str]) -> Mapping[str, str]:
    section = "http_server_config"
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, dict):
        problems.append(f"{section}: must be a mapping")
        return MappingProxyType({})
    _check_keys(raw, section, _HTTP_KEYS, problems)
    if not isinstance(raw.get("http2", True), bool):
        problems.append(f"{section}.http2: must be true or false")
    headers_raw = raw.get("headers")
    headers: dict[str, str] = {}
    if headers_raw is None:
        return MappingProxyType(headers)
    if not isinstance(headers_raw, dict):
        problems.append(f"{section}.headers: must be a mapping of header name to value")
        return MappingProxyType(headers)
    canonical = {name.lower(): name for name in _ALLOWED_HEADERS}
    for name, value in headers_raw.items():
        path = f"{section}.headers.{name}"
        if not isinstance(name, str) or name.lower() not in canonical:
            problems.append(
                f"{path}: this header cannot be configured (allowed: {', '.join(_ALLOWED_HEADERS)})"
            )
            continue
        if not isinstance(value, str) or not value or any(c in value for c in "\r\n\0"):
            problems.append(f"{path}: must be a non-empty single-line string")
            continue
        canonical_name = canonical[name.lower()]
        allowed = _ALLOWED_HEADERS[canonical_name]
        if allowed is not None and value.lower() not in allowed:
            problems.append(f"{path}: must be one of {', '.join(allowed)}, not {value!r}")
            continue
        headers[canonical_name] = value
    return MappingProxyType(headers)


def _parse_users(raw: object, problems: list[str]) -> Mapping[str, str]:
    section = "basic_auth_users"
    users: dict[str, str] = {}
    if raw is None:
        return MappingProxyType(users)
    if not isinstance(raw, dict):
        problems.append(f"{section}: must be a mapping of user name to bcrypt hash")
        return MappingProxyType(users)
    for user, hashed in raw.items():
        if not isinstance(user, str) or not user:
            problems.append(f"{section}.{user}: user name must be a non-empty string (quote it)")
            continue
        if ":" in user:
            problems.append(f"{section}.{user}: user name must not contain ':'")
            continue
        # Never echo the value: it is a password hash.
        if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed):
            problems.append(
                f"{section}.{user}: not a bcrypt hash "
                "(expected $2a$, $2b$ or $2y$, a cost of 04-31 and 53 more characters)"
            )
            continue
        users[user] = hashed
    return MappingProxyType(users)


def _check_keys(
    raw: Mapping[Any, Any], section: str, known: tuple[str, ...], problems: list[str]
) -> None:
    for key in raw:
        path = f"{section}.{key}" if section else str(key)
        if path in _UNSUPPORTED:
            problems.append(f"{path}: {_UNSUPPORTED[path]}")
        elif key not in known:
            problems.append(f"{path}: unknown key (expected one of {', '.join(known)})")


def _parse_str(raw: Mapping[str, Any], key: str, section: str, problems: list[str]) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{section}.{key}: must be a non-empty string")
        return None
    return value


def _parse_str_list(
    raw: Mapping[str, Any], key: str, section: str, problems: list[str]
) -> Iterator[tuple[int, str]]:
    value = raw.get(key)
    if value is None:
        return
    if not isinstance(value, list):
        problems.append(f"{section}.{key}: must be a list of strings")
        return
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            problems.append(f"{section}.{key}[{i}]: must be a non-empty string")
        else:
            yield i, item


def _parse_path(
    raw: Mapping[str, Any],
    key: str,
    section: str,
    base: Path,
    problems: list[str],
    *,
    required: bool,
) -> Path | None:
    value = raw.get(key)
    if value is None:
        if required:
            problems.append(f"{section}.{key}: required")
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{section}.{key}: must be a non-empty file path")
        return None
    path = base / value  # an absolute value replaces base
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        problems.append(f"{section}.{key}: cannot read {path}: {_reason(exc)}")
        return None
    return path


def _no_passphrase() -> bytes:
    return b""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1} column {mark.column + 1}: {problem}"
    return str(problem)


def _san_values(peercert: Mapping[str, Any]) -> Iterable[str]:
    for kind, value in peercert.get("subjectAltName", ()):
        if kind in ("DNS", "email", "IP Address", "URI"):
            yield str(value)


def _normalize_san(value: str) -> str:
    """IP SANs compare by address ("::1" == "0:0:0:0:0:0:0:1"), the rest as written."""
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return value


class BasicAuth:
    """Checks HTTP basic-auth credentials against bcrypt hashes, caching successful checks."""

    _CACHE_SIZE = 1024

    def __init__(self, users: Mapping[str, str]) -> None:
        """Take user -> bcrypt hash; an unknown user is checked against a decoy hash."""
        self._users = dict(users)
        cost = max((int(h[4:6]) for h in self._users.values()), default=4)
        # Unknown users pay the same bcrypt cost as known ones, so timing does not reveal names.
        self._decoy = bcrypt.hashpw(b"decoy password", bcrypt.gensalt(rounds=cost))
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._cache_lock = threading.Lock()
        # One bcrypt at a time, as in the exporter-toolkit: bad guesses cannot take every core.
        self._bcrypt_lock = threading.Lock()

    def check(self, authorization: str | None) -> bool:
        """True when an `Authorization: Basic ...` header names a user with the right password."""
        credentials = _parse_basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        if hashed is None:
            self._bcrypt(password, self._decoy)
            return False
        key = hashlib.sha256(b":".join((user.encode(), password, hashed.encode()))).digest()
        with self._cache_lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return True
        if not self._bcrypt(password, hashed.encode("ascii")):
            return False
        with self._cache_lock:
            self._ok[key] = None
            while len(self._ok) > self._CACHE_SIZE:
                self._ok.popitem(last=False)
        return True

    def _bcrypt(self, password: bytes, hashed: bytes) -> bool:
        with self._bcrypt_lock:
            try:
                return bool(bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed))
            except ValueError:
                return False


def _parse_basic(authorization: str | None) -> tuple[str, bytes] | None:
    """("user", b"password") from "Basic base64(user:password)", or None if malformed."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


def protect(app: WSGIApp, web: WebConfig) -> WSGIApp:
    """Wrap a WSGI app with the web config's basic auth (401 otherwise) and extra headers."""
    if not web.basic_auth_users and not web.headers:
        return app
    if isinstance(app, _Protected) and app.web == web:
        return app  # already wrapped with this config: no second bcrypt check
    return _Protected(app, web)


class _Protected:
    """The WSGI middleware built by protect()."""

    def __init__(self, app: WSGIApp, web: WebConfig) -> None:
        self.app = app
        self.web = web
        self._auth = BasicAuth(web.basic_auth_users) if web.basic_auth_users else None
        self._extra = list(web.headers.items())
        self._replaced = {name.lower() for name, _ in self._extra}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(
            status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
        ) -> Any:
            kept = [(k, v) for k, v in headers if k.lower() not in self._replaced]
            return start_response(status, kept + self._extra, exc_info)

        if self._auth is not None and not self._auth.check(environ.get("HTTP_AUTHORIZATION")):
            body = b"Unauthorized\n"
            start(
                "401 Unauthorized",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("WWW-Authenticate", f'Basic realm="{REALM}"'),
                ],
            )
            return [body]
        return self.app(environ, start)
