"""The fault matrix: one hostile answer beside five healthy tasks, scraped over real HTTP.

Every case runs two refresh rounds against the simulator with a pinned clock: a healthy round, so
the faulty task has a final status, then a round with the fault injected after every task's
refresh interval has passed. The second scrape must be HTTP 200 with an exposition promtool
accepts, the healthy tasks' series must equal those of the same two rounds without any fault, the
faulty task's failure must be counted under the right `code`, and a failed query must keep the
task's last answer (status, video, timestamp) with query_success 0.

Beside the matrix: a hang past the scrape deadline, a refused connection, throttling and a hostile
Retry-After, hostile scrape timeout headers, and a property test of the parser on numbers of any
magnitude.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.answers import parse_answer
from exporter.budget import Budget, Rate
from exporter.config import Config, RefreshConfig
from exporter.errors import ApiError, ApiThrottled
from exporter.httpserver import HTTPServer
from exporter.scheduler import Scheduler, Settings
from exporter.service import Exporter
from exporter.simulator import Fault, Rendition, SimTask, SimulatorServer, documented_example
from exporter.store.memory import MemoryStore
from exporter.webapp import make_app
from tests.fakes import FakeClock, FakeQuerier
from tests.helpers import (
    ACCESS_KEY_ID,
    SECRET,
    Series,
    make_config,
    parse_exposition,
    require_tool,
    sim_task,
    value,
)

Start = Callable[..., SimulatorServer]

FIXED = 1_700_000_000.0  # the simulated tasks' timelines: all long over by now
CLOCK_START = 1_750_000_000.0  # the exporter's pinned monotonic and wall clock
ADVANCE = 100_000.0  # longer than every refresh interval (failed: 6h)
FAULTY = documented_example(FIXED).trans_no
HEALTHY = ("ok-plain", "ok-names", "ok-datetime", "failed-task", "processing-task")
LATENCY = 0.05
ODD_NAME = 'Gala "live" \\ 春晚 🎬\nline two\\n, {x="y"}'

STATUS = "cloudvod_concat_task_status"
QUERY_SUCCESS = "cloudvod_concat_task_query_success"
LAST_SUCCESS = "cloudvod_concat_task_last_success_timestamp_seconds"
ERRORS = "cloudvod_concat_api_errors_total"
BACKLOG = "cloudvod_concat_refresh_backlog"


def _sim_task(trans_no: str, outcome: Any, **extra: Any) -> SimTask:
    """A task long over by FIXED, with two renditions and the optional fields filled in."""
    fields: dict[str, Any] = {
        "created_at": FIXED - 600.0,
        "processing_seconds": 300.0,
        "video_duration": 600,
        "renditions": [
            Rendition(1, -1, 1920, 1080, 375_000_000),
            Rendition(4, 0, 1280, 720, 18_750),
        ],
        "publish_domain": "vod.example.com",
        "player_name": "default",
        "upload_time": FIXED - 600.0,
        "update_time": FIXED - 300.0,
    }
    return sim_task(trans_no, outcome, **(fields | extra))


def sim_tasks() -> list[SimTask]:
    """The faulty task (the documented example) and five healthy ones of every kind."""
    return [
        documented_example(FIXED),
        _sim_task("ok-plain", "successful"),
        _sim_task("ok-names", "successful", video_name="Résumé — «épisode» 第1集"),
        _sim_task("ok-datetime", "successful", time_format="datetime"),
        _sim_task("failed-task", "failed"),
        _sim_task("processing-task", "processing"),
    ]


def start_sim(start_simulator: Start) -> SimulatorServer:
    """The simulator with the six tasks; a little latency, so every request of a round is sent
    before any answer (a throttling one pauses the rest) comes back."""
    return start_simulator(sim_tasks(), latency=LATENCY)


def closed_port_url() -> tuple[socket.socket, str]:
    """A bound but not listening socket (connections are refused) and its URL; keep it open."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- reading expositions ------------------------------------------------------------------------


def of_task(series: Series, trans_no: str) -> Series:
    """The samples of one task."""
    return {k: v for k, v in series.items() if ("trans_no", trans_no) in k[1]}


def healthy(series: Series) -> Series:
    """The samples of the five healthy tasks."""
    return {k: v for k, v in series.items() if any(("trans_no", t) in k[1] for t in HEALTHY)}


