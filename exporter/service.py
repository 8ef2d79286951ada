"""The running exporter: the configuration in force and everything built from it.

`Exporter` wires the client, the store, the budget and the scheduler together, answers what the
web layer asks (an exposition, a probe, a reload) and applies a new configuration as a whole.
The CLI builds one and hands it to the web layer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector

from exporter import capacity, probe, redaction
from exporter.budget import DEADLINE_SLACK, Budget, Rate
from exporter.client import CloudVodClient
from exporter.collector import (
    ApiStats,
    ExporterCollector,
    ExporterStatus,
    TaskCollector,
    exposition,
    oldest_check_age,
)
from exporter.config import ApiConfig, Config, ConfigError, Task
from exporter.protocol import TaskStatus
from exporter.scheduler import RoundReport, Scheduler, Settings
from exporter.store import Store
from exporter.store.memory import MemoryStore

log = logging.getLogger(__name__)

_SCRAPE_SMOOTHING = 0.2  # weight of the newest interval in the measured scrape interval


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


def rate_of(api: ApiConfig) -> Rate:
    """The budget's rate for an `api` configuration section."""
    limit = api.rate_limit
    return Rate(limit.requests, limit.period, limit.probe_share)


@dataclass
class ReloadStatus:
    """Outcome of the latest (re)load of the configuration."""

    ok: bool = True
    success_timestamp: float | None = None
    problems: list[str] = field(default_factory=list)


