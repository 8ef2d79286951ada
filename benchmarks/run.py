"""Run the exporter against the simulator (real HTTP on 127.0.0.1) and print figures a-e.

    python -m benchmarks.run            # the full run (about 2 minutes on 2 cores)
    python -m benchmarks.run --quick    # a few tasks per figure, for the smoke test

Every figure is one line starting with its id (a1, a2, ... e3); the headline of each is a ratio
to the bound it is measured against, with the absolute times beside it. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gzip
import json
import math
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import prometheus_client
import requests
from prometheus_client import CollectorRegistry, generate_latest

from exporter.answers import TaskAnswer, parse_answer
from exporter.cli import TOP_UP_INTERVAL
from exporter.client import CloudVodClient, Exchange
from exporter.collector import exposition
from exporter.config import ApiConfig, Config, RateLimit, RefreshConfig, Task
from exporter.policy import Plan, Policy
from exporter.protocol import Code
from exporter.service import Exporter
from exporter.simulator import SimTask, SimulatorServer, generate_tasks
from exporter.simulator.tasks import VENDOR_TZ
from exporter.state import Claim, TaskState, due_at, interval
from exporter.store.memory import MemoryStore
from exporter.store.sqlite import SQLiteStore
from tests.fakes import FakeClock  # simulated time shared by exporter and simulator

ROOT = Path(__file__).resolve().parent.parent
KEY, SECRET = "demo-access-key", "demo-secret"  # the simulator's default (public demo) credential
UNBOUNDED = RateLimit(1_000_000, 300.0)  # a budget that never binds
DEFAULT_BUDGET = RateLimit()  # the documented 300 requests per 5 minutes
SCRAPE_INTERVAL = 15.0  # Prometheus's default
DEFAULT_SCRAPE_TIMEOUT = 10.0  # Prometheus's default
FINAL = re.compile(  # a task shown in a final status
    r'^cloudvod_concat_task_status\{status="(?:successful|failed)",trans_no="([^"]+)"\} 1\.0$', re.M
)
FLIP_RATE = RateLimit(600, 300.0)  # 2 requests/s
PROMETHEUS_ACCEPT = (  # what Prometheus sends by default
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@dataclass(frozen=True)
class Sizes:
    """How big each figure's scenario is (the full run, or --quick for the smoke test)."""

    latency: float = 0.050
    concurrency: int = 16
    cold: tuple[int, ...] = (400, 2000)
    cold_repeats: int = 3
    steady_tasks: int = 1000
    steady_processing: int = 50
    steady_scrapes: int = 10
    flip_processing: int = 60
    flip_final: int = 140
    flip_rate: RateLimit = FLIP_RATE
    flip_interval: float = 5.0
    flip_warmup: float = 620.0
    flip_phases: int = 4
    cached_tasks: int = 10_000
    cached_scrapes: int = 5
    naive_tasks: int = 400
    naive_limit: int = 300
    hour: float = 3600.0
    fleet_final: int = 10_000
    fleet_processing: int = 20
    fleet_warmup: float = 600.0  # two periods
    fleet_offsets: tuple[float, ...] = tuple(15.0 * k for k in range(20))  # every scrape
    fleet_top_up_offsets: tuple[float, ...] = (0.0, 75.0, 150.0, 225.0)
    util_tasks: int = 1000
    util_span: float = 3600.0
    util_latency: float = 0.050
    util_other_intervals: tuple[float, ...] = (30.0, 60.0)
    restart_tasks: int = 10_000
    loop_lives: int = 6  # the first start and 5 restarts
    loop_life: float = 1.5
    loop_tasks: int = 1000
    loop_rate: RateLimit = DEFAULT_BUDGET


QUICK = Sizes(
    latency=0.020,
    cold=(32, 64),
    cold_repeats=1,
    steady_tasks=100,
    steady_processing=5,
    steady_scrapes=3,
    flip_processing=10,
    flip_final=10,
    flip_warmup=120.0,
    flip_phases=2,
    cached_tasks=300,
    cached_scrapes=2,
    naive_tasks=32,
    naive_limit=24,
    hour=600.0,
    fleet_final=600,
    fleet_warmup=300.0,
    fleet_offsets=(0.0, 225.0),  # the best and the worst case before the pacing fix
    fleet_top_up_offsets=(225.0,),
    util_tasks=100,
    util_span=600.0,
    util_other_intervals=(),
    restart_tasks=300,
    loop_lives=3,
    loop_life=0.4,
    loop_tasks=50,
    # A window of 10 s that one life's burst fills: the restarts within it must send nothing.
    loop_rate=RateLimit(10, 10.0),
)


# -- helpers -------------------------------------------------------------------------------------


class RemoteSimulator:
    """`python -m exporter simulate` in a child process, so it shares neither GIL nor memory."""

    def __init__(self, url: str) -> None:
        self.url = url

    def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(self.url + "/_sim/stats", timeout=10).json()
        return answer

    def add_tasks(self, count: int, **params: Any) -> None:
        body = {"count": count, **params}
        requests.post(self.url + "/_sim/tasks", json=body, timeout=60).raise_for_status()


