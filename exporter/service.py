"""The running exporter: the current configuration, the client, the budget, the scheduler.

Everything the web layer serves goes through `Exporter`; the CLI builds one and hands it over.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter import logs
from exporter.answers import TaskAnswer
from exporter.client import CloudVodClient, Exchange
from exporter.collector import (
    ApiStats,
    ExporterCollector,
    ExporterStatus,
    TaskCollector,
    task_families,
)
from exporter.collector import exposition as collector_exposition
from exporter.config import TRANS_NO_RE, ApiConfig, Config, ConfigError, Task
from exporter.ratelimit import RateLimiter
from exporter.scheduler import RoundReport, Scheduler, TaskState

log = logging.getLogger(__name__)

MIN_DEADLINE = 0.05
MAX_DEADLINE = 3600.0  # no scrape waits longer; a huge header value would overflow the wait


def make_client(api: ApiConfig) -> CloudVodClient:
    """The API client for an `api` configuration section."""
    return CloudVodClient(
        api.endpoint,
        api.access_key_id,
        api.access_key_secret,
        timeout=api.timeout,
        max_response_bytes=api.max_response_bytes,
        pool_size=api.max_concurrency,
        timezone=api.timezone,
    )


def make_limiter(api: ApiConfig, clock: Callable[[], float] = time.monotonic) -> RateLimiter:
    """The account budget for an `api` configuration section."""
    return RateLimiter(
        api.rate_limit.requests, api.rate_limit.period, margin=_margin(api), clock=clock
    )


def _margin(api: ApiConfig) -> float:
    """How much later than its budget slot a request may reach the API: a connect attempt and
    one retry of it may each take the whole timeout."""
    return 2 * api.timeout


@dataclass
class ReloadStatus:
    """Outcome of the latest (re)load of the configuration."""

    ok: bool = True
    success_timestamp: float | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProbeResult:
    """What `/probe` serves: the exposition and, with debug, a readable report."""

    exposition: bytes
    debug: str


class Exporter:
    """Holds the configuration in force and answers scrapes, probes and reloads."""

    def __init__(
        self,
        config: Config,
        *,
        loader: Callable[[], Config] | None = None,
        client_factory: Callable[[ApiConfig], CloudVodClient] = make_client,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._loader = loader
        self._client_factory = client_factory
        self._clock = clock
        self._wall = wall_clock
        self._reload_lock = threading.Lock()
        self.config = config
        logs.register_secret(config.api.access_key_secret)
        self.client = client_factory(config.api)
        self.api_stats = ApiStats()
        self.scheduler = Scheduler(
            self.client,
            make_limiter(config.api, clock),
            config.refresh,
            max_concurrency=config.api.max_concurrency,
            observer=self.api_stats,
            clock=clock,
            wall_clock=wall_clock,
        )
        self.scheduler.set_tasks(t.trans_no for t in config.tasks)
        self.reload_status = ReloadStatus(ok=True, success_timestamp=wall_clock())
        self.ready = True  # an Exporter only exists with a valid configuration
        self.last_collect_seconds = 0.0
        self.task_collector = TaskCollector(lambda: self.config.tasks, self.scheduler.states)
        self.exporter_collector = ExporterCollector(self.status, self.api_stats)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.task_collector)
        self.registry.register(self.exporter_collector)

    # -- scrapes ---------------------------------------------------------------------------

    def deadline_for(self, scrape_timeout: str | None) -> float:
        """Scheduler-clock deadline from Prometheus's X-Prometheus-Scrape-Timeout-Seconds."""
        scrape = self.config.scrape
        seconds = scrape.timeout
        if scrape_timeout:
            try:
                seconds = float(scrape_timeout)
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds):  # "inf" would overflow the wait, "nan" cut it to 0
                log.debug(
                    "ignoring malformed scrape timeout header", extra={"value": scrape_timeout}
                )
                seconds = scrape.timeout
        budget = min(MAX_DEADLINE, max(MIN_DEADLINE, seconds - scrape.timeout_offset))
        return self._clock() + budget

    def refresh(self, scrape_timeout: str | None = None) -> RoundReport:
        """Refresh what is due before the scrape's deadline (shared with concurrent scrapes)."""
        report = self.scheduler.refresh(self.deadline_for(scrape_timeout))
        self.last_collect_seconds = report.seconds
        return report

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry's exposition for this Accept header, from text cached per task."""
        return collector_exposition(accept, self.task_collector, [self.exporter_collector])

    def status(self) -> ExporterStatus:
        """The exporter's own gauges."""
        return ExporterStatus(
            budget_remaining=self.scheduler.limiter.remaining(),
            backlog=self.scheduler.last_backlog,
            watched=len(self.config.tasks),
            collect_seconds=self.last_collect_seconds,
            reload_ok=self.reload_status.ok,
            reload_timestamp=self.reload_status.success_timestamp,
        )

    # -- /probe ----------------------------------------------------------------------------

    def probe(
        self, trans_no: str, *, debug: bool = False, scrape_timeout: str | None = None
    ) -> ProbeResult:
        """Query one task now (within the budget and the scrape's deadline); render its series."""
        if not TRANS_NO_RE.fullmatch(trans_no):
            raise ValueError("trans_no must be 1-32 letters, digits, '_' or '-'")
        task = self._task(trans_no)
        started = self._clock()
        exchanges: list[Exchange] = []

        def querier(t: str) -> TaskAnswer:
            exchange = self.client.exchange(t)
            exchanges.append(exchange)
            if exchange.error is not None:
                raise exchange.error
            assert exchange.answer is not None
            return exchange.answer

        timeout = max(0.0, self.deadline_for(scrape_timeout) - self._clock())
        fresh = self.scheduler.query_now(trans_no, querier if debug else None, timeout)
        state = fresh if fresh is not None else self.scheduler.state_of(trans_no)
        seconds = self._clock() - started
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Static(_probe_families(task, state, fresh is not None, seconds)))
        text = ""
        if debug:
            text = self._debug_text(trans_no, fresh, state, exchanges, seconds)
        return ProbeResult(generate_latest(registry), text)

    def _task(self, trans_no: str) -> Task:
        for task in self.config.tasks:
            if task.trans_no == trans_no:
                return task
        return Task(trans_no)

    def _debug_text(
        self,
        trans_no: str,
        fresh: TaskState | None,
        state: TaskState,
        exchanges: list[Exchange],
        seconds: float,
    ) -> str:
        lines = [f"trans_no: {trans_no}", f"probe duration: {seconds:.3f}s"]
        if fresh is None:
            lines.append(
                "no fresh answer: the rate budget is spent, a query of this task is in flight,"
                " or no answer came before the scrape deadline; serving the last known state"
            )
        for ex in exchanges:
            lines += _exchange_lines(ex)
        lines += [
            f"status: {state.status}",
            f"query_success: {int(state.query_ok)}",
            f"last error: {state.last_error or '-'}",
            f"budget remaining: {self.scheduler.limiter.remaining()}",
        ]
        return logs.scrub("\n".join(lines) + "\n")

    # -- reloads ---------------------------------------------------------------------------

    def reload(self) -> list[str]:
        """Load the configuration again; on any problem keep the old one and return them."""
        if self._loader is None:
            return []
        with self._reload_lock:
            try:
                new = self._loader()
            except Exception as exc:  # a reload must never die quietly, whatever went wrong
                raw = exc.problems if isinstance(exc, ConfigError) else [_unexpected(exc)]
                # A file that cannot be parsed can quote the secret in force (as a duplicate
                # key, say) before config.py knows it is one: scrub the known secrets here.
                problems = [logs.scrub(problem) for problem in raw]
                self.reload_status = ReloadStatus(
                    ok=False,
                    success_timestamp=self.reload_status.success_timestamp,
                    problems=problems,
                )
                log.error(
                    "configuration reload failed; keeping the previous configuration",
                    extra={"problems": "; ".join(problems)},
                )
                return list(problems)
            self.apply(new)
            return []

    def apply(self, new: Config) -> None:
        """Put a validated configuration in force, keeping cached answers of kept tasks."""
        old = self.config
        logs.register_secret(new.api.access_key_secret)
        client = self._client_factory(new.api) if _client_changed(old.api, new.api) else None
        self.scheduler.limiter.reconfigure(
            new.api.rate_limit.requests, new.api.rate_limit.period, margin=_margin(new.api)
        )
        self.scheduler.configure(client or self.client, new.refresh)
        if new.api.max_concurrency != old.api.max_concurrency:
            self.scheduler.resize(new.api.max_concurrency)
        if client is not None:
            self.client.close()
            self.client = client
        # The task list first, then the states: a scrape in between shows new tasks as unknown
        # (they are) and never shows a removed or kept task without its answer.
        self.config = new
        self.scheduler.set_tasks(t.trans_no for t in new.tasks)
        self.reload_status = ReloadStatus(ok=True, success_timestamp=self._wall())
        for warning in new.warnings:
            log.warning(warning)
        log.info("configuration loaded", extra={"tasks": len(new.tasks), "source": new.source})

    def close(self) -> None:
        """Stop background work."""
        self.scheduler.close()
        self.client.close()


