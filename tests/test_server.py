"""The WSGI app: /metrics encodings and filters, routes, the landing page."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

from exporter.server import make_app
from exporter.service import Exporter
from exporter.simulator import SimulatorServer, documented_example
from tests.conftest import make_config
from tests.helpers import wsgi_call

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