@contextlib.contextmanager
def simulator_process(tasks: int, latency: float) -> Iterator[RemoteSimulator]:
    """Start the simulator CLI on a free loopback port, without a rate limit."""
    cmd = [
        sys.executable,
        "-m",
        "exporter",
        "simulate",
        "--log.level=error",
        "--listen=127.0.0.1:0",
        f"--tasks={tasks}",
        f"--latency={latency * 1000:g}ms",
        "--rate-limit=none",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        found = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        if found is None:
            raise RuntimeError("the simulator did not start")
        yield RemoteSimulator(found.group(0))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_config(
    endpoint: str,
    trans_nos: Sequence[str],
    *,
    concurrency: int = 4,
    rate_limit: RateLimit = DEFAULT_BUDGET,
) -> Config:
    """The exporter's configuration for these tasks (everything else at its default)."""
    api = ApiConfig(
        access_key_id=KEY,
        access_key_secret=SECRET,
        endpoint=endpoint,
        max_concurrency=concurrency,
        rate_limit=rate_limit,
    )
    return Config(api=api, tasks=tuple(Task(t) for t in trans_nos))


def sim_names(n: int, prefix: str = "sim") -> list[str]:
    """The transNos `generate_tasks(n, prefix=...)` gives."""
    return [f"{prefix}{i:06d}" for i in range(n)]


def cached_render(exporter: Exporter) -> Callable[[], bytes]:
    """The cached renderer over the exporter's registry (text format), as /metrics uses it."""
    return exporter.exposition


def tasks_identical(exporter: Exporter) -> bool:
    """Whether the cached per-task text is byte-identical to `generate_latest` over `collect()`.

    Only the task families: the process and exporter gauges move between two renderings.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter.task_collector)
    return exposition(exporter.task_collector) == generate_latest(registry)


def rss_mb() -> float:
    """Resident memory of this process now (VmRSS)."""
    return _proc_status("VmRSS")


def peak_rss_mb() -> float:
    """Highest resident memory since the last reset_peak() (VmHWM)."""
    return _proc_status("VmHWM")


def reset_peak() -> None:
    """Start VmHWM over from the current RSS (Linux: `5` to /proc/self/clear_refs)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _proc_status(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def verdict(ok: bool) -> str:
    return "target met" if ok else "TARGET MISSED"


def say(line: str) -> None:
    print(line, flush=True)


# -- a. cold scrape ------------------------------------------------------------------------------


@dataclass
class Cold:
    """One cold scrape: a new exporter, every task asked once, the exposition rendered."""

    refresh: float
    render: float
    cached_render: float
    mean_request: float

    @property
    def total(self) -> float:
        return self.refresh + self.render


def cold_scrape(endpoint: str, n: int, sizes: Sizes) -> Cold:
    config = make_config(
        endpoint, sim_names(n), concurrency=sizes.concurrency, rate_limit=UNBOUNDED
    )
    exporter = Exporter(config)
    try:
        started = time.perf_counter()
        report = exporter.refresh(120)
        refreshed = time.perf_counter()
        generate_latest(exporter.registry)
        rendered = time.perf_counter()
        if report.backlog or report.sent != n:
            raise RuntimeError(f"cold scrape of {n} tasks did not finish: {report}")
        render = cached_render(exporter)
        before = time.perf_counter()
        render()
        cached = time.perf_counter() - before
        stats = exporter.api_stats
        return Cold(
            refreshed - started, rendered - refreshed, cached, stats._sum / max(1, stats.requests)
        )
    finally:
        exporter.close()


def figure_a(sizes: Sizes, sim: RemoteSimulator) -> dict[int, Cold]:
    out: dict[int, Cold] = {}
    c, lat = sizes.concurrency, sizes.latency
    for i, n in enumerate(sizes.cold, start=1):
        runs = sorted(
            (cold_scrape(sim.url, n, sizes) for _ in range(sizes.cold_repeats)),
            key=lambda r: r.total,
        )
        run = runs[len(runs) // 2]  # the median
        out[n] = run
        bound = math.ceil(n / c) * lat
        ratio = run.total / bound
        say(
            f"a{i} cold scrape, {n} tasks, {lat * 1000:g} ms latency, max_concurrency {c}: "
            f"ratio {ratio:.2f} to ceil(N/C) x latency = {bound:.2f} s (target <= 1.2, "
            f"{verdict(ratio <= 1.2)}); scrape {run.total:.2f} s = refresh {run.refresh:.2f} s"
            f" + render {run.render:.3f} s (cached renderer {run.cached_render:.3f} s); "
            f"mean request {run.mean_request * 1000:.1f} ms; median of {len(runs)}"
        )
    # The same scrape with the simulator in this process: its 16 handler threads share our GIL.
    n = sizes.cold[0]
    tasks = generate_tasks(n, now=time.time())
    with SimulatorServer(tasks, credentials={KEY: SECRET}, latency=lat, rate_limit=None) as local:
        run = cold_scrape(local.url, n, sizes)
    bound = math.ceil(n / c) * lat
    say(
        f"a{len(sizes.cold) + 1} same as a1 with the simulator inside the exporter's process "
        f"(sharing its GIL): ratio {run.total / bound:.2f} (scrape {run.total:.2f} s, "
        f"mean request {run.mean_request * 1000:.1f} ms)"
    )
    return out


# -- b. steady state -----------------------------------------------------------------------------


def steady_tasks(sizes: Sizes, now: float) -> list[SimTask]:
    """`steady_tasks` tasks, exactly `steady_processing` of them processing for good."""
    tasks = generate_tasks(
        sizes.steady_tasks, now=now, processing_share=0.0, failed_share=0.1, seed=2
    )
    step = sizes.steady_tasks // sizes.steady_processing
    for i in range(0, step * sizes.steady_processing, step):
        tasks[i] = dataclasses.replace(tasks[i], outcome="processing")
    return tasks


def figure_b(sizes: Sizes) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    tasks = steady_tasks(sizes, clock())
    names = [t.trans_no for t in tasks]
    p = sizes.steady_processing
    with SimulatorServer(
        tasks, credentials={KEY: SECRET}, rate_limit=None, clock=clock, limit_clock=clock
    ) as sim:
        config = make_config(sim.url, names, concurrency=sizes.concurrency, rate_limit=UNBOUNDED)
        exporter = Exporter(config, clock=clock)
        try:
            exporter.refresh(120)  # the cold scrape asks about every task
            first = sim.stats().requests
            for _ in range(sizes.steady_scrapes):
                clock.advance(SCRAPE_INTERVAL)
                exporter.refresh(10)
                generate_latest(exporter.registry)
            per_scrape = (sim.stats().requests - first) / sizes.steady_scrapes
        finally:
            exporter.close()
    ok = abs(per_scrape - p) <= max(1.0, 0.05 * p)
    say(
        f"b1 steady state, {len(tasks)} tasks of which {p} processing and the rest final, "
        f"budget not binding: {per_scrape:.1f} API calls per scrape over {sizes.steady_scrapes} "
        f"scrapes {SCRAPE_INTERVAL:g} s apart after the first (which asked all {first}); "
        f"ratio {per_scrape / p:.2f} to the {p} processing tasks (target about 1, {verdict(ok)})"
    )

    # The same at the default budget, against a simulator enforcing the documented limit.
    clock = FakeClock(start=1_700_000_000.0)
    tasks = steady_tasks(sizes, clock())
    limit = (DEFAULT_BUDGET.requests, DEFAULT_BUDGET.period)
    with SimulatorServer(
        tasks, credentials={KEY: SECRET}, rate_limit=limit, clock=clock, limit_clock=clock
    ) as sim:
        exporter = Exporter(make_config(sim.url, names), clock=clock)
        try:
            scrapes = 0
            while True:  # until every task has been answered once
                exporter.refresh(10)
                scrapes += 1
                states = exporter.scheduler.states().values()
                if all(s.answer is not None for s in states) or scrapes > 10_000:
                    break
                clock.advance(SCRAPE_INTERVAL)
            first = sim.stats().requests
            for _ in range(sizes.steady_scrapes):
                clock.advance(SCRAPE_INTERVAL)
                exporter.refresh(10)
            stats = sim.stats()
            per_scrape = (stats.requests - first) / sizes.steady_scrapes
            backlog = exporter.scheduler.last_backlog
        finally:
            exporter.close()
    allowed = DEFAULT_BUDGET.requests / DEFAULT_BUDGET.period * SCRAPE_INTERVAL
    say(
        f"b2 same at the default budget (300 per 5 min, so {allowed:g} per {SCRAPE_INTERVAL:g} s"
        f" scrape): {per_scrape:.1f} API calls per scrape, backlog {backlog}; the first "
        f"{len(tasks)} answers took {scrapes} scrapes ({scrapes * SCRAPE_INTERVAL / 60:.1f} min); "
        f"throttled answers {stats.throttled}, most requests in any 5 min {stats.max_in_window}"
    )


# -- c. time until flips are visible -------------------------------------------------------------


def flip_run(sizes: Sizes, offset: float) -> tuple[dict[str, float], int]:
    """P processing tasks flip at once after the warm-up plus `offset`; when is each seen final?"""
    clock = FakeClock(start=1_700_000_000.0)
    t0 = clock()
    # Between two scrapes, `offset` seconds into the budget's cycle.
    flip_at = t0 + sizes.flip_warmup + offset + sizes.flip_interval / 2
    p, rate = sizes.flip_processing, sizes.flip_rate
    tasks = [
        dataclasses.replace(
            t,
            created_at=t0 - 60.0,
            processing_seconds=flip_at - (t0 - 60.0),
            outcome="failed" if i % 5 == 0 else "successful",
        )
        for i, t in enumerate(generate_tasks(p, now=t0, prefix="flip", seed=3))
    ]
    tasks += generate_tasks(sizes.flip_final, now=t0, prefix="done", processing_share=0.0, seed=4)
    flipping = {t.trans_no for t in tasks[:p]}
    limit = (rate.requests, rate.period)
    with SimulatorServer(
        tasks, credentials={KEY: SECRET}, rate_limit=limit, clock=clock, limit_clock=clock
    ) as sim:
        config = make_config(sim.url, [t.trans_no for t in tasks], rate_limit=rate)
        exporter = Exporter(config, clock=clock)
        seen: dict[str, float] = {}
        try:
            deadline = flip_at + 20 * p * rate.period / rate.requests
            while clock() < deadline and len(seen) < p:
                exporter.refresh(DEFAULT_SCRAPE_TIMEOUT)
                if clock() < flip_at - sizes.flip_interval:  # warming up: no need to look
                    clock.advance(sizes.flip_interval)
                    continue
                text = generate_latest(exporter.registry).decode("utf-8")
                for trans_no in FINAL.findall(text):
                    if trans_no in flipping and trans_no not in seen:
                        if clock() < flip_at:
                            raise RuntimeError(f"{trans_no} shown final before it flipped")
                        seen[trans_no] = clock() - flip_at
                clock.advance(sizes.flip_interval)
            throttled = sim.stats().throttled
        finally:
            exporter.close()
    if len(seen) < p:
        raise RuntimeError(f"only {len(seen)} of {p} flips became visible")
    return seen, throttled


def figure_c(sizes: Sizes) -> None:
    p, rate = sizes.flip_processing, sizes.flip_rate
    # The budget's sends repeat with the period (a burst, then pacing, then a pause while the
    # sliding window is full), so the flip is placed at several points of one period.
    offsets = [k * rate.period / sizes.flip_phases for k in range(sizes.flip_phases)]
    runs = [flip_run(sizes, offset) for offset in offsets]
    lasts = [max(seen.values()) for seen, _ in runs]
    r = rate.requests / rate.period
    bound = p / r
    worst = max(lasts)
    target = 1.5 + sizes.flip_interval / bound
    each = ", ".join(f"{last:.1f}" for last in lasts)
    say(
        f"c1 flips visible: {p} processing tasks flip at once, budget R = {r:g} requests/s "
        f"({rate.requests} per {rate.period:g} s), scrapes every {sizes.flip_interval:g} s, "
        f"{sizes.flip_final} final tasks beside them: the last shows its final status after "
        f"{worst:.1f} s at worst; ratio {worst / bound:.2f} to P/R = {bound:.1f} s (target <= "
        f"1.5 + one interval = {target:.2f}, {verdict(worst / bound <= target)}); flips at "
        f"{len(offsets)} points of the budget period: last visible after {each} s; simulated "
        f"time; throttled answers {sum(t for _, t in runs)}"
    )


# -- d. 10,000 cached tasks ----------------------------------------------------------------------


def figure_d(sizes: Sizes) -> None:
    n = sizes.cached_tasks
    with simulator_process(tasks=1, latency=0.0) as sim:
        # Every task answered, nearly all successful with 1-5 renditions (mean 3).
        sim.add_tasks(n, processing_share=0.0, failed_share=0.05, prefix="big", seed=5)
        results = {path: _run_child(path, sim.url, n, sizes.cached_scrapes) for path in PATHS}
    cur, new = results["current"], results["cached"]
    for i, (path, r) in enumerate(results.items(), start=1):
        ok = r["scrape"] <= 1.0 and r["peak"] <= 200.0
        judged = verdict(ok) if path == "cached" else "the baseline /metrics no longer uses"
        say(
            f"d{i} {n} cached tasks, {PATHS[path]}: scrape {r['scrape']:.3f} s (median of "
            f"{sizes.cached_scrapes}; the first, rendering every task, {r['first']:.2f} s), "
            f"RSS {r['rss']:.0f} MB, peak {r['peak']:.0f} MB (targets <= 1 s and <= 200 MB, "
            f"{judged}); {r['bytes'] / 1e6:.1f} MB, {r['lines']} lines; filled in "
            f"{r['fill']:.1f} s, RSS {r['rss_start']:.0f} MB before, {r['rss_filled']:.0f} MB "
            f"after filling"
        )
    say(
        f"d3 cached renderer vs generate_latest: {cur['scrape'] / new['scrape']:.0f}x faster, "
        f"peak {cur['peak'] - new['peak']:.0f} MB lower; byte-identical output: "
        f"{'yes' if new['identical'] else 'NO'}"
    )
    say(
        f"d4 /metrics as Prometheus asks for it (OpenMetrics, gzip): prometheus_client's "
        f"make_wsgi_app "
        f"{cur['wsgi']:.2f} s, of which gzip.compress at prometheus_client's level 9 "
        f"{cur['gzip9']:.2f} s ({cur['gzip9_bytes'] / 1e6:.1f} MB; level 1: {cur['gzip1']:.2f} s, "
        f"{cur['gzip1_bytes'] / 1e6:.1f} MB); our /metrics (cached text, gzip level 1): "
        f"{new['wired']:.3f} s ({cur['wsgi'] / new['wired']:.0f}x faster)"
    )


PATHS = {
    "current": "generate_latest over collect() (prometheus_client's renderer)",
    "cached": "cached renderer (what /metrics serves)",
}


def _run_child(path: str, url: str, n: int, scrapes: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.run", f"--child={path}", f"--endpoint={url}"]
    cmd += [f"--tasks={n}", f"--scrapes={scrapes}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"benchmark child {path} failed:\n{out.stdout}\n{out.stderr}")


def child_d(path: str, endpoint: str, n: int, scrapes: int) -> dict[str, Any]:
    """One figure-d measurement in a fresh process, so its memory is the exporter's alone."""
    rss_start = rss_mb()
    config = make_config(endpoint, sim_names(n, "big"), concurrency=16, rate_limit=UNBOUNDED)
    exporter = Exporter(config)
    started = time.perf_counter()
    report = exporter.refresh(600)
    fill = time.perf_counter() - started
    if report.backlog or not all(s.query_ok for s in exporter.scheduler.states().values()):
        raise RuntimeError(f"filling the cache failed: {report}")
    rss_filled = rss_mb()
    reset_peak()

    def current() -> bytes:
        return generate_latest(exporter.registry)

    render = current if path == "current" else cached_render(exporter)
    times = []
    body = b""
    for _ in range(scrapes + 1):
        body = b""  # a server has sent (and dropped) the previous answer by the next scrape
        began = time.perf_counter()
        exporter.refresh(DEFAULT_SCRAPE_TIMEOUT)  # nothing is due: answers are fresh
        body = render()
        times.append(time.perf_counter() - began)
    result: dict[str, Any] = {
        "fill": fill,
        "rss_start": rss_start,
        "rss_filled": rss_filled,
        "first": times[0],
        "scrape": statistics.median(times[1:]),
        "rss": rss_mb(),
        "peak": peak_rss_mb(),
        "bytes": len(body),
        "lines": body.count(b"\n"),
    }
    if path == "current":
        result.update(_wsgi_figures(exporter, body))
    else:
        result["identical"] = tasks_identical(exporter)
        result["wired"] = _wired_scrape(exporter, scrapes)
    exporter.close()
    return result


def _wired_scrape(exporter: Exporter, scrapes: int) -> float:
    """A Prometheus scrape of our /metrics: refresh, cached text, gzip level 1."""
    from exporter.webapp import make_app

    app = make_app(exporter)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/metrics",
        "QUERY_STRING": "",
        "HTTP_ACCEPT": PROMETHEUS_ACCEPT,
        "HTTP_ACCEPT_ENCODING": "gzip",
        "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": f"{DEFAULT_SCRAPE_TIMEOUT:g}",
    }
    b"".join(app(dict(environ), lambda status, headers, exc_info=None: None))  # fills the cache
    times = []
    for _ in range(scrapes):
        began = time.perf_counter()
        b"".join(app(dict(environ), lambda status, headers, exc_info=None: None))
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _wsgi_figures(exporter: Exporter, body: bytes) -> dict[str, Any]:
    from prometheus_client import make_wsgi_app

    app = make_wsgi_app(exporter.registry)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/metrics",
        "QUERY_STRING": "",
        "HTTP_ACCEPT": PROMETHEUS_ACCEPT,
        "HTTP_ACCEPT_ENCODING": "gzip",
        "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": f"{DEFAULT_SCRAPE_TIMEOUT:g}",
    }
    began = time.perf_counter()
    b"".join(app(environ, lambda status, headers, exc_info=None: None))
    wsgi = time.perf_counter() - began
    out: dict[str, Any] = {"wsgi": wsgi}
    for level in (9, 1):
        began = time.perf_counter()
        packed = gzip.compress(body, compresslevel=level)
        out[f"gzip{level}"] = time.perf_counter() - began
        out[f"gzip{level}_bytes"] = len(packed)
    return out


# -- e. the naive exporter -----------------------------------------------------------------------


def figure_e(sizes: Sizes, sim: RemoteSimulator, ours: dict[int, Cold]) -> None:
    from benchmarks.naive import NaiveCollector

    n = sizes.naive_tasks
    names = sim_names(n)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NaiveCollector(sim.url, KEY, SECRET, names))
    began = time.perf_counter()
    generate_latest(registry)
    naive = time.perf_counter() - began
    mine = ours[n].total if n in ours else cold_scrape(sim.url, n, sizes).total
    say(
        f"e1 naive sequential exporter (benchmarks/naive.py), cold scrape of {n} tasks at "
        f"{sizes.latency * 1000:g} ms latency: {naive:.2f} s vs ours {mine:.2f} s, a speed-up of "
        f"{naive / mine:.1f}x (its scrape outlasts Prometheus's {DEFAULT_SCRAPE_TIMEOUT:g} s "
        f"timeout from {DEFAULT_SCRAPE_TIMEOUT / (naive / n):.0f} tasks on)"
    )

    # Its first scrape against the documented limit.
    limit = sizes.naive_limit
    tasks = generate_tasks(n, now=time.time())
    with SimulatorServer(tasks, credentials={KEY: SECRET}, rate_limit=(limit, 300.0)) as local:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(NaiveCollector(local.url, KEY, SECRET, names))
        generate_latest(registry)
        throttled = local.stats().throttled

    # Ours for a (simulated) hour at the default budget, against a simulator enforcing it.
    clock = FakeClock(start=1_700_000_000.0)
    tasks = generate_tasks(n, now=clock())
    budget = (DEFAULT_BUDGET.requests, DEFAULT_BUDGET.period)
    with SimulatorServer(
        tasks, credentials={KEY: SECRET}, rate_limit=budget, clock=clock, limit_clock=clock
    ) as local:
        exporter = Exporter(make_config(local.url, names), clock=clock)
        try:
            for _ in range(int(sizes.hour / SCRAPE_INTERVAL)):
                exporter.refresh(DEFAULT_SCRAPE_TIMEOUT)
                clock.advance(SCRAPE_INTERVAL)
        finally:
            exporter.close()
        stats = local.stats()
    per_hour = 3600.0 / sizes.hour
    hourly_budget = DEFAULT_BUDGET.requests * 3600.0 / DEFAULT_BUDGET.period
    naive_hourly = n * 3600.0 / SCRAPE_INTERVAL
    say(
        f"e2 requests per hour at a {SCRAPE_INTERVAL:g} s scrape interval, {n} tasks: naive "
        f"{naive_hourly:,.0f} ({naive_hourly / hourly_budget:.1f}x the budget of "
        f"{hourly_budget:,.0f}/h; its first scrape alone got {throttled} throttled answers from "
        f"a simulator enforcing {limit} per 5 min) vs ours {stats.requests * per_hour:,.0f} "
        f"({stats.requests * per_hour / hourly_budget:.2f}x the budget), most in any 5 min "
        f"{stats.max_in_window} (limit {DEFAULT_BUDGET.requests}), throttled {stats.throttled}"
        + ("" if per_hour == 1 else f" (extrapolated from {sizes.hour:g} simulated s)")
    )


# -- f. flips among 10,000 final tasks -----------------------------------------------------------

T0 = 1_700_000_000.0  # the simulated clock's start


class OldOrdering(Policy):
    """The ordering before issue 10: every due task in one queue, most overdue first.

    No claims, no final share: never-asked tasks still come first (they are due since -inf), then
    whatever has waited longest, so final refreshes that are long overdue go before processing
    tasks that just became due. For figure f's comparison only; the product never uses it.
    """

    def plan(
        self,
        states: Mapping[str, TaskState],
        refresh: RefreshConfig,
        now: float,
        allowance: int,
        busy: Container[str] = (),
    ) -> Plan:
        """Up to `allowance` due tasks, most overdue first, whatever their claim."""
        due: list[tuple[float, int, str, Claim]] = []
        for position, (trans_no, state) in enumerate(states.items()):
            when = due_at(state, refresh)
            if when <= now and trans_no not in busy:
                due.append((when, position, trans_no, state.claim))
        due.sort()
        claims = Counter(claim for *_, claim in due)
        return Plan(
            order=tuple(trans_no for _, _, trans_no, _ in due[: max(0, allowance)]),
            due=len(due),
            by_claim={claim: claims[claim] for claim in Claim},
        )


def answer_of(task: SimTask, now: float) -> TaskAnswer:
    """What the client makes of the simulator's answer about `task` at `now`."""
    envelope = {"code": int(Code.SUCCESS), "message": "ok", "data": task.data_at(now)}
    return parse_answer(json.dumps(envelope).encode(), task.trans_no, VENDOR_TZ)


@functools.cache
def final_fleet(n: int) -> tuple[tuple[SimTask, ...], tuple[TaskState, ...]]:
    """N final tasks and their states as a long-running exporter has them (built once).

    Each task's answer is the simulator's, parsed by the client's parser; its refresh came due
    at a random moment of the last hour, so all are overdue by up to an hour and compete for
    the budget (the steady state of a fleet whose final refreshes exceed the budget).
    """
    tasks = generate_tasks(n, now=T0, prefix="done", processing_share=0.0, seed=4)
    rng = random.Random(5)
    refresh = RefreshConfig()
    states = []
    for task in tasks:
        answer = answer_of(task, T0)
        checked = T0 - interval(answer.status, refresh) - rng.uniform(0.0, 3600.0)
        states.append(TaskState(answer, checked, checked, query_ok=True))
    return tuple(tasks), tuple(states)


@dataclass
class FleetFlips:
    """One run of figure f: when each flipped task was first shown final, and the API's view."""

    seen: dict[str, float]
    per_scrape: list[int]  # requests the API got in each scrape's round
    throttled: int
    max_in_window: int
    simulated: float  # simulated seconds the run lasted


def fleet_flip_run(
    sizes: Sizes, offset: float, *, old: bool, cap: float, top_up: bool = False
) -> FleetFlips:
    """P processing tasks among N final ones flip at once; when does the exposition show each?"""
    clock = FakeClock(start=T0)
    t0 = clock()
    # Midway between two scrapes, `offset` seconds into the budget's period, after the warm-up.
    flip_at = t0 + sizes.fleet_warmup + offset + SCRAPE_INTERVAL / 2
    p = sizes.fleet_processing
    processing = [
        dataclasses.replace(
            t,
            created_at=t0 - 600.0,
            processing_seconds=flip_at - (t0 - 600.0),
            outcome="failed" if i % 5 == 0 else "successful",
        )
        for i, t in enumerate(generate_tasks(p, now=t0, prefix="flip", seed=3))
    ]
    finals, final_states = final_fleet(sizes.fleet_final)
    store = MemoryStore(clock)
    for task, state in zip(finals, final_states, strict=True):
        store.put(task.trans_no, state)
    rng = random.Random(6)
    for task in processing:  # in the processing tasks' rotation: asked within the last 30 s
        checked = t0 - rng.uniform(0.0, 30.0)
        store.put(task.trans_no, TaskState(answer_of(task, checked), checked, checked, True))
    flipping = [t.trans_no for t in processing]
    names = [t.trans_no for t in finals] + flipping  # processing last: no help from tie-breaks
    limit = (DEFAULT_BUDGET.requests, DEFAULT_BUDGET.period)
    with SimulatorServer(
        [*finals, *processing],
        credentials={KEY: SECRET},
        rate_limit=limit,
        clock=clock,
        limit_clock=clock,
    ) as sim:
        exporter = Exporter(make_config(sim.url, names), store=store, clock=clock)
        if old:
            # The Scheduler takes no policy argument: the benchmark swaps in the old ordering.
            exporter.scheduler._policy = OldOrdering()
        seen: dict[str, float] = {}
        per_scrape: list[int] = []
        try:
            while clock() < flip_at + cap and len(seen) < p:
                before = sim.stats().requests
                exporter.refresh(DEFAULT_SCRAPE_TIMEOUT)
                states = exporter.scheduler.states()
                final = [t for t in flipping if t not in seen and states[t].status != "processing"]
                if final and clock() < flip_at:
                    raise RuntimeError(f"{final[0]} answered final before it flipped")
                if final:
                    # The scrape's exposition, rendered from the same states, is the judge.
                    text = exporter.exposition().decode("utf-8")
                    for trans_no in FINAL.findall(text):
                        if trans_no in final:
                            seen[trans_no] = clock() - flip_at
                next_scrape = t0 + (len(per_scrape) + 1) * SCRAPE_INTERVAL
                if top_up:
                    top_ups(exporter, clock, next_scrape, SCRAPE_INTERVAL)
                per_scrape.append(sim.stats().requests - before)  # this scrape and its top-ups
                clock.advance(next_scrape - clock())
            stats = sim.stats()
        finally:
            exporter.close()
    return FleetFlips(seen, per_scrape, stats.throttled, stats.max_in_window, clock() - t0)


def runs_of(values: Sequence[float]) -> str:
    """60, 15, 15, 15, 0 -> "60, 15 x3, 0"."""
    out: list[str] = []
    for value in values:
        if out and out[-1].split(" x")[0] == f"{value:g}":
            head, _, times = out[-1].partition(" x")
            out[-1] = f"{head} x{int(times or 1) + 1}"
        else:
            out.append(f"{value:g}")
    return ", ".join(out)


def _period_of(sizes: Sizes, per_scrape: Sequence[int]) -> list[int]:
    """The requests of each scrape interval in the warm-up's last budget period."""
    k, warm = (
        int(DEFAULT_BUDGET.period / SCRAPE_INTERVAL),
        int(sizes.fleet_warmup / DEFAULT_BUDGET.period),
    )
    return list(per_scrape[(warm - 1) * k : warm * k])


def figure_f(sizes: Sizes) -> None:
    p, n = sizes.fleet_processing, sizes.fleet_final
    period = DEFAULT_BUDGET.period
    r = DEFAULT_BUDGET.requests / period
    bound = p / r
    target = 1.5 + SCRAPE_INTERVAL / bound
    # The budget's sends repeat with its period, so the flip is placed after each scrape of one
    # period in turn (every 15 s: all the cases there are with scrapes 15 s apart).
    offsets = list(sizes.fleet_offsets)
    runs = [fleet_flip_run(sizes, o, old=False, cap=20 * bound) for o in offsets]
    for run in runs:
        if len(run.seen) < p:
            raise RuntimeError(f"only {len(run.seen)} of {p} flips became visible")
    lasts = [max(run.seen.values()) for run in runs]
    worst = max(lasts)
    at = offsets[lasts.index(worst)] + SCRAPE_INTERVAL / 2
    pattern = _period_of(sizes, runs[0].per_scrape)
    say(
        f"f1 flips visible among {n} final tasks: {p} processing tasks flip at once, default "
        f"budget R = {r:g} request/s (300 per 5 min), scrapes every {SCRAPE_INTERVAL:g} s, every "
        f"final task overdue for its refresh: the last shows its final status after {worst:.1f} "
        f"s at worst (flip {at:g} s into the budget's period); ratio {worst / bound:.2f} to P/R "
        f"= {bound:.0f} s (target <= 1.5 + one interval = {target:.2f}, "
        f"{verdict(worst / bound <= target)}); median over {len(offsets)} flip times "
        f"{statistics.median(lasts):.1f} s, each: {runs_of([round(v, 1) for v in lasts])} s; "
        f"requests per scrape over a period: {runs_of(pattern)}; simulated time; throttled "
        f"answers {sum(run.throttled for run in runs)}, most requests in any 5 min "
        f"{max(run.max_in_window for run in runs)}"
    )
    # As the CLI runs it, with top-up rounds between scrapes (fewer flip points: each top-up
    # plans over all 10,020 tasks, so a run costs about four times as much).
    top = [o for o in offsets if o in sizes.fleet_top_up_offsets]
    topped = [fleet_flip_run(sizes, o, old=False, cap=20 * bound, top_up=True) for o in top]
    for run in topped:
        if len(run.seen) < p:
            raise RuntimeError(f"only {len(run.seen)} of {p} flips became visible")
    top_lasts = [max(run.seen.values()) for run in topped]
    say(
        f"f3 f1 with the CLI's top-up rounds every {TOP_UP_INTERVAL:g} s between scrapes, flips "
        f"at {len(top)} points of the period ({', '.join(f'{o + 7.5:g}' for o in top)} s): the "
        f"last shows its final status after {max(top_lasts):.1f} s at worst; ratio "
        f"{max(top_lasts) / bound:.2f} to P/R (target <= {target:.2f}, "
        f"{verdict(max(top_lasts) / bound <= target)}); each: {runs_of(top_lasts)} s; requests "
        f"per scrape interval over a period: {runs_of(_period_of(sizes, topped[0].per_scrape))}; "
        f"throttled answers {sum(run.throttled for run in topped)}, most requests in any 5 min "
        f"{max(run.max_in_window for run in topped)}"
    )
    # The old ordering serves the whole overdue backlog of final refreshes first.
    cap = 1.5 * (n + p) / r
    old = fleet_flip_run(sizes, offsets[0], old=True, cap=cap)
    old_met = len(old.seen) == p and max(old.seen.values()) / bound <= target
    if len(old.seen) == p:
        last = max(old.seen.values())
        shown = f"after {last:,.1f} s ({last / 3600:.1f} h); ratio {last / bound:.1f} to P/R"
    else:
        shown = (
            f"for {len(old.seen)} of {p} by the run's end, {cap:,.0f} s after the flip; ratio > "
            f"{cap / bound:.0f} to P/R"
        )
    say(
        f"f2 same with the old ordering (every due task most overdue first, no claims, no final "
        f"share), flip {offsets[0] + SCRAPE_INTERVAL / 2:g} s into the period: the last shows "
        f"its final status {shown} (by the same target: {verdict(old_met)}); throttled answers "
        f"{old.throttled}; {old.simulated:,.0f} simulated s"
    )


# -- g. budget utilisation -----------------------------------------------------------------------


class SlowClient(CloudVodClient):
    """The real client, each request taking `latency` of simulated time.

    Half of it passes before the simulator counts the request's arrival and half after, so the
    API counts every request strictly between its send and its answer, as a real one does.
    """

    def __init__(self, api: ApiConfig, clock: FakeClock, latency: float) -> None:
        super().__init__(
            api.endpoint,
            api.access_key_id,
            api.access_key_secret,
            timeout=api.timeout,
            pool_size=api.max_concurrency,
            timezone=api.timezone,
        )
        self.sim_clock = clock
        self.latency = latency
        self.arrivals: list[float] = []

    def exchange(self, trans_no: str) -> Exchange:
        """One real request, `latency` simulated seconds long."""
        self.sim_clock.advance(self.latency / 2)
        self.arrivals.append(self.sim_clock())
        try:
            return super().exchange(trans_no)
        finally:
            self.sim_clock.advance(self.latency / 2)


@dataclass
class Utilisation:
    """Requests the API counted in each period of one run, and its verdict on them."""

    per_period: list[int]
    throttled: int
    max_in_window: int

    def ratio(self, first: int = 0) -> float:
        """Share of the budget used from period `first` on."""
        return sum(self.per_period[first:]) / (
            len(self.per_period[first:]) * DEFAULT_BUDGET.requests
        )


def top_ups(exporter: Exporter, clock: FakeClock, until: float, scrape_interval: float) -> None:
    """The CLI's top-up thread on the simulated clock: every TOP_UP_INTERVAL until `until`.

    Each top-up round is waited for, so the clock moves only between rounds (deterministic).
    """
    scheduler = exporter.scheduler
    while clock() + TOP_UP_INTERVAL < until:
        clock.advance(TOP_UP_INTERVAL)
        if scheduler.top_up(within=2 * scrape_interval + 5):
            deadline = time.monotonic() + 30
            while scheduler._in_flight and time.monotonic() < deadline:
                time.sleep(0.0005)


def utilisation_run(sizes: Sizes, scrape_interval: float, *, top_up: bool) -> Utilisation:
    """Always work, the default budget, `util_latency` per request: what reaches the API?"""
    clock = FakeClock(start=T0)
    t0 = clock()
    n, rate, latency = sizes.util_tasks, DEFAULT_BUDGET, sizes.util_latency
    tasks = [
        dataclasses.replace(t, outcome="processing")
        for t in generate_tasks(n, now=t0, prefix="busy", processing_share=0.0, seed=6)
    ]
    clients: list[SlowClient] = []

    def slow_client(api: ApiConfig) -> CloudVodClient:
        clients.append(SlowClient(api, clock, latency))
        return clients[-1]

    limit = (rate.requests, rate.period)
    with SimulatorServer(
        tasks, credentials={KEY: SECRET}, rate_limit=limit, clock=clock, limit_clock=clock
    ) as sim:
        # One request at a time keeps the simulated clock deterministic (a round of 15 sends
        # lasts 0.75 simulated s, well within the scrape).
        config = make_config(sim.url, [t.trans_no for t in tasks], concurrency=1)
        exporter = Exporter(config, clock=clock, client_factory=slow_client)
        try:
            for k in range(int(sizes.util_span / scrape_interval)):
                clock.advance(max(0.0, t0 + k * scrape_interval - clock()))
                exporter.refresh(DEFAULT_SCRAPE_TIMEOUT)
                if top_up:
                    top_ups(exporter, clock, t0 + (k + 1) * scrape_interval, scrape_interval)
        finally:
            exporter.close()
        stats = sim.stats()
    periods = int(sizes.util_span / rate.period)
    counted = Counter(int((a - t0) // rate.period) for c in clients for a in c.arrivals)
    return Utilisation([counted[k] for k in range(periods)], stats.throttled, stats.max_in_window)


def figure_g(sizes: Sizes) -> None:
    rate, latency = DEFAULT_BUDGET, sizes.util_latency
    run = utilisation_run(sizes, SCRAPE_INTERVAL, top_up=True)
    periods = len(run.per_period)
    steady = periods // 2  # the second half of the run: the start's full bucket is long spent
    ratio = min(run.ratio(), run.ratio(steady))
    ok = ratio >= 0.95 and run.throttled == 0
    say(
        f"g1 budget utilisation at {rate.requests} per {rate.period / 60:g} min, "
        f"{latency * 1000:g} ms latency, always work ({sizes.util_tasks} tasks processing for "
        f"good), scrapes every {SCRAPE_INTERVAL:g} s, top-up rounds every "
        f"{TOP_UP_INTERVAL:g} s between them (as the CLI runs it): ratio "
        f"{run.ratio(steady):.3f} of the budget used in steady state (periods {steady + 1}-"
        f"{periods}), {run.ratio():.3f} over all {periods} periods (target >= 0.95 and 0 "
        f"throttled, {verdict(ok)}); requests per period: {runs_of(run.per_period)}; throttled "
        f"answers {run.throttled} from a simulator enforcing the limit, most requests in any 5 "
        f"min {run.max_in_window}; simulated time, one request at a time"
    )
    others = []
    for interval_ in (SCRAPE_INTERVAL, *sizes.util_other_intervals):
        both = []
        for top_up in (True, False):
            if top_up and interval_ == SCRAPE_INTERVAL:
                other = run
            else:
                other = utilisation_run(sizes, interval_, top_up=top_up)
            met = other.ratio(steady) >= 0.95 and other.throttled == 0
            both.append(
                f"{'with' if top_up else 'without'} top-ups {other.ratio(steady):.3f} "
                f"({'met' if met else 'MISSED'}, throttled {other.throttled})"
            )
        others.append(f"every {interval_:g} s: " + ", ".join(both))
    say(
        "g2 the same in steady state by scrape interval, with and without the top-up rounds "
        "(without: a send's slot frees just after the scrape one period later and waits for "
        "the next one; issue 10 asks >= 0.95 whatever the interval): scrapes " + "; ".join(others)
    )


# -- h, i. restarts on a SQLite store (child processes, real time) --------------------------------


LAST_SUCCESS = re.compile(
    r'^cloudvod_concat_task_last_success_timestamp_seconds\{trans_no="([^"]+)"\} (\S+)$', re.M
)
QUERIED = re.compile(r'^cloudvod_concat_task_queried\{trans_no="([^"]+)"\} 1\.0$', re.M)


class Life:
    """One exporter process on a storage folder: started, then stopped cleanly or with SIGKILL."""

    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "benchmarks.run", *args]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.result: dict[str, Any] = {}

    def wait_for(self, word: str) -> None:
        """Read the child's lines until `word` (collecting its RESULT)."""
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        for line in out:
            if line.startswith("RESULT "):
                self.result = json.loads(line[len("RESULT ") :])
            if line.strip() == word:
                return
        raise RuntimeError(f"benchmark child exited ({self.proc.wait()}) before {word}")

    def kill(self) -> None:
        """kill -9: the store is not closed, requests in flight are cut."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """A clean stop: the child closes the exporter and its store and exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        if self.proc.wait(timeout=60) != 0:
            raise RuntimeError(f"benchmark child failed with {self.proc.returncode}")


def child_life(args: argparse.Namespace) -> None:
    """An exporter process for figures h and i on the storage folder `args.storage`."""
    prefix, n = args.prefix, args.tasks
    requests, period = args.rate.split("/")
    rate = RateLimit(int(requests), float(period))
    concurrency = 16 if args.life == "warm" else 4
    config = make_config(
        args.endpoint, sim_names(n, prefix), concurrency=concurrency, rate_limit=rate
    )
    began = time.perf_counter()
    # As the CLI runs it: top-up rounds between scrapes.
    exporter = Exporter(config, store=SQLiteStore(args.storage), top_up_interval=TOP_UP_INTERVAL)
    opened = time.perf_counter() - began
    if args.life == "loop":  # as many requests as the budget lets it send, until killed
        say("STARTED")
        while True:
            exporter.refresh(1.0)
            time.sleep(0.05)
    report = exporter.refresh(600.0 if args.life == "warm" else DEFAULT_SCRAPE_TIMEOUT)
    text = exporter.exposition().decode("utf-8")
    scraped = time.perf_counter() - began - opened
    values = dict(LAST_SUCCESS.findall(text))
    snapshot = Path(args.storage) / "before.json"
    result: dict[str, Any] = {"open": opened, "scrape": scraped, "due": report.due}
    if args.life == "warm":
        if report.backlog or len(values) != n:
            raise RuntimeError(f"warming up failed: {report}, {len(values)} of {n} answered")
        snapshot.write_text(json.dumps(values))
    else:
        before = json.loads(snapshot.read_text())
        result["same"] = sum(values.get(t) == v for t, v in before.items())
        result["queried"] = len(QUERIED.findall(text))
    say("RESULT " + json.dumps(result))
    say("READY")
    sys.stdin.read()  # until the parent closes our stdin (a clean stop) or kills us
    exporter.close()


def figure_h(sizes: Sizes) -> None:
    n = sizes.restart_tasks
    tasks = generate_tasks(n, now=time.time(), prefix="warm", processing_share=0.0, seed=7)
    with (
        tempfile.TemporaryDirectory(prefix="bench-h-") as folder,
        SimulatorServer(tasks, credentials={KEY: SECRET}, rate_limit=None) as sim,
    ):
        # A budget that never binds: a restart that forgot its answers would ask all of them.
        common = [f"--endpoint={sim.url}", f"--tasks={n}", "--prefix=warm", f"--storage={folder}"]
        common.append(f"--rate={UNBOUNDED.requests}/{UNBOUNDED.period:g}")
        began = time.perf_counter()
        warm = Life("--child=life", "--life=warm", *common)
        try:
            warm.wait_for("READY")
        finally:
            warm.kill()
        warmed = time.perf_counter() - began
        asked = sim.stats().requests
        lines = []
        for stop in ("kill -9", "clean stop"):
            before = sim.stats().requests
            life = Life("--child=life", "--life=restart", *common)
            try:
                life.wait_for("READY")
            except BaseException:
                life.kill()
                raise
            spent = sim.stats().requests - before
            r = life.result
            ok = spent == 0 and r["same"] == n and r["queried"] == n
            lines.append((stop, spent, r, ok))
            if stop == "kill -9":
                life.stop()  # the next restart follows this clean stop
            else:
                life.kill()
    for i, (stop, spent, r, ok) in enumerate(lines, start=1):
        say(
            f"h{i} restart of a warm {n}-task exporter after a {stop} (SQLite store, answers "
            f"fresh, budget not binding): {spent} API calls (target 0, {verdict(ok)}); its first "
            f"scrape showed {r['same']} of {n} tasks with their original "
            f"task_last_success_timestamp_seconds and {r['queried']} as queried; store opened in "
            f"{r['open']:.2f} s, first scrape {r['scrape']:.2f} s (the warm-up asked {asked} "
            f"times in {warmed:.1f} s)"
        )


def figure_i(sizes: Sizes) -> None:
    rate, lives = sizes.loop_rate, sizes.loop_lives
    tasks = [
        dataclasses.replace(t, outcome="processing")
        for t in generate_tasks(
            sizes.loop_tasks, now=time.time(), prefix="loop", processing_share=0.0, seed=8
        )
    ]
    limit = (rate.requests, rate.period)
    per_life: list[int] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-i-") as folder,
        SimulatorServer(
            tasks, credentials={KEY: SECRET}, rate_limit=limit, latency=sizes.latency
        ) as sim,
    ):
        common = [f"--endpoint={sim.url}", f"--tasks={sizes.loop_tasks}", "--prefix=loop"]
        common += [f"--storage={folder}", f"--rate={rate.requests}/{rate.period:g}"]
        began = time.monotonic()
        for _ in range(lives):
            before = sim.stats().requests
            life = Life("--child=life", "--life=loop", *common)
            try:
                life.wait_for("STARTED")
                time.sleep(sizes.loop_life)
            finally:
                life.kill()
            per_life.append(sim.stats().requests - before)
        elapsed = time.monotonic() - began
        stats = sim.stats()
    if elapsed >= rate.period:
        raise RuntimeError(f"the crash loop took {elapsed:.0f} s, more than one period")
    burst = min(rate.requests, math.ceil(rate.requests / rate.period * 60.0))
    ok = stats.throttled == 0 and stats.requests <= rate.requests
    say(
        f"i1 crash loop: {lives - 1} restarts (kill -9, {sizes.loop_life:g} s of sending each) "
        f"within {elapsed:.1f} s, one SQLite folder, {rate.requests} per {rate.period:g} s, "
        f"{sizes.latency * 1000:g} ms latency, always work: throttled answers {stats.throttled} "
        f"(target 0, {verdict(ok)}); requests in the period {stats.requests} (limit "
        f"{rate.requests}; each fresh process may burst {burst}, {lives * burst} in all); per "
        f"life: {', '.join(map(str, per_life))}; most in any window {stats.max_in_window}"
    )


# -- main ----------------------------------------------------------------------------------------


def machine() -> str:
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as f:
        kb = int(f.readline().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpus} CPUs, {mem} RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, prometheus_client {_version(prometheus_client)}, "
        f"requests {requests.__version__}"
    )


def _version(module: Any) -> str:
    from importlib.metadata import version

    try:
        return version(module.__name__.replace("_", "-"))
    except Exception:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few tasks per figure (smoke test)")
    parser.add_argument("--only", default="abcdefghi", help="which figures, e.g. --only=ad")
    parser.add_argument("--child", choices=[*sorted(PATHS), "life"], help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scrapes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--life", choices=["warm", "restart", "loop"], help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--rate", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "life":
        child_life(args)
        return 0
    if args.child:
        result = child_d(args.child, args.endpoint, args.tasks, args.scrapes)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    sizes = QUICK if args.quick else Sizes()
    started = time.perf_counter()
    say(f"cloudvod-concat-exporter benchmarks{' (--quick)' if args.quick else ''}: {machine()}")
    ours: dict[int, Cold] = {}
    if "a" in args.only or "e" in args.only:
        with simulator_process(tasks=max(sizes.cold), latency=sizes.latency) as sim:
            if "a" in args.only:
                ours = figure_a(sizes, sim)
            if "e" in args.only:
                figure_e(sizes, sim, ours)
    if "b" in args.only:
        figure_b(sizes)
    if "c" in args.only:
        figure_c(sizes)
    if "d" in args.only:
        figure_d(sizes)
    for figure in (figure_f, figure_g, figure_h, figure_i):
        if figure.__name__[-1] in args.only:
            figure(sizes)
    say(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
