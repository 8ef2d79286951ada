"""The exporter at default settings never gets a throttling answer from the simulator.

Exporter and simulator share one fake clock, so an hour of 15 s scrapes runs in seconds over
real HTTP, with the simulator enforcing the documented 300 requests per 5 minutes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from exporter.config import RateLimit
from exporter.service import Exporter
from exporter.simulator import SimulatorServer, generate_tasks
from tests.fakes import FakeClock
from tests.helpers import make_config


def test_default_budget_is_never_throttled(
    start_simulator: Callable[..., SimulatorServer], make_exporter: Callable[..., Exporter]
) -> None:
    clock = FakeClock(start=10_000.0)
    tasks = generate_tasks(
        300,
        seed=5,
        now=clock(),
        processing_share=0.4,
        failed_share=0.1,
        max_processing_seconds=100_000.0,
    )
    sim = start_simulator(tasks, clock=clock, limit_clock=clock, rate_limit=(300, 300.0))
    config = make_config(sim.url, [t.trans_no for t in tasks], rate_limit=RateLimit())
    exporter = make_exporter(config, clock=clock)
    backlogs = []
    for _ in range(240):  # one hour of scrapes every 15 s
        report = exporter.refresh(10)
        assert report.backlog == exporter.status().backlog
        backlogs.append(report.backlog)
        clock.advance(15.0)
    stats = sim.stats()
    assert stats.throttled == 0
    assert stats.max_in_window <= 300
    # the budget was the bottleneck (120 processing tasks want 8 requests/s) and it was used:
    # 1 request/s, less the window's margin of api.timeout (300 per 302 s)
    assert stats.requests >= 0.95 * 3600
    assert max(backlogs) > 0
    states = exporter.scheduler.states()
    assert all(s.answer is not None for s in states.values()), "every task answered within the hour"


def test_two_replicas_scraping_together_share_rounds(
    start_simulator: Callable[..., SimulatorServer], make_exporter: Callable[..., Exporter]
) -> None:
    tasks = generate_tasks(25, seed=2, now=0.0, processing_share=0.0, failed_share=0.2)
    sim = start_simulator(tasks, latency=0.05)
    exporter = make_exporter(make_config(sim.url, [t.trans_no for t in tasks], max_concurrency=4))
    barrier = threading.Barrier(2)

    def scrape() -> None:
        barrier.wait()
        exporter.refresh(10)

    threads = [threading.Thread(target=scrape) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    per_task = sim.stats().per_trans_no
    assert sorted(per_task) == sorted(t.trans_no for t in tasks)
    assert set(per_task.values()) == {1}