def errors(series: Series) -> dict[str, float]:
    """cloudvod_concat_api_errors_total by code."""
    return {dict(k[1])["code"]: v for k, v in series.items() if k[0] == ERRORS}


def promtool_ok(text: str) -> None:
    """`promtool check metrics` accepts the exposition (it reads stdin)."""
    promtool = require_tool("promtool")
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


# --- the rig: simulator, exporter with a pinned clock, real HTTP server -------------------------


@dataclass
class Rig:
    sim: SimulatorServer
    exporter: Exporter
    server: HTTPServer
    clock: FakeClock

    def get(self, path: str, scrape_timeout: str = "2") -> requests.Response:
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": scrape_timeout}
        return requests.get(self.server.url + path, headers=headers, timeout=10)

    def scrape(self, scrape_timeout: str = "2") -> tuple[str, float]:
        """One /metrics scrape: its text and how long it took; fails unless HTTP 200."""
        started = time.monotonic()
        response = self.get("/metrics", scrape_timeout)
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        return response.text, elapsed


def config_for(sim: SimulatorServer, **api: Any) -> Config:
    api.setdefault("timeout", 0.5)
    api.setdefault("max_concurrency", 8)
    config = make_config(sim.url, [FAULTY, *HEALTHY], **api)
    return dataclasses.replace(config, refresh=RefreshConfig())


@contextlib.contextmanager
def rig(sim: SimulatorServer, **api: Any) -> Iterator[Rig]:
    clock = FakeClock(CLOCK_START)
    exporter = Exporter(config_for(sim, **api), clock=clock)
    server = HTTPServer(make_app(exporter), "127.0.0.1:0").start()
    try:
        yield Rig(sim, exporter, server, clock)
    finally:
        server.shutdown()
        exporter.close()


def healthy_round(r: Rig) -> Series:
    """The first scrape: every task answered; then every refresh interval passes."""
    text, _ = r.scrape()
    first = parse_exposition(text)
    for t in (FAULTY, *HEALTHY):
        assert value(first, QUERY_SUCCESS, trans_no=t) == 1, t
    assert errors(first) == {}
    r.clock.advance(ADVANCE)
    return first


@pytest.fixture(scope="module")
def reference() -> Series:
    """The second scrape of the same two rounds without any fault."""
    sim = SimulatorServer(sim_tasks(), credentials={ACCESS_KEY_ID: SECRET}, latency=LATENCY).start()
    try:
        with rig(sim) as r:
            healthy_round(r)
            text, _ = r.scrape()
            promtool_ok(text)
            return parse_exposition(text)
    finally:
        sim.stop()


def assert_kept(first: Series, second: Series) -> None:
    """The faulty task still shows everything of its last answer, with query_success 0."""
    expected = of_task(first, FAULTY)
    expected[(QUERY_SUCCESS, frozenset({("trans_no", FAULTY)}))] = 0.0
    assert of_task(second, FAULTY) == expected
    assert value(second, STATUS, trans_no=FAULTY, status="successful") == 1
    assert value(second, LAST_SUCCESS, trans_no=FAULTY) == CLOCK_START


def assert_fresh(first: Series, second: Series) -> None:
    """The faulty task's series are those of the healthy round, answered again just now."""
    expected = of_task(first, FAULTY)
    expected[(LAST_SUCCESS, frozenset({("trans_no", FAULTY)}))] = CLOCK_START + ADVANCE
    assert of_task(second, FAULTY) == expected


# --- the matrix ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    fault: Fault
    code: str | None  # errors_total code of the faulty task; None: its answer is valid
    check: Callable[[Series, Series], None] = assert_kept
    api: tuple[tuple[str, Any], ...] = ()


def _video_patch(**fields: Any) -> Fault:
    return Fault(kind="data", data={"videoInfo": fields})


def _wrong_types(first: Series, second: Series) -> None:
    assert_fresh(first, second)  # the same numbers, whatever their wire type


def _no_video_info(first: Series, second: Series) -> None:
    mine = of_task(second, FAULTY)
    assert value(mine, STATUS, trans_no=FAULTY, status="successful") == 1
    assert value(mine, QUERY_SUCCESS, trans_no=FAULTY) == 1
    assert value(mine, "cloudvod_concat_task_info", trans_no=FAULTY, task_id=_TASK_ID) == 1
    assert not [k for k in mine if k[0].startswith("cloudvod_concat_video_")]


