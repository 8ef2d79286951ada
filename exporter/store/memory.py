"""The in-process store: the reference behaviour of every backend, kept in dictionaries."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Collection

from exporter.state import TaskState
from exporter.store import Pause, Send, counts


class MemoryStore:
    """Task states, sends, claims and the pause of one process; nothing survives it."""

    backend = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, TaskState] = {}
        self._sends: dict[str, Send] = {}
        # The sends by end, so what no longer counts is forgotten without a scan: a send whose
        # end changed is pushed again, and entries that no longer match are skipped.
        self._by_end: list[tuple[float, str]] = []
        self._probes = 0  # probe sends among self._sends
        self._claims: dict[str, float] = {}  # trans_no -> when the claim expires
        self._pause = Pause()
        self._period = 0.0  # the longest period asked about, to know what may be forgotten

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
        self._period = max(self._period, period)  # never forget what this period still counts
        self._forget_sends(now)
        if period >= self._period:  # everything kept counts: no scan
            return len(self._sends), self._probes
        live = [s for s in self._sends.values() if counts(s, now, period)]
        return len(live), sum(s.probe for s in live)

    def _keep(self, send: Send) -> None:
        """Record a send or its new end (lock held)."""
        old = self._sends.get(send.id)
        self._probes += send.probe - (old.probe if old is not None else 0)
        self._sends[send.id] = send
        heapq.heappush(self._by_end, (send.end, send.id))

    def _forget_sends(self, now: float) -> None:
        """Drop sends that no longer count for any period asked about (lock held)."""
        cutoff = now - self._period
        while self._by_end and self._by_end[0][0] <= cutoff:
            end, send_id = heapq.heappop(self._by_end)
            send = self._sends.get(send_id)
            if send is not None and send.end == end:
                del self._sends[send_id]
                self._probes -= send.probe

    def _restore(self, states: dict[str, TaskState], sends: list[Send], pause: Pause) -> None:
        """Start from what a persistent backend read back."""
        with self._lock:
            self._states = states
            self._sends, self._by_end, self._probes = {}, [], 0
            for send in sends:
                self._keep(send)
            self._pause = pause

    def _saved_state(self, trans_no: str, state: TaskState) -> None:
        """A state changed."""

    def _dropped_states(self, trans_nos: list[str]) -> None:
        """States were dropped."""

    def _saved_send(self, send: Send) -> None:
        """A send was recorded or shortened."""

    def _saved_pause(self, pause: Pause) -> None:
        """The pause changed."""
