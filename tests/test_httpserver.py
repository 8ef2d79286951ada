"""Tests for the HTTP(S) server: real sockets on loopback, certificates made by trustme."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import bcrypt
import pytest
import requests
import trustme

from exporter.httpserver import FD_RESERVE, HTTPServer, connection_budget, parse_listen_address
from exporter.webconfig import WebConfig, load_web_config
from tests.hostile import nofile_limit

PASSWORD_HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(autouse=True)
def _no_stale_log_handlers() -> Iterator[None]:
    """Tests that ran the CLI's main() may leave logs.setup()'s handler on a closed capture
    stream; these tests assert what reaches stderr, so they run without it."""
    root = logging.getLogger()
    stale = [h for h in root.handlers if type(h) is logging.StreamHandler]
    for handler in stale:
        root.removeHandler(handler)
    yield
    for handler in stale:
        root.addHandler(handler)


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


# --- bounds: connection cap, header deadline, keep-alive ---------------------------------------


def raw_request(sock: socket.socket, request: bytes) -> bytes:
    """Send `request` and read one whole answer (headers and Content-Length body)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if b"HEAD " in request.split(b"\r\n")[0]:
        length = 0
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_at_the_cap_a_new_client_replaces_the_oldest_idle_connection() -> None:
    with serving(max_connections=4) as server:
        assert server.max_connections == 4
        sockets = [
            socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)
        ]
        try:
            sockets[0].sendall(b"GET / HTTP/1.1\r\n")  # the oldest: a request still arriving
            time.sleep(0.2)
            assert server.open_connections == 4
            start = time.monotonic()
            assert requests.get(server.url, timeout=5).status_code == 200
            assert time.monotonic() - start < 1.0
            assert sockets[0].recv(1) == b""  # evicted to make room
            deadline = time.monotonic() + 2
            while server.open_connections > 4:  # the evicted one may still be closing
                assert time.monotonic() < deadline
                time.sleep(0.01)
        finally:
            for sock in sockets:
                sock.close()


def test_when_every_connection_is_busy_new_ones_wait_in_the_backlog() -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/slow":
            entered.release()
            release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = HTTPServer(slow_app, "127.0.0.1:0", max_connections=2).start()
    try:
        with ThreadPoolExecutor(3) as pool:
            busy = [pool.submit(requests.get, server.url + "/slow", timeout=10) for _ in range(2)]
            assert entered.acquire(timeout=5) and entered.acquire(timeout=5)
            waiting = pool.submit(requests.get, server.url + "/fast", timeout=10)
            time.sleep(0.5)
            assert not waiting.done()  # not evicted, not refused: queued
            release.set()
            assert waiting.result().status_code == 200
            assert [f.result().status_code for f in busy] == [200, 200]
    finally:
        release.set()
        server.shutdown()


def test_headers_trickled_a_byte_at_a_time_are_cut_at_the_header_timeout() -> None:
    with (
        serving(header_timeout=0.5) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        start = time.monotonic()
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        closed_after = None
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - start
                break
            time.sleep(0.05)
            sock.setblocking(False)
            try:
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - start
                    break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
        assert closed_after is not None
        assert 0.45 < closed_after < 1.0


def test_keep_alive_serves_several_requests_and_closes_when_idle() -> None:
    with (
        serving(idle_timeout=0.5) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        for path in (b"/a", b"/b"):
            answer = raw_request(sock, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert answer.endswith(b"http " + path)
            assert b"Connection: close" not in answer
        # Two requests in one packet (pipelined) get two answers in order.
        sock.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n")
        both = b""
        while not both.endswith(b"http /d"):
            both += sock.recv(65536)
        assert both.count(b"HTTP/1.1 200 OK") == 2
        assert both.index(b"http /c") < both.index(b"http /d")
        start = time.monotonic()
        assert sock.recv(1) == b""  # idle for longer than idle_timeout: closed
        assert 0.4 < time.monotonic() - start < 1.5


@pytest.mark.parametrize(
    ("request_bytes", "closes"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
    ],
    ids=["1.1-close", "1.0", "1.0-keep-alive"],
)
def test_connection_header_is_honoured(request_bytes: bytes, closes: bool) -> None:
    with (
        serving(idle_timeout=5) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock,
    ):
        answer = raw_request(sock, request_bytes)
        assert answer.endswith(b"http /")
        assert (b"Connection: close" in answer) == closes
        if closes:
            assert sock.recv(1) == b""
        else:
            assert b"Connection: keep-alive" in answer
            assert raw_request(sock, request_bytes).endswith(b"http /")


def test_head_answers_the_get_headers_without_a_body() -> None:
    with (
        serving() as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock,
    ):
        answer = raw_request(sock, b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(b"\r\n\r\n")  # nothing after the headers
        assert b"Content-Length: 7\r\n" in answer  # as long as GET's "http /x"
        # The same connection carries on: no stray body bytes were sent.
        assert raw_request(sock, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"http /x")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 140000 + b"\r\n\r\n", 431),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ],
    ids=[
        "long-line",
        "many-headers",
        "huge-header",
        "garbage",
        "http2",
        "huge-body",
        "bad-length",
        "chunked",
    ],
)
def test_bad_requests_get_an_error_and_the_server_stays_up(
    request_bytes: bytes, status: int
) -> None:
    with serving() as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            with contextlib.suppress(OSError):  # the server may hang up while we still send
                sock.sendall(request_bytes)
            answer = sock.recv(65536)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode())
        assert requests.get(server.url, timeout=5).status_code == 200


