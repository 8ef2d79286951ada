"""Tests for the exporter-toolkit web config: parsing, validation, basic auth, protect()."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from exporter.webconfig import (
    REALM,
    BasicAuth,
    TLSConfig,
    WebConfig,
    WebConfigError,
    load_web_config,
    protect,
)


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
    x-content-type-options: nosniff
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
    )
    assert web.tls.cert_file.is_absolute()
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
    ("rate-limit", "rate_limit: {burst: 1, interval: 1s}\n", "rate_limit: not supported"),
    ("not-a-mapping", "- a\n- b\n", "web.yml: must be a mapping"),
    ("invalid-yaml", "tls_server_config: [\n", "web.yml: invalid YAML: line"),
    ("tls-not-mapping", "tls_server_config: yes\n", "tls_server_config: must be a mapping"),
    (
        "missing-cert",
        "tls_server_config:\n  key_file: server.key\n",
        "tls_server_config.cert_file: required",
    ),
    (
        "missing-key",
        "tls_server_config:\n  cert_file: server.crt\n",
        "tls_server_config.key_file: required",
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
        "tls_server_config.key_file: cannot be loaded together with cert_file",
    ),
    (
        "encrypted-key",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: encrypted.key\n",
        "tls_server_config.key_file: cannot be loaded together with cert_file",
    ),
    ("unknown-tls-key", TLS + "  certfile: x\n", "tls_server_config.certfile: unknown key"),
    ("inline-cert", TLS + "  cert: x\n", "tls_server_config.cert: inline certificates"),
    (
        "bad-client-auth-type",
        TLS + "  client_auth_type: Sometimes\n",
        "tls_server_config.client_auth_type: unknown value 'Sometimes'",
    ),
    (
        "verify-without-ca",
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
        "tls_server_config.client_ca_file: required when client_auth_type is "
        "RequireAndVerifyClientCert",
    ),
    (
        "verify-if-given-without-ca",
        TLS + "  client_auth_type: VerifyClientCertIfGiven\n",
        "tls_server_config.client_ca_file: required when client_auth_type is "
        "VerifyClientCertIfGiven",
    ),
    (
        "require-any-without-ca",
        TLS + "  client_auth_type: RequireAnyClientCert\n",
        "tls_server_config.client_ca_file: required when client_auth_type is RequireAnyClientCert",
    ),
    (
        "ca-without-client-auth",
        TLS + "  client_ca_file: ca.crt\n",
        "tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert",
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
        "tls_server_config.curve_preferences[0]: unknown curve 'CurveP999'",
    ),
    (
        "cipher-suites-not-list",
        TLS + "  cipher_suites: TLS_AES_128_GCM_SHA256\n",
        "tls_server_config.cipher_suites: must be a list of strings",
    ),
    (
        "cipher-suite-not-go-name",
        TLS + "  cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]\n",
        "tls_server_config.cipher_suites[0]: not a Go cipher suite name",
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
        "http_server_config.headers.Server: this header cannot be configured",
    ),
    (
        "header-bad-value",
        "http_server_config:\n  headers:\n    X-Frame-Options: allow-from x\n",
        "http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin",
    ),
    (
        "header-multiline",
        'http_server_config:\n  headers:\n    Content-Security-Policy: "a\\r\\nSet-Cookie: x"\n',
        "http_server_config.headers.Content-Security-Policy: must be a non-empty single-line",
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
    (
        "user-not-string",
        f"basic_auth_users:\n  123: {ALICE_HASH}\n",
        "basic_auth_users.123: user name must be a non-empty string",
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
        f"{tmp_path / 'absent.yml'}: cannot read web config file: No such file or directory"
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
    # Failures are never cached, so a wrong password always costs a full check.
    assert not checker.check(basic("alice", "wrong"))
    assert not checker.check(basic("alice", "wrong"))
    assert len(count_bcrypt) == 3


def test_unknown_user_costs_a_bcrypt_check(count_bcrypt: list[bytes]) -> None:
    checker = BasicAuth({"alice": ALICE_HASH})
    assert not checker.check(basic("mallory", "alice-secret"))
    assert len(count_bcrypt) == 1
    assert count_bcrypt[0] != ALICE_HASH.encode()  # a decoy hash, not a real user's
    assert count_bcrypt[0][4:6] == b"04"  # with the configured users' cost


# --- protect() -------------------------------------------------------------------------------


@dataclass
class Response:
    status: str
    headers: dict[str, str]
    body: bytes


def call(app: Callable[..., Iterable[bytes]], authorization: str | None = None) -> Response:
    """Call a WSGI app directly."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, dict(headers)
        return lambda data: None

    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"}
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
