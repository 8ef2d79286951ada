"""The budget at fleet scale: processing first, the whole budget used, restarts that cost nothing.

Each test is one of the failures issue 10 reported, replayed on an injected clock.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from exporter.budget import FIRST_PAUSE, Budget, Rate
from exporter.config import RefreshConfig
from exporter.errors import ApiThrottled
from exporter.scheduler import Scheduler, Settings
from exporter.store import Store
from exporter.store.memory import MemoryStore
from exporter.store.sqlite import SQLiteStore
from tests.fakes import FakeClock, FakeQuerier
from tests.helpers import max_in_any_window


def scheduler_for(
    querier: FakeQuerier,
    store: Store,
    clock: FakeClock,
    *,
    requests: int = 300,
    period: float = 300.0,
    refresh: RefreshConfig | None = None,
    concurrency: int = 4,
) -> Scheduler:
    budget = Budget(store, Rate(requests, period), timeout=10.0, clock=clock)
    scheduler = Scheduler(
        querier, store, budget, Settings(refresh or RefreshConfig(), concurrency, 10.0), clock=clock
    )
    scheduler.set_tasks(querier.statuses)
    return scheduler


def test_processing_flips_show_although_final_refreshes_exceed_the_budget() -> None:
    """240 successful tasks refreshed every 2 s want 120 requests/s from a budget of 6/s: the
    4 processing tasks that flip to successful still show it within a few scrapes."""
    clock = FakeClock()
    statuses = {f"s{i:03d}": 2 for i in range(240)} | {f"p{i}": 1 for i in range(4)}
    querier = FakeQuerier(statuses, clock=clock)
    refresh = RefreshConfig(successful=2.0, failed=2.0)
    scheduler = scheduler_for(
        querier, MemoryStore(clock), clock, requests=60, period=10.0, refresh=refresh
    )
    for _ in range(120):  # two minutes of scrapes every second: the backlog of finals is deep
        scheduler.refresh(5.0)
        clock.advance(1.0)
    for i in range(4):
        querier.statuses[f"p{i}"] = 2
    flipped_at = clock()
    seen = None
    for _ in range(30):
        scheduler.refresh(5.0)
        if all(scheduler.states()[f"p{i}"].status == "successful" for i in range(4)):
            seen = clock() - flipped_at
            break
        clock.advance(1.0)
    assert seen is not None and seen <= 2.0
    assert max_in_any_window(querier.call_times, 10.0) <= 60
    # ... and the final refreshes were not starved either: in the second minute of the warm-up
    # (every task answered once by then) they got at least their 10 % of the 6 requests/s.
    start = querier.call_times[0]
    later = [
        t
        for t, at in zip(querier.calls, querier.call_times, strict=True)
        if start + 60 <= at < start + 120
    ]
    assert sum(t.startswith("s") for t in later) >= 0.1 * 6 * 60


def test_the_budget_is_used_when_there_is_work() -> None:
    """40 processing tasks, 30 requests per 10 s, a scrape every second: the issue counted 41
    sends in 25 s out of about 75 possible (30 at once, then 3/s); over 100 s the window's 300."""
    clock = FakeClock()
    querier = FakeQuerier({f"p{i:02d}": 1 for i in range(40)}, clock=clock)
    scheduler = scheduler_for(querier, MemoryStore(clock), clock, requests=30, period=10.0)
    for second in range(101):
        scheduler.refresh(5.0)
        if second == 25:
            assert len(querier.calls) >= 75
        clock.advance(1.0)
    assert len(querier.calls) >= 0.95 * 300
    assert max_in_any_window(querier.call_times, 10.0) <= 30


