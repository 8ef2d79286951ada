"""State transitions: pure functions of (old state, outcome, time); the stored form round-trips."""

from __future__ import annotations

import math

import pytest

from exporter import state
from exporter.answers import Rendition, TaskAnswer, VideoInfo
from exporter.config import RefreshConfig
from exporter.errors import ApiCodeError, ApiThrottled, ApiTimeout
from exporter.protocol import Code, TaskStatus
from exporter.state import NEVER_ASKED, Claim

REFRESH = RefreshConfig()
DONE = TaskAnswer("t", "id-t", TaskStatus.SUCCESSFUL)
RUNNING = TaskAnswer("t", "id-t", TaskStatus.PROCESSING)


def test_a_new_task_is_waiting_not_failing() -> None:
    assert NEVER_ASKED.status == "unknown"
    assert NEVER_ASKED.queried is False
    assert NEVER_ASKED.claim is Claim.NEW
    assert state.due_at(NEVER_ASKED, REFRESH) == -math.inf


def test_an_answer_sets_the_status_time_and_clears_failures() -> None:
    failing = state.failed(NEVER_ASKED, ApiTimeout("slow"), 100.0)
    new = state.answered(failing, DONE, 200.0)
    assert (new.status, new.answered_at, new.checked_at, new.query_ok) == (
        "successful",
        200,
        200,
        True,
    )
    assert (new.failures, new.last_error, new.queried, new.claim) == (0, None, True, Claim.FINAL)
    assert state.due_at(new, REFRESH) == 200.0 + 3600.0


def test_a_failure_keeps_the_last_answer_and_backs_off() -> None:
    done = state.answered(NEVER_ASKED, DONE, 0.0)
    once = state.failed(done, ApiCodeError(1603, "gone"), 10.0)
    twice = state.failed(once, ApiCodeError(1603, "gone"), 70.0)
    assert (twice.status, twice.answered_at, twice.query_ok) == ("successful", 0.0, False)
    assert (twice.failures, twice.last_error, twice.claim) == (2, "1603", Claim.RETRY)
    assert state.due_at(once, REFRESH) == 10.0 + 60.0
    assert state.due_at(twice, REFRESH) == 70.0 + 120.0
    many = NEVER_ASKED
    for _ in range(40):
        many = state.failed(many, ApiTimeout("slow"), 0.0)
    assert state.due_at(many, REFRESH) == REFRESH.error_max


def test_throttling_is_not_the_tasks_failure() -> None:
    done = state.answered(NEVER_ASKED, RUNNING, 5.0)
    throttled = state.failed(done, ApiThrottled("HTTP 429"), 9.0)
    assert throttled.failures == 0 and throttled.checked_at == 5.0
    assert throttled.last_error == "throttled" and not throttled.query_ok
    assert throttled.claim is Claim.PROCESSING
    first = state.failed(NEVER_ASKED, ApiThrottled("HTTP 429"), 9.0)
    # It keeps its place as never answered, but it was asked: it is not merely waiting.
    assert first.claim is Claim.NEW and first.queried


def test_1560_keeps_the_task_id_and_is_counted() -> None:
    known = state.answered(NEVER_ASKED, RUNNING, 0.0)
    still = TaskAnswer("t", "", TaskStatus.PROCESSING, api_code=Code.STILL_PROCESSING)
    new = state.answered(known, still, 15.0)
    assert new.answer is not None and new.answer.task_id == "id-t"
    assert state.error_code(still, None) == "1560"
    assert state.error_code(RUNNING, None) is None


@pytest.mark.parametrize(
    "value",
    [
        NEVER_ASKED,
        state.failed(NEVER_ASKED, ApiCodeError(1603, "x"), 3.5),
        state.answered(
            NEVER_ASKED,
            TaskAnswer(
                "t",
                "id",
                TaskStatus.SUCCESSFUL,
                VideoInfo(
                    "v",
                    '春晚 "Gala" \\ part\n1',
                    "d",
                    "p",
                    7202.0,
                    1.2e9,
                    0.0,
                    5.0,
                    0.0,
                    1529048009.0,
                    None,
                    (Rendition(1, -1, 1280.0, 720.0, 1.2e9),),
                ),
            ),
            1e9,
        ),
    ],
)
def test_the_stored_form_round_trips(value: state.TaskState) -> None:
    assert state.loads(state.dumps(value)) == value


@pytest.mark.parametrize(
    "text", ["", "[]", '{"v": 99}', '{"v": 1}', "not json", '{"v":1,"answer":{}}']
)
def test_a_damaged_stored_form_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        state.loads(text)
