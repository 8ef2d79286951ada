"""The account's request budget: a hard sliding window plus pacing.

The sliding window guarantees that no span of `period` ever holds more than `requests` sends (a
plain token bucket that starts full can send twice that in one period). Within it, a small token
bucket paces the sends at `requests / period`, so the budget is spread over the period instead of
being spent in one burst and then starving every task for minutes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """Never more than `requests` sends in any window of `period` seconds."""

    def __init__(
        self,
        requests: int,
        period: float,
        *,
        burst: int | None = None,
        margin: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests = requests
        self.period = period
        # The API counts arrivals, we count sends: a request that waits `margin` in the network
        # can land in a later window, so sends are remembered for period + margin.
        self._window = period + margin
        self._rate = requests / period
        self._burst = float(burst if burst is not None else max(1, math.ceil(requests / 10)))
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()
        self._tokens = self._burst
        self._refilled_at = clock()
        self._paused_until = -math.inf
        self._pause_seconds = 0.0

    def _expire(self, now: float) -> None:
        cutoff = now - self._window
        while self._sent and self._sent[0] <= cutoff:
            self._sent.popleft()

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled_at)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._refilled_at = now

    def available(self) -> int:
        """How many requests may be sent right now."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return 0
            self._expire(now)
            self._refill(now)
            return max(0, min(self.requests - len(self._sent), math.floor(self._tokens + 1e-9)))

    def try_acquire(self) -> bool:
        """Take one request from the budget if the window and the pacing allow it."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return False
            self._expire(now)
            self._refill(now)
            if len(self._sent) >= self.requests or self._tokens < 1.0 - 1e-9:
                return False
            self._tokens -= 1.0
            self._sent.append(now)
            return True

    def remaining(self) -> int:
        """Requests left in the sliding window (the pacing may allow fewer right now)."""
        with self._lock:
            self._expire(self._clock())
            return max(0, self.requests - len(self._sent))

    def throttled(self, retry_after: float | None = None) -> float:
        """The API said we were throttled: pause all sends, doubling the pause each time."""
        with self._lock:
            base = min(self.period, 10.0)
            self._pause_seconds = (
                base if self._pause_seconds == 0 else min(self._pause_seconds * 2, self.period)
            )
            pause = max(self._pause_seconds, retry_after or 0.0)
            self._paused_until = self._clock() + pause
            self._tokens = 0.0
            return pause

    def succeeded(self) -> None:
        """A request went through: the throttling backoff starts over."""
        with self._lock:
            self._pause_seconds = 0.0

    def reconfigure(
        self, requests: int, period: float, *, burst: int | None = None, margin: float = 0.0
    ) -> None:
        """Change the budget in place: recent sends and a throttling pause still count."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self.requests, self.period = requests, period
            self._window = period + margin
            self._rate = requests / period
            self._burst = float(burst if burst is not None else max(1, math.ceil(requests / 10)))
            self._tokens = min(self._tokens, self._burst)

    def paused_for(self) -> float:
        """Seconds until sends resume after a throttling answer (0 when not paused)."""
        with self._lock:
            return max(0.0, self._paused_until - self._clock())