def _unexpected(exc: Exception) -> str:
    """A one-line problem for an error the configuration loader did not anticipate."""
    return f"cannot load the configuration: {type(exc).__name__}: {exc}"[:500]


def _client_changed(old: ApiConfig, new: ApiConfig) -> bool:
    keys = ("endpoint", "access_key_id", "access_key_secret", "timeout", "max_response_bytes")
    return any(getattr(old, k) != getattr(new, k) for k in keys) or (
        old.max_concurrency != new.max_concurrency or old.timezone != new.timezone
    )


_SIGNATURE = re.compile(r"Signature=[0-9a-f]+")


def _exchange_lines(ex: Exchange) -> list[str]:
    lines = ["", "request:"]
    for name, value in ex.request_headers.items():
        shown = _SIGNATURE.sub("Signature=<redacted>", value) if name == "Authorization" else value
        lines.append(f"  {name}: {shown}")
    lines.append(f"  body: {ex.request_body.decode('utf-8', 'replace')}")
    lines.append(f"response (after {ex.seconds:.3f}s):")
    lines.append(f"  HTTP status: {ex.status if ex.status is not None else '-'}")
    lines.append(f"  X-WS-RequestId: {ex.request_id or '-'}")
    body = ex.response_body[:65536].decode("utf-8", "replace")
    lines.append(f"  body: {body}")
    if ex.error is not None:
        lines.append(f"  error ({ex.error.code}): {ex.error}")
    lines.append("")
    return lines


