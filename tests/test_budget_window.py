"""The account budget: an exact sliding window of arrivals, pacing, and throttling episodes."""

from __future__ import annotations

import random

import pytest

from exporter.budget import FIRST_PAUSE, Budget, Rate
from exporter.store.memory import MemoryStore
from exporter.store.sqlite import SQLiteStore
from tests.fakes import FakeClock
from tests.helpers import max_in_any_window


def make(
    requests: int = 300,
    period: float = 300.0,
    *,
    timeout: float = 10.0,
    horizon: float = 60.0,
    probe_share: float = 0.05,
) -> tuple[Budget, FakeClock]:
    clock = FakeClock()
    store = MemoryStore(clock)
    return Budget(
        store,
        Rate(requests, period, probe_share),
        timeout=timeout,
        clock=clock,
        pacing_horizon=horizon,
    ), clock


def test_arrivals_never_exceed_the_window_whatever_the_latency() -> None:
    """Each answer arrives at a random moment between its send and its end: any span of
    `period` still holds at most `requests` arrivals."""
    rng = random.Random(11)
    budget, clock = make(50, 60.0, timeout=5.0)
    arrivals: list[float] = []
    in_flight: list[tuple[float, object, float]] = []  # (end, ticket, sent)
    for _ in range(40_000):
        for _ in range(rng.randint(0, 4)):
            ticket = budget.acquire()
            if ticket is not None:
                latency = rng.choice([0.01, 0.05, 0.5, 3.0, 5.0])
                in_flight.append((clock() + latency, ticket, clock()))
        clock.advance(rng.random() * 0.2)
        for item in [i for i in in_flight if i[0] <= clock()]:
            end, ticket, sent = item
            in_flight.remove(item)
            arrivals.append(rng.uniform(sent, end))
            budget.done(ticket)  # type: ignore[arg-type]
    assert len(arrivals) > 3_000  # about 50 per minute for 4,000 s: the budget was used
    assert max_in_any_window(arrivals, 60.0) <= 50


def test_the_whole_budget_is_used_with_fast_answers() -> None:
    """300 per 5 min with 50 ms answers and work always waiting: at least 95 % is sent."""
    budget, clock = make()
    sent = 0
    for _ in range(3600 * 4):  # an hour, four attempts a second
        ticket = budget.acquire()
        if ticket is not None:
            sent += 1
            clock.advance(0.05)
            budget.done(ticket)
            clock.advance(0.2)
        else:
            clock.advance(0.25)
    assert sent >= 0.95 * 3600
    assert sent <= 3600 + 300


def test_a_send_in_flight_counts_until_its_deadline_then_period() -> None:
    budget, clock = make(2, 10.0, timeout=3.0, horizon=10.0)
    first = budget.acquire()
    second = budget.acquire()
    assert first is not None and second is not None
    assert budget.acquire() is None
    budget.done(first)  # answered at once: counts until 10 s from now
    clock.advance(10.01)
    third = budget.acquire()
    assert third is not None  # the first's slot is free again
    # The second never answered (a crash, say): it counts until its deadline + period.
    clock.advance(2.0)
    assert budget.remaining() == 0
    clock.advance(2.1)  # 14.1 s > 3 s + 1 s slack + 10 s
    assert budget.remaining() == 1


def test_token_bucket_double_burst_is_impossible_at_window_boundary() -> None:
    budget, clock = make(10, 60.0, horizon=60.0)
    first = [budget.acquire() for _ in range(20)]
    for ticket in first:
        if ticket is not None:
            budget.done(ticket)
    clock.advance(59.0)  # a token bucket would have refilled 10 by now
    second = [budget.acquire() for _ in range(20)]
    assert sum(t is not None for t in first) == 10
    assert sum(t is not None for t in second) == 0
    clock.advance(1.01)
    assert budget.remaining() == 10


def test_a_full_window_banks_no_tokens_so_bursts_do_not_repeat() -> None:
    """Sends of one scrape every 15 s, always work waiting: after the first period the sends
    are even (no period starts with a burst followed by a hole) and the budget is used."""
    budget, clock = make()
    per_scrape: list[int] = []
    for _ in range(80):  # four periods
        sent = 0
        while (ticket := budget.acquire()) is not None:
            budget.done(ticket)
            sent += 1
        per_scrape.append(sent)
        clock.advance(15.0)
    later = per_scrape[20:]  # from the second period on
    assert max(later) <= 16 and min(later) >= 14, per_scrape
    assert sum(later) >= 0.95 * 900


def test_pacing_spreads_the_budget_without_losing_it() -> None:
    budget, clock = make()  # 1 request/s, 60 s of sends in the bucket
    assert sum(budget.acquire() is not None for _ in range(100)) == 60
    assert budget.refusal().startswith("not sent: pacing")
    clock.advance(10.0)
    assert sum(budget.acquire() is not None for _ in range(100)) == 10
    assert budget.remaining() == 230


