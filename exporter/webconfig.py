"""The `--web.config.file` format of the Prometheus exporter-toolkit: TLS, basic auth, headers.

The file is the one Go exporters read, and it is read by the same rules (exporter-toolkit's
`web/tls_config.go` and `web/handler.go`, decoded as Go's yaml.v2 `UnmarshalStrict` does), so
operators can reuse theirs::

    tls_server_config:
      cert_file: server.crt            # or inline PEM in `cert`; relative paths follow this file
      key_file: server.key             # or inline PEM in `key`
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt           # or inline PEM in `client_ca`
      min_version: TLS12               # default TLS12, like the exporter-toolkit
      max_version: TLS13
      cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
      curve_preferences: [CurveP256]
    http_server_config:
      headers: {X-Frame-Options: deny}
    rate_limit: {interval: 1s, burst: 10}
    basic_auth_users:
      alice: $2y$10$...                # bcrypt hashes: $2a$, $2b$ and $2y$

What Python's `ssl` module cannot do the same way (the README's compatibility section has the
full list, with reasons):

- `RequestClientCert` does not ask for a certificate, and `RequireAnyClientCert` verifies the
  certificate (against the configured CA, else the system's trust store): OpenSSL, as Python
  exposes it, cannot request a client certificate without verifying it.
- TLS 1.3 cipher suites cannot be restricted (neither can they in Go). A context holds exactly
  one curve, so with several `curve_preferences` each connection's ClientHello is peeked at to
  pick the one Go would pick.
- Certificate, key and CA files are re-read when they change (checked per connection), but a
  replacement that does not load keeps the previous one in use (Go fails those handshakes); the
  web config file itself is read at start-up; `http2` is accepted and ignored (HTTP/1.x only).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import logging
import math
import os
import re
import socket
import ssl
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import bcrypt
import yaml

from exporter.tlsgroups import set_group
from exporter.yamlconf import (
    FileReadError,
    Report,
    YamlError,
    compose_yaml,
    node_positions,
    read_regular_file,
    unknown_key,
)

__all__ = [
    "CLIENT_AUTH_TYPES",
    "CURVES",
    "GO_CIPHER_SUITES",
    "REALM",
    "TLS_VERSIONS",
    "UNAUTHENTICATED_PATHS",
    "BasicAuth",
    "RateLimit",
    "RateLimiter",
    "ServerContext",
    "TLSConfig",
    "WSGIApp",
    "WebConfig",
    "WebConfigError",
    "choose_curve",
    "client_hello_groups",
    "load_web_config",
    "parse_duration",
    "parse_web_config",
    "peek_client_hello",
    "protect",
]

WSGIApp = WSGIApplication

REALM = "cloudvod-concat-exporter"

_log = logging.getLogger(__name__)

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType(
    {
        "TLS10": ssl.TLSVersion.TLSv1,
        "TLS11": ssl.TLSVersion.TLSv1_1,
        "TLS12": ssl.TLSVersion.TLSv1_2,
        "TLS13": ssl.TLSVersion.TLSv1_3,
    }
)

# client_auth_type -> verify mode. RequestClientCert cannot ask for a certificate without
# verifying it, so it asks for none (who gets in is the same: everyone).
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
_SANS_NEED = ("RequireAnyClientCert", "RequireAndVerifyClientCert")

# Go's tls.CipherSuites() (the secure list the toolkit matches names against) as Go returned it
# before the RSA key-exchange suites were marked insecure, mapped to OpenSSL's names. None: a
# TLS 1.3 suite, which neither Go nor Python lets a server restrict. Later Go releases moved the
# four TLS_RSA_* suites to InsecureCipherSuites(); they stay accepted here, as the toolkit's own
# allCiphers test file lists them.
GO_CIPHER_SUITES: Mapping[str, str | None] = MappingProxyType(
    {
        "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
        "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
        "TLS_AES_128_GCM_SHA256": None,
        "TLS_AES_256_GCM_SHA384": None,
        "TLS_CHACHA20_POLY1305_SHA256": None,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    }
)
# Go's InsecureCipherSuites(): real names the toolkit still rejects ("unknown cipher").
_GO_INSECURE_SUITES = frozenset(
    {
        "TLS_RSA_WITH_RC4_128_SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    }
)
# What a Go server offers for TLS 1.0-1.2 when cipher_suites is not set (ECDHE only, AEADs
# first); used instead of Python's defaults (which add DHE and CBC-SHA256 suites).
_GO_DEFAULT_TLS12 = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
)
# Go's http2 refuses a TLS 1.2 cipher list without one of these (ServeTLS fails).
_HTTP2_REQUIRED = (
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
)

# The toolkit's curve names -> OpenSSL's short names (for exporter.tlsgroups.set_group).
CURVES: Mapping[str, str] = MappingProxyType(
    {
        "CurveP256": "prime256v1",
        "CurveP384": "secp384r1",
        "CurveP521": "secp521r1",
        "X25519": "X25519",
    }
)

# The exporter-toolkit allows exactly these headers, names matched exactly (None: any value;
# otherwise the value must be one of these, also matched exactly, as Go compares strings).
_ALLOWED_HEADERS: Mapping[str, tuple[str, ...] | None] = MappingProxyType(
    {
        "Strict-Transport-Security": None,
        "X-Content-Type-Options": ("nosniff",),
        "X-Frame-Options": ("deny", "sameorigin"),
        "X-XSS-Protection": None,
        "Content-Security-Policy": None,
    }
)
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(?P<cost>0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_BCRYPT_MAX_PASSWORD = 72  # bcrypt only ever uses the first 72 bytes
# What unknown users are checked against, so a 401 costs the same whichever name was tried: a
# fixed cost-10 hash (as the toolkit's), never derived from the configured users' costs, so a
# user with a slow hash cannot make every anonymous 401 slow. Made once for this file.
_DECOY_HASH = b"$2b$10$.AjQ2Y0/tZsVF2QkWd0ltuURJqJBAYbqt4XNvxVdEIxkEqLHIROXW"

# Probes of these paths answer without basic auth and outside the rate limit (Docker
# HEALTHCHECK, Kubernetes probes); they tell nothing beyond "up" and "ready".
UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})

_TOP_KEYS = ("tls_server_config", "http_server_config", "rate_limit", "basic_auth_users")
# The TLS keys whose values are plain strings, then the others.
_TLS_TEXT_KEYS = (
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
)
_TLS_KEYS = (
    *_TLS_TEXT_KEYS,
    "cipher_suites",
    "curve_preferences",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
)
_HTTP_KEYS = ("http2", "headers")
_RATE_KEYS = ("burst", "interval")

_Ctx = TypeVar("_Ctx", bound=ssl.SSLContext)

_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_STR_TAG = "tag:yaml.org,2002:str"


class WebConfigError(Exception):
    """The web configuration file is invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RateLimit:
    """The `rate_limit` section: a token bucket refilled every `interval` seconds, `burst` deep."""

    interval: float
    burst: int


