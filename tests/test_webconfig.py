"""The exporter-toolkit web config: parity fixtures, real TLS handshakes, basic auth attacks."""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from exporter.httpserver import HTTPServer
from exporter.tlsgroups import set_group
from exporter.webconfig import (
    _DECOY_HASH,
    REALM,
    UNAUTHENTICATED_PATHS,
    BasicAuth,
    RateLimit,
    RateLimiter,
    ServerContext,
    TLSConfig,
    WebConfig,
    WebConfigError,
    choose_curve,
    client_hello_groups,
    load_web_config,
    parse_duration,
    peek_client_hello,
    protect,
)
from tests.fakes import FakeClock


def _hash(password: bytes, prefix: bytes = b"$2b$") -> str:
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=4))
    return (prefix + hashed[4:]).decode()


ALICE_HASH = _hash(b"alice-secret")
BOB_HASH = _hash(b"bob:with:colons", prefix=b"$2y$")


def basic(user: str | bytes, password: str | bytes) -> str:
    """An Authorization header value."""
    u = user.encode() if isinstance(user, str) else user
    p = password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(u + b":" + p).decode()


@dataclass
class Files:
    dir: Path
    ca: trustme.CA


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(tmp_path: Path, ca: trustme.CA) -> Files:
    """server.crt/server.key/ca.crt, a key that belongs to another cert, junk and encrypted keys."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(tmp_path / "server.crt"), append=True)
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    ca.issue_cert("other.example").private_key_pem.write_to_path(str(tmp_path / "other.key"))
    (tmp_path / "junk.txt").write_text("not a certificate\n")
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    (tmp_path / "encrypted.key").write_bytes(encrypted)
    return Files(tmp_path, ca)


def write_config(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


# --- good files ------------------------------------------------------------------------------


def test_no_file_means_plain_http_without_auth() -> None:
    web = load_web_config(None)
    assert web == WebConfig()
    assert web.ssl_context() is None
    assert dict(web.basic_auth_users) == {}


def test_empty_file_means_plain_http(tmp_path: Path) -> None:
    assert load_web_config(write_config(tmp_path, "")) == WebConfig()


def test_full_file_with_relative_paths(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        files.dir,
        f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  curve_preferences: [X25519, CurveP256]
  prefer_server_cipher_suites: true
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  alice: {ALICE_HASH}
  bob: '{BOB_HASH}'
""",
    )
    # Relative cert paths follow the config file, not the working directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    web = load_web_config(path)

    assert web.tls == TLSConfig(
        cert_file=files.dir / "server.crt",
        key_file=files.dir / "server.key",
        client_auth_type="RequireAndVerifyClientCert",
        client_ca_file=files.dir / "ca.crt",
        min_version="TLS12",
        max_version="TLS13",
        cipher_suites=("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
        curve_preferences=("X25519", "CurveP256"),
    )
    assert web.tls.cert_file is not None and web.tls.cert_file.is_absolute()
    assert dict(web.headers) == {
        "X-Frame-Options": "deny",
        "X-Content-Type-Options": "nosniff",
        "Strict-Transport-Security": "max-age=31536000",
    }
    assert dict(web.basic_auth_users) == {"alice": ALICE_HASH, "bob": BOB_HASH}

    ctx = web.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3


def test_defaults_and_absolute_paths(files: Files, tmp_path: Path) -> None:
    other = tmp_path / "conf"
    other.mkdir()
    path = write_config(
        other,
        f"tls_server_config:\n  cert_file: {files.dir / 'server.crt'}\n"
        f"  key_file: {files.dir / 'server.key'}\n",
    )
    web = load_web_config(path)
    assert web.tls is not None
    assert web.tls.cert_file == files.dir / "server.crt"
    assert web.tls.client_auth_type == "NoClientCert"
    ctx = web.ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2  # the exporter-toolkit's default


def test_empty_tls_section_means_plain_http(tmp_path: Path) -> None:
    web = load_web_config(write_config(tmp_path, "tls_server_config: {}\nbasic_auth_users:\n"))
    assert web.tls is None
    assert web.ssl_context() is None


def test_old_require_client_cert_spelling_is_accepted(files: Files) -> None:
    path = write_config(
        files.dir,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireClientCert\n  client_ca_file: ca.crt\n",
    )
    web = load_web_config(path)
    assert web.tls is not None
    assert web.tls.client_auth_type == "RequireAnyClientCert"


def test_hashes_are_not_in_repr(tmp_path: Path) -> None:
    web = load_web_config(write_config(tmp_path, f"basic_auth_users:\n  alice: {ALICE_HASH}\n"))
    assert ALICE_HASH not in repr(web)
    assert ALICE_HASH not in str(web)


# --- bad files -------------------------------------------------------------------------------

TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"

BAD_FILES = [
    ("unknown-top-key", "foo: 1\n", "foo: unknown key"),
    ("not-a-mapping", "- a\n- b\n", "web.yml: must be a mapping"),
    ("invalid-yaml", "tls_server_config: [\n", "web.yml:2:1: invalid YAML: "),
    ("tls-not-mapping", "tls_server_config: yes\n", "tls_server_config: must be a mapping"),
    (
        "missing-cert",
        "tls_server_config:\n  key_file: server.key\n",
        "tls_server_config: missing one of cert or cert_file",
    ),
    (
        "missing-key",
        "tls_server_config:\n  cert_file: server.crt\n",
        "tls_server_config: missing one of key or key_file",
    ),
    (
        "cert-not-found",
        "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n",
        "tls_server_config.cert_file: cannot read",
    ),
    (
        "cert-is-a-directory",
        "tls_server_config:\n  cert_file: .\n  key_file: server.key\n",
        "tls_server_config.cert_file: cannot read",
    ),
    (
        "cert-not-pem",
        "tls_server_config:\n  cert_file: junk.txt\n  key_file: server.key\n",
        "tls_server_config.cert_file:",
    ),
    (
        "key-not-pem",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: junk.txt\n",
        "tls_server_config.key_file:",
    ),
    (
        "key-of-another-cert",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
        "tls_server_config.key_file: cannot be loaded together with the certificate",
    ),
    (
        "encrypted-key",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: encrypted.key\n",
        "tls_server_config.key_file: cannot be loaded together with the certificate",
    ),
    ("unknown-tls-key", TLS + "  certfile: x\n", "tls_server_config.certfile: unknown key"),
    (
        "inline-cert-not-pem",
        "tls_server_config:\n  cert: x\n  key_file: server.key\n",
        "tls_server_config.cert: no PEM certificate found",
    ),
    (
        "bad-client-auth-type",
        TLS + "  client_auth_type: Sometimes\n",
        "tls_server_config.client_auth_type: invalid ClientAuth 'Sometimes'",
    ),
    (
        "ca-without-client-auth",
        TLS + "  client_ca_file: ca.crt\n",
        "tls_server_config.client_ca_file: client CA's have been configured without a Client "
        "Auth Policy",
    ),
    (
        "ca-not-found",
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: nope.crt\n",
        "tls_server_config.client_ca_file: cannot read",
    ),
    (
        "ca-not-a-cert",
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: junk.txt\n",
        "tls_server_config.client_ca_file:",
    ),
    (
        "unknown-tls-version",
        TLS + "  min_version: TLS14\n",
        "tls_server_config.min_version: unknown TLS version 'TLS14'",
    ),
    (
        "min-above-max",
        TLS + "  min_version: TLS13\n  max_version: TLS12\n",
        "tls_server_config.min_version: TLS13 is above max_version TLS12",
    ),
    (
        "unknown-curve",
        TLS + "  curve_preferences: [CurveP999]\n",
        "tls_server_config.curve_preferences[0]: unknown curve: CurveP999",
    ),
    (
        "cipher-suites-not-list",
        TLS + "  cipher_suites: TLS_AES_128_GCM_SHA256\n",
        "tls_server_config.cipher_suites: must be a list of strings",
    ),
    (
        "cipher-suite-not-go-name",
        TLS + "  cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]\n",
        "tls_server_config.cipher_suites[0]: unknown cipher: ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        "prefer-not-bool",
        TLS + "  prefer_server_cipher_suites: sure\n",
        "tls_server_config.prefer_server_cipher_suites: must be true or false",
    ),
    (
        "sans-without-required-cert",
        TLS
        + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"
        + "  client_allowed_sans: [client.example]\n",
        "tls_server_config.client_allowed_sans: requires client_auth_type",
    ),
    (
        "sans-empty",
        TLS
        + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        + "  client_allowed_sans: []\n",
        "tls_server_config.client_allowed_sans: must list at least one SAN",
    ),
    ("http-not-mapping", "http_server_config: 3\n", "http_server_config: must be a mapping"),
    (
        "http-unknown-key",
        "http_server_config:\n  foo: 1\n",
        "http_server_config.foo: unknown key",
    ),
    (
        "http2-not-bool",
        "http_server_config:\n  http2: maybe\n",
        "http_server_config.http2: must be true or false",
    ),
    (
        "headers-not-mapping",
        "http_server_config:\n  headers: [a]\n",
        "http_server_config.headers: must be a mapping",
    ),
    (
        "header-not-allowed",
        "http_server_config:\n  headers:\n    Server: mine\n",
        "http_server_config.headers.Server: HTTP header 'Server' can not be configured",
    ),
    (
        "header-bad-value",
        "http_server_config:\n  headers:\n    X-Frame-Options: allow-from x\n",
        "http_server_config.headers.X-Frame-Options: invalid value; expected one of deny, "
        "sameorigin",
    ),
    (
        "header-multiline",
        'http_server_config:\n  headers:\n    Content-Security-Policy: "a\\r\\nSet-Cookie: x"\n',
        "http_server_config.headers.Content-Security-Policy: must be a single line without "
        "control characters",
    ),
    (
        "users-not-mapping",
        "basic_auth_users: [alice]\n",
        "basic_auth_users: must be a mapping",
    ),
    (
        "user-plaintext-password",
        "basic_auth_users:\n  alice: hunter2\n",
        "basic_auth_users.alice: not a bcrypt hash",
    ),
    (
        "user-md5-hash",
        "basic_auth_users:\n  alice: $1$abc$0123456789\n",
        "basic_auth_users.alice: not a bcrypt hash",
    ),
    (
        "user-truncated-hash",
        f"basic_auth_users:\n  alice: {ALICE_HASH[:-1]}\n",
        "basic_auth_users.alice: not a bcrypt hash",
    ),
    (
        "user-cost-too-low",
        f"basic_auth_users:\n  alice: {ALICE_HASH[:4]}03{ALICE_HASH[6:]}\n",
        "basic_auth_users.alice: not a bcrypt hash",
    ),
    (
        "user-with-colon",
        f"basic_auth_users:\n  'al:ice': {ALICE_HASH}\n",
        "basic_auth_users.al:ice: user name must not contain ':'",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in BAD_FILES], ids=[i for i, _, _ in BAD_FILES]
)
def test_bad_file_names_the_problem(files: Files, text: str, expected: str) -> None:
    with pytest.raises(WebConfigError) as info:
        load_web_config(write_config(files.dir, text))
    problems = info.value.problems
    assert any(expected in p for p in problems), problems
    assert str(info.value) == "\n".join(problems)


@pytest.mark.parametrize("secret", ["hunter2", "$1$abc$0123456789", ALICE_HASH[:-1]])
def test_bad_hashes_are_not_echoed(tmp_path: Path, secret: str) -> None:
    with pytest.raises(WebConfigError) as info:
        load_web_config(write_config(tmp_path, f"basic_auth_users:\n  alice: '{secret}'\n"))
    assert secret not in str(info.value)


def test_all_problems_are_reported_together(files: Files) -> None:
    text = (
        "foo: 1\n"
        "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n"
        "  min_version: TLS9\n"
        "basic_auth_users:\n  alice: hunter2\n"
    )
    with pytest.raises(WebConfigError) as info:
        load_web_config(write_config(files.dir, text))
    paths = sorted(p.split(":", 1)[0] for p in info.value.problems)
    assert paths == [
        "basic_auth_users.alice",
        "foo",
        "tls_server_config.cert_file",
        "tls_server_config.min_version",
    ]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError) as info:
        load_web_config(tmp_path / "absent.yml")
    assert info.value.problems == [
        f"{tmp_path / 'absent.yml'}: cannot read: No such file or directory"
    ]


