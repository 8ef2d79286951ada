"""Helpers shared by the tests: simulated tasks, WSGI requests, expositions read back."""

from __future__ import annotations

import http
import os
import shutil
import sys
import wsgiref.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import ApiConfig, Config, RateLimit, RefreshConfig, Task
from exporter.simulator import Rendition, SimTask

App = Callable[[dict[str, Any], Callable[..., Any]], Any]
"""A WSGI application."""

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""Every sample of an exposition by (name, labels)."""


def sim_task(trans_no: str, outcome: Any = "successful", **extra: Any) -> SimTask:
    """A simulated task, long finished, with one 720p rendition of 1000 bytes.

    `extra` sets further SimTask fields, or replaces any of the ones set here.
    """
    fields: dict[str, Any] = {
        "task_id": f"task-{trans_no}",
        "created_at": 1_700_000_000.0,
        "processing_seconds": 60.0,
        "video_id": f"vid-{trans_no}",
        "video_name": f"Video {trans_no}",
        "video_duration": 60,
        "renditions": [Rendition(1, -1, 1280, 720, 1000)],
    }
    fields.update(extra)
    return SimTask(trans_no=trans_no, outcome=outcome, **fields)


def wsgi_call(
    app: App, path: str, *, method: str = "GET", query: str = "", **environ: Any
) -> tuple[int, dict[str, str], bytes]:
    """One request through a WSGI app: (status code, headers, body).

    `environ` adds to (or overrides) the request's WSGI environ, e.g. HTTP_ACCEPT_ENCODING="gzip".
    The status line must be the code and its standard reason phrase ("200 OK").
    """
    request: dict[str, Any] = {}
    wsgiref.util.setup_testing_defaults(request)
    request.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query, **environ)
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen.append((status, headers))

    body = b"".join(app(request, start_response))
    status, headers = seen[0]
    code = int(status.split()[0])
    assert status == f"{code} {http.HTTPStatus(code).phrase}", status
    return code, dict(headers), body


def parse_exposition(text: str) -> Series:
    """Every sample of a Prometheus text exposition by (name, labels); no series twice."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = sample.value
    return out


def value(series: Series, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the series is absent."""
    return series.get((name, frozenset(labels.items())))


ACCESS_KEY_ID = "test-access-key"
SECRET = "s3cr3t-Zq9-never-print-me"
IN_CI = os.environ.get("CI") == "true"


VENV_BIN = Path(sys.executable).parent
"""The bin folder of the interpreter running the tests (the virtualenv's: hadolint lives there)."""


def find_tool(name: str) -> str | None:
    """The path of a binary in the tests' virtualenv or on PATH, or None."""
    return shutil.which(name, path=os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]))


def require_tool(name: str, hint: str = "run `make tools`") -> str:
    """The path of a binary the test needs: missing is a failure in CI, a skip elsewhere."""
    path = find_tool(name)
    if path is None:
        message = f"{name} is not installed ({hint})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def make_config(
    endpoint: str,
    trans_nos: list[str] | tuple[str, ...],
    *,
    labels: dict[str, dict[str, str]] | None = None,
    **api: Any,
) -> Config:
    """A configuration watching these tasks on this endpoint with the test credentials."""
    labels = labels or {}
    tasks = tuple(Task(t, tuple(sorted(labels.get(t, {}).items()))) for t in trans_nos)
    api.setdefault("timeout", 2.0)
    api.setdefault("rate_limit", RateLimit(300, 300.0))
    return Config(
        api=ApiConfig(
            access_key_id=ACCESS_KEY_ID, access_key_secret=SECRET, endpoint=endpoint, **api
        ),
        refresh=RefreshConfig(),
        tasks=tasks,
    )


def max_in_any_window(times: list[float], period: float) -> int:
    """The most events in any half-open span of `period`."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= period:
            start += 1
        best = max(best, end - start + 1)
    return best
