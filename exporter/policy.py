"""Which due tasks get the budget, in which order. Pure: no threads, no clock, no I/O.

Claims are served in this order: tasks never asked, processing tasks, retries of failed queries
(after their backoff), then refreshes of final (successful or failed) tasks. Within a claim the
most overdue task goes first. Final refreshes get what the others leave, and never less than
`final_share` of the budget while any is due: a credit that grows by `final_share` of each round's
allowance and is spent on final refreshes, so the share holds over time even when rounds are
small (one request per round still gives a final task every tenth round at 10 %).
"""

from __future__ import annotations

import math
from collections.abc import Container, Mapping
from dataclasses import dataclass

from exporter.config import RefreshConfig
from exporter.state import Claim, TaskState, due_at


@dataclass(frozen=True)
class Plan:
    """One round's choice: the tasks to send, in order, and what is left waiting."""

    order: tuple[str, ...]  # what to ask now, first claims first
    due: int  # tasks due (not counting those already being asked)
    by_claim: Mapping[Claim, int]  # due tasks per claim

    @property
    def deferred(self) -> int:
        """Due tasks that this round leaves for a later one."""
        return self.due - len(self.order)


class Policy:
    """Orders due tasks by their claim on the budget and keeps the final refreshes' share."""

    def __init__(self, final_share: float = 0.1) -> None:
        self.final_share = final_share
        self._credit = 0.0

    def plan(
        self,
        states: Mapping[str, TaskState],
        refresh: RefreshConfig,
        now: float,
        allowance: int,
        busy: Container[str] = (),
    ) -> Plan:
        """Choose up to `allowance` due tasks (none of `busy`), in the order they are served."""
        queues: dict[Claim, list[tuple[float, int, str]]] = {claim: [] for claim in Claim}
        for position, (trans_no, state) in enumerate(states.items()):
            when = due_at(state, refresh)
            if when <= now and trans_no not in busy:
                # Never-asked tasks keep the configuration's order; others go most overdue first.
                queues[state.claim].append((when, position, trans_no))
        for queue in queues.values():
            queue.sort()
        finals = [t for _, _, t in queues[Claim.FINAL]]
        others = [t for claim in Claim if claim is not Claim.FINAL for _, _, t in queues[claim]]
        allowance = max(0, allowance)
        if finals:
            self._credit += self.final_share * allowance
        else:
            self._credit = 0.0  # the share is owed only while a final refresh is due
        reserved = min(len(finals), math.floor(self._credit + 1e-9), allowance)
        chosen = others[: allowance - reserved]
        chosen += finals[: allowance - len(chosen)]
        finals_taken = len(chosen) - min(len(others), allowance - reserved)
        # No debt for leftovers taken beyond the share, and no hoard beyond one round's share.
        credit = self._credit - finals_taken if finals else 0.0
        self._credit = min(max(0.0, credit), 1.0 + self.final_share * allowance)
        return Plan(
            order=tuple(chosen),
            due=len(finals) + len(others),
            by_claim={claim: len(queue) for claim, queue in queues.items()},
        )