@dataclass(frozen=True)
class TLSConfig:
    """The validated `tls_server_config` section, with absolute file paths.

    A file and its inline counterpart may both be set; the file wins, as in the toolkit.
    """

    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str | None = None
    max_version: str | None = None
    client_allowed_sans: tuple[str, ...] = ()
    cert: str | None = None
    key: str | None = field(default=None, repr=False)
    client_ca: str | None = None
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    def ssl_context(self) -> ServerContext:
        """Build the server's TLS context; raises ssl.SSLError/OSError if the files are bad.

        It picks a curve per connection when several are configured, and follows renewals of
        cert_file, key_file and client_ca_file (see ServerContext).
        """
        first = self.curve_preferences[0] if self.curve_preferences else None
        ctx = self._build(ServerContext, first)
        ctx.serve(self)
        return ctx

    def contexts(self) -> dict[str | None, ssl.SSLContext]:
        """One fully configured context per configured curve (key None: no curve configured)."""
        if not self.curve_preferences:
            return {None: self._build(ssl.SSLContext, None)}
        return {curve: self._build(ssl.SSLContext, curve) for curve in self.curve_preferences}

    def file_stamp(self) -> tuple[tuple[str, int, int, int] | None, ...]:
        """What identifies the current cert, key and CA files: changes when one is replaced."""
        stamp: list[tuple[str, int, int, int] | None] = []
        for path in (self.cert_file, self.key_file, self.client_ca_file):
            if path is None:
                continue
            try:
                st = path.stat()
            except OSError:
                stamp.append(None)
                continue
            stamp.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamp)

    def _build(self, cls: type[_Ctx], curve: str | None) -> _Ctx:
        ctx = cls(ssl.PROTOCOL_TLS_SERVER)
        low = TLS_VERSIONS[self.min_version or "TLS12"]
        high = TLS_VERSIONS[self.max_version or "TLS13"]
        ciphers = self.openssl_ciphers()
        if self.cipher_suites and not ciphers:
            low = max(low, ssl.TLSVersion.TLSv1_3)  # only TLS 1.3 suites listed: Go's effect
        cipher_string = ":".join(ciphers or _GO_DEFAULT_TLS12)
        if low < ssl.TLSVersion.TLSv1_2:
            # OpenSSL 3 refuses TLS 1.0/1.1 above security level 0; the operator asked for them.
            cipher_string += ":@SECLEVEL=0"
        ctx.set_ciphers(cipher_string)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS10/TLS11, asked for
            ctx.minimum_version = low
            ctx.maximum_version = high
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        if curve is not None:
            set_group(ctx, CURVES[curve])  # exactly this one group, TLS 1.2 and 1.3
        with (
            self._pem_path(self.cert_file, self.cert) as cert,
            self._pem_path(self.key_file, self.key) as key,
        ):
            # An encrypted key must fail, not prompt on the terminal for a passphrase.
            ctx.load_cert_chain(cert, key, password=_no_passphrase)
        mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        if mode != ssl.CERT_NONE:
            if self.client_ca_file is not None:
                ctx.load_verify_locations(cadata=_read_pem(self.client_ca_file).decode("latin-1"))
            elif self.client_ca:
                ctx.load_verify_locations(cadata=self.client_ca)
            else:
                # Go verifies against the system roots when no client CA is configured.
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
            ctx.verify_mode = mode
        return ctx

    def openssl_ciphers(self) -> list[str]:
        """The configured TLS 1.0-1.2 suites in OpenSSL's names, in the configured order."""
        return [n for s in self.cipher_suites if (n := GO_CIPHER_SUITES[s]) is not None]

    def client_allowed(self, peercert: Mapping[str, Any] | None) -> bool:
        """True when client_allowed_sans is unset or the verified client cert has one of them."""
        if not self.client_allowed_sans:
            return True
        if not peercert:
            return False
        allowed = {_normalize_san(s) for s in self.client_allowed_sans}
        return any(_normalize_san(value) in allowed for value in _san_values(peercert))

    @staticmethod
    @contextlib.contextmanager
    def _pem_path(path: Path | None, pem: str | None) -> Iterator[str]:
        """A file path for PEM data, always an anonymous in-memory copy: of the configured file
        (read as a bounded regular file, so one swapped for a FIFO at run time cannot block a
        certificate reload) or of the inline PEM."""
        data = _read_pem(path) if path is not None else (pem or "").encode("utf-8")
        if hasattr(os, "memfd_create"):
            # Memory only: an inline key never touches a disk.
            fd = os.memfd_create("webconfig-pem", os.MFD_CLOEXEC)
            try:
                os.write(fd, data)
                yield f"/proc/self/fd/{fd}"
            finally:
                os.close(fd)
            return
        with tempfile.TemporaryDirectory() as folder:  # pragma: no cover - not Linux
            file = Path(folder) / "pem"
            file.write_bytes(data)
            file.chmod(0o600)
            yield str(file)


