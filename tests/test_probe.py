"""`/probe?trans_no=X`: one task queried now, within the budget; `&debug=true` shows it all."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from exporter.config import RateLimit
from exporter.service import Exporter
from exporter.simulator import SimulatorServer
from exporter.webapp import make_app
from tests.fakes import FakeClock
from tests.helpers import (
    SECRET,
    App,
    Series,
    make_config,
    parse_exposition,
    sim_task,
    value,
    wsgi_call,
)

Start = Callable[..., SimulatorServer]
Make = Callable[..., Exporter]

EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WATCHED, UNWATCHED, MISSING = "watched-1", "unwatched-2", "missing-3"


def probe(app: App, query: str) -> Series:
    status, headers, body = wsgi_call(app, "/probe", query=query)
    assert status == 200, body.decode()
    assert headers["Content-Type"] == EXPOSITION_TYPE
    return parse_exposition(body.decode())


def setup(start_simulator: Start, make_exporter: Make, **api: Any) -> tuple[SimulatorServer, App]:
    sim = start_simulator([sim_task(WATCHED), sim_task(UNWATCHED)])
    config = make_config(sim.url, [WATCHED], labels={WATCHED: {"team": "a"}}, **api)
    return sim, make_app(make_exporter(config))


def test_probe_of_a_watched_an_unwatched_and_a_missing_task(
    start_simulator: Start, make_exporter: Make
) -> None:
    sim, app = setup(start_simulator, make_exporter)

    watched = probe(app, f"trans_no={WATCHED}")
    assert value(watched, "probe_success") == 1
    assert value(watched, "probe_duration_seconds") is not None
    labels = {"trans_no": WATCHED, "team": "a"}
    assert value(watched, "cloudvod_concat_task_status", status="successful", **labels) == 1
    assert value(watched, "cloudvod_concat_task_query_success", **labels) == 1
    assert value(watched, "cloudvod_concat_video_size_bytes", **labels) == 1000
    assert {dict(k[1]).get("trans_no") for k in watched} == {None, WATCHED}  # this task alone

    unwatched = probe(app, f"trans_no={UNWATCHED}")
    assert value(unwatched, "probe_success") == 1
    assert value(unwatched, "cloudvod_concat_task_status_code", trans_no=UNWATCHED) == 2

    missing = probe(app, f"trans_no={MISSING}")  # the API answers 1603
    assert value(missing, "probe_success") == 0
    assert value(missing, "cloudvod_concat_task_status", trans_no=MISSING, status="unknown") == 1
    assert value(missing, "cloudvod_concat_task_query_success", trans_no=MISSING) == 0

    assert sim.stats().per_trans_no == {WATCHED: 1, UNWATCHED: 1, MISSING: 1}
    # A probe of a watched task refreshes its cached answer: the next scrape does not ask again.
    status, _, body = wsgi_call(app, "/metrics")
    assert status == 200
    metrics = parse_exposition(body.decode())
    assert sim.stats().per_trans_no[WATCHED] == 1
    assert value(metrics, "cloudvod_concat_api_errors_total", code="1603") == 1
    assert value(metrics, "cloudvod_concat_api_requests_total") == 3
    # Unwatched probes never become watched series.
    assert not [k for k in metrics if ("trans_no", UNWATCHED) in k[1]]


@pytest.mark.parametrize(
    "query",
    [
        "trans_no=" + "a" * 33,  # too long
        "trans_no=a%2Fb",
        "trans_no=a+b",
        "trans_no=%C3%A4bc",
        "trans_no=abc%0A",
        "trans_no=abc%00",
        "trans_no=a.b",
        "trans_no=",  # empty
        "",  # missing
        "debug=true",  # missing, with debug
        f"trans_no={WATCHED}&trans_no={UNWATCHED}",  # repeated
        f"trans_no={WATCHED}&trans_no={WATCHED}",
    ],
)
def test_invalid_trans_no_is_400_and_sends_nothing(
    start_simulator: Start, make_exporter: Make, query: str
) -> None:
    sim, app = setup(start_simulator, make_exporter)
    status, _, body = wsgi_call(app, "/probe", query=query)
    assert status == 400, body.decode()
    assert body.decode().strip()
    status, _, body = wsgi_call(app, "/probe", query=query + "&debug=true")
    assert status == 400, body.decode()
    assert sim.stats().requests == 0


def test_a_fresh_answer_is_served_from_cache_without_a_request(
    start_simulator: Start, make_exporter: Make
) -> None:
    sim, app = setup(start_simulator, make_exporter)
    assert value(probe(app, f"trans_no={WATCHED}"), "probe_success") == 1
    again = probe(app, f"trans_no={WATCHED}")  # successful, refreshed hourly: still fresh
    assert value(again, "probe_success") == 1
    assert value(again, "cloudvod_concat_video_size_bytes", trans_no=WATCHED, team="a") == 1000
    _status, _, body = wsgi_call(app, "/probe", query=f"trans_no={WATCHED}&debug=true")
    assert "outcome: answered from cache: the last answer is still fresh" in body.decode()
    assert sim.stats().requests == 1


def test_spent_budget_sends_nothing_and_says_so(
    start_simulator: Start, make_exporter: Make
) -> None:
    clock = FakeClock()
    sim = start_simulator([sim_task(WATCHED, "processing"), sim_task(UNWATCHED)])
    config = make_config(sim.url, [WATCHED], rate_limit=RateLimit(1, 300.0))
    app = make_app(make_exporter(config, clock=clock))
    first = probe(app, f"trans_no={WATCHED}")
    assert value(first, "probe_success") == 1

    # Processing: due a second later, but the budget is spent. The last answer is younger than
    # refresh.error (1m): still a success, and the debug text says why nothing was sent.
    clock.advance(1.0)
    _status, _, body = wsgi_call(app, "/probe", query=f"trans_no={WATCHED}&debug=true")
    text = body.decode()
    assert "outcome: not sent: budget spent (1 of 1 requests in the last 300s)" in text
    assert "probe_success 1.0" in text
    clock.advance(61)
    again = probe(app, f"trans_no={WATCHED}")
    assert value(again, "probe_success") == 0  # too old to stand for now
    assert value(again, "cloudvod_concat_task_status", status="processing", trans_no=WATCHED) == 1
    assert value(again, "cloudvod_concat_task_query_success", trans_no=WATCHED) == 1

    never = probe(app, f"trans_no={UNWATCHED}")
    assert value(never, "probe_success") == 0
    assert value(never, "cloudvod_concat_task_status", trans_no=UNWATCHED, status="unknown") == 1
    assert sim.stats().requests == 1


def test_debug_shows_the_exchange_with_the_signature_redacted(
    start_simulator: Start, make_exporter: Make
) -> None:
    sim, app = setup(start_simulator, make_exporter)
    status, headers, body = wsgi_call(app, "/probe", query=f"trans_no={WATCHED}&debug=true")
    text = body.decode()
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert "HTTP status: 200" in text
    assert re.search(r"X-WS-RequestId: [0-9a-f]{32}\b", text), text
    assert re.search(r"probe duration: \d+\.\d{3}s", text), text
    assert re.search(r"response \(after \d+\.\d{3}s\)", text), text
    # The raw answer body, exactly as the simulator sent it.
    body_line = next(line for line in text.splitlines() if line.startswith('  body: {"code"'))
    answer = json.loads(body_line.removeprefix("  body: "))
    assert answer["code"] == 200 and answer["data"]["transNo"] == WATCHED
    assert f'body: {{"transNo":"{WATCHED}"}}' in text  # the request body
    authorization = next(line for line in text.splitlines() if "Authorization:" in line)
    assert authorization.endswith("Signature=<redacted>")
    assert not re.search(r"[0-9a-f]{64}", text)  # no signature (nor any hash) leaks
    assert SECRET not in text
    # The probe's metrics follow the report.
    metrics = parse_exposition(text.split("\nmetrics:\n", 1)[1])
    assert value(metrics, "probe_success") == 1
    assert sim.stats().requests == 1


def test_debug_of_a_failing_query(start_simulator: Start, make_exporter: Make) -> None:
    _, app = setup(start_simulator, make_exporter)
    status, _, body = wsgi_call(app, "/probe", query=f"trans_no={MISSING}&debug=true")
    text = body.decode()
    assert status == 200
    assert "HTTP status: 200" in text
    assert '"code":1603' in text
    assert "error (1603)" in text
    assert re.search(r"X-WS-RequestId: [0-9a-f]{32}\b", text)
    assert SECRET not in text
    assert value(parse_exposition(text.split("\nmetrics:\n", 1)[1]), "probe_success") == 0


def test_a_flood_of_probes_spends_only_the_probe_share_and_delays_no_watched_task(
    start_simulator: Start, make_exporter: Make
) -> None:
    """300 probes of random unwatched transNos between scrapes: at most the probes' share of the
    budget (5 % of 300 = 15 requests) goes to them, and the watched processing tasks are still
    asked on every scrape."""
    import random
    import threading

    watched = [f"proc-{i}" for i in range(5)]
    sim = start_simulator([sim_task(t, "processing") for t in watched])
    config = make_config(sim.url, watched)
    clock = FakeClock()
    exporter = make_exporter(config, clock=clock)
    app = make_app(exporter)
    rng = random.Random(3)
    names = [f"rnd-{rng.getrandbits(40):x}" for _ in range(300)]
    answers: list[str] = []
    lock = threading.Lock()

    def flood(chunk: list[str]) -> None:
        for name in chunk:
            body = wsgi_call(app, "/probe", query=f"trans_no={name}&debug=true")[2].decode()
            with lock:
                answers.append(body)

    for scrape in range(3):
        clock.advance(15.0)
        threads = [threading.Thread(target=flood, args=(names[i::6][scrape::3],)) for i in range(6)]
        for t in threads:
            t.start()
        series = parse_exposition(wsgi_call(app, "/metrics")[2].decode())
        for t in threads:
            t.join(30)
        for t in watched:
            assert value(series, "cloudvod_concat_task_query_success", trans_no=t) == 1
    probed = {t: n for t, n in sim.stats().per_trans_no.items() if t.startswith("rnd-")}
    assert len(probed) <= 15
    assert all(sim.stats().per_trans_no[t] == 3 for t in watched)  # once per scrape
    refused = [a for a in answers if "not sent: the probe share is spent" in a or "in flight" in a]
    assert len(refused) >= 300 - 15