# --- client_allowed_sans matching -------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "sans", "ok"),
    [
        ((), (), True),
        (("client.example",), (("DNS", "client.example"),), True),
        (("client.example",), (("DNS", "other.example"),), False),
        (("ops@example.com",), (("email", "ops@example.com"),), True),
        (("::1",), (("IP Address", "0:0:0:0:0:0:0:1\n"),), True),
        (("spiffe://x/y",), (("URI", "spiffe://x/y"),), True),
        (("client.example",), None, False),
    ],
)
def test_client_allowed_sans(allowed: tuple[str, ...], sans: Any, ok: bool) -> None:
    tls = TLSConfig(Path("c"), Path("k"), client_allowed_sans=allowed)
    peercert = None if sans is None else {"subjectAltName": sans}
    assert tls.client_allowed(peercert) is ok


# --- BasicAuth -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth() -> BasicAuth:
    return BasicAuth({"alice": ALICE_HASH, "bob": BOB_HASH})


def test_basic_auth_right_password(auth: BasicAuth) -> None:
    assert auth.check(basic("alice", "alice-secret"))
    assert auth.check(basic("bob", "bob:with:colons"))  # $2y$ hash, colons in the password
    assert auth.check("basic " + basic("alice", "alice-secret").split()[1])  # scheme any case


