"""Which tasks to ask about, when, and how many at once.

A scrape calls `Scheduler.refresh(deadline)`. The scheduler picks the tasks whose answer is older
than `refresh.<status>` (never-answered first, then the most overdue), sends as many as the rate
budget allows over a small thread pool, and returns at the deadline whether or not the round has
finished; unfinished requests complete in the background. Scrapes that arrive while a round is
running join it instead of starting another: the API is never asked twice for a task in a round.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Protocol

from exporter.answers import STILL_PROCESSING, TaskAnswer
from exporter.client import TaskQuerier
from exporter.config import RefreshConfig
from exporter.errors import ApiError, ApiInvalidResponse, ApiThrottled
from exporter.metrics import STATUS_NAMES
from exporter.ratelimit import RateLimiter

log = logging.getLogger(__name__)

PROBED_CACHE_SIZE = 10_000


class RequestObserver(Protocol):
    """Told about every request sent to the API (the exporter's own metrics)."""

    def observe(self, seconds: float, error_code: str | None) -> None:
        """One request took `seconds`; `error_code` is the errors_total label, or None."""
        ...


@dataclass(frozen=True)
class TaskState:
    """Everything known about one watched task. Replaced, never mutated."""

    answer: TaskAnswer | None = None  # the last valid answer
    answered_at: float | None = None  # wall-clock time of that answer
    query_ok: bool = False  # whether the latest query got a valid answer
    failures: int = 0  # consecutive failed queries
    last_error: str | None = None  # errors_total code of the latest failure
    checked_at: float = -math.inf  # scheduler-clock time of the last answer or counted failure

    @property
    def status(self) -> str:
        """processing, successful, failed, or unknown when never answered."""
        return "unknown" if self.answer is None else STATUS_NAMES[self.answer.status]

    def due_at(self, refresh: RefreshConfig) -> float:
        """When the next refresh is due under this refresh policy (scheduler clock)."""
        if self.failures:
            backoff: float = refresh.error * 2.0 ** min(self.failures - 1, 30)
            return self.checked_at + min(backoff, refresh.error_max)
        if self.answer is None:
            return -math.inf
        intervals = {1: refresh.processing, 2: refresh.successful, 3: refresh.failed}
        return self.checked_at + intervals[self.answer.status]


@dataclass(frozen=True)
class RoundReport:
    """What a scrape's refresh achieved by its deadline."""

    due: int  # tasks that were due when the round started
    sent: int  # requests finished by the deadline
    backlog: int  # due tasks deferred (budget) or unfinished (deadline)
    joined: bool  # this scrape joined a round another scrape started
    seconds: float


class _Round:
    """One refresh round shared by every scrape that arrives while it runs."""

    def __init__(self, queued: list[str], deferred: int, started: float) -> None:
        self.pending = set(queued)
        self.deferred = deferred
        self.due = len(queued) + deferred
        self.started = started
        self.done = threading.Event()
        self._lock = threading.Lock()
        if not queued:
            self.done.set()

    def finish(self, trans_no: str, *, deferred: bool = False) -> None:
        with self._lock:
            self.pending.discard(trans_no)
            self.deferred += deferred
            if not self.pending:
                self.done.set()

    def backlog(self) -> tuple[int, int]:
        """(finished, deferred or unfinished) right now."""
        with self._lock:
            waiting = len(self.pending) + self.deferred
            return self.due - waiting, waiting


class Scheduler:
    """Decides which tasks to refresh and keeps the latest answer of each."""

    def __init__(
        self,
        client: TaskQuerier,
        limiter: RateLimiter,
        refresh: RefreshConfig,
        *,
        max_concurrency: int = 4,
        observer: RequestObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.refresh_config = refresh
        self._observer = observer
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._states: dict[str, TaskState] = {}
        self._probed: OrderedDict[str, TaskState] = OrderedDict()
        self._in_flight: set[str] = set()
        self._round: _Round | None = None
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="cloudvod-query")
        self.last_backlog = 0

    # -- the watched set -------------------------------------------------------------------

    def set_tasks(self, trans_nos: Iterable[str]) -> None:
        """Watch exactly these tasks; answers of tasks that stay watched are kept."""
        wanted = list(dict.fromkeys(trans_nos))
        with self._lock:
            self._states = {t: self._states.get(t, TaskState()) for t in wanted}

    def configure(self, client: TaskQuerier, refresh: RefreshConfig) -> None:
        """Switch to a new client or refresh policy (after a reload); due times follow at once."""
        with self._lock:
            self.client, self.refresh_config = client, refresh

    def states(self) -> Mapping[str, TaskState]:
        """A consistent snapshot of every watched task's state, in configuration order."""
        with self._lock:
            return dict(self._states)

    # -- refresh rounds --------------------------------------------------------------------

    def due_tasks(self) -> list[str]:
        """The tasks due now: never-answered first, then the most overdue."""
        with self._lock:
            return self._due_locked(self._clock())

    def _due_locked(self, now: float) -> list[str]:
        refresh = self.refresh_config
        due = []
        for t, state in self._states.items():
            due_at = state.due_at(refresh)
            if due_at <= now and t not in self._in_flight:
                due.append((state.answer is not None, due_at, t))
        due.sort()
        return [t for _, _, t in due]

    def refresh(self, deadline: float) -> RoundReport:
        """Refresh what is due within the budget; return by `deadline` (scheduler clock)."""
        started = self._clock()
        current, joined = self._join_or_start_round()
        current.done.wait(max(0.0, deadline - self._clock()))
        sent, backlog = current.backlog()
        self.last_backlog = backlog
        return RoundReport(current.due, sent, backlog, joined, self._clock() - started)

    def _join_or_start_round(self) -> tuple[_Round, bool]:
        # All under one lock: two scrapes can never both start a round from the same due list,
        # and a pool swapped by resize() is never used after its shutdown.
        with self._lock:
            if self._round is not None and not self._round.done.is_set():
                return self._round, True
            now = self._clock()
            due = self._due_locked(now)
            allowance = min(len(due), self.limiter.available())
            queued = due[:allowance]
            self._round = _Round(queued, len(due) - allowance, now)
            self._in_flight.update(queued)
            for trans_no in queued:
                self._pool.submit(self._run, self._round, trans_no)
            if due:
                log.debug("refresh round", extra={"due": len(due), "queued": len(queued)})
            return self._round, False

    def _run(self, round_: _Round, trans_no: str) -> None:
        deferred = False
        try:
            if self.limiter.try_acquire():
                self._query(trans_no)
            else:
                deferred = True
        finally:
            with self._lock:
                self._in_flight.discard(trans_no)
            round_.finish(trans_no, deferred=deferred)

    def query_now(
        self,
        trans_no: str,
        querier: Callable[[str], TaskAnswer] | None = None,
        timeout: float | None = None,
    ) -> TaskState | None:
        """Ask about one task now (for /probe), over the pool and within the budget.

        None when the budget is spent, the task is already being asked about, or no answer came
        within `timeout`; a late answer is still recorded when it arrives.
        """
        with self._lock:
            if trans_no in self._in_flight:
                return None
            self._in_flight.add(trans_no)
            future = self._pool.submit(self._probe, trans_no, querier)
        try:
            return future.result(timeout)
        except FutureTimeout:
            return None

    def _probe(
        self, trans_no: str, querier: Callable[[str], TaskAnswer] | None
    ) -> TaskState | None:
        try:
            return self._query(trans_no, querier) if self.limiter.try_acquire() else None
        finally:
            with self._lock:
                self._in_flight.discard(trans_no)

    def state_of(self, trans_no: str) -> TaskState:
        """The last known state of a watched or recently probed task."""
        with self._lock:
            return self._states.get(trans_no) or self._probed.get(trans_no) or TaskState()

    def resize(self, max_concurrency: int) -> None:
        """Use a pool of a new size; requests queued in the old one finish on their own."""
        with self._lock:
            old = self._pool
            self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="cloudvod-query")
        old.shutdown(wait=False)

    # -- one request -----------------------------------------------------------------------

    def _query(
        self, trans_no: str, querier: Callable[[str], TaskAnswer] | None = None
    ) -> TaskState:
        started = self._clock()
        error: ApiError | None = None
        answer: TaskAnswer | None = None
        try:
            answer = (querier or self.client.query)(trans_no)
        except ApiError as exc:
            error = exc
        except Exception as exc:  # a bug or a hostile answer must not kill the worker
            log.exception("unexpected failure querying task", extra={"trans_no": trans_no})
            error = ApiInvalidResponse(f"unexpected {type(exc).__name__}")
        seconds = self._clock() - started
        if self._observer is not None:
            code = error.code if error is not None else None
            if answer is not None and answer.api_code == STILL_PROCESSING:
                code = str(STILL_PROCESSING)
            self._observer.observe(seconds, code)
        if isinstance(error, ApiThrottled):
            # A Retry-After beyond one whole window (or "inf") would silence every task for
            # good; after a period without sends the window is empty anyway.
            retry_after = error.retry_after
            if retry_after is not None:
                retry_after = min(retry_after, self.limiter.period)
            pause = self.limiter.throttled(retry_after)
            log.warning("API throttled the account; pausing requests", extra={"seconds": pause})
        elif error is None:
            self.limiter.succeeded()
        return self._record(trans_no, answer, error)

    def _record(
        self, trans_no: str, answer: TaskAnswer | None, error: ApiError | None
    ) -> TaskState:
        now = self._clock()
        with self._lock:
            watched = trans_no in self._states
            old = (self._states if watched else self._probed).get(trans_no, TaskState())
            if answer is not None:
                if answer.api_code == STILL_PROCESSING and old.answer is not None:
                    # 1560 carries no task details: keep the task ID we knew.
                    answer = replace(answer, task_id=old.answer.task_id)
                state = TaskState(
                    answer=answer, answered_at=self._wall(), query_ok=True, checked_at=now
                )
            elif isinstance(error, ApiThrottled):
                # Not the task's fault: it stays due and is retried once the pause is over.
                state = replace(old, query_ok=False, last_error=error.code)
            else:
                state = replace(
                    old,
                    query_ok=False,
                    failures=old.failures + 1,
                    last_error=error.code if error else None,
                    checked_at=now,
                )
            if watched:
                self._states[trans_no] = state
            else:  # probed but not watched: remember a bounded number of them
                self._probed[trans_no] = state
                self._probed.move_to_end(trans_no)
                while len(self._probed) > PROBED_CACHE_SIZE:
                    self._probed.popitem(last=False)
            return state

    def close(self) -> None:
        """Stop the worker threads; requests in flight finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)
