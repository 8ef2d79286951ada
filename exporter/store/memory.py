"""The in-process store: the reference behaviour of every backend, kept in dictionaries."""

from __future__ import annotations

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
            self._period = max(self._period, period)
            live = [s for s in self._sends.values() if counts(s, send.sent, period)]
            if len(live) >= requests or (send.probe and sum(s.probe for s in live) >= probe_limit):
                return False
            self._forget_sends(send.sent)
            self._sends[send.id] = send
        self._saved_send(send)
        return True

    def finish(self, send_id: str, end: float) -> None:
        """A send counts until its answer came (+ period), not until its deadline."""
        with self._lock:
            send = self._sends.get(send_id)
            if send is None or end == send.end:
                return
            send = Send(send.id, send.sent, end, send.probe)
            self._sends[send_id] = send
        self._saved_send(send)

    def window(self, now: float, period: float) -> tuple[int, int]:
        """Sends and probe sends that still count."""
        with self._lock:
            live = [s for s in self._sends.values() if counts(s, now, period)]
        return len(live), sum(s.probe for s in live)

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

    def _forget_sends(self, now: float) -> None:
        """Drop sends that no longer count for any period asked about (lock held)."""
        old = [s.id for s in self._sends.values() if not counts(s, now, self._period)]
        for send_id in old:
            del self._sends[send_id]

    def _restore(self, states: dict[str, TaskState], sends: list[Send], pause: Pause) -> None:
        """Start from what a persistent backend read back."""
        with self._lock:
            self._states = states
            self._sends = {s.id: s for s in sends}
            self._pause = pause

    def _saved_state(self, trans_no: str, state: TaskState) -> None:
        """A state changed."""

    def _dropped_states(self, trans_nos: list[str]) -> None:
        """States were dropped."""

    def _saved_send(self, send: Send) -> None:
        """A send was recorded or shortened."""

    def _saved_pause(self, pause: Pause) -> None:
        """The pause changed."""
