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
import gzip
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prometheus_client
import requests
from prometheus_client import CollectorRegistry, generate_latest

from exporter.collector import exposition
from exporter.config import ApiConfig, Config, RateLimit, Task
from exporter.service import Exporter
from exporter.simulator import SimTask, SimulatorServer, generate_tasks
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
    parser.add_argument("--only", default="abcde", help="which figures, e.g. --only=ad")
    parser.add_argument("--child", choices=sorted(PATHS), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scrapes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
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
    say(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