# TLS NamedGroup code points of the toolkit's curves (RFC 8446 section 4.2.7).
_GROUP_IDS: Mapping[str, int] = MappingProxyType(
    {"CurveP256": 23, "CurveP384": 24, "CurveP521": 25, "X25519": 29}
)
_MAX_HELLO = 5 + 16384  # one TLS record


class ServerContext(ssl.SSLContext):
    """The server's TLS context: a curve chosen per connection, certificates followed on disk.

    Curves: Python's SSLContext.set_ecdh_curve sets exactly one group, so there is one context per
    configured curve; with several, wrap_socket peeks at the ClientHello (without consuming it),
    reads the client's supported_groups and key_share extensions and hands the socket to the
    context of the curve Go's server would choose: the first configured curve the client sent a
    key share for (TLS 1.3), else the first one it supports. When they share none, the first
    curve's context refuses the handshake, as Go does.

    Renewals: Go re-reads the certificate files on every handshake. Here every wrap_socket
    compares the files' stamps (mtime, size, inode) and rebuilds the contexts when one changed;
    a replacement that does not load is logged and the previous contexts stay in use.
    """

    hello_timeout = 10.0  # how long a socket without a timeout of its own may take to say hello

    def serve(self, tls: TLSConfig) -> None:
        """Take the settings to build from and build the first generation of contexts."""
        self._tls = tls
        self._lock = threading.Lock()
        self._stamp = tls.file_stamp()
        self._contexts = tls.contexts()

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """Wrap with the current context of the curve chosen for this client."""
        contexts = self._current()
        preference = self._tls.curve_preferences
        curve = preference[0] if preference else None
        timeout = sock.gettimeout()
        # A non-blocking socket cannot be peeked at: it gets the first curve's context.
        if server_side and len(preference) > 1 and timeout != 0.0:
            if timeout is None:
                sock.settimeout(self.hello_timeout)
            try:
                groups = client_hello_groups(peek_client_hello(sock))
            finally:
                sock.settimeout(timeout)
            tls13 = self.maximum_version >= ssl.TLSVersion.TLSv1_3
            curve = choose_curve(preference, groups, tls13=tls13)
        return contexts[curve].wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            session=session,
        )

    def _current(self) -> Mapping[str | None, ssl.SSLContext]:
        stamp = self._tls.file_stamp()
        with self._lock:
            if stamp == self._stamp:
                return self._contexts
            self._stamp = stamp  # a failed load is not retried until the files change again
            try:
                self._contexts = self._tls.contexts()
            except (ssl.SSLError, OSError, ValueError, FileReadError) as exc:
                _log.warning(
                    "TLS certificate files changed but do not load (%s); still serving the "
                    "previous certificate",
                    _reason(exc),
                )
            else:
                _log.info("TLS certificate files changed: serving the new certificate")
            return self._contexts


def peek_client_hello(sock: socket.socket) -> bytes:
    """The first TLS record on a fresh connection, left unread; b"" if it is not a handshake.

    Waits at most the socket's timeout, and raises OSError (TimeoutError included) as the
    handshake would: SO_RCVLOWAT makes the wait end only once the whole record is there (or the
    peer closes), so there is no polling loop.
    """
    header = _peek(sock, 5)
    if len(header) < 5 or header[0] != 0x16:
        return b""
    return _peek(sock, min(5 + int.from_bytes(header[3:5], "big"), _MAX_HELLO))


def _peek(sock: socket.socket, size: int) -> bytes:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
    try:
        return sock.recv(size, socket.MSG_PEEK)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


