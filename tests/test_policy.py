"""Claims on the budget: never asked, processing, retries, then final refreshes with their share."""

from __future__ import annotations

from exporter import state
from exporter.answers import TaskAnswer
from exporter.config import RefreshConfig
from exporter.errors import ApiTimeout
from exporter.policy import Policy
from exporter.protocol import TaskStatus
from exporter.state import NEVER_ASKED, Claim, TaskState

REFRESH = RefreshConfig(successful=2.0, failed=2.0)


def answered(status: TaskStatus, at: float) -> TaskState:
    return state.answered(NEVER_ASKED, TaskAnswer("t", "id", status), at)


def fleet() -> dict[str, TaskState]:
    states = {f"s{i:03d}": answered(TaskStatus.SUCCESSFUL, float(i)) for i in range(240)}
    states["p1"] = answered(TaskStatus.PROCESSING, 500.0)
    states["p2"] = answered(TaskStatus.PROCESSING, 400.0)
    states["r1"] = state.failed(answered(TaskStatus.SUCCESSFUL, 0.0), ApiTimeout("x"), 0.0)
    states["new"] = NEVER_ASKED
    return states


def test_claims_come_in_order_and_overdue_first_within_a_claim() -> None:
    plan = Policy(final_share=0.0).plan(fleet(), REFRESH, 1000.0, 6)
    assert plan.order == ("new", "p2", "p1", "r1", "s000", "s001")
    assert plan.by_claim == {Claim.NEW: 1, Claim.PROCESSING: 2, Claim.RETRY: 1, Claim.FINAL: 240}
    assert plan.due == 244 and plan.deferred == 238


def test_final_backlog_never_starves_processing_tasks() -> None:
    """240 final tasks overdue since long before: the processing ones still go first."""
    policy = Policy()
    for _ in range(50):
        plan = policy.plan(fleet(), REFRESH, 1000.0, 3)
        assert plan.order[:2] == ("new", "p2")


def test_final_refreshes_get_their_share_over_time_even_in_small_rounds() -> None:
    states = {f"p{i}": answered(TaskStatus.PROCESSING, 0.0) for i in range(50)}
    states |= {f"s{i}": answered(TaskStatus.SUCCESSFUL, 0.0) for i in range(100)}
    policy = Policy(final_share=0.1)
    finals = sum(
        sum(t.startswith("s") for t in policy.plan(states, REFRESH, 10.0, 1).order)
        for _ in range(1000)
    )
    assert finals == 100  # exactly a tenth of 1,000 one-request rounds
    finals = sum(
        sum(t.startswith("s") for t in policy.plan(states, REFRESH, 10.0, 20).order)
        for _ in range(100)
    )
    assert finals == 200


def test_finals_take_what_the_others_leave_and_owe_nothing_for_it() -> None:
    states = {"p": answered(TaskStatus.PROCESSING, 0.0)}
    states |= {f"s{i}": answered(TaskStatus.SUCCESSFUL, 0.0) for i in range(30)}
    policy = Policy(final_share=0.1)
    assert len(policy.plan(states, REFRESH, 10.0, 20).order) == 20  # 1 processing + 19 final
    # The next round still reserves the share: leftovers taken earlier are not a debt.
    plan = policy.plan(
        {**states, **{f"q{i}": answered(TaskStatus.PROCESSING, 0.0) for i in range(30)}},
        REFRESH,
        10.0,
        10,
    )
    assert sum(t.startswith("s") for t in plan.order) == 1


def test_busy_and_fresh_tasks_are_not_planned() -> None:
    states = {"p": answered(TaskStatus.PROCESSING, 0.0), "s": answered(TaskStatus.SUCCESSFUL, 9.5)}
    plan = Policy().plan(states, REFRESH, 10.0, 10, busy={"p"})
    assert plan.order == () and plan.due == 0