def _no_renditions(first: Series, second: Series) -> None:
    mine = of_task(second, FAULTY)
    assert value(mine, QUERY_SUCCESS, trans_no=FAULTY) == 1
    assert value(mine, "cloudvod_concat_video_duration_seconds", trans_no=FAULTY) == 7202
    assert value(mine, "cloudvod_concat_video_size_bytes", trans_no=FAULTY) == 1223912405
    rendition_metrics = {
        "cloudvod_concat_video_file_size_bytes",
        "cloudvod_concat_video_width_pixels",
        "cloudvod_concat_video_height_pixels",
    }
    assert not [k for k in mine if k[0] in rendition_metrics]


def _unknown_clarity(first: Series, second: Series) -> None:
    mine = of_task(second, FAULTY)
    labels = {"trans_no": FAULTY, "clarity": "9", "server_type": "1"}
    assert value(mine, "cloudvod_concat_video_file_size_bytes", **labels) == 4096
    assert value(mine, "cloudvod_concat_video_width_pixels", **labels) == 640
    assert value(mine, "cloudvod_concat_video_height_pixels", **labels) == 360
    assert value(mine, QUERY_SUCCESS, trans_no=FAULTY) == 1


def _odd_names(first: Series, second: Series) -> None:
    info = [dict(k[1]) for k in of_task(second, FAULTY) if k[0] == "cloudvod_concat_video_info"]
    assert len(info) == 1
    assert info[0]["video_name"] == ODD_NAME
    assert info[0]["publish_domain"] == 'cdn "one"\\two'
    assert info[0]["player_name"] == "player\nwith newline"


def _huge_number(first: Series, second: Series) -> None:
    mine = of_task(second, FAULTY)
    assert value(mine, QUERY_SUCCESS, trans_no=FAULTY) == 1
    assert value(mine, "cloudvod_concat_video_size_bytes", trans_no=FAULTY) is None  # dropped
    assert value(mine, "cloudvod_concat_video_duration_seconds", trans_no=FAULTY) == 7202


_TASK_ID = documented_example(FIXED).task_id
_HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"