def client_hello_groups(record: bytes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(supported_groups, key_share groups) of a ClientHello record; empty when unreadable."""
    try:
        if record[0] != 0x16 or record[5] != 0x01:
            return (), ()
        body = record[9 : 9 + int.from_bytes(record[6:9], "big")]
        pos = 2 + 32  # client_version, random
        pos += 1 + body[pos]  # session_id
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher_suites
        pos += 1 + body[pos]  # compression_methods
        end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        groups: tuple[int, ...] = ()
        shares: list[int] = []
        while pos + 4 <= min(end, len(body)):
            kind = int.from_bytes(body[pos : pos + 2], "big")
            size = int.from_bytes(body[pos + 2 : pos + 4], "big")
            data = body[pos + 4 : pos + 4 + size]
            pos += 4 + size
            if kind == 10:  # supported_groups
                count = int.from_bytes(data[:2], "big")
                groups = tuple(
                    int.from_bytes(data[i : i + 2], "big") for i in range(2, 2 + count, 2)
                )
            elif kind == 51:  # key_share
                at = 2
                while at + 4 <= len(data):
                    shares.append(int.from_bytes(data[at : at + 2], "big"))
                    at += 4 + int.from_bytes(data[at + 2 : at + 4], "big")
        return groups, tuple(shares)
    except IndexError:
        return (), ()


def choose_curve(
    preference: tuple[str, ...], groups: tuple[tuple[int, ...], tuple[int, ...]], *, tls13: bool
) -> str:
    """The configured curve Go's server picks for a client offering these groups."""
    supported, shares = groups
    if tls13:
        for curve in preference:
            if _GROUP_IDS[curve] in shares:
                return curve
    for curve in preference:
        if _GROUP_IDS[curve] in supported:
            return curve
    return preference[0]


@dataclass(frozen=True)
class WebConfig:
    """The validated web configuration: TLS, basic-auth users, extra headers and rate limit."""

    tls: TLSConfig | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_limit: RateLimit | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A fresh server-side SSL context, or None when TLS is off."""
        return None if self.tls is None else self.tls.ssl_context()


# A web config is a few lines; a PEM file a certificate chain or a CA bundle (0.2 MiB for the
# system's).
_MAX_WEB_CONFIG_BYTES = 1024 * 1024
_MAX_PEM_BYTES = 4 * 1024 * 1024


def load_web_config(path: str | os.PathLike[str] | None) -> WebConfig:
    """Read and validate a web configuration file; None means plain HTTP without auth.

    Read by the configuration's shared loader (exporter.yamlconf): a regular file of bounded
    size, read within a timeout, syntax errors at the line of the mistake, nesting bounded.
    """
    if path is None:
        return WebConfig()
    file = Path(path)
    try:
        node = compose_yaml(file, max_bytes=_MAX_WEB_CONFIG_BYTES)
    except YamlError as exc:
        raise WebConfigError(exc.problems) from None
    return parse_web_config(node, base=file.absolute().parent, name=str(file))


def parse_web_config(node: yaml.Node | None, *, base: Path, name: str = "web config") -> WebConfig:
    """Validate a composed YAML document (nodes keep scalars as written, as Go reads them).

    `base` is the folder relative file paths resolve against; `name` prefixes whole-file errors.
    """
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG):
        return WebConfig()  # an empty file, as in the exporter-toolkit
    problems: list[str] = []
    top = _mapping(node, "", problems, whole=name)
    if top is None:
        raise WebConfigError(problems)
    _check_keys(top, "", _TOP_KEYS, problems)
    tls = _parse_tls(top.get("tls_server_config"), base, problems)
    _check_http2(tls, top.get("http_server_config"), problems)
    headers = _parse_http(top.get("http_server_config"), problems)
    rate_limit = _parse_rate_limit(top.get("rate_limit"), problems)
    users = _parse_users(top.get("basic_auth_users"), problems)
    if problems:
        raise WebConfigError(_located(problems, node))
    return WebConfig(tls=tls, basic_auth_users=users, headers=headers, rate_limit=rate_limit)


# --- sections ---------------------------------------------------------------------------------


def _parse_tls(raw: yaml.Node | None, base: Path, problems: list[str]) -> TLSConfig | None:
    section = "tls_server_config"
    fields = _mapping(raw, section, problems)
    if not fields:
        return None
    before = len(problems)
    _check_keys(fields, section, _TLS_KEYS, problems)
    text = {key: _string(fields.get(key), f"{section}.{key}", problems) for key in _TLS_TEXT_KEYS}

    # Decoding errors come first and regardless of whether TLS ends up on, as in Go.
    suites = _names(fields, "cipher_suites", section, problems, _check_cipher)
    curves = _names(fields, "curve_preferences", section, problems, _check_curve)
    versions = {
        key: _names_one(fields.get(key), f"{section}.{key}", problems)
        for key in ("min_version", "max_version")
    }
    for key, value in versions.items():
        if value is not None and value not in TLS_VERSIONS:
            problems.append(
                f"{section}.{key}: unknown TLS version {value!r} "
                f"(expected one of {', '.join(TLS_VERSIONS)})"
            )
            versions[key] = None
    prefer = _boolean(fields.get("prefer_server_cipher_suites"), section, problems, default=True)
    sans_node = fields.get("client_allowed_sans")
    sans = tuple(_string_list(sans_node, f"{section}.client_allowed_sans", problems))

    # The toolkit turns TLS on only when a certificate, key, CA or client auth type is set;
    # a section with just versions or ciphers serves plain HTTP.
    if not any(text[k] for k in text):
        return None

    if not text["cert"] and not text["cert_file"]:
        problems.append(f"{section}: missing one of cert or cert_file")
    if not text["key"] and not text["key_file"]:
        problems.append(f"{section}: missing one of key or key_file")
    cert_file = _existing(text["cert_file"], f"{section}.cert_file", base, problems)
    key_file = _existing(text["key_file"], f"{section}.key_file", base, problems)
    ca_file = _existing(text["client_ca_file"], f"{section}.client_ca_file", base, problems)

    auth = text["client_auth_type"] or "NoClientCert"
    auth = _CLIENT_AUTH_ALIASES.get(auth, auth)
    if auth not in CLIENT_AUTH_TYPES:
        problems.append(
            f"{section}.client_auth_type: invalid ClientAuth {auth!r} "
            f"(expected one of {', '.join(CLIENT_AUTH_TYPES)})"
        )
    elif auth == "NoClientCert" and (text["client_ca_file"] or text["client_ca"]):
        problems.append(
            f"{section}.client_ca_file: client CA's have been configured without a Client Auth "
            "Policy: client_auth_type is NoClientCert, so client certificates would not be "
            "checked (set e.g. RequireAndVerifyClientCert)"
        )

    low_name, high_name = versions["min_version"] or "TLS12", versions["max_version"] or "TLS13"
    if TLS_VERSIONS[low_name] > TLS_VERSIONS[high_name]:
        problems.append(f"{section}.min_version: {low_name} is above max_version {high_name}")
    tls12_suites = [s for s in suites if GO_CIPHER_SUITES.get(s)]
    if suites and not tls12_suites and TLS_VERSIONS[high_name] < ssl.TLSVersion.TLSv1_3:
        problems.append(
            f"{section}.cipher_suites: lists only TLS 1.3 suites, but max_version is {high_name}: "
            "no handshake could succeed"
        )

    if sans_node is not None and not isinstance(sans_node, yaml.ScalarNode):
        if not sans:
            problems.append(f"{section}.client_allowed_sans: must list at least one SAN")
        if auth in CLIENT_AUTH_TYPES and auth not in _SANS_NEED:
            problems.append(
                f"{section}.client_allowed_sans: requires client_auth_type "
                f"RequireAndVerifyClientCert or RequireAnyClientCert, not {auth}"
            )

    if len(problems) > before:
        return None
    tls = TLSConfig(
        cert_file=cert_file,
        key_file=key_file,
        client_auth_type=auth,
        client_ca_file=ca_file,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        client_allowed_sans=sans,
        cert=None if cert_file else text["cert"],
        key=None if key_file else text["key"],
        client_ca=None if ca_file else text["client_ca"],
        cipher_suites=tuple(suites),
        curve_preferences=tuple(curves),
        prefer_server_cipher_suites=prefer,
    )
    _prove_tls(tls, section, problems)
    return None if len(problems) > before else tls


def _check_cipher(name: str) -> str | None:
    if name in GO_CIPHER_SUITES:
        return None
    if name in _GO_INSECURE_SUITES:
        return f"unknown cipher: {name} (Go lists it as insecure; exporter-toolkit refuses it)"
    return f"unknown cipher: {name}"


def _check_curve(name: str) -> str | None:
    if name in CURVES:
        return None
    return f"unknown curve: {name} (expected one of {', '.join(CURVES)})"


def _prove_tls(tls: TLSConfig, section: str, problems: list[str]) -> None:
    """Load the certificate, key and CA once, so a bad file fails at start-up, not per scrape."""
    pems = (
        ("cert", tls.cert_file, tls.cert, b"-----BEGIN CERTIFICATE-----", "certificate"),
        ("key", tls.key_file, tls.key, b"PRIVATE KEY-----", "private key"),
    )
    for name, path, inline, marker, kind in pems:
        where = f"{section}.{name}_file: {path}" if path else f"{section}.{name}"
        try:
            data = _read_pem(path) if path else (inline or "").encode("utf-8")
        except FileReadError as exc:
            problems.append(f"{where}: cannot read: {exc}")
            return
        if marker not in data:
            problems.append(f"{where}: no PEM {kind} found")
            return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        with (
            TLSConfig._pem_path(tls.cert_file, tls.cert) as cert,
            TLSConfig._pem_path(tls.key_file, tls.key) as key,
        ):
            ctx.load_cert_chain(cert, key, password=_no_passphrase)
    except (ssl.SSLError, OSError, FileReadError) as exc:
        problems.append(
            f"{section}.{'key_file' if tls.key_file else 'key'}: cannot be loaded together with "
            f"the certificate (mismatched, encrypted or malformed): {_reason(exc)}"
        )
        return
    if CLIENT_AUTH_TYPES[tls.client_auth_type] == ssl.CERT_NONE:
        return
    try:
        if tls.client_ca_file is not None:
            ctx.load_verify_locations(cadata=_read_pem(tls.client_ca_file).decode("latin-1"))
        elif tls.client_ca:
            ctx.load_verify_locations(cadata=tls.client_ca)
    except (ssl.SSLError, OSError, ValueError, FileReadError) as exc:
        where = f"client_ca_file: {tls.client_ca_file}" if tls.client_ca_file else "client_ca"
        problems.append(f"{section}.{where}: no usable CA certificate: {_reason(exc)}")
        return
    try:
        tls.ssl_context()  # ciphers, curves and versions together, as the server will build it
    except (ssl.SSLError, OSError, ValueError) as exc:
        problems.append(f"{section}: cannot build the TLS settings: {_reason(exc)}")


def _parse_http(raw: yaml.Node | None, problems: list[str]) -> Mapping[str, str]:
    section = "http_server_config"
    fields = _mapping(raw, section, problems)
    headers: dict[str, str] = {}
    if not fields:
        return MappingProxyType(headers)
    _check_keys(fields, section, _HTTP_KEYS, problems)
    _boolean(fields.get("http2"), section, problems, default=True, key="http2")
    header_nodes = _mapping(fields.get("headers"), f"{section}.headers", problems)
    for name, value_node in (header_nodes or {}).items():
        path = f"{section}.headers.{name}"
        if name not in _ALLOWED_HEADERS:
            problems.append(
                f"{path}: HTTP header {name!r} can not be configured "
                f"(allowed, exactly as written: {', '.join(_ALLOWED_HEADERS)})"
            )
            continue
        value = _string(value_node, path, problems)
        if value is None:
            continue
        allowed = _ALLOWED_HEADERS[name]
        if allowed is not None and value not in allowed:
            problems.append(
                f"{path}: invalid value; expected one of {', '.join(allowed)}, not {value!r}"
            )
            continue
        if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
            problems.append(f"{path}: must be a single line without control characters")
            continue
        headers[name] = value
    return MappingProxyType(headers)


def _check_http2(tls: TLSConfig | None, http: yaml.Node | None, problems: list[str]) -> None:
    """Go's HTTP/2 server refuses a TLS 1.2 cipher list without an AES-128-GCM ECDHE suite."""
    if tls is None or not tls.cipher_suites:
        return
    fields = _mapping(http, "http_server_config", [])
    http2 = True
    if fields and (node := fields.get("http2")) is not None:
        http2 = _boolean(node, "http_server_config", [], default=True, key="http2")
    if not http2 or TLS_VERSIONS[tls.min_version or "TLS12"] >= ssl.TLSVersion.TLSv1_3:
        return
    if not any(s in _HTTP2_REQUIRED for s in tls.cipher_suites):
        problems.append(
            "tls_server_config.cipher_suites: is missing an HTTP/2-required AES_128_GCM_SHA256 "
            f"cipher (need at least one of {' or '.join(_HTTP2_REQUIRED)}), as Go's HTTP/2 "
            "server requires; or set http_server_config.http2: false"
        )


def _parse_rate_limit(raw: yaml.Node | None, problems: list[str]) -> RateLimit | None:
    section = "rate_limit"
    fields = _mapping(raw, section, problems)
    if not fields:
        return None
    _check_keys(fields, section, _RATE_KEYS, problems)
    burst = 0
    if (node := fields.get("burst")) is not None:
        value = _integer(node, f"{section}.burst", problems)
        burst = value if value is not None else 0
    interval = 0.0
    if (node := fields.get("interval")) is not None:
        seconds = _duration(node, f"{section}.interval", problems)
        interval = seconds if seconds is not None else 0.0
    if interval == 0:
        return None  # the toolkit enables the limiter only with a non-zero interval
    return RateLimit(interval=interval, burst=burst)


def _parse_users(raw: yaml.Node | None, problems: list[str]) -> Mapping[str, str]:
    section = "basic_auth_users"
    users: dict[str, str] = {}
    fields = _mapping(raw, section, problems)
    for user, node in (fields or {}).items():
        path = f"{section}.{user}"
        if ":" in user:
            problems.append(f"{path}: user name must not contain ':' (it could never log in)")
            continue
        hashed = _string(node, path, problems, echo=False)
        if hashed is None:
            continue
        # Never echo the value: it is a password hash.
        if not _BCRYPT_HASH.fullmatch(hashed):
            problems.append(
                f"{path}: not a bcrypt hash "
                "(expected $2a$, $2b$ or $2y$, a cost of 04-31 and 53 more characters)"
            )
            continue
        users[user] = hashed
    return MappingProxyType(users)


# --- YAML nodes, read as Go's yaml.v2 reads them into the toolkit's structs --------------------


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return str(node.tag).rsplit(":", 1)[-1]


def _mapping(
    node: yaml.Node | None, path: str, problems: list[str], *, whole: str | None = None
) -> dict[str, yaml.Node] | None:
    """Keys (as written: `123` is "123") to value nodes; None for null or a wrong type."""
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG):
        return None
    if not isinstance(node, yaml.MappingNode):
        where = whole or path
        problems.append(f"{where}: must be a mapping, not a {_kind(node)}")
        return None
    yaml.SafeLoader("").flatten_mapping(node)  # resolve `<<` merge keys as yaml.v2 does
    out: dict[str, yaml.Node] = {}
    first: dict[str, yaml.Mark] = {}
    for key_node, value in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(f"{path or '(top level)'}: keys must be plain values")
            continue
        key = "" if key_node.tag == _NULL_TAG else str(key_node.value)
        if key in out:  # as in the exporter's configuration file
            at, again = first[key], key_node.start_mark
            problems.append(
                f"{_join(path, key)}: duplicate key (first at line {at.line + 1}, column "
                f"{at.column + 1}) (line {again.line + 1}, column {again.column + 1})"
            )
            continue
        out[key] = value
        first[key] = key_node.start_mark
    return out