class Exporter:
    """Holds the configuration in force and answers scrapes, probes and reloads."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        loader: Callable[[], Config] | None = None,
        client_factory: Callable[[ApiConfig], CloudVodClient] = make_client,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
        top_up_interval: float | None = None,
    ) -> None:
        self._loader = loader
        self._client_factory = client_factory
        self._clock = clock
        self._timer = timer
        self._reload_lock = threading.Lock()
        self.config = config
        redaction.register_secret(config.api.access_key_secret)
        self.client = client_factory(config.api)
        self.api_stats = ApiStats()
        self.store: Store = store if store is not None else MemoryStore(clock)
        self.budget = Budget(
            self.store, rate_of(config.api), timeout=config.api.timeout, clock=clock
        )
        self.scheduler = Scheduler(
            self.client,
            self.store,
            self.budget,
            Settings.of(config),
            final_share=config.refresh.final_share,
            observer=self.api_stats,
            clock=clock,
            timer=timer,
        )
        self.scheduler.set_tasks(t.trans_no for t in config.tasks)
        self.reload_status = ReloadStatus(ok=True, success_timestamp=clock())
        self.ready = True  # an Exporter only exists with a valid configuration
        self.last_collect_seconds = 0.0
        self.scrape_interval = capacity.DEFAULT_SCRAPE_INTERVAL
        self._last_scrape: float | None = None
        self.task_collector = TaskCollector(lambda: self.config.tasks, self.scheduler.states)
        self.exporter_collector = ExporterCollector(self.status, self.api_stats)
        self._others: list[Collector] = [
            self.exporter_collector,
            ProcessCollector(registry=None),
            PlatformCollector(registry=None),
        ]
        self._stop = threading.Event()
        self._top_up: threading.Thread | None = None
        if top_up_interval:
            self._top_up = threading.Thread(
                target=self._top_up_loop, args=(top_up_interval,), name="top-up", daemon=True
            )
            self._top_up.start()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.task_collector)
        for collector in self._others:
            self.registry.register(collector)

    # -- scrapes ---------------------------------------------------------------------------

    def refresh(self, timeout: float | None = None) -> RoundReport:
        """Refresh what is due within `timeout` seconds (shared with concurrent scrapes).

        Without a timeout: the configured scrape.timeout minus scrape.timeout_offset.
        """
        if timeout is None:
            timeout = self.config.scrape.timeout - self.config.scrape.timeout_offset
        now = self._timer()
        if self._last_scrape is not None and now - self._last_scrape > 0.5:
            # Scrapes of two Prometheus servers a moment apart count as one scrape.
            self.scrape_interval += _SCRAPE_SMOOTHING * (
                now - self._last_scrape - self.scrape_interval
            )
        self._last_scrape = now
        report = self.scheduler.refresh(timeout)
        self.last_collect_seconds = report.seconds
        return report

    def exposition(self, *, openmetrics_format: bool = False) -> bytes:
        """The registry's exposition (text 0.0.4 or OpenMetrics) from text cached per task."""
        return exposition(self.task_collector, self._others, openmetrics_format=openmetrics_format)

    def status(self) -> ExporterStatus:
        """The exporter's own gauges."""
        states = self.scheduler.states()
        counts: Counter[TaskStatus | None] = Counter(
            None if s.answer is None else s.answer.status for s in states.values()
        )
        config = self.config
        cap = capacity.estimate(counts, config.api.rate_limit, config.refresh, self.scrape_interval)
        return ExporterStatus(
            budget_remaining=self.budget.remaining(),
            backlog=self.scheduler.last_backlog,
            watched=len(config.tasks),
            collect_seconds=self.last_collect_seconds,
            reload_ok=self.reload_status.ok,
            reload_timestamp=self.reload_status.success_timestamp,
            pause_seconds=self.budget.paused_for(),
            storage_backend=self.store.backend,
            storage_up=self.store.up(),
            replicas=self.store.replicas(),
            refresh_interval={s.label: v for s, v in cap.achieved.items()},
            refresh_target={s.label: v for s, v in cap.target.items()},
            age_max=oldest_check_age(states.values(), self._clock()),
        )

    # -- /probe ----------------------------------------------------------------------------

    def probe(self, trans_no: str, *, timeout: float, debug: bool = False) -> probe.ProbeResult:
        """Ask about one task now unless its answer is fresh; render its series."""
        probe.check_trans_no(trans_no)
        started = self._timer()
        attempt = self.scheduler.probe(trans_no, timeout)
        return probe.render(
            self.task(trans_no),
            attempt,
            seconds=self._timer() - started,
            refresh=self.config.refresh,
            now=self._clock(),
            budget_remaining=self.budget.remaining(),
            debug=debug,
        )

    def task(self, trans_no: str) -> Task:
        """The watched task (with its labels), or a bare one for an unwatched transNo."""
        for task in self.config.tasks:
            if task.trans_no == trans_no:
                return task
        return Task(trans_no)

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
                problems = [redaction.redact(problem) for problem in raw]
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
        """Put a validated configuration in force as a whole, keeping answers of kept tasks."""
        old = self.config
        redaction.register_secret(new.api.access_key_secret)
        client = self._client_factory(new.api) if new.api != old.api else None
        self.budget.reconfigure(rate_of(new.api), new.api.timeout)
        # The task list first, then the states: a scrape in between shows new tasks as unknown
        # (they are) and never shows a removed or kept task without its answer.
        self.config = new
        self.scheduler.apply(
            Settings.of(new),
            (t.trans_no for t in new.tasks),
            client=client,
            final_share=new.refresh.final_share,
        )
        if client is not None:
            # Requests in flight on the old client end within its timeout: close it after
            # that, so a reload never cuts them short (and never counts them as failures).
            closer = threading.Timer(old.api.timeout + DEADLINE_SLACK, self.client.close)
            closer.daemon = True
            closer.start()
            self.client = client
        if new.storage != old.storage:
            log.warning("a changed storage section takes effect at the next restart")
        self.reload_status = ReloadStatus(ok=True, success_timestamp=self._clock())
        for warning in new.warnings:
            log.warning(warning)
        log.info("configuration loaded", extra={"tasks": len(new.tasks), "source": new.source})

    def _top_up_loop(self, interval: float) -> None:
        """Reuse budget freed between scrapes (see Scheduler.top_up) while scrapes keep coming."""
        while not self._stop.wait(interval):
            try:
                self.scheduler.top_up(within=2 * self.scrape_interval + 5)
            except Exception:  # the loop must outlive any single failure
                log.exception("top-up round failed")

    def close(self) -> None:
        """Stop background work and close the store."""
        self._stop.set()
        self.scheduler.close()
        self.client.close()
        self.store.close()


def _unexpected(exc: Exception) -> str:
    """A one-line problem for an error the configuration loader did not anticipate."""
    return f"cannot load the configuration: {type(exc).__name__}: {exc}"[:500]
