"""The signed client against the simulator: a real HTTP server on loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from exporter.client import CloudVodClient
from exporter.errors import (
    ApiCodeError,
    ApiConnectionError,
    ApiHttpError,
    ApiInvalidResponse,
    ApiThrottled,
    ApiTimeout,
)
from exporter.simulator import Fault, SimulatorServer, documented_example
from tests.conftest import ACCESS_KEY_ID, SECRET

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