_POSITIONED = re.compile(r"\(line \d+, column \d+\)\Z")


def _located(problems: list[str], node: yaml.Node | None) -> list[str]:
    """The problems in the configuration's one style: each `path: message` gets the line and
    column of its path (or of the nearest enclosing one), as exporter.yamlconf.Report adds."""
    report = Report(positions=node_positions(node))
    for problem in problems:
        path, sep, message = problem.partition(": ")
        if sep and not _POSITIONED.search(problem):
            report.add(path, message)
        else:
            report.problems.append(problem)
    return report.problems


def _join(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _check_keys(
    fields: Mapping[str, yaml.Node], section: str, known: tuple[str, ...], problems: list[str]
) -> None:
    for key in fields:
        if key not in known:
            problems.append(f"{_join(section, key)}: {unknown_key(key, known)}")


def _string(
    node: yaml.Node | None, path: str, problems: list[str], *, echo: bool = True
) -> str | None:
    """A scalar as text, as Go reads any scalar into a string field (`1` is "1"); null is ""."""
    if node is None:
        return ""
    if not isinstance(node, yaml.ScalarNode):
        problems.append(f"{path}: must be a string, not a {_kind(node)}")
        return None
    if node.tag == _NULL_TAG:
        return ""
    if node.tag == "tag:yaml.org,2002:binary":
        try:
            return base64.b64decode(str(node.value)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            problems.append(
                f"{path}: !!binary value is not UTF-8 text" if echo else f"{path}: bad value"
            )
            return None
    return str(node.value)


def _string_list(node: yaml.Node | None, path: str, problems: list[str]) -> Iterator[str]:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG):
        return
    if not isinstance(node, yaml.SequenceNode):
        problems.append(f"{path}: must be a list of strings, not a {_kind(node)}")
        return
    for i, item in enumerate(node.value):
        value = _string(item, f"{path}[{i}]", problems)
        if value is not None:
            yield value


def _names(
    fields: Mapping[str, yaml.Node],
    key: str,
    section: str,
    problems: list[str],
    check: Callable[[str], str | None],
) -> list[str]:
    path = f"{section}.{key}"
    good: list[str] = []
    node = fields.get(key)
    if node is not None and not isinstance(node, yaml.SequenceNode):
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG):
            problems.append(f"{path}: must be a list of strings, not a {_kind(node)}")
        return good
    for i, item in enumerate(node.value if node is not None else ()):
        value = _string(item, f"{path}[{i}]", problems)
        if value is None:
            continue
        problem = check(value)
        if problem is None:
            good.append(value)
        else:
            problems.append(f"{path}[{i}]: {problem}")
    return good


