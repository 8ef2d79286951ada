"""Tests for the HTTP(S) server: real sockets on loopback, certificates made by trustme."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import trustme

from exporter.httpserver import HTTPServer, parse_listen_address
from exporter.webconfig import WebConfig, load_web_config

PASSWORD_HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A tiny WSGI app: echoes the scheme and path; /boom raises."""
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("boom")
    body = f"{environ['wsgi.url_scheme']} {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@dataclass
class PKI:
    dir: Path
    ca_file: str
    client: tuple[str, str]  # (cert, key) issued by the CA
    stranger: tuple[str, str]  # (cert, key) issued by another CA


def _write_leaf(cert: trustme.LeafCert, directory: Path, name: str) -> tuple[str, str]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_path))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    _write_leaf(ca.issue_cert("127.0.0.1", "localhost", "::1"), directory, "server")
    client = _write_leaf(ca.issue_cert("scraper.example"), directory, "client")
    stranger = _write_leaf(trustme.CA().issue_cert("scraper.example"), directory, "stranger")
    return PKI(directory, str(directory / "ca.crt"), client, stranger)


def web_config(pki: PKI, extra: str = "") -> WebConfig:
    """Load a web config file with server.crt/server.key plus extra YAML lines."""
    path = pki.dir / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n" + extra)
    return load_web_config(path)


@contextlib.contextmanager
def serving(web: WebConfig = WebConfig(), **kwargs: Any) -> Iterator[HTTPServer]:  # noqa: B008
    server = HTTPServer(app, "127.0.0.1:0", web, **kwargs).start()
    try:
        yield server
    finally:
        server.shutdown()