def test_a_restart_costs_no_request_for_fresh_answers(tmp_path: Path) -> None:
    clock = FakeClock()
    statuses = {f"s{i:03d}": 2 for i in range(300)}
    querier = FakeQuerier(statuses, clock=clock)
    store = SQLiteStore(tmp_path, clock=clock)
    first = scheduler_for(querier, store, clock)
    while first.refresh(5.0).backlog:  # 300 first answers, paced over the budget
        clock.advance(5.0)
    before = first.states()
    first.close()
    store.close()
    assert len(querier.calls) == 300
    clock.advance(60.0)
    again = scheduler_for(querier, SQLiteStore(tmp_path, clock=clock), clock)
    report = again.refresh(5.0)
    assert (report.due, len(querier.calls)) == (0, 300)
    assert again.states() == before  # real data age, not "just answered" nor unknown
    assert all(s.queried for s in again.states().values())


def test_one_throttling_episode_is_one_pause_however_many_replies_report_it() -> None:
    clock = FakeClock()
    querier = FakeQuerier({f"p{i}": 1 for i in range(4)}, clock=clock)
    for i in range(4):
        querier.errors[f"p{i}"] = lambda: ApiThrottled("HTTP 429")
    querier.gate = threading.Event()
    scheduler = scheduler_for(querier, MemoryStore(clock), clock, concurrency=4)
    thread = threading.Thread(target=scheduler.refresh, args=(10.0,))
    thread.start()
    deadline = time.monotonic() + 5
    while len(querier.calls) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    querier.gate.set()  # four throttled replies at once
    thread.join(10)
    assert len(querier.calls) == 4
    assert scheduler.budget.paused_for() == FIRST_PAUSE
    assert all(s.failures == 0 for s in scheduler.states().values())


def test_two_schedulers_sharing_a_store_ask_about_each_task_once() -> None:
    """What Redis gives replicas, shown on the in-process store: one window, one claim per
    task, and an answer one of them got is not asked for again by the other."""
    clock = FakeClock()
    statuses = {f"s{i:02d}": 2 for i in range(40)}
    store = MemoryStore(clock)
    one, two = FakeQuerier(statuses, clock=clock), FakeQuerier(statuses, clock=clock)
    a = scheduler_for(one, store, clock, requests=30, period=60.0)
    b = scheduler_for(two, store, clock, requests=30, period=60.0)
    for _ in range(10):
        for scheduler in (a, b):
            scheduler.refresh(5.0)
        clock.advance(10.0)
    calls = one.calls + two.calls
    assert sorted(calls) == sorted(statuses)  # each final task asked once, by one of them
    assert max_in_any_window(one.call_times + two.call_times, 60.0) <= 30


def test_a_stuck_request_keeps_neither_scrapes_nor_other_tasks_waiting() -> None:
    """One request hangs (a peer trickling its answer): the scrape stops waiting for it after
    the straggler time, and the next scrapes refresh the other processing tasks meanwhile."""
    clock = FakeClock()
    release = threading.Event()
    querier = FakeQuerier({"stuck": 1, "a": 1, "b": 1}, clock=clock)
    original = querier.query

    asked: list[str] = []

    def query(trans_no: str):  # type: ignore[no-untyped-def]
        asked.append(trans_no)
        if trans_no == "stuck":
            release.wait(20)
        return original(trans_no)

    querier.query = query  # type: ignore[method-assign]
    scheduler = scheduler_for(querier, MemoryStore(clock), clock)  # timeout 10 s: straggler 2.5 s
    try:
        started = time.monotonic()
        first = scheduler.refresh(9.5)
        assert time.monotonic() - started < 4.0
        assert first.backlog == 1
        for _ in range(3):
            clock.advance(1.0)
            report = scheduler.refresh(9.5)
            assert not report.joined and report.backlog == 0
        assert asked.count("a") == 4 and asked.count("stuck") == 1
    finally:
        release.set()
        scheduler.close()


