"""Test doubles: a clock that only moves when told, and an in-process task querier."""

from __future__ import annotations

import threading
from collections.abc import Callable

from exporter.answers import TaskAnswer
from exporter.client import Exchange
from exporter.errors import ApiError
from exporter.protocol import TaskStatus


class FakeClock:
    """A monotonic and wall clock that moves only when the test advances it."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeQuerier:
    """Answers from a dict of statuses; records every call; optional per-task errors."""

    def __init__(
        self,
        statuses: dict[str, int] | None = None,
        *,
        clock: FakeClock | None = None,
        latency: float = 0.0,
    ) -> None:
        self.statuses = dict(statuses or {})
        self.errors: dict[str, Callable[[], ApiError]] = {}
        self.calls: list[str] = []
        self.call_times: list[float] = []
        self._clock = clock
        self._latency = latency
        self._lock = threading.Lock()
        self.gate: threading.Event | None = None  # when set, queries wait for it

    def query(self, trans_no: str) -> TaskAnswer:
        with self._lock:
            self.calls.append(trans_no)
            if self._clock is not None:
                self.call_times.append(self._clock())
        if self.gate is not None:
            self.gate.wait(10)
        if self._clock is not None and self._latency:
            self._clock.advance(self._latency)
        if trans_no in self.errors:
            raise self.errors[trans_no]()
        return TaskAnswer(
            trans_no=trans_no, task_id=f"id-{trans_no}", status=TaskStatus(self.statuses[trans_no])
        )

    def exchange(self, trans_no: str) -> Exchange:
        """The scheduler's entry point: `query` wrapped as the real client wraps it."""
        exchange = Exchange(trans_no)
        try:
            exchange.answer = self.query(trans_no)
        except ApiError as exc:
            exchange.error = exc
        return exchange