def test_basic_auth_wrong_password_and_unknown_user(auth: BasicAuth) -> None:
    assert not auth.check(basic("alice", "wrong"))
    assert not auth.check(basic("alice", "alice-secret "))
    assert not auth.check(basic("bob", "alice-secret"))
    assert not auth.check(basic("mallory", "alice-secret"))
    assert not auth.check(basic("Alice", "alice-secret"))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Bearer abc",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"alice").decode(),  # no colon
        basic(b"\xff\xfe", "alice-secret"),  # user name not UTF-8
    ],
)
def test_basic_auth_malformed_headers(auth: BasicAuth, header: str | None) -> None:
    assert not auth.check(header)


@pytest.mark.parametrize("prefix", [b"$2a$", b"$2b$", b"$2y$"])
def test_basic_auth_hash_prefixes(prefix: bytes) -> None:
    assert BasicAuth({"u": _hash(b"pw", prefix)}).check(basic("u", "pw"))


def test_basic_auth_long_password_uses_first_72_bytes() -> None:
    password = b"x" * 80
    checker = BasicAuth({"u": _hash(password[:72])})
    assert checker.check(basic("u", password))  # bcrypt semantics, as htpasswd and Go
    assert not checker.check(basic("u", b"y" * 80))


@pytest.fixture
def count_bcrypt(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record the hash of every bcrypt.checkpw call."""
    calls: list[bytes] = []
    real: Callable[[bytes, bytes], bool] = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def test_successful_checks_are_cached(count_bcrypt: list[bytes]) -> None:
    checker = BasicAuth({"alice": ALICE_HASH})
    assert checker.check(basic("alice", "alice-secret"))
    assert len(count_bcrypt) == 1
    for _ in range(5):
        assert checker.check(basic("alice", "alice-secret"))
    assert len(count_bcrypt) == 1  # repeated scrapes do not pay bcrypt again
    # A failure is cached too (as the toolkit does): repeating a wrong guess costs nothing.
    assert not checker.check(basic("alice", "wrong"))
    assert not checker.check(basic("alice", "wrong"))
    assert len(count_bcrypt) == 2
    assert not checker.check(basic("alice", "wrong again"))
    assert len(count_bcrypt) == 3


def test_unknown_user_costs_a_bcrypt_check(count_bcrypt: list[bytes]) -> None:
    checker = BasicAuth({"alice": ALICE_HASH})
    assert not checker.check(basic("mallory", "alice-secret"))
    assert len(count_bcrypt) == 1
    assert count_bcrypt[0] != ALICE_HASH.encode()  # a decoy hash, not a real user's
    assert count_bcrypt[0][4:6] == b"10"  # a fixed cost, not the configured users' cost


# --- protect() -------------------------------------------------------------------------------


@dataclass
class Response:
    status: str
    headers: dict[str, str]
    body: bytes


def call(
    app: Callable[..., Iterable[bytes]], authorization: str | None = None, path: str = "/metrics"
) -> Response:
    """Call a WSGI app directly."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, dict(headers)
        return lambda data: None

    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    body = b"".join(app(environ, start_response))
    return Response(seen["status"], seen["headers"], body)


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Frame-Options", "allow")])
    return [b"hello"]


def test_protect_without_auth_or_headers_returns_the_app() -> None:
    assert protect(hello, WebConfig()) is hello


def test_protect_requires_credentials() -> None:
    app = protect(
        hello,
        WebConfig(basic_auth_users={"alice": ALICE_HASH}, headers={"X-Frame-Options": "deny"}),
    )
    for header in (None, basic("alice", "wrong"), basic("eve", "alice-secret"), "Bearer x"):
        response = call(app, header)
        assert response.status == "401 Unauthorized"
        assert response.headers["WWW-Authenticate"] == f'Basic realm="{REALM}"'
        assert response.headers["X-Frame-Options"] == "deny"
        assert response.body == b"Unauthorized\n"
        assert response.headers["Content-Length"] == str(len(response.body))

    response = call(app, basic("alice", "alice-secret"))
    assert response.status == "200 OK"
    assert response.body == b"hello"
    assert "WWW-Authenticate" not in response.headers


def test_protect_adds_configured_headers() -> None:
    web = WebConfig(headers={"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"})
    response = call(protect(hello, web))
    assert response.status == "200 OK"
    assert response.headers == {
        "Content-Type": "text/plain",
        "X-Frame-Options": "deny",  # the configured value replaces the app's
        "X-Content-Type-Options": "nosniff",
    }


def test_protect_twice_with_the_same_config_wraps_once() -> None:
    web = WebConfig(basic_auth_users={"alice": ALICE_HASH})
    once = protect(hello, web)
    assert protect(once, web) is once


def test_health_and_ready_answer_without_credentials() -> None:
    app = protect(hello, WebConfig(basic_auth_users={"alice": ALICE_HASH}))
    for path in sorted(UNAUTHENTICATED_PATHS):
        response = call(app, path=path)
        assert response.status == "200 OK", path
    assert call(app, path="/metrics").status == "401 Unauthorized"
    assert call(app, path="/-/reload").status == "401 Unauthorized"
    assert call(app, path="/-/healthy/../metrics").status == "401 Unauthorized"


# --- exporter-toolkit parity: one fixture file per rule ------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "webconfig"
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("*.yml"))