CASES = [
    Case("timeout", Fault(kind="delay", seconds=1.0), "timeout"),
    Case("connection-reset", Fault(kind="reset"), "connection"),
    Case("http-500", Fault(kind="http_status", status=500), "http_500"),
    Case("http-502", Fault(kind="http_status", status=502), "http_502"),
    Case("http-503", Fault(kind="http_status", status=503), "throttled"),
    Case(
        "html-page-status-200",
        Fault(kind="body", body=_HTML, content_type="text/html"),
        "invalid_response",
    ),
    Case(
        "malformed-json",
        Fault(kind="body", body=b'{"code":200,"message":"ok","data":{"status":2,'),
        "invalid_response",
    ),
    Case("json-not-an-object", Fault(kind="body", body=b"[1, 2, 3]"), "invalid_response"),
    Case("truncated-body", Fault(kind="truncated"), "invalid_response"),
    Case(
        "wrong-types",
        Fault(
            kind="data",
            data={
                "status": "2",
                "videoInfo": {
                    "videoSize": 1223912405,
                    "videoDuration": "7202.0",
                    "encrypt": "0",
                    "transcodeState": 5,
                    "videoState": 0,
                    "videoResolutions": [
                        {
                            "clarity": "1",
                            "serverType": "-1",
                            "width": "1280",
                            "height": 720.0,
                            "fileSize": "1223912405.0",
                        }
                    ],
                },
            },
        ),
        None,
        _wrong_types,
    ),
    Case("no-video-info", Fault(kind="data", data={"videoInfo": None}), None, _no_video_info),
    Case("no-renditions", _video_patch(videoResolutions=None), None, _no_renditions),
    Case("huge-number", _video_patch(videoSize=10**400), None, _huge_number),
    Case("unknown-status", Fault(kind="data", data={"status": 7}), "invalid_response"),
    Case("status-garbage", Fault(kind="data", data={"status": "two"}), "invalid_response"),
    Case(
        "unknown-clarity",
        _video_patch(
            videoResolutions=[
                {"clarity": 9, "serverType": 1, "width": 640, "height": 360, "fileSize": 4096}
            ]
        ),
        None,
        _unknown_clarity,
    ),
    Case(
        "huge-body",
        Fault(kind="body", body=b'{"code":200,"data":{"status":2}}' + b" " * 2_000_000),
        "invalid_response",
        api=(("max_response_bytes", 65_536),),
    ),
    Case(
        "unicode-quotes-backslashes-newlines",
        _video_patch(
            videoName=ODD_NAME, publishDomain='cdn "one"\\two', playerName="player\nwith newline"
        ),
        None,
        _odd_names,
    ),
    Case("api-error-1603", Fault(kind="code", code=1603), "1603"),
    Case("throttled", Fault(kind="throttle"), "throttled"),
    Case("authentication-failure", Fault(kind="auth"), "http_401"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault_beside_five_healthy_tasks(
    case: Case, start_simulator: Start, reference: Series, caplog: pytest.LogCaptureFixture
) -> None:
    sim = start_sim(start_simulator)
    with rig(sim, **dict(case.api)) as r:
        first = healthy_round(r)
        sim.set_fault(FAULTY, case.fault)
        sim.reset_stats()

        text, _ = r.scrape()

        promtool_ok(text)
        second = parse_exposition(text)
        assert healthy(second) == healthy(reference)
        assert errors(second) == ({case.code: 1.0} if case.code else {})
        assert sim.stats().per_trans_no.get(FAULTY) == 1  # asked once, never retried
        case.check(first, second)
        assert r.get("/-/healthy").status_code == 200
        # A hostile answer is an expected failure, never a crash with a traceback.
        assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


@pytest.mark.parametrize("status", [503, None], ids=["http-503", "throttle-answer"])
def test_throttling_pauses_every_following_request(start_simulator: Start, status: int) -> None:
    sim = start_sim(start_simulator)
    with rig(sim) as r:
        healthy_round(r)
        fault = Fault(kind="throttle") if status is None else Fault("http_status", status=status)
        sim.set_fault(FAULTY, fault)
        r.scrape()
        assert r.exporter.budget.paused_for() > 0
        sim.clear_faults()
        sim.reset_stats()

        # The faulty task is still due, and so is the processing one (refresh.processing 0s,
        # a second later): neither is asked while the pause lasts.
        r.clock.advance(1.0)
        third = parse_exposition(r.scrape()[0])
        assert sim.stats().requests == 0
        assert value(third, BACKLOG) == 2
        assert value(third, STATUS, trans_no=FAULTY, status="successful") == 1
        assert value(third, QUERY_SUCCESS, trans_no=FAULTY) == 0

        r.clock.advance(r.exporter.budget.paused_for() + 1)
        fourth = parse_exposition(r.scrape()[0])
        assert sim.stats().per_trans_no == {FAULTY: 1, "processing-task": 1}
        assert value(fourth, QUERY_SUCCESS, trans_no=FAULTY) == 1
        assert value(fourth, BACKLOG) == 0


def test_hang_past_the_scrape_deadline(start_simulator: Start, reference: Series) -> None:
    # The request outlives the scrape: api.timeout 1.5s, scrape timeout 1s (deadline 0.5s).
    sim = start_sim(start_simulator)
    with rig(sim, timeout=1.5) as r:
        first = healthy_round(r)
        sim.set_fault(FAULTY, Fault(kind="delay", seconds=5.0))

        text, elapsed = r.scrape(scrape_timeout="1")

        assert elapsed < 1.0, f"the scrape took {elapsed:.2f}s of Prometheus's 1s"
        promtool_ok(text)
        second = parse_exposition(text)
        assert healthy(second) == healthy(reference)
        assert of_task(second, FAULTY) == of_task(first, FAULTY)  # the last answer, unchanged
        assert value(second, BACKLOG) == 1
        assert errors(second) == {}

        # The request times out in the background; the next scrape counts it and keeps the data.
        deadline = time.monotonic() + 5
        while r.exporter.scheduler.state_of(FAULTY).query_ok and time.monotonic() < deadline:
            time.sleep(0.05)
        text, _ = r.scrape()
        promtool_ok(text)
        third = parse_exposition(text)
        assert errors(third) == {"timeout": 1.0}
        assert_kept(first, third)
        assert healthy(third) == healthy(reference)
        assert sim.stats().per_trans_no[FAULTY] == 2  # no second request while one is in flight


def test_connection_refused_fails_every_task_but_not_the_scrape(start_simulator: Start) -> None:
    sim = start_sim(start_simulator)
    with rig(sim) as r:
        first = healthy_round(r)
        closed, url = closed_port_url()
        with closed:
            config = r.exporter.config
            r.exporter.apply(
                dataclasses.replace(config, api=dataclasses.replace(config.api, endpoint=url))
            )
            text, elapsed = r.scrape()

        promtool_ok(text)
        second = parse_exposition(text)
        assert elapsed < 2.0
        assert errors(second) == {"connection": 6.0}
        for t in (FAULTY, *HEALTHY):
            expected = of_task(first, t)
            expected[(QUERY_SUCCESS, frozenset({("trans_no", t)}))] = 0.0
            assert of_task(second, t) == expected, t
        assert r.get("/-/healthy").status_code == 200


def test_never_answered_task_failing_is_unknown(start_simulator: Start) -> None:
    sim = start_sim(start_simulator)
    sim.set_fault(FAULTY, Fault(kind="http_status", status=500))
    with rig(sim) as r:
        series = parse_exposition(r.scrape()[0])
        assert value(series, STATUS, trans_no=FAULTY, status="unknown") == 1
        assert value(series, QUERY_SUCCESS, trans_no=FAULTY) == 0
        assert value(series, LAST_SUCCESS, trans_no=FAULTY) is None
        assert errors(series) == {"http_500": 1.0}
        for t in HEALTHY:
            assert value(series, QUERY_SUCCESS, trans_no=t) == 1


@pytest.mark.parametrize("header", ["inf", "1e300", "nan", "-1", "0", "abc", ""])
def test_hostile_scrape_timeout_header(
    start_simulator: Start, header: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Prometheus sends a positive number of seconds; anyone else may send anything.
    sim = start_sim(start_simulator)
    with rig(sim) as r:
        text, elapsed = r.scrape(scrape_timeout=header)
        assert elapsed < 3.0
        promtool_ok(text)
        series = parse_exposition(text)
        assert value(series, "cloudvod_concat_watched_tasks") == 6
        if header in ("inf", "1e300", "nan", "abc", ""):  # the default deadline applies
            for t in (FAULTY, *HEALTHY):
                assert value(series, QUERY_SUCCESS, trans_no=t) == 1, t
        assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


@pytest.mark.parametrize("retry_after", [math.inf, 1e12, math.nan, 30.0])
def test_a_hostile_retry_after_pauses_at_most_one_period(retry_after: float) -> None:
    # Retry-After: inf (or a year) must not silence the exporter until it is restarted.
    clock = FakeClock(CLOCK_START)
    querier = FakeQuerier({"t": 2}, clock=clock)
    querier.errors["t"] = lambda: ApiThrottled("HTTP 429", retry_after=retry_after)
    store = MemoryStore(clock)
    budget = Budget(store, Rate(300, 300.0), timeout=10.0, clock=clock)
    scheduler = Scheduler(querier, store, budget, Settings(RefreshConfig(), 4, 10.0), clock=clock)
    scheduler.set_tasks(["t"])
    try:
        scheduler.refresh(5)
        paused = budget.paused_for()
        assert 0 < paused <= 300.0
        if retry_after == 30.0:
            assert paused == 30.0  # a sensible Retry-After is honoured
        del querier.errors["t"]
        clock.advance(paused + 1)
        scheduler.refresh(5)
        assert querier.calls == ["t", "t"]
        assert scheduler.state_of("t").query_ok
    finally:
        scheduler.close()


_ANY_NUMBER = (
    st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(alphabet="0123456789.eE+-inftyNa ", max_size=12)
)


@settings(max_examples=300, deadline=None)
@given(status=_ANY_NUMBER, number=_ANY_NUMBER)
def test_the_parser_survives_numbers_of_any_magnitude(status: Any, number: Any) -> None:
    info = {
        "videoSize": number,
        "videoDuration": number,
        "uploadTime": number,
        "videoState": number,
        "videoResolutions": [{"clarity": number, "width": number, "fileSize": number}],
    }
    body = json.dumps({"code": 200, "data": {"status": status, "videoInfo": info}})
    try:
        answer = parse_answer(body.encode(), "t", datetime.UTC)
    except ApiError:
        return  # an unusable status is an invalid answer, never a crash
    assert answer.status in (1, 2, 3)
    if answer.video is not None:
        values = [answer.video.size, answer.video.duration, answer.video.upload_time]
        values += [r.file_size for r in answer.video.renditions]
        assert all(v is None or math.isfinite(v) for v in values)