class _Static:
    """A collector serving a fixed list of families (one probe's output)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _probe_families(task: Task, state: TaskState, queried: bool, seconds: float) -> list[Metric]:
    success = GaugeMetricFamily(
        "probe_success", "1 if the task was queried now and got a valid answer."
    )
    success.add_metric([], 1.0 if queried and state.query_ok else 0.0)
    duration = GaugeMetricFamily("probe_duration_seconds", "How long the probe took.")
    duration.add_metric([], seconds)
    return [success, duration, *task_families(task, state)]


class TaskFileWatcher:
    """Reloads the configuration when a file matched by `task_files` appears, changes or goes."""

    def __init__(self, exporter: Exporter, interval: float = 5.0) -> None:
        self._exporter = exporter
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="task-file-watcher", daemon=True)
        self._seen = self.fingerprint()

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Path, modification time and size of every file the task_files globs match now."""
        out = []
        for path in self._exporter.config.task_file_paths():
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def start(self) -> TaskFileWatcher:
        """Watch in a daemon thread."""
        self._thread.start()
        return self

    def check(self) -> bool:
        """Reload if the task files changed since the last check; True when a reload ran."""
        current = self.fingerprint()
        if current == self._seen:
            return False
        log.info("task files changed; reloading")
        # Remember what was seen before the reload read the files: a change landing while it
        # reads triggers one more reload instead of being taken as already loaded.
        self._seen = current
        self._exporter.reload()
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:
                log.exception("task file watcher failed")

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