def test_throttling_is_one_step_per_episode() -> None:
    """Four requests in flight all answered 'throttled': one pause, not 10, 20, 40, 80 s."""
    budget, clock = make()
    tickets = [budget.acquire() for _ in range(4)]
    pauses = [budget.done(t, throttled=True) for t in tickets if t is not None]
    assert pauses == [FIRST_PAUSE, 0.0, 0.0, 0.0]
    assert budget.acquire() is None
    assert budget.available() == 0
    assert budget.refusal().startswith("not sent: the API throttled")
    clock.advance(FIRST_PAUSE + 0.01)
    # A new episode: a request sent after the pause is throttled again -> the pause doubles.
    ticket = budget.acquire()
    assert ticket is not None
    assert budget.done(ticket, throttled=True) == 2 * FIRST_PAUSE
    clock.advance(2 * FIRST_PAUSE + 0.01)
    ticket = budget.acquire()
    assert ticket is not None
    budget.done(ticket)  # a success after the pause: the backoff starts over
    ticket = budget.acquire()
    assert ticket is not None
    assert budget.done(ticket, throttled=True) == FIRST_PAUSE


def test_retry_after_is_honoured_but_capped_at_one_period() -> None:
    budget, _clock = make(10, 60.0)
    ticket = budget.acquire()
    assert ticket is not None
    assert budget.done(ticket, throttled=True, retry_after=1e9) == 60.0
    assert budget.paused_for() == pytest.approx(60.0)


def test_reconfigure_keeps_recent_sends() -> None:
    budget, clock = make(100, 300.0, horizon=300.0)
    for _ in range(80):
        ticket = budget.acquire()
        assert ticket is not None
        budget.done(ticket)
    budget.reconfigure(Rate(90, 300.0), timeout=10.0)
    assert budget.remaining() == 10
    clock.advance(100.0)  # pacing has refilled, the window still holds the 80 sends
    assert sum(budget.acquire() is not None for _ in range(50)) == 10
    clock.advance(200.1)
    assert budget.remaining() == 80


def test_probes_of_unwatched_tasks_take_only_their_share() -> None:
    budget, _clock = make(100, 60.0, probe_share=0.05)
    probes = sum(budget.acquire(probe=True) is not None for _ in range(50))
    assert probes == 5
    assert budget.refusal(probe=True).startswith("not sent: the probe share is spent")
    assert budget.acquire() is not None  # watched tasks still have the rest


@pytest.mark.parametrize("kill", ["clean", "crash"])
def test_sends_before_a_restart_still_count(tmp_path, kill: str) -> None:  # type: ignore[no-untyped-def]
    """A crash loop of restarts within one period never sends more than the budget."""
    clock = FakeClock()
    sent = 0
    for _ in range(5):  # five restarts within one period
        store = SQLiteStore(tmp_path, clock=clock)
        budget = Budget(store, Rate(30, 300.0), timeout=5.0, clock=clock)
        while (ticket := budget.acquire()) is not None:
            sent += 1
            if kill == "clean":
                budget.done(ticket)
        if kill == "clean":
            store.close()
        else:  # kill -9: nothing is closed; only the lock is released by the process's death
            assert store._lock_file is not None
            store._lock_file.close()
        clock.advance(30.0)
    assert sent == 30


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_reload_to_a_longer_period_still_counts_every_send(tmp_path, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Four minutes at 60 per minute, then a reload to 300 per 5 minutes: the sends of those
    four minutes count in the new window (a store that forgot them would allow 300 more)."""
    clock = FakeClock()
    store = MemoryStore(clock) if backend == "memory" else SQLiteStore(tmp_path, clock=clock)
    budget = Budget(store, Rate(60, 60.0), timeout=5.0, clock=clock)
    times: list[float] = []
    for _ in range(240):
        while (ticket := budget.acquire()) is not None:
            budget.done(ticket)
            times.append(clock())
        clock.advance(1.0)
    assert len(times) >= 230
    budget.reconfigure(Rate(300, 300.0), timeout=5.0)
    assert budget.remaining() == 300 - len(times)
    for _ in range(600):
        while (ticket := budget.acquire()) is not None:
            budget.done(ticket)
            times.append(clock())
        clock.advance(1.0)
    assert max_in_any_window(times, 300.0) <= 300


def test_a_damaged_pause_in_the_state_file_is_no_pause(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    SQLiteStore(tmp_path).close()
    for damaged in ('{"until": 5}', "null", "[1, 2]", "not json"):
        with sqlite3.connect(tmp_path / "state.db") as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('pause', ?)", (damaged,))
        store = SQLiteStore(tmp_path)
        assert store.pause().until < 0
        store.close()