def _names_one(node: yaml.Node | None, path: str, problems: list[str]) -> str | None:
    value = _string(node, path, problems)
    return value or None


def _boolean(
    node: yaml.Node | None,
    section: str,
    problems: list[str],
    *,
    default: bool,
    key: str = "prefer_server_cipher_suites",
) -> bool:
    """yaml.v2's YAML 1.1 booleans (true/yes/on and y, any of the usual cases)."""
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG):
        return default
    if isinstance(node, yaml.ScalarNode):
        text = str(node.value)
        if node.tag == _BOOL_TAG or (node.tag == _STR_TAG and node.style is None):
            if text in ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"):
                return True
            if text in ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"):
                return False
    problems.append(f"{section}.{key}: must be true or false")
    return default


def _integer(node: yaml.Node, path: str, problems: list[str]) -> int | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == _INT_TAG:
        value = yaml.SafeLoader("").construct_yaml_int(node)
        if isinstance(value, int) and -(2**63) <= value < 2**63:
            return value
    problems.append(f"{path}: must be an integer")
    return None


def _duration(node: yaml.Node, path: str, problems: list[str]) -> float | None:
    """Go's time.Duration from YAML: a duration string ("1s", "1m30s") or integer nanoseconds."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _INT_TAG:
            ns = _integer(node, path, problems)
            return None if ns is None else ns / 1e9
        if node.tag in (_STR_TAG, _FLOAT_TAG):
            try:
                return parse_duration(str(node.value))
            except ValueError as exc:
                problems.append(f"{path}: {exc}")
                return None
    problems.append(f"{path}: must be a duration such as 1s, 500ms or 1m30s")
    return None


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 MICRO SIGN
    "μs": 1e-6,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds from a Go duration string ("300ms", "1.5h", "2h45m", "-1s", "0")."""
    body = text
    sign = 1.0
    if body[:1] in ("+", "-"):
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None:
            unit = "" if re.match(r"[\d.]+$", body[pos:]) else " (units: ns, us, ms, s, m, h)"
            raise ValueError(f"invalid duration {text!r}{unit}: a number needs a unit")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if total > 2**63 / 1e9:
        raise ValueError(f"invalid duration {text!r}: out of range")
    return sign * total


