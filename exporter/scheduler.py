"""The executor: refresh rounds over a small thread pool, within the budget and the deadline.

A scrape calls `Scheduler.refresh(timeout)`. The policy picks the due tasks in order of their
claim on the budget; each is claimed in the store (so no other round or replica asks about it at
the same time), admitted by the budget, asked, and its new state recorded in the store. The scrape
returns at its deadline whether or not the round has finished; unfinished requests complete in
the background, and scrapes that arrive while a round runs join it instead of starting another.

What a task's state becomes is `exporter.state`'s business, the order `exporter.policy`'s, the
window and pauses `exporter.budget`'s; this module only runs things.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Protocol

from exporter import state as rules
from exporter.budget import DEADLINE_SLACK, Budget
from exporter.client import Exchange
from exporter.config import Config, RefreshConfig
from exporter.errors import ApiInvalidResponse, ApiThrottled
from exporter.policy import Plan, Policy
from exporter.state import NEVER_ASKED, TaskState
from exporter.store import Store

log = logging.getLogger(__name__)

PROBED_CACHE_SIZE = 10_000


class TaskQuerier(Protocol):
    """What the scheduler needs from a client."""

    def exchange(self, trans_no: str) -> Exchange:
        """Ask about one task; the answer or the ApiError is in the Exchange (never raises)."""
        ...


class RequestObserver(Protocol):
    """Told about every request sent to the API (the exporter's own metrics)."""

    def observe(self, seconds: float, error_code: str | None) -> None:
        """One request took `seconds`; `error_code` is the errors_total label, or None."""
        ...


@dataclass(frozen=True)
class Settings:
    """The part of the configuration the scheduler runs by."""

    refresh: RefreshConfig
    max_concurrency: int
    timeout: float  # one request's deadline: a claim lasts this long plus a margin

    @classmethod
    def of(cls, config: Config) -> Settings:
        """The scheduler settings of a configuration."""
        return cls(config.refresh, config.api.max_concurrency, config.api.timeout)


class Outcome(enum.Enum):
    """What happened when a task was to be asked about."""

    ANSWERED = "answered now"
    FAILED = "asked now; the query failed"
    CACHED = "answered from cache: the last answer is still fresh"
    NOT_SENT = "not sent"
    IN_FLIGHT = "in flight: a query of this task is already running"
    DEADLINE = "no answer before the deadline"


@dataclass(frozen=True)
class Attempt:
    """One task's attempt: the outcome, the state after it, and the exchange if one was sent."""

    outcome: Outcome
    state: TaskState
    exchange: Exchange | None = None
    reason: str = ""  # why it was not sent


@dataclass(frozen=True)
class RoundReport:
    """What a scrape's refresh achieved by its deadline."""

    due: int  # tasks that were due when the round started
    sent: int  # tasks finished by the deadline
    backlog: int  # due tasks deferred (budget) or unfinished (deadline)
    joined: bool  # this scrape joined a round another scrape started
    seconds: float


class _Round:
    """One refresh round, shared by every scrape that arrives while some of it has not started.

    Waiting scrapes return when the round is finished, at their deadline, or once everything has
    started and what still runs has run longer than `straggler` seconds: a stuck request keeps
    neither the scrape nor (as it is no longer joinable) the next round waiting.
    """

    def __init__(self, plan: Plan, straggler: float) -> None:
        self.pending = set(plan.order)
        self.deferred = plan.deferred
        self.due = plan.due
        self._unstarted = set(plan.order)
        self._started: dict[str, float] = {}
        self._straggler = straggler
        self._changed = threading.Condition()

    def open(self) -> bool:
        """Whether some of the round has not started yet (a scrape arriving now joins it)."""
        with self._changed:
            return bool(self._unstarted)

    def start(self, trans_no: str) -> None:
        with self._changed:
            self._unstarted.discard(trans_no)
            self._started[trans_no] = time.monotonic()
            self._changed.notify_all()

    def finish(self, trans_no: str, *, deferred: bool) -> None:
        with self._changed:
            self.pending.discard(trans_no)
            self._unstarted.discard(trans_no)
            self._started.pop(trans_no, None)
            self.deferred += deferred
            self._changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Until finished, `timeout` seconds, or only stragglers are left."""
        end = time.monotonic() + max(0.0, timeout)
        with self._changed:
            while self.pending:
                now = time.monotonic()
                wake = end
                if not self._unstarted and self._started:
                    oldest = min(self._started.values())
                    if now - oldest >= self._straggler:
                        return
                    wake = min(end, oldest + self._straggler)
                if now >= end:
                    return
                self._changed.wait(max(0.001, wake - now))

    def backlog(self) -> tuple[int, int]:
        """(finished, deferred or unfinished) right now."""
        with self._changed:
            waiting = len(self.pending) + self.deferred
            return self.due - waiting, waiting


class Scheduler:
    """Decides which tasks to refresh, asks about them, and keeps the latest state of each."""

    def __init__(
        self,
        client: TaskQuerier,
        store: Store,
        budget: Budget,
        settings: Settings,
        *,
        final_share: float = 0.1,
        observer: RequestObserver | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.budget = budget
        self._client = client
        self._settings = settings
        self._policy = Policy(final_share)
        self._observer = observer
        self._clock = clock
        self._timer = timer  # measures durations (request latency, round length)
        self._lock = threading.Lock()
        now = clock()
        # States from before a restart, until the tasks are set; none from the future (a wall
        # clock set back would otherwise hold every refresh until it caught up).
        self._known = {}
        for trans_no, stored in store.load().items():
            self._known[trans_no] = sane = rules.not_after(stored, now)
            if sane is not stored:
                store.put(trans_no, sane)
        self._states: dict[str, TaskState] = {}
        self._probed: OrderedDict[str, TaskState] = OrderedDict()
        self._in_flight: set[str] = set()
        self._round: _Round | None = None
        self._pool = self._new_pool(settings.max_concurrency)
        # Probes of unwatched tasks may hold half the pool (of its first size: a semaphore that
        # probes in flight hold cannot be swapped safely).
        self._probe_slots = threading.BoundedSemaphore(max(1, settings.max_concurrency // 2))
        self._closed = False
        self._scraped_at: float | None = None  # when the last scrape started a round
        self.last_plan: Plan | None = None
        self.last_backlog = 0

    @staticmethod
    def _new_pool(size: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(size, thread_name_prefix="cloudvod-query")

    # -- configuration -----------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self._settings

    def apply(
        self,
        settings: Settings,
        trans_nos: Iterable[str],
        *,
        client: TaskQuerier | None = None,
        final_share: float | None = None,
    ) -> None:
        """Run by new settings, a new task list and (optionally) a new client, all at once.

        States of tasks that stay watched are kept; those of removed tasks are dropped from the
        store. Due times follow the new refresh policy at once.
        """
        wanted = list(dict.fromkeys(trans_nos))
        old_pool = None
        with self._lock:
            if client is not None:
                self._client = client
            if final_share is not None:
                self._policy.final_share = final_share
            if settings.max_concurrency != self._settings.max_concurrency:
                old_pool, self._pool = self._pool, self._new_pool(settings.max_concurrency)
            self._settings = settings
            known = {**self._known, **self._states}
            self._known = {}
            self._states = {t: known.get(t, NEVER_ASKED) for t in wanted}
        self.store.retain(wanted)
        if old_pool is not None:
            old_pool.shutdown(wait=False)  # what it still runs finishes on its own

    def set_tasks(self, trans_nos: Iterable[str]) -> None:
        """Watch exactly these tasks (settings unchanged)."""
        self.apply(self._settings, trans_nos)

    def states(self) -> Mapping[str, TaskState]:
        """A consistent snapshot of every watched task's state, in configuration order."""
        with self._lock:
            return dict(self._states)

    def state_of(self, trans_no: str) -> TaskState:
        """The last known state of a watched or recently probed task."""
        with self._lock:
            return self._states.get(trans_no) or self._probed.get(trans_no) or NEVER_ASKED

    # -- refresh rounds ------------------------------------------------------------------------

    def refresh(self, timeout: float) -> RoundReport:
        """Refresh what is due within the budget; return within `timeout` seconds."""
        started = self._timer()
        end = time.monotonic() + timeout  # the deadline counts from the scrape's arrival
        current, joined = self._join_or_start_round()
        current.wait(end - time.monotonic())
        sent, backlog = current.backlog()
        self.last_backlog = backlog
        return RoundReport(current.due, sent, backlog, joined, self._timer() - started)

    def _join_or_start_round(self) -> tuple[_Round, bool]:
        with self._lock:
            if self._round is not None and self._round.open():
                return self._round, True
        # The store's round trips (Redis) happen outside the lock: a slow store must not block
        # the renderer or the other scrapes' state reads.
        changes = self.store.changes()
        allowance = self.budget.available()
        # Planning and launching under one lock: two scrapes never both start a round from the
        # same due list, and a pool swapped by apply() is never used after its shutdown.
        with self._lock:
            self._adopt(changes)
            if self._round is not None and self._round.open():
                return self._round, True
            now = self._clock()
            self._scraped_at = now
            plan = self._policy.plan(
                self._states, self._settings.refresh, now, allowance, self._in_flight
            )
            self.last_plan = plan
            self._round = self._launch(plan)
            if plan.due:
                log.debug("refresh round", extra={"due": plan.due, "queued": len(plan.order)})
            return self._round, False

    def _launch(self, plan: Plan) -> _Round:
        """Queue a plan's tasks on the pool (lock held)."""
        # A request still running after a quarter of its timeout (1 s at least) is a
        # straggler: scrapes stop waiting for it and serve its last answer.
        round_ = _Round(plan, max(1.0, self._settings.timeout / 4))
        self._in_flight.update(plan.order)
        for trans_no in plan.order:
            self._pool.submit(self._run, round_, trans_no)
        return round_

    def top_up(self, within: float) -> int:
        """Between scrapes, ask about what the last scrape wanted but the budget deferred.

        A send's slot in the window frees a period after its answer, which is just after a
        scrape: waiting for the next scrape to reuse it would idle every slot for one scrape
        interval per period (5 % of the budget at 15 s, 17 % at 60 s). So, as the budget frees,
        this asks about tasks not asked since the last scrape began (a processing task is still
        asked at most once per scrape), in the policy's order, and only while a scrape came
        within `within` seconds: when nobody scrapes, nothing is sent. Returns how many were
        queued.
        """
        scraped = self._scraped_at
        if scraped is None or self._clock() - scraped > within:
            return 0
        allowance = self.budget.available()  # outside the lock: a store round trip
        if allowance <= 0:
            return 0
        with self._lock:
            if self._closed:
                return 0
            now = self._clock()
            waiting = {
                t: s
                for t, s in self._states.items()
                if s.checked_at is None or s.checked_at < scraped
            }
            plan = self._policy.plan(
                waiting, self._settings.refresh, now, allowance, self._in_flight
            )
            if plan.order:
                self._launch(plan)
            return len(plan.order)

    def _adopt(self, changes: Mapping[str, TaskState]) -> None:
        """Take answers other replicas got (lock held)."""
        now = self._clock()
        for trans_no, changed in changes.items():
            new = rules.not_after(changed, now)
            old = self._states.get(trans_no)
            if old is not None and _newer(new, old):
                self._states[trans_no] = new

    def _run(self, round_: _Round, trans_no: str) -> None:
        deferred = False
        round_.start(trans_no)
        try:
            deferred = self._attempt(trans_no, probe=False).outcome is Outcome.NOT_SENT
        except Exception:  # a bug must not strand the round
            log.exception("refresh of a task failed unexpectedly", extra={"trans_no": trans_no})
        finally:
            with self._lock:
                self._in_flight.discard(trans_no)
            round_.finish(trans_no, deferred=deferred)

    # -- /probe --------------------------------------------------------------------------------

    def probe(self, trans_no: str, timeout: float) -> Attempt:
        """Ask about one task now if its answer is not fresh, within the budget and `timeout`.

        A probe of a task that is not watched may spend only the probes' share of the budget,
        and such probes never take more than half the pool, so a flood of them cannot delay
        watched tasks. A probe of a watched task is that task's refresh (the multi-target
        pattern): it waits for the pool like a round does.
        """
        with self._lock:
            watched = trans_no in self._states
            current = self._states.get(trans_no) or self._probed.get(trans_no) or NEVER_ASKED
            if current.query_ok and rules.due_at(current, self._settings.refresh) > self._clock():
                return Attempt(Outcome.CACHED, current)
            if trans_no in self._in_flight:
                return Attempt(Outcome.IN_FLIGHT, current)
        if not watched:  # outside the lock: the refusal asks the store
            reason = self.budget.refusal(probe=True)
            if not reason and not self._probe_slots.acquire(blocking=False):
                reason = "not sent: too many probes of unwatched tasks in flight"
            if reason:
                return Attempt(Outcome.NOT_SENT, current, reason=reason)
        with self._lock:
            if trans_no in self._in_flight or self._closed:
                if not watched:
                    self._probe_slots.release()
                return Attempt(Outcome.IN_FLIGHT, current)
            self._in_flight.add(trans_no)
            future: Future[Attempt] = self._pool.submit(self._run_probe, trans_no, not watched)
        try:
            return future.result(max(0.0, timeout))
        except FutureTimeout:
            return Attempt(Outcome.DEADLINE, self.state_of(trans_no))

    def _run_probe(self, trans_no: str, unwatched: bool) -> Attempt:
        try:
            return self._attempt(trans_no, probe=unwatched)
        finally:
            if unwatched:
                self._probe_slots.release()
            with self._lock:
                self._in_flight.discard(trans_no)

    # -- one task ------------------------------------------------------------------------------

    def _attempt(self, trans_no: str, *, probe: bool) -> Attempt:
        """Claim the task, check it is still due, send within the budget, record the outcome."""
        settings = self._settings
        if not self.store.claim(trans_no, settings.timeout + DEADLINE_SLACK):
            return Attempt(Outcome.IN_FLIGHT, self.state_of(trans_no))  # another replica asks
        try:
            stored = self.store.get(trans_no)
            if stored is not None:
                stored = rules.not_after(stored, self._clock())
            with self._lock:
                mine = self._states.get(trans_no)
                if stored is not None and mine is not None and _newer(stored, mine):
                    self._states[trans_no] = mine = stored  # another replica just answered
                if mine is not None and rules.due_at(mine, settings.refresh) > self._clock():
                    return Attempt(Outcome.CACHED, mine)
            ticket = self.budget.acquire(probe=probe)
            if ticket is None:
                return Attempt(
                    Outcome.NOT_SENT,
                    self.state_of(trans_no),
                    reason=self.budget.refusal(probe=probe),
                )
            started = self._timer()
            exchange = self._exchange(trans_no)
            seconds = self._timer() - started
            error = exchange.error
            self.budget.done(
                ticket,
                throttled=isinstance(error, ApiThrottled),
                retry_after=error.retry_after if isinstance(error, ApiThrottled) else None,
            )
            if self._observer is not None:
                self._observer.observe(seconds, rules.error_code(exchange.answer, error))
            new = self._record(trans_no, exchange)
            outcome = Outcome.ANSWERED if error is None else Outcome.FAILED
            return Attempt(outcome, new, exchange)
        finally:
            self.store.release(trans_no)

    def _exchange(self, trans_no: str) -> Exchange:
        try:
            exchange = self._client.exchange(trans_no)
        except Exception as exc:  # a bug or a hostile answer must not kill the worker
            log.exception("unexpected failure querying task", extra={"trans_no": trans_no})
            exchange = Exchange(
                trans_no, error=ApiInvalidResponse(f"unexpected {type(exc).__name__}")
            )
        if exchange.answer is None and exchange.error is None:
            exchange.error = ApiInvalidResponse("no answer and no error")
        return exchange

    def _record(self, trans_no: str, exchange: Exchange) -> TaskState:
        now = self._clock()
        with self._lock:
            watched = trans_no in self._states
            old = (self._states if watched else self._probed).get(trans_no, NEVER_ASKED)
            if self._closed:  # cut short by the shutdown: not the task's failure, not stored
                return old
            if exchange.answer is not None:
                new = rules.answered(old, exchange.answer, now)
            else:
                assert exchange.error is not None
                new = rules.failed(old, exchange.error, now)
            if watched:
                self._states[trans_no] = new
            else:  # probed but not watched: remember a bounded number of them
                self._probed[trans_no] = new
                self._probed.move_to_end(trans_no)
                while len(self._probed) > PROBED_CACHE_SIZE:
                    self._probed.popitem(last=False)
        if watched:
            self.store.put(trans_no, new)
        return new

    def close(self) -> None:
        """Stop the worker threads; what requests in flight bring back is not recorded."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


def _newer(candidate: TaskState, current: TaskState) -> bool:
    """Whether a stored state is more recent than the one held."""
    if candidate.checked_at is None:
        return False
    return current.checked_at is None or candidate.checked_at > current.checked_at