@contextlib.contextmanager
def idle_connections(port: int, count: int, first_bytes: bytes = b"") -> Iterator[None]:
    """Hold `count` TCP connections open, each having sent `first_bytes` and then nothing."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if first_bytes:
                sock.sendall(first_bytes)
            sockets.append(sock)
        yield
    finally:
        for sock in sockets:
            sock.close()


# The first bytes of a TLS ClientHello record announcing 512 bytes that never come.
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


# --- plain HTTP ------------------------------------------------------------------------------


def test_plain_http_serves_the_app() -> None:
    with serving() as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        response = requests.get(server.url + "/metrics", timeout=5)
        assert response.status_code == 200
        assert response.text == "http /metrics"
        assert response.headers["Server"].startswith("cloudvod-concat-exporter/")


def test_headers_from_the_web_config_are_added() -> None:
    with serving(WebConfig(headers={"X-Frame-Options": "deny"})) as server:
        response = requests.get(server.url, timeout=5)
        assert response.headers["X-Frame-Options"] == "deny"


def test_all_interfaces_and_ipv6() -> None:
    with HTTPServer(app, ":0") as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert requests.get(server.url, timeout=5).status_code == 200
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = HTTPServer(app, "[::1]:0").start()
    except OSError:
        pytest.skip("cannot bind ::1")
    with server:
        assert server.url == f"http://[::1]:{server.port}"
        assert requests.get(server.url, timeout=5).status_code == 200


def test_app_exception_is_a_500_without_traceback_on_stderr(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with serving() as server:
        assert requests.get(server.url + "/boom", timeout=5).status_code == 500
    assert "Traceback" not in capfd.readouterr().err
    assert any(
        r.name == "exporter.http" and r.levelno == logging.ERROR and r.exc_info
        for r in caplog.records
    )


# --- TLS -------------------------------------------------------------------------------------


def test_tls_serves_with_the_ca_and_refuses_plain_http(pki: PKI) -> None:
    with serving(web_config(pki)) as server:
        assert server.url == f"https://127.0.0.1:{server.port}"
        response = requests.get(server.url + "/x", verify=pki.ca_file, timeout=5)
        assert response.status_code == 200
        assert response.text == "https /x"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.url, timeout=5)  # not trusted without the CA
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{server.port}/", timeout=5)
        # The server is unharmed by the failed handshakes.
        assert requests.get(server.url, verify=pki.ca_file, timeout=5).status_code == 200


def test_tls_min_version_is_enforced(pki: PKI) -> None:
    with serving(web_config(pki, "  min_version: TLS13\n")) as server:
        ctx = ssl.create_default_context(cafile=pki.ca_file)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            pytest.raises(ssl.SSLError),
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
            ctx.wrap_socket(sock, server_hostname="127.0.0.1"),
        ):
            pass


def test_client_certificate_required_and_verified(pki: PKI) -> None:
    web = web_config(
        pki, "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
    )
    with serving(web) as server:

        def get(**kwargs: Any) -> requests.Response:
            return requests.get(server.url, verify=pki.ca_file, timeout=5, **kwargs)

        with pytest.raises(requests.exceptions.ConnectionError):
            get()  # no client certificate
        with pytest.raises(requests.exceptions.ConnectionError):
            get(cert=pki.stranger)  # a certificate from another CA
        assert get(cert=pki.client).status_code == 200


def test_client_certificate_verified_if_given(pki: PKI) -> None:
    web = web_config(pki, "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n")
    with serving(web) as server:

        def get(**kwargs: Any) -> requests.Response:
            return requests.get(server.url, verify=pki.ca_file, timeout=5, **kwargs)

        assert get().status_code == 200
        assert get(cert=pki.client).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            get(cert=pki.stranger)


def test_client_allowed_sans(pki: PKI) -> None:
    web = web_config(
        pki,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        "  client_allowed_sans: [other.example]\n",
    )
    with serving(web) as server, pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url, verify=pki.ca_file, cert=pki.client, timeout=5)
    web = web_config(
        pki,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        "  client_allowed_sans: [scraper.example]\n",
    )
    with serving(web) as server:
        response = requests.get(server.url, verify=pki.ca_file, cert=pki.client, timeout=5)
        assert response.status_code == 200


def test_basic_auth_over_tls(pki: PKI) -> None:
    web = web_config(pki, f"basic_auth_users:\n  prometheus: {PASSWORD_HASH}\n")
    with serving(web) as server:

        def get(auth: tuple[str, str] | None) -> requests.Response:
            return requests.get(server.url, verify=pki.ca_file, timeout=5, auth=auth)

        response = get(None)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="cloudvod-concat-exporter"'
        assert get(("prometheus", "wrong")).status_code == 401
        assert get(("nobody", "s3cret")).status_code == 401
        assert get(("prometheus", "s3cret")).status_code == 200


def test_handshake_failures_and_disconnects_are_quiet(
    pki: PKI, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.http")
    with serving(web_config(pki)) as server:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{server.port}/", timeout=5)
        for first_bytes in (b"", PARTIAL_CLIENT_HELLO, b"GET / HTTP/1.0\r\n"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(first_bytes)
        assert requests.get(server.url, verify=pki.ca_file, timeout=5).status_code == 200
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            "handshake" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.05)
    assert "Traceback" not in capfd.readouterr().err
    messages = [r.getMessage() for r in caplog.records if r.name == "exporter.http"]
    assert any("TLS handshake with 127.0.0.1" in m for m in messages)
    assert any('"GET / HTTP/1.1" 200' in m for m in messages)  # the access line, at debug
    assert all(r.levelno <= logging.INFO for r in caplog.records if r.name == "exporter.http")


# --- robustness ------------------------------------------------------------------------------


def test_idle_connections_do_not_block_a_scrape() -> None:
    with serving() as server, idle_connections(server.port, 50):
        start = time.monotonic()
        assert requests.get(server.url, timeout=5).status_code == 200
        assert time.monotonic() - start < 2


def test_stalled_tls_handshakes_do_not_block_a_scrape(pki: PKI) -> None:
    with (
        serving(web_config(pki)) as server,
        idle_connections(server.port, 50),
        idle_connections(server.port, 10, PARTIAL_CLIENT_HELLO),
    ):
        start = time.monotonic()
        assert requests.get(server.url, verify=pki.ca_file, timeout=5).status_code == 200
        assert time.monotonic() - start < 2


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_idle_connections_are_closed_after_the_header_timeout(pki: PKI, tls: bool) -> None:
    web = web_config(pki) if tls else WebConfig()
    with (
        serving(web, header_timeout=0.3) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        start = time.monotonic()
        assert sock.recv(1) == b""  # the server hung up
        assert time.monotonic() - start < 3


def test_concurrent_clients(pki: PKI) -> None:
    web = web_config(pki, f"basic_auth_users:\n  prometheus: {PASSWORD_HASH}\n")

    def client(server: HTTPServer) -> list[int]:
        with requests.Session() as session:
            session.auth = ("prometheus", "s3cret")
            return [
                session.get(server.url + "/m", verify=pki.ca_file, timeout=10).status_code
                for _ in range(10)
            ]

    with serving(web) as server, ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: client(server), range(20)))
    assert results == [[200] * 10] * 20


# --- listen addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":9877", ("", 9877)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("[::1]:9877", ("::1", 9877)),
        ("[::]:9877", ("::", 9877)),
        ("localhost:9877", ("localhost", 9877)),
        ("exporter-1.example.com:80", ("exporter-1.example.com", 80)),
    ],
)
def test_parse_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("", "expected"),
        ("9877", "missing port"),
        (":", "port must be a number"),
        (":abc", "port must be a number"),
        (":70000", "port must be a number"),
        (":-1", "port must be a number"),
        (":+80", "port must be a number"),
        ("::1:9877", "IPv6 addresses need brackets"),
        ("[::1]", "expected"),
        ("[::1]9877", "expected"),
        ("[127.0.0.1]:80", "not an IPv6 address"),
        ("bad_host:80", "bad host name"),
        ("two words:80", "bad host name"),
        (" :9877", "expected"),
    ],
)
def test_parse_listen_address_rejects(address: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid listen address") as info:
        parse_listen_address(address)
    assert message in str(info.value)


def test_bad_listen_address_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="IPv6 addresses need brackets"):
        HTTPServer(app, "::1:80")


# --- lifecycle -------------------------------------------------------------------------------


def test_shutdown_frees_the_port_and_is_idempotent() -> None:
    server = HTTPServer(app, "127.0.0.1:0").start()
    port = server.port
    assert requests.get(server.url, timeout=5).status_code == 200
    server.shutdown()
    server.shutdown()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(RuntimeError):
        server.start()
    again = HTTPServer(app, f"127.0.0.1:{port}").start()
    try:
        assert again.port == port
        assert requests.get(again.url, timeout=5).status_code == 200
    finally:
        again.shutdown()


def test_shutdown_before_start_and_port_before_start() -> None:
    server = HTTPServer(app, "127.0.0.1:0")
    with pytest.raises(RuntimeError):
        _ = server.port
    server.shutdown()


def test_serve_forever_returns_after_shutdown() -> None:
    server = HTTPServer(app, "127.0.0.1:0")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while True:
        try:
            url = server.url
            break
        except RuntimeError:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert requests.get(url, timeout=5).status_code == 200
    server.shutdown()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_port_in_use_is_an_oserror() -> None:
    with serving() as server, pytest.raises(OSError):
        HTTPServer(app, f"127.0.0.1:{server.port}").start()
