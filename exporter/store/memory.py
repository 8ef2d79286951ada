"""The in-process store: the reference behaviour of every backend, kept in dictionaries."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Collection

from exporter.state import TaskState
from exporter.store import Pause, Send, counts

# Sends are kept this long (or one period, if longer) after they stop counting, so a reload to a
# longer period still counts every send its window holds.
RETENTION = 3600.0


class MemoryStore:
    """Task states, sends, claims and the pause of one process; nothing survives it."""

    backend = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, TaskState] = {}
        self._sends: dict[str, Send] = {}  # every send kept, counting or not
        # Those that count for `_period` as of `_counted_at`, and their probes. Two heaps by end
        # find what stops counting and what may be dropped without a scan; a send whose end
        # changed is pushed again, and entries that no longer match are skipped.
        self._counted: set[str] = set()
        self._probes = 0
        self._counting: list[tuple[float, str]] = []
        self._keeping: list[tuple[float, str]] = []
        self._counted_at = -float("inf")
        self._claims: dict[str, float] = {}  # trans_no -> when the claim expires
        self._pause = Pause()
        self._period = 0.0  # the period the counted set is for

    def up(self) -> bool:
        """A dictionary always answers."""
        return True

    def replicas(self) -> int:
        """Nobody shares a process's memory."""
        return 1

    def load(self) -> dict[str, TaskState]:
        """Every state held."""
        with self._lock:
            return dict(self._states)

    def changes(self) -> dict[str, TaskState]:
        """No other writer."""
        return {}

    def get(self, trans_no: str) -> TaskState | None:
        """One task's state."""
        with self._lock:
            return self._states.get(trans_no)

    def put(self, trans_no: str, state: TaskState) -> None:
        """Keep a task's state."""
        with self._lock:
            self._states[trans_no] = state
        self._saved_state(trans_no, state)

    def retain(self, keep: Collection[str]) -> None:
        """Drop the states of tasks no longer watched."""
        wanted = set(keep)
        with self._lock:
            gone = [t for t in self._states if t not in wanted]
            for trans_no in gone:
                del self._states[trans_no]
        if gone:
            self._dropped_states(gone)

    def claim(self, trans_no: str, ttl: float) -> bool:
        """One claim per task at a time."""
        now = self._clock()
        with self._lock:
            if self._claims.get(trans_no, -1.0) > now:
                return False
            self._claims[trans_no] = now + ttl
            return True

    def release(self, trans_no: str) -> None:
        """Give the claim back."""
        with self._lock:
            self._claims.pop(trans_no, None)

    def admit(self, send: Send, requests: int, period: float, probe_limit: int) -> bool:
        """Record the send if the window has room."""
        with self._lock:
            used, probes = self._live(send.sent, period)
            if used >= requests or (send.probe and probes >= probe_limit):
                return False
            self._keep(send)
        self._saved_send(send)
        return True

    def finish(self, send_id: str, end: float) -> None:
        """A send counts until its answer came (+ period), not until its deadline."""
        with self._lock:
            send = self._sends.get(send_id)
            if send is None or end == send.end:
                return
            send = Send(send.id, send.sent, end, send.probe)
            self._keep(send)
        self._saved_send(send)

    def window(self, now: float, period: float) -> tuple[int, int]:
        """Sends and probe sends that still count."""
        with self._lock:
            return self._live(now, period)

    def pause(self) -> Pause:
        """The pause in force."""
        with self._lock:
            return self._pause

    def set_pause(self, pause: Pause) -> None:
        """Record a pause."""
        with self._lock:
            self._pause = pause
        self._saved_pause(pause)

    def close(self) -> None:
        """Nothing to let go of."""

    # -- for backends that persist: called after each change, outside the lock --------------

    def _live(self, now: float, period: float) -> tuple[int, int]:
        """(sends, probe sends) that count at `now` (lock held)."""
        if period != self._period:  # a reload changed the period: count again, once
            self._period = period
            self._recount(now)
        elif now < self._counted_at:  # a caller whose clock read is older than the last one's
            live = [s for s in self._sends.values() if counts(s, now, period)]
            return len(live), sum(s.probe for s in live)
        self._counted_at = now
        cutoff = now - period
        while self._counting and self._counting[0][0] <= cutoff:
            end, send_id = heapq.heappop(self._counting)
            send = self._sends.get(send_id)
            if send is not None and send.end == end and send_id in self._counted:
                self._counted.discard(send_id)
                self._probes -= send.probe
        horizon = now - max(RETENTION, period)
        while self._keeping and self._keeping[0][0] <= horizon:
            end, send_id = heapq.heappop(self._keeping)
            send = self._sends.get(send_id)
            if send is not None and send.end == end and send_id not in self._counted:
                del self._sends[send_id]
        return len(self._counted), self._probes

    def _recount(self, now: float) -> None:
        """Rebuild the counted set for `self._period` at `now` (lock held)."""
        live = [s for s in self._sends.values() if counts(s, now, self._period)]
        self._counted = {s.id for s in live}
        self._probes = sum(s.probe for s in live)
        self._counting = [(s.end, s.id) for s in live]
        heapq.heapify(self._counting)
        self._counted_at = now

    def _keep(self, send: Send) -> None:
        """Record a send or its new end (lock held)."""
        old = self._sends.get(send.id)
        self._sends[send.id] = send
        heapq.heappush(self._keeping, (send.end, send.id))
        was = send.id in self._counted
        if counts(send, self._counted_at, self._period):
            heapq.heappush(self._counting, (send.end, send.id))
            if not was:
                self._counted.add(send.id)
                self._probes += send.probe
        elif was:
            self._counted.discard(send.id)
            self._probes -= old.probe if old is not None else send.probe

    def _restore(self, states: dict[str, TaskState], sends: list[Send], pause: Pause) -> None:
        """Start from what a persistent backend read back."""
        with self._lock:
            self._states = states
            self._sends = {s.id: s for s in sends}
            self._keeping = [(s.end, s.id) for s in sends]
            heapq.heapify(self._keeping)
            self._recount(self._counted_at)
            self._pause = pause

    def _saved_state(self, trans_no: str, state: TaskState) -> None:
        """A state changed."""

    def _dropped_states(self, trans_nos: list[str]) -> None:
        """States were dropped."""

    def _saved_send(self, send: Send) -> None:
        """A send was recorded or shortened."""

    def _saved_pause(self, pause: Pause) -> None:
        """The pause changed."""
