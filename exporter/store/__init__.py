"""Where the exporter keeps what it learnt: task states, recent sends, the throttling pause.

One small interface, three backends: `memory` (nothing survives the process), `sqlite` (a file
under --storage.path, the default) and `redis` (shared by replicas). The scheduler and the budget
see only `Store`; which backend is in use is decided once, by `open_store` in the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from exporter.state import TaskState


@dataclass(frozen=True)
class Send:
    """One request sent to the API, as the sliding window counts it.

    The API counts a request when it arrives, which is at some time between `sent` and the moment
    its answer came back: a send counts against the window from `sent` until `end + period`.
    While it is in flight, `end` is the latest it can finish (its deadline), so a crash mid-request
    still counts it as long as it might have arrived.
    """

    id: str
    sent: float
    end: float
    probe: bool = False  # a probe of a task that is not watched


@dataclass(frozen=True)
class Pause:
    """A pause of all sends after the API throttled the account."""

    until: float = -math.inf  # no send before this time
    started: float = -math.inf  # when this throttling episode began
    step: float = 0.0  # the length of the latest pause (0: the backoff starts over)


class Store(Protocol):
    """The state store: every method is safe to call from any thread and never raises."""

    backend: str  # "memory", "sqlite" or "redis": the label of cloudvod_concat_storage_up

    def up(self) -> bool:
        """Whether the backend answered its latest operation."""
        ...

    def replicas(self) -> int:
        """Exporters seen alive sharing this store (1 for a local store)."""
        ...

    def load(self) -> dict[str, TaskState]:
        """Every task state the store holds."""
        ...

    def changes(self) -> dict[str, TaskState]:
        """States written by other replicas since the last call ({} for a local store)."""
        ...

    def get(self, trans_no: str) -> TaskState | None:
        """The stored state of one task (another replica may have just written it)."""
        ...

    def put(self, trans_no: str, state: TaskState) -> None:
        """Record a task's new state."""
        ...

    def retain(self, keep: Collection[str]) -> None:
        """Forget every task not in `keep` (tasks removed from the configuration)."""
        ...

    def claim(self, trans_no: str, ttl: float) -> bool:
        """Take the one claim to ask about this task for `ttl` seconds; False if it is taken."""
        ...

    def release(self, trans_no: str) -> None:
        """Give a claim back."""
        ...

    def admit(self, send: Send, requests: int, period: float, probe_limit: int) -> bool:
        """Record `send` if the window has room for it (atomically); False otherwise.

        Room: fewer than `requests` sends still count at `send.sent`, and for a probe fewer than
        `probe_limit` probe sends.
        """
        ...

    def finish(self, send_id: str, end: float) -> None:
        """The answer of a send arrived at `end` (or it gave up then): it counts until `end`
        plus the period from now on, whether that is sooner or (a request that outlived its
        deadline) later than the deadline it was admitted with."""
        ...

    def window(self, now: float, period: float) -> tuple[int, int]:
        """(sends, probe sends) that still count at `now`."""
        ...

    def pause(self) -> Pause:
        """The throttling pause in force (or the last one)."""
        ...

    def set_pause(self, pause: Pause) -> None:
        """Record a new throttling pause."""
        ...

    def close(self) -> None:
        """Write what is pending and let go of the backend."""
        ...


def counts(send: Send, now: float, period: float) -> bool:
    """Whether a send still counts against the window at `now`."""
    return send.end > now - period