def _indent(pem: bytes) -> str:
    return "\n".join("    " + line for line in pem.decode().strip().splitlines())


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Path:
    """The certificates the fixture files name, in the folder they are copied into."""
    folder = tmp_path_factory.mktemp("fixtures")
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(folder / "server.crt"))
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    ca.cert_pem.write_to_path(str(folder / "ca.crt"))
    (folder / "junk.pem").write_text("no certificates in here\n")
    replacements = {
        "@@SERVER_CERT@@": _indent(server.cert_chain_pems[0].bytes()),
        "@@SERVER_KEY@@": _indent(server.private_key_pem.bytes()),
        "@@CA_CERT@@": _indent(ca.cert_pem.bytes()),
        "@@HASH@@": ALICE_HASH,
    }
    for name in FIXTURE_NAMES:
        text = (FIXTURES / name).read_text()
        for placeholder, value in replacements.items():
            text = text.replace(placeholder, value)
        (folder / name).write_text(text)
    return folder


def _expectation(name: str) -> str:
    first = (FIXTURES / name).read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{name} must start with '# expect: '"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_is_loaded_or_rejected_as_the_exporter_toolkit_does(
    fixture_dir: Path, name: str
) -> None:
    expect = _expectation(name)
    assert name.endswith(".good.yml") == expect.startswith("load ")
    if expect.startswith("load "):
        web = load_web_config(fixture_dir / name)
        assert (web.tls is not None) == (expect == "load tls")
        if web.tls is not None:
            assert isinstance(web.ssl_context(), ssl.SSLContext)
        return
    with pytest.raises(WebConfigError) as info:
        load_web_config(fixture_dir / name)
    wanted = expect.removeprefix("reject ")
    assert any(wanted in p for p in info.value.problems), info.value.problems


def test_header_values_are_read_as_written(fixture_dir: Path) -> None:
    web = load_web_config(fixture_dir / "headers.good.yml")
    assert web.headers["X-XSS-Protection"] == "1"  # YAML's int 1, read as Go reads a string
    path = write_config(fixture_dir, "http_server_config:\n  headers:\n    X-XSS-Protection: 0x1\n")
    assert load_web_config(path).headers["X-XSS-Protection"] == "0x1"


def test_integer_user_name_is_a_string(fixture_dir: Path) -> None:
    web = load_web_config(fixture_dir / "users_integer_name.good.yml")
    assert dict(web.basic_auth_users) == {"123": ALICE_HASH}
    assert BasicAuth(web.basic_auth_users).check(basic("123", "alice-secret"))


def test_file_wins_over_inline_pem(fixture_dir: Path) -> None:
    web = load_web_config(fixture_dir / "tls_file_and_inline_file_wins.good.yml")
    assert web.tls is not None
    assert web.tls.cert_file == fixture_dir / "server.crt"
    assert web.tls.cert is None and web.tls.key is None


def test_min_version_only_serves_plain_http(fixture_dir: Path) -> None:
    web = load_web_config(fixture_dir / "tls_min_version_only.good.yml")
    with serve(web) as server:
        assert server.url.startswith("http://")
        assert http_get(server.port, "/metrics")[0] == 200


def test_rate_limit_section(fixture_dir: Path) -> None:
    web = load_web_config(fixture_dir / "rate_limit_one_second.good.yml")
    assert web.rate_limit == RateLimit(interval=1.0, burst=0)
    assert load_web_config(fixture_dir / "rate_limit_no_interval.good.yml").rate_limit is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("300ms", 0.3), ("1m30s", 90.0), ("1.5h", 5400.0), ("2us", 2e-6), ("0", 0.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1 s", "s", "1d", "--1s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# --- serve time: real handshakes on 127.0.0.1 ----------------------------------------------------


def hello_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@contextlib.contextmanager
def serve(web: WebConfig) -> Iterator[HTTPServer]:
    server = HTTPServer(hello_app, "127.0.0.1:0", web, connection_timeout=5.0).start()
    try:
        yield server
    finally:
        server.shutdown()


def http_get(port: int, path: str, authorization: str | None = None) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": authorization} if authorization else {})
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    finally:
        conn.close()


@dataclass
class Reply:
    status: str
    version: str | None
    cipher: str | None


@dataclass
class RSAPki:
    dir: Path
    ca: trustme.CA
    other_ca: trustme.CA
    client: trustme.LeafCert
    stranger: trustme.LeafCert


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> RSAPki:
    """RSA certificates (for the TLS_ECDHE_RSA_* and TLS_RSA_* suites) and two client certs."""
    folder = tmp_path_factory.mktemp("rsa")
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    other = trustme.CA(key_type=trustme.KeyType.RSA)
    server = ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA)
    server.cert_chain_pems[0].write_to_path(str(folder / "server.crt"))
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    ca.cert_pem.write_to_path(str(folder / "ca.crt"))
    client = ca.issue_cert("client.example", key_type=trustme.KeyType.RSA)
    stranger = other.issue_cert("client.example", key_type=trustme.KeyType.RSA)
    return RSAPki(folder, ca, other, client, stranger)


