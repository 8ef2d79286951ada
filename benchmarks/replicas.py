"""Replicas sharing one Redis vs one exporter: throttling, API calls and Redis round trips.

    python -m benchmarks.replicas            # 2 and 4 replicas, a simulated hour (about 1 min)
    python -m benchmarks.replicas --quick    # a simulated quarter hour, fewer tasks

Each run starts a real redis-server (Debian's package) on a free loopback port and one simulator
enforcing 300 requests per 5 minutes. Replicas are `Exporter` objects with their own
`RedisStore`; exporters, simulator and stores share one simulated clock, so an hour runs in
seconds over real HTTP and real Redis. Every replica is scraped every 15 s (as by its own
Prometheus), the replicas' scrapes spread evenly over the interval. The baseline is one exporter
(in-memory store) scraped at every one of those moments: the same work, done alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from exporter.config import ApiConfig, Config, RateLimit, Task
from exporter.service import Exporter
from exporter.simulator import SimulatorServer, generate_tasks
from exporter.store.redis import RedisStore
from tests.fakes import FakeClock
from tests.redis_server import RedisServer

KEY, SECRET = "demo-access-key", "demo-secret"  # the simulator's default (public demo) credential
BUDGET = RateLimit(300, 300.0)
SCRAPE_INTERVAL = 15.0
SCRAPE_TIMEOUT = 10.0


def make_config(endpoint: str, trans_nos: Sequence[str]) -> Config:
    """The exporter's configuration for these tasks (everything else at its default)."""
    api = ApiConfig(
        access_key_id=KEY, access_key_secret=SECRET, endpoint=endpoint, rate_limit=BUDGET
    )
    return Config(api=api, tasks=tuple(Task(t) for t in trans_nos))


def machine() -> str:
    """CPUs, Python and redis-py versions."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpus} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, redis-py {version('redis')}"
    )


@dataclass(frozen=True)
class Result:
    """What one run did."""

    replicas: int
    requests: int
    throttled: int
    max_in_window: int
    scrapes: int
    round_trips: int
    commands: int  # Redis's own count of the commands it processed (INFO stats)
    answered_everywhere: bool


def run(n: int, tasks: int, seconds: float, redis: RedisServer | None, *, seed: int = 7) -> Result:
    """`n` replicas (n = 1 without Redis: the baseline) over `seconds` of simulated time."""
    clock = FakeClock(start=1_700_000_000.0)
    sim_tasks = generate_tasks(
        tasks,
        seed=seed,
        now=clock(),
        processing_share=0.3,
        failed_share=0.1,
        max_processing_seconds=seconds,
    )
    limit = (BUDGET.requests, BUDGET.period)
    sim = SimulatorServer(
        sim_tasks, credentials={KEY: SECRET}, rate_limit=limit, clock=clock, limit_clock=clock
    ).start()
    config = make_config(sim.url, [t.trans_no for t in sim_tasks])
    stores: list[RedisStore] = []
    exporters = []
    for i in range(n if redis is not None else 1):
        store = None
        if redis is not None:
            # Simulated time: the heartbeat runs at scrape time (no background thread), so it
            # beats once per scrape interval of simulated seconds.
            store = RedisStore(
                redis.config(key_prefix=f"bench{n}:"),
                clock=clock,
                replica_id=f"replica-{i}",
                heartbeat=SCRAPE_INTERVAL,
                background=False,
            )
            stores.append(store)
        exporters.append(Exporter(config, store=store, clock=clock))
    commands_before = _commands(redis)
    scrapes = 0
    step = SCRAPE_INTERVAL / n
    try:
        for _ in range(int(seconds / SCRAPE_INTERVAL)):
            for i in range(n):
                exporters[i % len(exporters)].refresh(SCRAPE_TIMEOUT)
                scrapes += 1
                clock.advance(step)
        stats = sim.stats()
        answered = all(
            all(s.answer is not None for s in e.scheduler.states().values()) for e in exporters
        )
        round_trips = sum(s.round_trips for s in stores)
        commands = _commands(redis) - commands_before
    finally:
        for exporter in exporters:
            exporter.close()
        sim.stop()
    return Result(
        n if redis is not None else 1,
        stats.requests,
        stats.throttled,
        stats.max_in_window,
        scrapes,
        round_trips,
        commands,
        answered,
    )


def _commands(redis: RedisServer | None) -> int:
    if redis is None:
        return 0
    info = redis.command("INFO", "stats")
    text = info.decode() if isinstance(info, bytes) else str(info)
    if isinstance(info, dict):
        return int(info["total_commands_processed"])
    for line in text.splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":")[1])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replicas", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a quarter hour, 100 tasks")
    args = parser.parse_args(argv)
    tasks, seconds = (100, 900.0) if args.quick else (400, 3600.0)
    print(f"cloudvod-concat-exporter replica benchmark: {machine()}", flush=True)
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as folder:
        redis = RedisServer(binary, Path(folder)).start()
        try:
            version = redis.command("INFO", "server")
            print(f"redis: {_field(version, 'redis_version')}", flush=True)
            ok = True
            for n in (2, 4):
                alone = run(n, tasks, seconds, None)
                shared = run(n, tasks, seconds, redis)
                ratio = shared.requests / max(1, alone.requests)
                ok = ok and shared.throttled == 0 and ratio <= 1.05 and shared.answered_everywhere
                print(line(n, tasks, seconds, alone, shared), flush=True)
        finally:
            redis.stop()
    return 0 if ok else 1


def line(n: int, tasks: int, seconds: float, alone: Result, shared: Result) -> str:
    """The figure of one replica count, as benchmarks/README.md records it."""
    ratio = shared.requests / max(1, alone.requests)
    per_call = shared.round_trips / max(1, shared.requests)
    return (
        f"r{n} {n} replicas, {tasks} tasks (30% processing, finishing within the run), "
        f"{seconds:g} simulated s, each scraped every {SCRAPE_INTERVAL:g} s, simulator enforcing "
        f"{BUDGET.requests} per {BUDGET.period:g} s: throttled {shared.throttled} (target 0); "
        f"API calls {shared.requests} vs {alone.requests} for one exporter scraped at the same "
        f"{alone.scrapes} moments: {ratio:.3f}x (target <= 1.05); most in any "
        f"{BUDGET.period:g} s {shared.max_in_window}; every replica shows every task: "
        f"{shared.answered_everywhere}; Redis round trips per scrape "
        f"{shared.round_trips / shared.scrapes:.1f} ({shared.round_trips} over {shared.scrapes} "
        f"scrapes, {per_call:.1f} per API call); commands Redis processed "
        f"{shared.commands / shared.scrapes:.1f} per scrape (those inside scripts included)"
    )


def _field(info: object, name: str) -> str:
    if isinstance(info, dict):
        return str(info.get(name, "?"))
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    sys.exit(main())
