"""What the exporter knows about one task, and the rules of how that changes.

Every rule is a pure function of (old state, outcome, time): no threads, no clock, no I/O, so the
scheduler, the stores and the tests share one definition of what an answer, a failure or a
throttled request does to a task. Times are wall-clock Unix seconds, so a state written to a store
keeps its meaning across restarts and replicas.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from dataclasses import dataclass
from typing import Any

from exporter.answers import Rendition, TaskAnswer, VideoInfo
from exporter.config import RefreshConfig
from exporter.errors import ApiError, ApiThrottled
from exporter.protocol import UNKNOWN_STATUS, Code, TaskStatus


class Claim(enum.IntEnum):
    """A due task's claim on the budget; lower values are served first."""

    NEW = 0  # never asked since it was added
    PROCESSING = 1  # the task can still change
    RETRY = 2  # the last query failed: asked again after its backoff
    FINAL = 3  # successful or failed: a refresh rarely changes anything


@dataclass(frozen=True)
class TaskState:
    """Everything known about one task. Replaced, never mutated."""

    answer: TaskAnswer | None = None  # the last valid answer
    answered_at: float | None = None  # when that answer came
    checked_at: float | None = None  # last answer or counted failure; None: never asked
    query_ok: bool = False  # whether the latest query got a valid answer
    failures: int = 0  # consecutive failed queries
    last_error: str | None = None  # the api_errors_total code of the latest failure

    @property
    def status(self) -> str:
        """processing, successful, failed, or unknown when never answered."""
        return UNKNOWN_STATUS if self.answer is None else self.answer.status.label

    @property
    def queried(self) -> bool:
        """Whether the task has been asked since it was added (answered, failed, throttled)."""
        return self.checked_at is not None or self.last_error is not None

    @property
    def claim(self) -> Claim:
        """Which claim on the budget a refresh of this task makes."""
        if self.checked_at is None:
            return Claim.NEW
        if self.failures:
            return Claim.RETRY
        if self.answer is None or not self.answer.status.final:
            return Claim.PROCESSING
        return Claim.FINAL


NEVER_ASKED = TaskState()

# No task is asked twice within this long, whatever refresh.<status> says: scrapes of two
# Prometheus servers a moment apart share one answer instead of asking twice.
MIN_INTERVAL = 1.0


def not_after(state: TaskState, now: float) -> TaskState:
    """The state with no time later than `now` (a stored state from a clock that was ahead)."""
    if (state.checked_at or -math.inf) <= now and (state.answered_at or -math.inf) <= now:
        return state
    return dataclasses.replace(
        state,
        checked_at=None if state.checked_at is None else min(state.checked_at, now),
        answered_at=None if state.answered_at is None else min(state.answered_at, now),
    )


def due_at(state: TaskState, refresh: RefreshConfig) -> float:
    """When the next refresh of this task is due under this refresh policy."""
    if state.checked_at is None:
        return -math.inf
    if state.failures:
        backoff = refresh.error * 2.0 ** min(state.failures - 1, 30)
        return state.checked_at + min(backoff, refresh.error_max)
    if state.answer is None:  # a throttled first query: still waiting for its first answer
        return -math.inf
    return state.checked_at + max(MIN_INTERVAL, interval(state.answer.status, refresh))


def interval(status: TaskStatus, refresh: RefreshConfig) -> float:
    """How long an answer with this status is reused."""
    if status is TaskStatus.PROCESSING:
        return refresh.processing
    if status is TaskStatus.SUCCESSFUL:
        return refresh.successful
    return refresh.failed


def answered(old: TaskState, answer: TaskAnswer, now: float) -> TaskState:
    """The state after a valid answer."""
    if answer.still_processing and old.answer is not None:
        # 1560 carries no task details: keep the task ID we knew.
        answer = dataclasses.replace(answer, task_id=old.answer.task_id)
    return TaskState(answer=answer, answered_at=now, checked_at=now, query_ok=True)


def failed(old: TaskState, error: ApiError, now: float) -> TaskState:
    """The state after a failed query: the last answer stays, the failure counts for backoff."""
    if isinstance(error, ApiThrottled):
        # Not the task's fault: it keeps its place and is asked again once the pause is over.
        return dataclasses.replace(old, query_ok=False, last_error=error.code)
    return dataclasses.replace(
        old,
        query_ok=False,
        failures=old.failures + 1,
        last_error=error.code,
        checked_at=now,
    )


def error_code(answer: TaskAnswer | None, error: ApiError | None) -> str | None:
    """The api_errors_total label one outcome counts under (1560 is counted, not a failure)."""
    if error is not None:
        return error.code
    if answer is not None and answer.still_processing:
        return str(int(Code.STILL_PROCESSING))
    return None


# --- the stored form ---------------------------------------------------------------------------

_FORMAT = 1


def dumps(state: TaskState) -> str:
    """The state as compact JSON, for a store."""
    data = dataclasses.asdict(state)
    data["v"] = _FORMAT
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> TaskState:
    """A state from `dumps`; ValueError when the text is not one."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.pop("v", None) != _FORMAT:
            raise ValueError("unknown state format")
        answer = data.pop("answer")
        return TaskState(answer=None if answer is None else _answer(answer), **data)
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"not a task state: {exc}") from None


def _answer(data: dict[str, Any]) -> TaskAnswer:
    video = data.pop("video")
    if video is not None:
        renditions = tuple(Rendition(**r) for r in video.pop("renditions"))
        video = VideoInfo(**video, renditions=renditions)
    return TaskAnswer(**{**data, "status": TaskStatus(data["status"]), "video": video})