def test_a_request_body_is_bounded_and_drained() -> None:
    def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(4) if environ["PATH_INFO"] == "/read4" else b""
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    server = HTTPServer(echo, "127.0.0.1:0").start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            post = b"POST /read4 HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"
            assert raw_request(sock, post).endswith(b"\r\n\r\n0123")
            # The 6 unread bytes were drained, not taken for the next request line.
            assert raw_request(sock, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    finally:
        server.shutdown()


def test_the_process_environment_stays_out_of_the_wsgi_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOUDVOD_ACCESS_KEY_SECRET", "never-in-environ")
    seen: dict[str, Any] = {}

    def spy(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.update(environ)
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    server = HTTPServer(spy, "127.0.0.1:0").start()
    try:
        requests.get(server.url + "/p?q=1", headers={"X_Forged": "1"}, timeout=5)
    finally:
        server.shutdown()
    assert "CLOUDVOD_ACCESS_KEY_SECRET" not in seen
    assert (seen["PATH_INFO"], seen["QUERY_STRING"]) == ("/p", "q=1")
    assert "HTTP_X_FORGED" not in seen  # underscores would let X_Forged pass for X-Forged


# --- file descriptors ------------------------------------------------------------------------


def test_the_cap_leaves_a_reserve_of_descriptors() -> None:
    def budget_under(limit: int) -> int:
        """connection_budget(64) in a process whose soft and hard limit are both `limit`."""
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "from exporter.httpserver import connection_budget as b; print(b(64))",
            ],
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout)

    assert budget_under(FD_RESERVE + 30) in range(10, 28)  # minus the few open at start
    assert budget_under(300) == 64  # `ulimit -n 300`: 64 connections and a reserve of 128
    assert budget_under(FD_RESERVE) == 1  # never zero: one connection at a time still serves


def test_the_soft_limit_is_raised_towards_the_hard_limit_when_that_helps() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    open_now = len(os.listdir("/proc/self/fd"))
    if hard != resource.RLIM_INFINITY and hard < open_now + FD_RESERVE + 100:
        pytest.skip("the hard limit leaves no room")
    with nofile_limit(open_now + 20):
        assert connection_budget(64) == 64
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= open_now + FD_RESERVE + 64


def test_out_of_descriptors_the_accept_loop_backs_off_and_recovers() -> None:
    with serving() as server:
        accept_thread = next(t for t in threading.enumerate() if t.name.startswith("http-server"))
        # Opened now: with no descriptor left, /proc could not be opened any more.
        stat = Path(f"/proc/self/task/{accept_thread.native_id}/stat").open("rb", buffering=0)  # noqa: SIM115
        pending = [
            socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)
        ]
        try:
            time.sleep(0.3)  # those three are accepted and idle
            waiting = socket.socket()  # its descriptor is taken before the limit drops
            pending.append(waiting)
            # The limit caps descriptor numbers: below the lowest free one, none can be opened.
            lowest_free = os.dup(0)
            os.close(lowest_free)
            with nofile_limit(lowest_free):  # accept() now fails with EMFILE
                waiting.connect(("127.0.0.1", server.port))
                waiting.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
                cpu_before = cpu_seconds(stat)
                time.sleep(1.0)
                cpu = cpu_seconds(stat) - cpu_before
                assert server.open_connections == 3  # the fourth could not be accepted
            assert cpu < 0.2  # a spinning accept loop burns the whole second
            # Descriptors are back: the waiting connection is accepted and answered.
            waiting.settimeout(5)
            assert raw_request(waiting, b"").endswith(b"http /late")
        finally:
            stat.close()
            for sock in pending:
                sock.close()


def cpu_seconds(stat: BinaryIO) -> float:
    """User plus system CPU time from an open /proc/.../stat file (Linux)."""
    stat.seek(0)
    fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