def tls_web(pki: RSAPki, extra: str = "") -> WebConfig:
    text = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n" + extra
    return load_web_config(write_config(pki.dir, text))


def client_context(
    pki: RSAPki,
    *,
    versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None,
    ciphers: str | None = None,
    curve: str | None = None,
    cert: trustme.LeafCert | None = None,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    pki.ca.configure_trust(ctx)
    if versions is not None:
        ctx.minimum_version, ctx.maximum_version = versions
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if curve is not None:
        set_group(ctx, curve)
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


def https_get(server: HTTPServer, ctx: ssl.SSLContext) -> Reply:
    """One HTTPS request; raises OSError (ssl.SSLError included) when the server refuses."""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        version, cipher = conn.version(), conn.cipher()
        conn.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        if not data:
            raise ConnectionResetError("closed without an answer")
        return Reply(data.split(b"\r\n", 1)[0].decode(), version, cipher and cipher[0])


def refused(server: HTTPServer, ctx: ssl.SSLContext) -> bool:
    try:
        reply = https_get(server, ctx)
    except OSError:
        return True
    assert reply.status.endswith("200 OK"), reply
    return False


TLS12 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
TLS13 = (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_default_versions_refuse_tls11_and_serve_tls13(rsa_pki: RSAPki) -> None:
    with serve(tls_web(rsa_pki)) as server:
        old = client_context(
            rsa_pki,
            versions=(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1),
            ciphers="DEFAULT:@SECLEVEL=0",
        )
        assert refused(server, old)
        assert https_get(server, client_context(rsa_pki)).version == "TLSv1.3"


def test_max_version_tls12_refuses_a_tls13_only_client(rsa_pki: RSAPki) -> None:
    with serve(tls_web(rsa_pki, "  max_version: TLS12\n")) as server:
        assert refused(server, client_context(rsa_pki, versions=TLS13))
        assert https_get(server, client_context(rsa_pki)).version == "TLSv1.2"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_min_version_tls10_is_honoured(rsa_pki: RSAPki) -> None:
    web = tls_web(rsa_pki, "  min_version: TLS10\n  max_version: TLS10\n")
    ctx = client_context(
        rsa_pki,
        versions=(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1),
        ciphers="DEFAULT:@SECLEVEL=0",
    )
    with serve(web) as server:
        assert https_get(server, ctx).version == "TLSv1"


def test_cipher_suites_restrict_tls12(rsa_pki: RSAPki) -> None:
    web = tls_web(rsa_pki, "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n")
    with serve(web) as server:
        assert refused(
            server, client_context(rsa_pki, versions=TLS12, ciphers="ECDHE-RSA-AES256-SHA")
        )
        reply = https_get(
            server,
            client_context(
                rsa_pki,
                versions=TLS12,
                ciphers="ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256",
            ),
        )
        assert reply.cipher == "ECDHE-RSA-AES128-GCM-SHA256"


def test_rsa_key_exchange_suite_is_served(rsa_pki: RSAPki) -> None:
    web = tls_web(
        rsa_pki,
        "  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n  max_version: TLS12\n"
        "http_server_config:\n  http2: false\n",
    )
    with serve(web) as server:
        reply = https_get(
            server, client_context(rsa_pki, ciphers="AES128-SHA:ECDHE-RSA-AES128-SHA")
        )
        assert reply.cipher == "AES128-SHA"


def test_tls13_suites_cannot_be_restricted_and_alone_turn_tls12_off(rsa_pki: RSAPki) -> None:
    # As in Go: cipher_suites does not restrict TLS 1.3, and a list without any TLS 1.0-1.2
    # suite leaves TLS 1.2 clients nothing to negotiate.
    web = tls_web(
        rsa_pki,
        "  cipher_suites: [TLS_AES_128_GCM_SHA256]\nhttp_server_config:\n  http2: false\n",
    )
    with serve(web) as server:
        assert refused(server, client_context(rsa_pki, versions=TLS12))
        reply = https_get(server, client_context(rsa_pki, versions=TLS13))
        assert reply.cipher in (
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
        )


@pytest.mark.parametrize(
    ("prefer", "chosen"),
    [("true", "ECDHE-RSA-AES128-GCM-SHA256"), ("false", "ECDHE-RSA-AES256-GCM-SHA384")],
)
def test_prefer_server_cipher_suites(rsa_pki: RSAPki, prefer: str, chosen: str) -> None:
    # The server's order is the configured one (not OpenSSL's, which puts AES-256 first).
    web = tls_web(
        rsa_pki,
        "  cipher_suites:\n"
        "    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
        "    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
        f"  prefer_server_cipher_suites: {prefer}\n",
    )
    client = client_context(
        rsa_pki, versions=TLS12, ciphers="ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"
    )
    with serve(web) as server:
        assert https_get(server, client).cipher == chosen


def test_one_curve_refuses_a_client_offering_only_another(rsa_pki: RSAPki) -> None:
    web = tls_web(rsa_pki, "  min_version: TLS13\n  curve_preferences: [CurveP521]\n")
    with serve(web) as server:
        assert refused(server, client_context(rsa_pki, curve="secp384r1"))
        assert not refused(server, client_context(rsa_pki, curve="secp521r1"))


def test_one_curve_also_binds_tls12(rsa_pki: RSAPki) -> None:
    web = tls_web(rsa_pki, "  max_version: TLS12\n  curve_preferences: [CurveP256]\n")
    with serve(web) as server:
        assert refused(server, client_context(rsa_pki, curve="secp384r1"))
        assert not refused(server, client_context(rsa_pki, curve="prime256v1"))


def test_several_curves_each_served_none_other(rsa_pki: RSAPki) -> None:
    web = tls_web(rsa_pki, "  curve_preferences: [X25519, CurveP256]\n")
    with serve(web) as server:
        for curve in ("X25519", "prime256v1"):
            assert not refused(server, client_context(rsa_pki, curve=curve)), curve
            assert not refused(server, client_context(rsa_pki, versions=TLS12, curve=curve))
        assert refused(server, client_context(rsa_pki, curve="secp384r1"))  # as Go: not listed
        assert refused(server, client_context(rsa_pki, versions=TLS12, curve="secp384r1"))
        assert not refused(server, client_context(rsa_pki))  # OpenSSL's default list


def test_all_curves_serve_every_listed_curve(rsa_pki: RSAPki) -> None:
    web = tls_web(rsa_pki, "  curve_preferences: [CurveP256, CurveP384, CurveP521, X25519]\n")
    with serve(web) as server:
        for curve in ("prime256v1", "secp384r1", "secp521r1", "X25519"):
            assert not refused(server, client_context(rsa_pki, curve=curve)), curve


def _client_hello(curve: str | None = None) -> bytes:
    """The ClientHello record a Python client sends (OpenSSL's default groups unless `curve`)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if curve is not None:
        set_group(ctx, curve)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname="example.com")
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def test_client_hello_groups_are_read() -> None:
    supported, shares = client_hello_groups(_client_hello())
    assert {23, 24, 25, 29} <= set(supported)  # OpenSSL offers all four of Go's curves
    assert shares == (29,)  # and one key share, X25519
    assert client_hello_groups(_client_hello("secp384r1")) == ((24,), (24,))
    # X25519 alone, also where set_ecdh_curve cannot pin it (CPython 3.11.2): exporter.tlsgroups
    assert client_hello_groups(_client_hello("X25519")) == ((29,), (29,))
    assert client_hello_groups(b"GET / HTTP/1.1\r\n") == ((), ())
    assert client_hello_groups(_client_hello()[:60]) == ((), ())


@pytest.mark.parametrize(
    ("preference", "supported", "shares", "tls13", "chosen"),
    [
        (("CurveP256", "X25519"), (29, 23), (29,), True, "X25519"),  # a key share saves a trip
        (("CurveP256", "X25519"), (29, 23), (29,), False, "CurveP256"),  # TLS 1.2: preference
        (("CurveP384", "CurveP256"), (29, 23, 24), (29,), True, "CurveP384"),  # retry to P-384
        (("CurveP521", "CurveP384"), (23,), (23,), True, "CurveP521"),  # none shared: refused
    ],
)
def test_curve_is_chosen_as_go_chooses(
    preference: tuple[str, ...],
    supported: tuple[int, ...],
    shares: tuple[int, ...],
    tls13: bool,
    chosen: str,
) -> None:
    assert choose_curve(preference, (supported, shares), tls13=tls13) == chosen


def test_a_client_that_never_says_hello_does_not_block_others(rsa_pki: RSAPki) -> None:
    web = tls_web(rsa_pki, "  curve_preferences: [X25519, CurveP256]\n")
    with (
        serve(web) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent,
    ):
        silent.sendall(b"\x16\x03\x01")  # half a record header, then nothing
        assert not refused(server, client_context(rsa_pki, curve="prime256v1"))


@contextlib.contextmanager
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, client side) of a fresh TCP connection on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=10)
        server, _ = listener.accept()
    with server, client:
        yield server, client


def test_a_stalled_client_hello_ends_within_the_socket_timeout(rsa_pki: RSAPki) -> None:
    ctx = tls_web(rsa_pki, "  curve_preferences: [X25519, CurveP256]\n").ssl_context()
    assert isinstance(ctx, ServerContext)
    with tcp_pair() as (server_side, client_side):
        server_side.settimeout(0.2)
        client_side.sendall(_client_hello()[:40])  # the start of a hello, then silence
        with pytest.raises(TimeoutError):  # from the peek: no handshake is attempted here
            ctx.wrap_socket(server_side, server_side=True, do_handshake_on_connect=False)
        assert server_side.gettimeout() == 0.2


def test_a_stalled_client_hello_is_bounded_on_a_socket_without_timeout(rsa_pki: RSAPki) -> None:
    ctx = tls_web(rsa_pki, "  curve_preferences: [X25519, CurveP256]\n").ssl_context()
    assert isinstance(ctx, ServerContext)
    ctx.hello_timeout = 0.2
    with tcp_pair() as (server_side, client_side):
        assert server_side.gettimeout() is None  # as accepted sockets are by default
        client_side.sendall(_client_hello()[:40])
        with pytest.raises(TimeoutError):
            ctx.wrap_socket(server_side, server_side=True, do_handshake_on_connect=False)
        assert server_side.gettimeout() is None  # left as it was found


def test_the_whole_hello_is_awaited_when_it_comes_in_pieces() -> None:
    hello = _client_hello("prime256v1")
    with tcp_pair() as (server_side, client_side):
        server_side.settimeout(10)
        client_side.sendall(hello[:40])
        sender = threading.Timer(0.2, client_side.sendall, args=(hello[40:],))
        sender.start()
        try:
            assert peek_client_hello(server_side) == hello
        finally:
            sender.join()
        assert server_side.recv(len(hello), socket.MSG_PEEK) == hello  # nothing was consumed


def test_verify_client_cert_if_given_without_ca(rsa_pki: RSAPki) -> None:
    # As Go: no certificate is fine; a given one is verified against the system's roots.
    with serve(tls_web(rsa_pki, "  client_auth_type: VerifyClientCertIfGiven\n")) as server:
        assert not refused(server, client_context(rsa_pki))
        assert refused(server, client_context(rsa_pki, cert=rsa_pki.client))


def test_require_and_verify_client_cert(rsa_pki: RSAPki) -> None:
    extra = "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
    with serve(tls_web(rsa_pki, extra)) as server:
        assert not refused(server, client_context(rsa_pki, cert=rsa_pki.client))
        assert refused(server, client_context(rsa_pki))
        assert refused(server, client_context(rsa_pki, cert=rsa_pki.stranger))


def test_require_any_client_cert_requires_one_and_verifies_it_unlike_go(rsa_pki: RSAPki) -> None:
    extra = "  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n"
    with serve(tls_web(rsa_pki, extra)) as server:
        assert not refused(server, client_context(rsa_pki, cert=rsa_pki.client))
        assert refused(server, client_context(rsa_pki))
        # The documented difference: Go takes any certificate; Python's ssl verifies it.
        assert refused(server, client_context(rsa_pki, cert=rsa_pki.stranger))


def test_request_client_cert_lets_everyone_in_as_go(rsa_pki: RSAPki) -> None:
    with serve(tls_web(rsa_pki, "  client_auth_type: RequestClientCert\n")) as server:
        assert not refused(server, client_context(rsa_pki))
        assert not refused(server, client_context(rsa_pki, cert=rsa_pki.stranger))


def test_inline_cert_key_and_client_ca(rsa_pki: RSAPki) -> None:
    server_cert = rsa_pki.ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA)
    text = (
        "tls_server_config:\n"
        f"  cert: |\n{_indent(server_cert.cert_chain_pems[0].bytes())}\n"
        f"  key: |\n{_indent(server_cert.private_key_pem.bytes())}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca: |\n{_indent(rsa_pki.ca.cert_pem.bytes())}\n"
    )
    web = load_web_config(write_config(rsa_pki.dir, text))
    assert web.tls is not None and web.tls.cert_file is None
    assert "PRIVATE KEY" not in repr(web)
    with serve(web) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            ctx = client_context(rsa_pki, cert=rsa_pki.client)
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                served = conn.getpeercert(binary_form=True)
        assert served == ssl.PEM_cert_to_DER_cert(server_cert.cert_chain_pems[0].bytes().decode())
        assert refused(server, client_context(rsa_pki, cert=rsa_pki.stranger))


def _served_cert(server: HTTPServer, pki: RSAPki) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


def _install(folder: Path, cert: trustme.LeafCert) -> bytes:
    """Replace server.crt/server.key as a renewal would (new files moved into place)."""
    cert.private_key_pem.write_to_path(str(folder / "server.key.new"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "server.crt.new"))
    os.replace(folder / "server.key.new", folder / "server.key")
    os.replace(folder / "server.crt.new", folder / "server.crt")
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def test_renewed_certificate_files_are_served_without_a_restart(
    rsa_pki: RSAPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _install(tmp_path, rsa_pki.ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA))
    text = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    web = load_web_config(
        write_config(tmp_path, text + "  curve_preferences: [X25519, CurveP256]\n")
    )
    with serve(web) as server:
        assert _served_cert(server, rsa_pki) == first
        second = _install(
            tmp_path, rsa_pki.ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA)
        )
        assert _served_cert(server, rsa_pki) == second  # as Go, which re-reads per handshake
        (tmp_path / "server.crt").write_text("half-written\n")
        with caplog.at_level(logging.WARNING, logger="exporter.webconfig"):
            assert _served_cert(server, rsa_pki) == second  # a broken file is not taken
        assert "do not load" in caplog.text
        third = _install(tmp_path, rsa_pki.ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA))
        assert _served_cert(server, rsa_pki) == third
        # A certificate swapped for a FIFO (no writer) would block OpenSSL's read for good: it
        # is read as a bounded regular file, refused, and the previous certificate served.
        (tmp_path / "server.crt").unlink()
        os.mkfifo(tmp_path / "server.crt")
        started = time.monotonic()
        assert _served_cert(server, rsa_pki) == third
        assert time.monotonic() - started < 5.0


def test_headers_are_served(fixture_dir: Path) -> None:
    with serve(load_web_config(fixture_dir / "headers.good.yml")) as server:
        status, headers = http_get(server.port, "/metrics")
    assert status == 200
    assert headers["X-XSS-Protection"] == "1"
    assert headers["X-Frame-Options"] == "deny"


def test_rate_limit_answers_429_at_serve_time_but_not_to_health_probes() -> None:
    web = WebConfig(rate_limit=RateLimit(interval=3600.0, burst=2))
    with serve(web) as server:
        statuses = [http_get(server.port, "/metrics")[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert http_get(server.port, "/-/healthy")[0] == 200


def test_rate_limiter_refills_one_token_per_interval() -> None:
    clock = FakeClock(100.0)
    limiter = RateLimiter(interval=10.0, burst=2, clock=clock)
    assert [limiter.allow() for _ in range(3)] == [True, True, False]
    clock.advance(9.9)
    assert not limiter.allow()
    clock.advance(0.1)
    assert limiter.allow()
    clock.advance(1000.0)
    assert [limiter.allow() for _ in range(3)] == [True, True, False]  # never above burst


def test_rate_limiter_edge_values_behave_as_go() -> None:
    clock = FakeClock(0.0)
    assert not RateLimiter(interval=1.0, burst=0, clock=clock).allow()  # burst 0 refuses all
    unlimited = RateLimiter(interval=-1.0, burst=0, clock=clock)
    assert all(unlimited.allow() for _ in range(100))


# --- basic auth that cannot be stalled -----------------------------------------------------------


@pytest.fixture(scope="module")
def slow_hash() -> str:
    """A cost-14 bcrypt hash (about a second per check): the attacker's lever in issue 12."""
    return bcrypt.hashpw(b"slow-secret", bcrypt.gensalt(rounds=14)).decode()


class BlockingCheck:
    """A checkpw stand-in whose calls for chosen hashes wait until released."""

    def __init__(self, block: set[bytes]) -> None:
        self.block = block
        self.release = threading.Event()
        self.calls: list[bytes] = []
        self.waiting = threading.Semaphore(0)
        self._lock = threading.Lock()

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.calls.append(hashed)
        if hashed in self.block:
            self.waiting.release()
            assert self.release.wait(30)
        return bool(bcrypt.checkpw(password, hashed))


def test_start_up_does_not_hash(slow_hash: str) -> None:
    check = BlockingCheck(set())
    started = time.monotonic()
    auth = BasicAuth({"slow": slow_hash, "alice": ALICE_HASH}, checkpw=check)
    protect(hello, WebConfig(basic_auth_users={"slow": slow_hash}))
    assert check.calls == []
    assert time.monotonic() - started < 0.5  # no cost-14 hash was computed
    assert auth.cached == 0


def test_unknown_user_pays_the_fixed_decoy_cost_not_the_highest(slow_hash: str) -> None:
    auth = BasicAuth({"slow": slow_hash})
    started = time.monotonic()
    assert not auth.check(basic("mallory", "guess-1"))
    decoy = time.monotonic() - started
    started = time.monotonic()
    assert not auth.check(basic("slow", "guess-1"))
    real = time.monotonic() - started
    assert decoy < real / 4  # cost 10 against cost 14: 16 times less work


def test_valid_user_is_not_queued_behind_anonymous_requests(slow_hash: str) -> None:
    check = BlockingCheck({_DECOY_HASH, slow_hash.encode()})
    auth = BasicAuth({"slow": slow_hash, "alice": ALICE_HASH}, checkpw=check)
    stalled = [
        threading.Thread(target=auth.check, args=(basic(user, f"guess-{i}"),))
        for i, user in enumerate(["mallory", "eve", "slow"])
    ]
    for thread in stalled:
        thread.start()
    for _ in stalled:
        assert check.waiting.acquire(timeout=10)  # all three checks are inside bcrypt now
    try:
        assert auth.check(basic("alice", "alice-secret"))  # answered while they are stuck
    finally:
        check.release.set()
        for thread in stalled:
            thread.join(10)


def test_anonymous_flood_takes_at_most_two_bcrypt_slots() -> None:
    check = BlockingCheck({_DECOY_HASH})
    auth = BasicAuth({"alice": ALICE_HASH}, checkpw=check)
    flood = [threading.Thread(target=auth.check, args=(basic(f"user{i}", "x"),)) for i in range(6)]
    for thread in flood:
        thread.start()
    assert check.waiting.acquire(timeout=10) and check.waiting.acquire(timeout=10)
    assert not check.waiting.acquire(timeout=0.2)  # a third decoy check waits for a slot
    check.release.set()
    for thread in flood:
        thread.join(10)
    assert len(check.calls) == 6


def test_identical_credentials_share_one_check(slow_hash: str) -> None:
    check = BlockingCheck({slow_hash.encode()})
    auth = BasicAuth({"slow": slow_hash}, checkpw=check)
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(auth.check(basic("slow", "slow-secret"))))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    assert check.waiting.acquire(timeout=10)
    check.release.set()
    for thread in threads:
        thread.join(30)
    assert results == [True] * 5
    assert len(check.calls) == 1


def test_credential_caches_are_bounded_and_a_flood_of_guesses_keeps_good_entries() -> None:
    users = {f"user{i}": _hash(f"pw{i}".encode()) for i in range(6)}
    calls: list[bytes] = []

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return bool(bcrypt.checkpw(password, hashed))

    auth = BasicAuth(users, cache_size=3, checkpw=counting)
    for i in range(6):
        assert auth.check(basic(f"user{i}", f"pw{i}"))
    assert auth.cached == 3
    for i in range(50):
        assert not auth.check(basic("user5", f"wrong{i}"))
    before = len(calls)
    assert auth.check(basic("user5", "pw5"))  # still cached despite 50 bad guesses
    assert len(calls) == before


def test_real_bcrypt_attack_over_http_does_not_delay_a_valid_user(
    slow_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real bcrypt, instrumented only to know when the two cost-14 checks have begun.
    real_checkpw = bcrypt.checkpw
    slow_started = threading.Semaphore(0)

    def observed(password: bytes, hashed: bytes) -> bool:
        if hashed == slow_hash.encode():
            slow_started.release()
        return bool(real_checkpw(password, hashed))

    monkeypatch.setattr(bcrypt, "checkpw", observed)
    web = WebConfig(basic_auth_users={"slow": slow_hash, "alice": ALICE_HASH})
    finished: dict[str, float] = {}

    def attempt(label: str, user: str, password: str) -> None:
        status, _ = http_get(server.port, "/metrics", basic(user, password))
        finished[label] = time.monotonic()
        assert status == 401

    with serve(web) as server:
        attackers = [
            threading.Thread(target=attempt, args=(f"slow{i}", "slow", f"guess{i}"))
            for i in range(2)
        ] + [
            threading.Thread(target=attempt, args=(f"anon{i}", f"nobody{i}", "x")) for i in range(2)
        ]
        for thread in attackers:
            thread.start()
        assert slow_started.acquire(timeout=30) and slow_started.acquire(timeout=30)
        status, _ = http_get(server.port, "/metrics", basic("alice", "alice-secret"))
        alice_done = time.monotonic()
        for thread in attackers:
            thread.join(60)
    assert status == 200
    # Both cost-14 checks were under way before alice asked, and she was answered first.
    assert alice_done < min(finished["slow0"], finished["slow1"])