def _hour(top_up: bool, interval: float) -> tuple[int, list[float]]:
    """An hour of scrapes every `interval` s with far more work than budget (300 per 5 min,
    50 ms answers), with or without top-up rounds each second between scrapes."""
    clock = FakeClock()
    querier = FakeQuerier({f"p{i:03d}": 1 for i in range(400)}, clock=clock, latency=0.05)
    scheduler = scheduler_for(querier, MemoryStore(clock), clock, concurrency=1)
    base = clock()
    try:
        for second in range(3600):
            if second % interval == 0:
                scheduler.refresh(5.0)
            elif top_up:
                scheduler.top_up(within=2 * interval + 5)
                deadline = time.monotonic() + 5
                while scheduler._in_flight and time.monotonic() < deadline:
                    time.sleep(0.001)
            # Each answer moved the clock 50 ms; the scrapes stay on their grid, as Prometheus's do.
            clock.now = base + second + 1
    finally:
        scheduler.close()
    return len(querier.calls), querier.call_times


def test_top_up_rounds_reuse_the_slots_that_free_between_scrapes() -> None:
    """Slots free a period after their answer, just after a scrape: without top-ups each waits
    one scrape interval, and a 60 s interval loses a sixth of the budget."""
    without, _ = _hour(False, 60)
    with_top_up, times = _hour(True, 60)
    assert without <= 0.9 * 3600
    assert with_top_up >= 0.97 * 3600
    assert max_in_any_window(times, 300.0) <= 300


def test_no_top_up_without_scrapes_and_no_extra_processing_refresh() -> None:
    clock = FakeClock()
    querier = FakeQuerier({f"p{i}": 1 for i in range(5)}, clock=clock)
    scheduler = scheduler_for(querier, MemoryStore(clock), clock)
    assert scheduler.top_up(within=60) == 0  # never scraped: nothing is sent
    scheduler.refresh(5.0)
    clock.advance(1.0)
    assert scheduler.top_up(within=60) == 0  # each processing task was asked by the scrape
    clock.advance(100.0)
    assert scheduler.top_up(within=60) == 0  # nobody scrapes any more
    assert len(querier.calls) == 5
    scheduler.close()


class _SlowStore(MemoryStore):
    """A store whose every round trip takes 0.4 s (a Redis answering within its timeout)."""

    def changes(self) -> dict[str, object]:  # type: ignore[override]
        time.sleep(0.4)
        return {}

    def window(self, now: float, period: float) -> tuple[int, int]:
        time.sleep(0.4)
        return super().window(now, period)


def test_a_slow_store_neither_overruns_the_deadline_nor_blocks_the_renderer() -> None:
    clock = FakeClock()
    querier = FakeQuerier({"p": 1}, clock=clock)
    scheduler = scheduler_for(querier, _SlowStore(clock), clock)
    querier.gate = threading.Event()  # the request hangs: the scrape waits for its deadline
    reads: list[float] = []

    def read_states() -> None:
        time.sleep(0.2)
        started = time.monotonic()
        scheduler.states()
        reads.append(time.monotonic() - started)

    reader = threading.Thread(target=read_states)
    reader.start()
    started = time.monotonic()
    scheduler.refresh(1.5)
    took = time.monotonic() - started
    reader.join(5)
    querier.gate.set()
    scheduler.close()
    assert took < 1.5 + 0.3
    assert reads and reads[0] < 0.1


def test_states_from_a_clock_that_was_ahead_do_not_hold_refreshes(tmp_path: Path) -> None:
    ahead = FakeClock(1_000_000.0 + 86_400)
    querier = FakeQuerier({"p": 1}, clock=ahead)
    store = SQLiteStore(tmp_path, clock=ahead)
    first = scheduler_for(querier, store, ahead)
    first.refresh(5.0)
    first.close()
    store.close()
    clock = FakeClock()  # the clock was set right: a day back
    again = scheduler_for(querier, SQLiteStore(tmp_path, clock=clock), clock)
    clock.advance(2.0)
    again.refresh(5.0)
    assert querier.calls == ["p", "p"]
    assert again.states()["p"].checked_at == clock()
