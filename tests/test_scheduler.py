"""Refresh scheduling: order, intervals, backoff, budget, single-flight and deadlines."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from exporter.budget import Budget, Rate
from exporter.config import RefreshConfig
from exporter.errors import ApiCodeError, ApiThrottled, ApiTimeout
from exporter.policy import Policy
from exporter.protocol import Code, TaskStatus
from exporter.scheduler import Outcome, Scheduler, Settings
from exporter.store.memory import MemoryStore
from tests.fakes import FakeClock, FakeQuerier
from tests.helpers import max_in_any_window

REFRESH = RefreshConfig(
    processing=0.0, successful=3600.0, failed=21600.0, error=60.0, error_max=1800.0
)


def make(
    statuses: dict[str, int],
    *,
    requests: int = 10_000,
    period: float = 300.0,
    concurrency: int = 4,
    burst: int | None = None,
    refresh: RefreshConfig = REFRESH,
) -> tuple[Scheduler, FakeQuerier, FakeClock]:
    clock = FakeClock()
    querier = FakeQuerier(statuses, clock=clock)
    store = MemoryStore(clock)
    horizon = 60.0 if burst is None else burst * period / requests
    budget = Budget(
        store, Rate(requests, period), timeout=10.0, clock=clock, pacing_horizon=horizon
    )
    scheduler = Scheduler(querier, store, budget, Settings(refresh, concurrency, 10.0), clock=clock)
    scheduler.set_tasks(statuses)
    return scheduler, querier, clock


def scrape(scheduler: Scheduler, clock: FakeClock) -> int:
    return scheduler.refresh(30.0).backlog


def due(scheduler: Scheduler, clock: FakeClock) -> list[str]:
    """The order the policy would serve the due tasks in, with budget for all."""
    plan = Policy().plan(scheduler.states(), scheduler.settings.refresh, clock(), 10**9)
    return list(plan.order)


def test_first_scrape_asks_every_task_once_then_final_ones_rest() -> None:
    scheduler, querier, clock = make({"p": 1, "s": 2, "f": 3})
    scrape(scheduler, clock)
    assert sorted(querier.calls) == ["f", "p", "s"]
    states = scheduler.states()
    assert [states[t].status for t in ("p", "s", "f")] == ["processing", "successful", "failed"]
    for _ in range(10):
        clock.advance(15)
        scrape(scheduler, clock)
    assert querier.calls.count("p") == 11
    assert querier.calls.count("s") == 1
    assert querier.calls.count("f") == 1
    clock.advance(3600)
    scrape(scheduler, clock)
    assert querier.calls.count("s") == 2
    assert querier.calls.count("f") == 1


def test_never_answered_first_then_most_overdue() -> None:
    scheduler, querier, clock = make({"a": 2, "b": 2, "c": 1})
    scrape(scheduler, clock)
    clock.advance(100)
    scheduler.set_tasks(["a", "b", "c", "new"])
    querier.statuses["new"] = 1
    clock.advance(3600)  # a and b overdue by 100 s, c by 3700 s
    assert due(scheduler, clock) == ["new", "c", "a", "b"]


def test_budget_deferral_is_backlog_and_next_scrape_catches_up_fairly() -> None:
    tasks = {f"t{i:03d}": 1 for i in range(50)}
    scheduler, querier, clock = make(tasks, requests=20, period=60.0, burst=20)
    assert scrape(scheduler, clock) == 30
    assert len(querier.calls) == 20
    clock.advance(60.5)
    assert scrape(scheduler, clock) == 30
    # the second round asked the 20 most overdue: the 30 never answered before any repeat
    assert len(set(querier.calls)) == 40


def test_failing_task_backs_off_exponentially_up_to_the_cap() -> None:
    scheduler, querier, clock = make({"gone": 1, "ok": 1})
    querier.errors["gone"] = lambda: ApiCodeError(1603, "transNo does not exist")
    asked_at: list[float] = []
    for _ in range(int(6 * 3600 / 15)):
        before = querier.calls.count("gone")
        scrape(scheduler, clock)
        if querier.calls.count("gone") > before:
            asked_at.append(clock())
        clock.advance(15)
    gaps = [b - a for a, b in itertools.pairwise(asked_at)]
    # 60, 120, 240, 480, 960, then capped at 1800 (rounded up to the 15 s scrape interval)
    assert gaps[:5] == [60, 120, 240, 480, 960]
    assert all(gap == 1800 for gap in gaps[5:])
    assert querier.calls.count("ok") == len(asked_at[:1]) + int(6 * 3600 / 15) - 1
    state = scheduler.states()["gone"]
    assert (state.status, state.query_ok, state.last_error) == ("unknown", False, "1603")


def test_failed_query_keeps_last_known_status() -> None:
    scheduler, querier, clock = make({"s": 2})
    scrape(scheduler, clock)
    answered = scheduler.states()["s"].answered_at
    querier.errors["s"] = lambda: ApiTimeout("slow")
    clock.advance(3601)
    scrape(scheduler, clock)
    state = scheduler.states()["s"]
    assert state.status == "successful"
    assert state.query_ok is False
    assert state.answered_at == answered
    assert state.last_error == "timeout"


def test_throttling_pauses_every_request_without_blaming_the_task() -> None:
    tasks = {f"t{i}": 1 for i in range(10)}
    scheduler, querier, clock = make(tasks, concurrency=1)
    querier.errors["t0"] = lambda: ApiThrottled("HTTP 429")
    scrape(scheduler, clock)
    assert querier.calls == ["t0"]  # everything after the throttling answer waited
    assert scheduler.states()["t0"].failures == 0
    clock.advance(5)
    scrape(scheduler, clock)
    assert querier.calls == ["t0"]
    del querier.errors["t0"]
    clock.advance(10)
    scrape(scheduler, clock)
    assert sorted(querier.calls) == ["t0", *sorted(tasks)]


def test_single_flight_concurrent_scrapes_share_one_round() -> None:
    tasks = {f"t{i}": 1 for i in range(20)}
    scheduler, querier, _clock = make(tasks)
    querier.gate = threading.Event()
    reports = []

    def one() -> None:
        reports.append(scheduler.refresh(5.0))

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    querier.gate.set()
    for t in threads:
        t.join(10)
    assert sorted(querier.calls) == sorted(tasks)  # each task asked exactly once
    assert sum(r.joined for r in reports) == 4


def test_deadline_returns_in_time_and_round_finishes_in_background() -> None:
    tasks = {f"t{i}": 1 for i in range(8)}
    scheduler, querier, _clock = make(tasks, concurrency=2)
    querier.gate = threading.Event()
    started = time.monotonic()
    report = scheduler.refresh(0.3)  # a real wait of 0.3 s
    waited = time.monotonic() - started
    assert waited < 2.0
    assert report.backlog == 8
    assert report.sent == 0
    # the next scrape joins the unfinished round instead of asking again
    second = scheduler.refresh(0.2)
    assert second.joined
    querier.gate.set()
    for _ in range(100):
        if len(scheduler.states()) == 8 and all(s.query_ok for s in scheduler.states().values()):
            break
        time.sleep(0.02)
    assert sorted(querier.calls) == sorted(tasks)
    assert scheduler.refresh(1.0).backlog == 0


@pytest.mark.parametrize("share_final", [0.5, 0.95])
def test_budget_never_exceeded_over_long_runs(share_final: float) -> None:
    n = 400
    statuses = {f"t{i:04d}": (2 if i < n * share_final else 1) for i in range(n)}
    scheduler, querier, clock = make(statuses, requests=300, period=300.0, concurrency=8)
    for step in range(int(4 * 3600 / 15)):  # four hours of 15 s scrapes
        if step % 40 == 0:  # processing tasks finish over time, new ones appear
            for t, s in list(querier.statuses.items())[: step // 40 + 1]:
                if s == 1:
                    querier.statuses[t] = 2
        scrape(scheduler, clock)
        clock.advance(15)
    assert max_in_any_window(querier.call_times, 300.0) <= 300
    if share_final == 0.5:  # 200 processing tasks want 800 requests/min: the budget is used up
        assert len(querier.call_times) >= 0.95 * 4 * 3600


def test_steady_state_asks_about_processing_tasks_only() -> None:
    statuses = {f"t{i:03d}": (2 if i >= 10 else 1) for i in range(200)}
    scheduler, querier, clock = make(statuses)
    scrape(scheduler, clock)
    querier.calls.clear()
    for _ in range(20):
        clock.advance(15)
        scrape(scheduler, clock)
    assert len(querier.calls) == 20 * 10
    assert set(querier.calls) == {f"t{i:03d}" for i in range(10)}


def test_set_tasks_keeps_answers_of_kept_tasks_and_drops_removed() -> None:
    scheduler, _querier, clock = make({"a": 2, "b": 3})
    scrape(scheduler, clock)
    scheduler.set_tasks(["b", "c"])
    states = scheduler.states()
    assert list(states) == ["b", "c"]
    assert states["b"].status == "failed"
    assert states["c"].status == "unknown"


def test_probe_respects_budget_and_says_why() -> None:
    scheduler, querier, _clock = make({"a": 1}, requests=1, period=60.0, burst=1)
    assert scheduler.probe("a", 5.0).outcome is Outcome.ANSWERED
    _clock.advance(1.0)
    refused = scheduler.probe("a", 5.0)
    assert refused.outcome is Outcome.NOT_SENT
    assert refused.reason.startswith("not sent: budget spent (1 of 1 requests")
    assert querier.calls == ["a"]
    assert scheduler.probe("unwatched", 5.0).outcome is Outcome.NOT_SENT


def test_1560_is_processing_and_keeps_task_id() -> None:
    from exporter.answers import TaskAnswer

    scheduler, querier, clock = make({"a": 1})
    scrape(scheduler, clock)
    original = querier.query

    def still_processing(trans_no: str) -> TaskAnswer:
        original(trans_no)
        return TaskAnswer(
            trans_no=trans_no,
            task_id="",
            status=TaskStatus.PROCESSING,
            api_code=Code.STILL_PROCESSING,
        )

    querier.query = still_processing  # type: ignore[method-assign]
    clock.advance(15)
    scrape(scheduler, clock)
    state = scheduler.states()["a"]
    assert state.status == "processing"
    assert state.answer is not None
    assert state.answer.task_id == "id-a"
    assert state.answer.api_code == 1560


def test_rounds_cut_by_deadlines_leak_no_threads() -> None:
    tasks = {f"t{i}": 1 for i in range(30)}
    scheduler, querier, _clock = make(tasks, concurrency=3)
    before = threading.active_count()
    querier.gate = threading.Event()
    for _ in range(20):  # every scrape gives up at its deadline while requests hang
        scheduler.refresh(0.01)
    assert threading.active_count() <= before + 3
    querier.gate.set()
    for _ in range(200):
        if scheduler.refresh(0.05).backlog == 0:
            break
    assert threading.active_count() <= before + 3
    assert sorted(set(querier.calls)) == sorted(tasks)
    scheduler.close()


def test_a_new_refresh_policy_applies_to_answers_already_cached() -> None:
    scheduler, _querier, clock = make({"s": 2, "f": 3})
    scrape(scheduler, clock)
    clock.advance(120)
    assert due(scheduler, clock) == []  # 1 h and 6 h intervals
    new = RefreshConfig(successful=60.0, failed=21600.0)
    scheduler.apply(Settings(new, 4, 10.0), ["s", "f"])
    assert due(scheduler, clock) == ["s"]


def test_resizing_the_pool_during_rounds_never_strands_a_task() -> None:
    tasks = {f"t{i:02d}": 1 for i in range(40)}
    scheduler, _querier, clock = make(tasks, concurrency=2)
    stop = threading.Event()

    def resize_forever() -> None:
        size = 1
        while not stop.is_set():
            size = size % 4 + 1
            scheduler.apply(Settings(REFRESH, size, 10.0), tasks)

    resizer = threading.Thread(target=resize_forever)
    resizer.start()
    try:
        for _ in range(50):
            scheduler.refresh(2.0)
            clock.advance(15)
    finally:
        stop.set()
        resizer.join(10)
    report = scheduler.refresh(5.0)
    assert report.backlog == 0
    assert all(state.query_ok for state in scheduler.states().values())


def test_probes_share_the_pool_and_its_concurrency_limit() -> None:
    tasks = {f"t{i}": 1 for i in range(6)}
    scheduler, querier, _clock = make(tasks, concurrency=2)
    active, peak = 0, 0
    lock = threading.Lock()
    original = querier.query

    def counting(trans_no: str):  # type: ignore[no-untyped-def]
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.1)
        with lock:
            active -= 1
        return original(trans_no)

    querier.query = counting  # type: ignore[method-assign]
    threads = [threading.Thread(target=scheduler.probe, args=(t, 10.0)) for t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(querier.calls) == sorted(tasks)
    assert peak == 2


def test_a_probe_returns_at_its_timeout_and_the_late_answer_is_kept() -> None:
    scheduler, querier, _clock = make({"slow": 2})
    querier.gate = threading.Event()
    started = time.monotonic()
    assert scheduler.probe("slow", 0.2).outcome is Outcome.DEADLINE
    assert time.monotonic() - started < 1.0
    querier.gate.set()
    for _ in range(100):
        if scheduler.states()["slow"].query_ok:
            break
        time.sleep(0.02)
    assert scheduler.states()["slow"].status == "successful"


def test_scrapes_a_moment_apart_share_one_answer() -> None:
    """Two Prometheus servers scraping 0.2 s apart: processing tasks are asked once."""
    scheduler, querier, clock = make({"p1": 1, "p2": 1})
    scrape(scheduler, clock)
    clock.advance(0.2)
    scrape(scheduler, clock)
    assert sorted(querier.calls) == ["p1", "p2"]
    clock.advance(15)
    scrape(scheduler, clock)
    assert len(querier.calls) == 4
