"""The WSGI app: /metrics encodings and filters, routes, the landing page."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Callable
from typing import Any

import pytest

from exporter.httpserver import HTTPServer
from exporter.service import Exporter
from exporter.simulator import SimulatorServer, documented_example
from exporter.webapp import make_app
from tests.helpers import make_config, wsgi_call

EXAMPLE = "0251168101641000f4cf4da800000000"


def app_for(
    start_simulator: Callable[..., SimulatorServer], make_exporter: Callable[..., Exporter]
) -> Any:
    sim = start_simulator([documented_example(0.0)])
    return make_app(make_exporter(make_config(sim.url, [EXAMPLE])))


def test_metrics_plain_gzip_and_openmetrics(start_simulator, make_exporter) -> None:  # type: ignore[no-untyped-def]
    app = app_for(start_simulator, make_exporter)
    status, headers, plain = wsgi_call(app, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert (
        f'cloudvod_concat_video_duration_seconds{{trans_no="{EXAMPLE}"}} 7202.0' in plain.decode()
    )
    status, headers, packed = wsgi_call(app, "/metrics", HTTP_ACCEPT_ENCODING="gzip")
    assert headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) == len(packed)
    assert b"cloudvod_concat_task_status{" in gzip.decompress(packed)
    _, headers, om = wsgi_call(
        app, "/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0"
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.endswith(b"# EOF\n")


def test_metrics_name_filter(start_simulator, make_exporter) -> None:  # type: ignore[no-untyped-def]
    app = app_for(start_simulator, make_exporter)
    _, _, body = wsgi_call(app, "/metrics", query="name[]=cloudvod_concat_watched_tasks")
    lines = [line for line in body.decode().splitlines() if not line.startswith("#")]
    assert lines == ["cloudvod_concat_watched_tasks 1.0"]


def test_routes(start_simulator, make_exporter) -> None:  # type: ignore[no-untyped-def]
    app = app_for(start_simulator, make_exporter)
    assert wsgi_call(app, "/-/healthy")[0] == 200
    assert wsgi_call(app, "/-/ready")[0] == 200
    assert wsgi_call(app, "/nope")[0] == 404
    assert wsgi_call(app, "/-/reload")[0] == 405
    status, headers, page = wsgi_call(app, "/")
    assert status == 200 and headers["Content-Type"] == "text/html"
    assert b"Watched tasks" in page and b'href="/metrics"' in page


# --- methods ---------------------------------------------------------------------------------


def test_head_serves_headers_without_a_body_and_without_refreshing(
    start_simulator, make_exporter
) -> None:  # type: ignore[no-untyped-def]
    sim = start_simulator([documented_example(0.0)])
    app = make_app(make_exporter(make_config(sim.url, [EXAMPLE])))
    status, headers, body = wsgi_call(app, "/metrics", method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert sim.stats().requests == 0  # HEAD never spends budget
    _, get_headers, get_body = wsgi_call(app, "/metrics")
    assert sim.stats().requests == 1
    _, headers, body = wsgi_call(app, "/metrics", method="HEAD")
    assert body == b""
    # GET's length, give or take the exporter's own gauges that moved in between.
    assert get_headers["Content-Length"] == str(len(get_body))
    assert abs(int(headers["Content-Length"]) - len(get_body)) < 20
    status, headers, body = wsgi_call(app, "/probe", method="HEAD", query=f"trans_no={EXAMPLE}")
    assert (status, body) == (200, b"")
    assert sim.stats().requests == 1  # no probe request either
    for path in ("/", "/-/healthy", "/-/ready"):
        status, headers, body = wsgi_call(app, path, method="HEAD")
        assert (status, body) == (200, b""), path
        assert int(headers["Content-Length"]) > 0, path


@pytest.mark.parametrize(
    ("path", "method", "allow"),
    [
        ("/metrics", "POST", "GET, HEAD"),
        ("/metrics", "PUT", "GET, HEAD"),
        ("/metrics", "DELETE", "GET, HEAD"),
        ("/probe", "POST", "GET, HEAD"),
        ("/", "OPTIONS", "GET, HEAD"),
        ("/-/healthy", "PATCH", "GET, HEAD"),
        ("/-/ready", "POST", "GET, HEAD"),
        ("/-/reload", "GET", "POST"),
        ("/-/reload", "PUT", "POST"),
        ("/-/reload", "HEAD", "POST"),
    ],
)
def test_methods_a_route_does_not_serve_are_405_with_allow(
    start_simulator, make_exporter, path: str, method: str, allow: str
) -> None:  # type: ignore[no-untyped-def]
    sim = start_simulator([documented_example(0.0)])
    exporter = make_exporter(make_config(sim.url, [EXAMPLE]))
    reloads = []
    exporter.reload = lambda: reloads.append(1) or []  # type: ignore[method-assign]
    status, headers, body = wsgi_call(make_app(exporter), path, method=method, query="trans_no=x")
    assert status == 405
    assert headers["Allow"] == allow
    assert (body == b"") == (method == "HEAD")
    assert sim.stats().requests == 0  # nothing refreshed or probed
    assert reloads == []  # nothing reloaded


def test_reload_is_post(start_simulator, make_exporter) -> None:  # type: ignore[no-untyped-def]
    sim = start_simulator([documented_example(0.0)])
    exporter = make_exporter(make_config(sim.url, [EXAMPLE]))
    reloads = []
    exporter.reload = lambda: reloads.append(1) or []  # type: ignore[method-assign]
    status, _, body = wsgi_call(make_app(exporter), "/-/reload", method="POST")
    assert (status, body, reloads) == (200, b"configuration reloaded\n", [1])


def test_head_over_http_sends_no_body(start_simulator, make_exporter) -> None:  # type: ignore[no-untyped-def]
    sim = start_simulator([documented_example(0.0)])
    app = make_app(make_exporter(make_config(sim.url, [EXAMPLE])))
    with (
        HTTPServer(app, "127.0.0.1:0") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /-/healthy HTTP/1.1\r\n\r\n")
        data = b""
        while not data.endswith(b"Healthy\n"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: " in head
    assert rest.startswith(b"HTTP/1.1 200 OK")  # the next answer follows the headers at once
    assert sim.stats().requests == 0
