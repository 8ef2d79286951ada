"""Replicas sharing one Redis against one simulator that enforces the account's budget.

Exporters, stores and the simulator share one fake clock, so many minutes of scrapes run in a
few seconds over real HTTP and a real redis-server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from exporter.config import RateLimit, RefreshConfig
from exporter.service import Exporter
from exporter.simulator import SimTask, SimulatorServer, generate_tasks
from exporter.store.redis import RedisStore
from tests.fakes import FakeClock
from tests.helpers import make_config, parse_exposition, value
from tests.processes import wait_until
from tests.redis_server import RedisServer, redis_server, start_redis  # noqa: F401

LIMIT = (40, 60.0)  # requests per period, enforced by the simulator
INTERVAL = 15.0  # seconds between scrapes
HEARTBEAT = 60.0  # clock seconds: alive = seen within three scrape-spaced rounds and more


@dataclass
class Run:
    """A simulator and the replicas watching its tasks."""

    sim: SimulatorServer
    replicas: list[Exporter]
    tasks: list[SimTask]
    clock: FakeClock

    def scrape_all(self, rounds: int) -> None:
        """Every replica scrapes once per round (as two Prometheus servers would)."""
        for _ in range(rounds):
            for exporter in self.replicas:
                exporter.refresh(10.0)
            self.clock.advance(INTERVAL)

    def series(self, exporter: Exporter) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return parse_exposition(exporter.exposition().decode())


@pytest.fixture
def start_run(
    start_simulator: Callable[..., SimulatorServer],
    make_exporter: Callable[..., Exporter],
    redis_server: RedisServer,  # noqa: F811
) -> Iterator[Callable[..., Run]]:
    """Replicas (Exporter objects, each with its RedisStore) sharing one Redis and one simulator."""

    def start(n: int, tasks: list[SimTask], clock: FakeClock, *, redis: bool = True) -> Run:
        sim = start_simulator(tasks, clock=clock, limit_clock=clock, rate_limit=LIMIT)
        config = make_config(
            sim.url,
            [t.trans_no for t in tasks],
            rate_limit=RateLimit(*LIMIT),
            timeout=1.0,
        )
        config = type(config)(
            api=config.api, refresh=RefreshConfig(successful=3600.0), tasks=config.tasks
        )
        replicas = []
        for i in range(n):
            store = (
                RedisStore(
                    redis_server.config(),
                    clock=clock,
                    replica_id=f"r{i}",
                    heartbeat=HEARTBEAT,
                    retry=0.1,
                    skew=0.0,  # one clock for all: no skew to allow for
                )
                if redis
                else None
            )
            replicas.append(make_exporter(config, store=store, clock=clock))
        return Run(sim, replicas, tasks, clock)

    yield start


def mixed_tasks(clock: FakeClock, n: int = 60) -> list[SimTask]:
    """A third processing for the whole run (they want every scrape), the rest final."""
    return generate_tasks(
        n,
        seed=11,
        now=clock(),
        processing_share=0.33,
        failed_share=0.1,
        max_processing_seconds=100_000.0,
    )


def final_ones(tasks: list[SimTask], clock: FakeClock) -> list[str]:
    return [t.trans_no for t in tasks if t.created_at + t.processing_seconds < clock()]


@pytest.mark.parametrize("n", [2, 3])
def test_replicas_share_one_budget_one_cache_and_one_claim(
    start_run: Callable[..., Run], n: int
) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    tasks = mixed_tasks(clock)
    finals = final_ones(tasks, clock)
    run = start_run(n, tasks, clock)
    run.scrape_all(40)  # 10 minutes: 10 periods of the budget
    stats = run.sim.stats()
    assert stats.throttled == 0
    assert stats.max_in_window <= LIMIT[0]
    assert all(stats.per_trans_no[t] == 1 for t in finals), "each final task asked once"
    # The budget binds (20 processing tasks want 80 requests a minute) and is used as by one
    # exporter: 40 per minute, less the margin each send keeps (its deadline, the clock skew).
    assert stats.requests >= 0.9 * LIMIT[0] * 10
    for exporter in run.replicas:
        states = exporter.scheduler.states()
        assert all(s.answer is not None for s in states.values()), "each replica shows every task"
        series = run.series(exporter)
        assert value(series, "cloudvod_concat_replicas") == n
        assert value(series, "cloudvod_concat_storage_up", backend="redis") == 1


def test_replicas_ask_as_often_as_one_exporter(start_run: Callable[..., Run]) -> None:
    """The same work done by one exporter and by two replicas costs the same API calls."""
    calls = []
    for n, redis in ((1, False), (2, True)):
        clock = FakeClock(start=1_700_000_000.0)
        run = start_run(n, mixed_tasks(clock), clock, redis=redis)
        run.scrape_all(40)
        calls.append(run.sim.stats().requests)
        for exporter in run.replicas:
            exporter.close()
    one, two = calls
    assert 0.95 * one <= two <= 1.05 * one, calls


def test_redis_killed_mid_run_and_restarted(
    start_run: Callable[..., Run],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    tasks = mixed_tasks(clock)
    run = start_run(2, tasks, clock)
    run.scrape_all(8)
    before = run.sim.stats().requests
    redis_server.kill()
    run.scrape_all(4)  # the first minute without Redis: each within its share of what is left
    first = run.sim.stats().requests
    assert first - before <= LIMIT[0] // 2, "the window was full when Redis went"
    run.scrape_all(8)  # two more minutes
    # A period after its last contact a replica stops: the replicas still connected (had any
    # been) keep its share free only for as long as what it sent until then may count.
    assert run.sim.stats().requests == first
    for exporter in run.replicas:
        series = run.series(exporter)
        assert value(series, "cloudvod_concat_storage_up", backend="redis") == 0
        assert value(series, "cloudvod_concat_replicas") == 2, "the last count seen"
        for task in tasks:
            shown = [
                value(series, "cloudvod_concat_task_status", trans_no=task.trans_no, status=s)
                for s in ("processing", "successful", "failed")
            ]
            assert 1.0 in shown, f"{task.trans_no} keeps its last answer"
    assert run.sim.stats().throttled == 0, "each replica kept to its share"
    redis_server.start()  # empty: it lost everything
    wait_until(
        lambda: all(e.store.up() for e in run.replicas), timeout=10, what="replicas reconnected"
    )
    run.scrape_all(12)
    stats = run.sim.stats()
    assert stats.throttled == 0
    assert stats.max_in_window <= LIMIT[0]
    for exporter in run.replicas:
        assert value(run.series(exporter), "cloudvod_concat_storage_up", backend="redis") == 1
    rebuilt = RedisStore(redis_server.config(), background=False)
    try:
        assert set(rebuilt.load()) == {t.trans_no for t in tasks}, "states written back"
    finally:
        rebuilt.close()


def test_a_replica_sees_answers_another_got(start_run: Callable[..., Run]) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    tasks = generate_tasks(30, seed=3, now=clock(), processing_share=0.0, failed_share=0.2)
    run = start_run(2, tasks, clock)
    first, second = run.replicas
    for _ in range(4):  # the first replica answers everything, as pacing allows
        first.refresh(10.0)
        clock.advance(INTERVAL)
    assert all(s.answer is not None for s in first.scheduler.states().values())
    assert run.sim.stats().requests == 30
    second.refresh(10.0)  # everything is fresh: the second adopts the first's answers
    assert run.sim.stats().requests == 30
    assert second.scheduler.states() == first.scheduler.states()