def _existing(value: str | None, path: str, base: Path, problems: list[str]) -> Path | None:
    """An absolute path for a set *_file value (relative to the config's folder), if readable."""
    if not value:
        return None
    file = base / value  # an absolute value replaces base
    try:
        _read_pem(file)  # a regular file: a FIFO here would block the TLS start-up forever
    except FileReadError as exc:
        problems.append(f"{path}: cannot read {file}: {exc}")
        return None
    return file


def _read_pem(path: Path) -> bytes:
    return read_regular_file(path, max_bytes=_MAX_PEM_BYTES)


def _no_passphrase() -> bytes:
    return b""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


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


# --- basic auth ---------------------------------------------------------------------------------


class _LRU:
    """A bounded set of digests, least recently used first out."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, key: bytes) -> bool:
        if key in self._items:
            self._items.move_to_end(key)
            return True
        return False

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: bytes) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class _Flight:
    """One bcrypt check in progress; requests with the same credentials wait for its result."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


def _bcrypt_checkpw(password: bytes, hashed: bytes) -> bool:
    return bool(bcrypt.checkpw(password, hashed))


class BasicAuth:
    """Checks HTTP basic-auth credentials against bcrypt hashes, without a global lock.

    - Nothing is hashed at start-up; an unknown user is checked against a fixed cost-10 decoy.
    - No lock is held across a bcrypt check: two users never wait for each other. Requests
      with identical credentials share one check (single flight), and decoy checks for
      unknown users run at most `decoy_concurrency` at a time, so a flood of anonymous guesses
      takes at most that many cores and never delays a configured user.
    - Results are cached by a digest of (user, hash, password) in two bounded LRU sets, good
      and bad, so repeated scrapes cost no bcrypt and a flood of wrong guesses cannot evict
      the good entries.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        cache_size: int = 1024,
        decoy_concurrency: int = 2,
        checkpw: Callable[[bytes, bytes], bool] = _bcrypt_checkpw,
    ) -> None:
        """Take user -> bcrypt hash; `checkpw` is injectable for tests."""
        self._users = {user: hashed.encode("ascii") for user, hashed in users.items()}
        self._checkpw = checkpw
        self._good = _LRU(cache_size)
        self._bad = _LRU(cache_size)
        self._lock = threading.Lock()  # guards the caches and flights; never held across bcrypt
        self._flights: dict[bytes, _Flight] = {}
        self._decoy_slots = threading.BoundedSemaphore(decoy_concurrency)

    @property
    def cached(self) -> int:
        """How many verified-good credentials are cached (bounded by cache_size)."""
        with self._lock:
            return len(self._good)

    def check(self, authorization: str | None) -> bool:
        """True when an `Authorization: Basic ...` header names a user with the right password."""
        credentials = _parse_basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        known = hashed is not None
        if hashed is None:
            hashed = _DECOY_HASH
        key = _digest(user.encode("utf-8"), hashed, password)
        with self._lock:
            if key in self._good:
                return known
            if key in self._bad:
                return False
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            return flight.ok
        ok = False
        try:
            ok = self._verify(password, hashed, decoy=not known) and known
        finally:
            with self._lock:
                (self._good if ok else self._bad).add(key)
                del self._flights[key]
            flight.ok = ok
            flight.done.set()
        return ok

    def _verify(self, password: bytes, hashed: bytes, *, decoy: bool) -> bool:
        slots = self._decoy_slots if decoy else contextlib.nullcontext()
        with slots:
            try:
                return self._checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed)
            except ValueError:
                return False


def _digest(*parts: bytes) -> bytes:
    """SHA-256 over length-prefixed parts, so no two different tuples share a digest."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


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


