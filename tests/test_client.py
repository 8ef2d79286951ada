"""The signed client against the simulator: a real HTTP server on loopback."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from exporter.client import CloudVodClient, Exchange
from exporter.errors import (
    ApiCodeError,
    ApiConnectionError,
    ApiHttpError,
    ApiInvalidResponse,
    ApiThrottled,
    ApiTimeout,
)
from exporter.simulator import Fault, SimulatorServer, documented_example
from tests.helpers import ACCESS_KEY_ID, SECRET
from tests.hostile import HEADER_TRICKLE, TricklingUpstream

Start = Callable[..., SimulatorServer]


def client_for(sim: SimulatorServer, secret: str = SECRET, **kwargs: object) -> CloudVodClient:
    kwargs.setdefault("timeout", 2.0)
    return CloudVodClient(sim.url, ACCESS_KEY_ID, secret, **kwargs)  # type: ignore[arg-type]


def test_documented_example_through_the_wire(start_simulator: Start) -> None:
    sim = start_simulator([documented_example(0.0)])
    answer = client_for(sim).query("0251168101641000f4cf4da800000000")
    assert answer.status == 2
    assert answer.task_id == "025d0ca201641000acce255700000000"
    assert answer.video is not None
    assert (answer.video.duration, answer.video.size) == (7202, 1223912405)
    assert sim.stats().answered_ok == 1


def test_wrong_secret_is_http_401_and_secret_stays_out_of_the_error(start_simulator: Start) -> None:
    sim = start_simulator([documented_example(0.0)])
    ex = client_for(sim, secret="wrong-secret-value").exchange("0251168101641000f4cf4da800000000")
    assert isinstance(ex.error, ApiHttpError)
    assert ex.error.code == "http_401"
    assert ex.request_id
    assert "wrong-secret-value" not in str(ex.error)
    assert sim.stats().auth_failures == 1


def test_skewed_clock_is_rejected(start_simulator: Start) -> None:
    sim = start_simulator([documented_example(0.0)])
    client = CloudVodClient(sim.url, ACCESS_KEY_ID, SECRET, clock=lambda: 1_000_000.0)
    with pytest.raises(ApiHttpError) as info:
        client.query("0251168101641000f4cf4da800000000")
    assert info.value.code == "http_401"


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        (Fault(kind="code", code=1603), ApiCodeError, "1603"),
        (Fault(kind="throttle"), ApiThrottled, "throttled"),
        (Fault(kind="http_status", status=503), ApiThrottled, "throttled"),
        (Fault(kind="http_status", status=502), ApiHttpError, "http_502"),
        (
            Fault(kind="body", body=b"<html>oops</html>", content_type="text/html"),
            ApiInvalidResponse,
            "invalid_response",
        ),
        (Fault(kind="truncated"), ApiInvalidResponse, "invalid_response"),
        (Fault(kind="reset"), ApiConnectionError, "connection"),
        (Fault(kind="delay", seconds=1.5), ApiTimeout, "timeout"),
        (Fault(kind="body", body=b" " * 2_000_000), ApiInvalidResponse, "invalid_response"),
    ],
)
def test_failures_map_to_one_error_family(
    start_simulator: Start, fault: Fault, error: type[Exception], code: str
) -> None:
    sim = start_simulator([documented_example(0.0)])
    sim.set_fault("0251168101641000f4cf4da800000000", fault)
    ex = client_for(sim, timeout=0.5).exchange("0251168101641000f4cf4da800000000")
    assert isinstance(ex.error, error)
    assert ex.error.code == code


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = CloudVodClient(f"http://127.0.0.1:{port}", ACCESS_KEY_ID, SECRET, timeout=1.0)
    with pytest.raises(ApiConnectionError):
        client.query("x")


def test_host_header_carries_the_port_and_is_signed(start_simulator: Start) -> None:
    sim = start_simulator([documented_example(0.0)])
    ex = client_for(sim).exchange("0251168101641000f4cf4da800000000")
    assert ex.request_headers["Host"] == sim.url.removeprefix("http://")
    assert ex.request_body == b'{"transNo":"0251168101641000f4cf4da800000000"}'
    assert ex.error is None


# --- the whole-request deadline against a trickling peer --------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        b"",
        b"HTTP/1.1 2",
        HEADER_TRICKLE,
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
    ],
    ids=["before-status", "status-line", "headers", "body-length", "body-chunked", "body-close"],
)
def test_a_trickling_peer_times_out_at_the_timeout(prefix: bytes) -> None:
    # A byte every 50 ms: no single read ever waits long, so only a whole-request deadline helps.
    with TricklingUpstream(prefix, interval=0.05) as upstream:
        client = CloudVodClient(upstream.url, ACCESS_KEY_ID, SECRET, timeout=0.5)
        started = time.monotonic()
        exchange = client.exchange("t1")
        elapsed = time.monotonic() - started
        client.close()
    assert isinstance(exchange.error, ApiTimeout), exchange.error
    assert exchange.error.code == "timeout"
    assert 0.45 <= elapsed < 0.8
    assert upstream.count("t1") == 1  # cut short, never sent again


def test_a_trickled_tls_handshake_and_tls_headers_time_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))  # requests trusts the test CA
    for upstream, requests_seen in (
        (TricklingUpstream(interval=0.05, tls=server_ctx, trickle_handshake=True), 0),
        (TricklingUpstream(interval=0.05, tls=server_ctx), 1),  # handshake done, headers slow
    ):
        with upstream:
            client = CloudVodClient(upstream.url, ACCESS_KEY_ID, SECRET, timeout=0.5)
            started = time.monotonic()
            exchange = client.exchange("t1")
            elapsed = time.monotonic() - started
            client.close()
        assert isinstance(exchange.error, ApiTimeout), exchange.error
        assert elapsed < 0.9
        assert upstream.count("t1") == requests_seen


def test_a_kept_alive_connection_honours_the_deadline_too() -> None:
    with TricklingUpstream(slow={"slow"}, interval=0.05) as upstream:
        client = CloudVodClient(upstream.url, ACCESS_KEY_ID, SECRET, timeout=0.5)
        assert client.query("fast").api_code == 1560
        started = time.monotonic()
        exchange = client.exchange("slow")  # on the connection the first request left open
        elapsed = time.monotonic() - started
        assert isinstance(exchange.error, ApiTimeout), exchange.error
        assert elapsed < 0.8
        assert upstream.connections == 1
        # The cut connection is not reused: the next request gets a fresh one and an answer.
        assert client.query("fast").api_code == 1560
        assert upstream.connections == 2
        client.close()


def test_close_aborts_requests_in_flight_and_refuses_new_ones() -> None:
    with TricklingUpstream(interval=0.05) as upstream:
        client = CloudVodClient(upstream.url, ACCESS_KEY_ID, SECRET, timeout=30.0)
        results: list[Exchange] = []
        threads = [
            threading.Thread(target=lambda: results.append(client.exchange("t1"))) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        wait_for(lambda: upstream.count("t1") == 3)
        started = time.monotonic()
        client.close()
        for thread in threads:
            thread.join(5)
        assert time.monotonic() - started < 1.0
        assert [type(r.error) for r in results] == [ApiConnectionError] * 3
        assert all("closed" in str(r.error) for r in results)
        later = client.exchange("t2")
        assert isinstance(later.error, ApiConnectionError)
        assert upstream.count("t2") == 0  # refused without connecting
        assert wait_for(lambda: upstream.trickles_ended == 3)


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `check` until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
    return True
