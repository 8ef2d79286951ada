"""The account's request budget: an exact sliding window, even pacing, and throttling pauses.

The window is the hard rule: never more than `requests` arrivals in any span of `period`. The API
counts a request when it arrives, which lies between its send and its answer, so each send counts
from when it is sent until `period` after its answer came (or after its deadline while it is in
flight, or if the process died). That is exact, not padded: with 50 ms answers a 300/5 min budget
is used to 99.9 %. The window lives in the store, so sends made before a restart still count and
replicas sharing a Redis share one window.

Within the window, a token bucket spreads the sends at `requests / period` (shared out among the
replicas), so the budget is not spent in one burst and then idle for a whole period while
processing tasks wait. It holds `pacing_horizon` seconds of sends, enough for any common scrape
interval, so pacing costs no utilisation; and it holds none while the window is full, so the
sends even out after the first period instead of repeating its first burst.

Throttling is the one place the API says the budget was misjudged: all sends pause, 10 s at
first, doubling per throttling episode up to one period (a capped Retry-After may ask for more).
One episode is one step however many replies report it: a throttled reply to a request sent
before the current pause began belongs to that pause.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from exporter.store import Pause, Send, Store

log = logging.getLogger(__name__)

FIRST_PAUSE = 10.0
PACING_HORIZON = 60.0
DEADLINE_SLACK = 1.0  # a request's answer may land this long after its timeout


@dataclass(frozen=True)
class Ticket:
    """Permission to send one request: hand it back with `done`."""

    id: str
    sent: float
    probe: bool


@dataclass(frozen=True)
class Rate:
    """What the budget allows: `requests` per `period`, and the probes' share of it."""

    requests: int
    period: float
    probe_share: float = 0.05

    @property
    def probe_limit(self) -> int:
        """Probe sends allowed per period (at least one)."""
        return max(1, math.floor(self.requests * self.probe_share))


class Budget:
    """Admits sends within the account's rate limit; never raises."""

    def __init__(
        self,
        store: Store,
        rate: Rate,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
        pacing_horizon: float = PACING_HORIZON,
    ) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._rate = rate
        self._timeout = timeout
        self._horizon = pacing_horizon
        self._tokens = self._capacity()
        self._refilled = clock()

    # -- configuration ------------------------------------------------------------------------

    @property
    def rate(self) -> Rate:
        """The rate in force."""
        return self._rate

    def reconfigure(self, rate: Rate, timeout: float) -> None:
        """A new rate or timeout (after a reload); recent sends and the pause still count."""
        with self._lock:
            self._refill(self._clock())
            self._rate, self._timeout = rate, timeout
            self._tokens = min(self._tokens, self._capacity())

    # -- admission ----------------------------------------------------------------------------

    def _share(self) -> float:
        """This exporter's share of the pacing rate (replicas pace together)."""
        return self._rate.requests / self._rate.period / max(1, self._store.replicas())

    def _capacity(self) -> float:
        return float(min(self._rate.requests, max(1, math.ceil(self._share() * self._horizon))))

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled)
        self._tokens = min(self._capacity(), self._tokens + elapsed * self._share())
        self._refilled = now

    def remaining(self) -> int:
        """Requests left in the sliding window right now."""
        used, _ = self._store.window(self._clock(), self._rate.period)
        return max(0, self._rate.requests - used)

    def available(self) -> int:
        """How many requests a round may plan to send now (window, pacing and pause)."""
        now = self._clock()
        if now < self._store.pause().until:
            return 0
        room = self.remaining()
        with self._lock:
            self._refill(now)
            # A full window holds no tokens: otherwise they pile up while it is full and go out
            # in one burst when the previous burst leaves it, every period, for ever.
            self._tokens = min(self._tokens, float(room))
            tokens = math.floor(self._tokens + 1e-9)
        return max(0, tokens)

    def acquire(self, *, probe: bool = False) -> Ticket | None:
        """A ticket to send one request now, or None if the budget does not allow it."""
        if self._clock() < self._store.pause().until:
            return None
        with self._lock:
            # The time is read under the lock: admissions reach the store in time order.
            now = self._clock()
            self._refill(now)
            if self._tokens < 1.0 - 1e-9:
                return None
            send = Send(uuid.uuid4().hex, now, now + self._timeout + DEADLINE_SLACK, probe)
            if not self._store.admit(
                send, self._rate.requests, self._rate.period, self._rate.probe_limit
            ):
                if not probe:  # the window is full (not just the probes' share of it)
                    self._tokens = 0.0
                return None
            self._tokens -= 1.0
        return Ticket(send.id, now, probe)

    def refusal(self, *, probe: bool = False) -> str:
        """Why a send would be refused now, in words ("" when it would not be)."""
        now = self._clock()
        paused = self._store.pause().until - now
        if paused > 0:
            return f"not sent: the API throttled the account; sends resume in {paused:.0f}s"
        used, probes = self._store.window(now, self._rate.period)
        if used >= self._rate.requests:
            return (
                f"not sent: budget spent ({used} of {self._rate.requests} requests "
                f"in the last {self._rate.period:g}s)"
            )
        if probe and probes >= self._rate.probe_limit:
            return (
                f"not sent: the probe share is spent ({probes} of {self._rate.probe_limit} "
                "probes of unwatched tasks per period)"
            )
        with self._lock:
            self._refill(now)
            if self._tokens < 1.0 - 1e-9:
                return (
                    f"not sent: pacing (sends are spread at {self._share():.3g}/s; "
                    f"{self._rate.requests - used} requests left in the window)"
                )
        return ""

    # -- outcomes -----------------------------------------------------------------------------

    def done(
        self, ticket: Ticket, *, throttled: bool = False, retry_after: float | None = None
    ) -> float:
        """The answer to `ticket` came (or it failed): shorten its count; on throttling, pause.

        Returns the pause started by this reply (0 when it started none).
        """
        now = self._clock()
        self._store.finish(ticket.id, now)
        pause = self._store.pause()
        if not throttled:
            if pause.step and ticket.sent >= pause.until:
                self._store.set_pause(Pause(pause.until, pause.started, 0.0))  # backoff over
            return 0.0
        # A Retry-After beyond one period (or "inf") would silence every task for good; after a
        # period without sends the window is empty anyway.
        wanted = 0.0 if retry_after is None or math.isnan(retry_after) else retry_after
        wanted = min(max(0.0, wanted), self._rate.period)
        if ticket.sent < pause.until:  # sent before this episode's pause ended: the same episode
            if now + wanted > pause.until:
                self._store.set_pause(Pause(now + wanted, pause.started, pause.step))
            return 0.0
        step = FIRST_PAUSE if not pause.step else pause.step * 2
        step = min(step, self._rate.period)
        seconds = max(step, wanted)
        self._store.set_pause(Pause(now + seconds, now, step))
        log.warning("API throttled the account; pausing requests", extra={"seconds": seconds})
        return seconds

    def paused_for(self) -> float:
        """Seconds until sends resume after a throttling answer (0 when not paused)."""
        return max(0.0, self._store.pause().until - self._clock())