# --- rate limit -------------------------------------------------------------------------------


class RateLimiter:
    """Go's golang.org/x/time/rate limiter as the toolkit uses it: Allow() on a token bucket.

    The bucket holds `burst` tokens and gains one every `interval` seconds; a non-positive
    interval never limits, and a burst of 0 (with a positive interval) refuses everything.
    """

    def __init__(
        self, interval: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Start with a full bucket."""
        self._per_second = math.inf if interval <= 0 else 1.0 / interval
        self._burst = burst
        self._tokens = float(max(burst, 0))
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take one token if there is one."""
        if self._per_second == math.inf:
            return True
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._last)
            self._last = now
            self._tokens = min(
                float(max(self._burst, 0)), self._tokens + elapsed * self._per_second
            )
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


# --- the middleware ------------------------------------------------------------------------------


_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


def protect(
    app: WSGIApp, web: WebConfig, *, clock: Callable[[], float] = time.monotonic
) -> WSGIApp:
    """Wrap a WSGI app with the web config's rate limit (429), basic auth (401) and headers.

    `/-/healthy` and `/-/ready` answer without credentials and outside the rate limit.
    """
    if not web.basic_auth_users and not web.headers and web.rate_limit is None:
        return app
    if isinstance(app, _Protected) and app.web == web:
        return app  # already wrapped with this config: no second check
    return _Protected(app, web, clock)


class _Protected:
    """The WSGI middleware built by protect()."""

    def __init__(self, app: WSGIApp, web: WebConfig, clock: Callable[[], float]) -> None:
        self.app = app
        self.web = web
        self._auth = BasicAuth(web.basic_auth_users) if web.basic_auth_users else None
        limit = web.rate_limit
        self._limiter = RateLimiter(limit.interval, limit.burst, clock) if limit else None
        self._extra = list(web.headers.items())
        self._replaced = {name.lower() for name, _ in self._extra}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(
            status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
        ) -> Any:
            kept = [(k, v) for k, v in headers if k.lower() not in self._replaced]
            return start_response(status, kept + self._extra, exc_info)

        exempt = (environ.get("PATH_INFO") or "/") in UNAUTHENTICATED_PATHS
        if self._limiter is not None and not exempt and not self._limiter.allow():
            # As the toolkit: refused before headers and auth, with Go's http.Error body.
            body = b"Too Many Requests\n"
            start_response(
                "429 Too Many Requests",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("X-Content-Type-Options", "nosniff"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        if (
            self._auth is not None
            and not exempt
            and not self._auth.check(environ.get("HTTP_AUTHORIZATION"))
        ):
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
