"""What a configuration costs in budget: how often each kind of task can really be refreshed.

The same model serves `check-config` (before anything runs, for a fleet that has finished) and
the exporter's own gauges (for the live mix of statuses). Pure arithmetic; no I/O.

The model follows the policy: processing tasks are asked at most once per scrape (or per
`refresh.processing`), final tasks get what processing tasks leave and never less than
`final_share` of the budget while any is due, and tasks never asked come before all others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.config import RateLimit, RefreshConfig, format_duration
from exporter.protocol import TaskStatus
from exporter.state import interval

DEFAULT_SCRAPE_INTERVAL = 15.0  # assumed by check-config; measured while serving


@dataclass(frozen=True)
class Capacity:
    """Refresh intervals the budget achieves, against the ones configured."""

    rate: float  # requests per second the budget allows
    tasks: int
    first_answers: float  # seconds until every never-asked task has its first answer
    achieved: Mapping[TaskStatus, float]  # refresh interval per status (inf: never)
    target: Mapping[TaskStatus, float]  # the configured refresh.<status>
    demand: Mapping[TaskStatus, float]  # requests/s the targets would need

    def unmet(self) -> list[TaskStatus]:
        """Final statuses whose configured interval the budget cannot meet."""
        return [
            s
            for s in (TaskStatus.SUCCESSFUL, TaskStatus.FAILED)
            if self.achieved[s] > self.target[s] * 1.01
        ]


def estimate(
    counts: Mapping[TaskStatus | None, int],
    rate: RateLimit,
    refresh: RefreshConfig,
    scrape_interval: float = DEFAULT_SCRAPE_INTERVAL,
) -> Capacity:
    """The refresh intervals for `counts` tasks per status (None: never answered)."""
    per_second = rate.requests / rate.period
    scrape_interval = max(scrape_interval, 1e-3)
    n = {s: counts.get(s, 0) for s in TaskStatus}
    target = {s: interval(s, refresh) for s in TaskStatus}
    demand = {s: n[s] / max(target[s], scrape_interval) for s in TaskStatus}
    final_demand = demand[TaskStatus.SUCCESSFUL] + demand[TaskStatus.FAILED]
    floor = min(final_demand, refresh.final_share * per_second)
    processing_rate = min(demand[TaskStatus.PROCESSING], per_second - floor)
    final_rate = min(final_demand, per_second - processing_rate)
    achieved: dict[TaskStatus, float] = {}
    p = TaskStatus.PROCESSING
    if n[p] == 0 or processing_rate >= demand[p] * 0.999:
        achieved[p] = max(target[p], scrape_interval)
    else:
        achieved[p] = n[p] / processing_rate if processing_rate > 0 else math.inf
    slow_down = final_demand / final_rate if final_rate > 0 else math.inf
    for s in (TaskStatus.SUCCESSFUL, TaskStatus.FAILED):
        base = max(target[s], scrape_interval)
        achieved[s] = base * max(1.0, slow_down) if n[s] else base
    never = counts.get(None, 0)
    burst = min(rate.requests, math.ceil(per_second * 60))
    first = max(0.0, never - burst) / per_second if never else 0.0
    return Capacity(
        rate=per_second,
        tasks=sum(counts.values()),
        first_answers=first,
        achieved=achieved,
        target=target,
        demand=demand,
    )


def report(tasks: int, rate: RateLimit, refresh: RefreshConfig) -> tuple[list[str], list[str]]:
    """check-config's lines about the budget, and its warnings (both as printed)."""
    per_second = rate.requests / rate.period
    lines = [
        f"budget: {rate.requests} requests per {format_duration(rate.period)} "
        f"({per_second:.3g} requests/s); {tasks} watched tasks",
    ]
    first = estimate({None: tasks}, rate, refresh).first_answers
    burst = min(rate.requests, math.ceil(per_second * 60), tasks)
    lines.append(
        f"first answers: {burst} at once, all {tasks} within {_human(first)} of being added"
        if tasks > burst
        else f"first answers: all {tasks} at once"
    )
    warnings = []
    for status in (TaskStatus.SUCCESSFUL, TaskStatus.FAILED):
        cap = estimate({status: tasks}, rate, refresh)
        key = f"refresh.{status.label}"
        wanted = format_duration(cap.target[status])
        if status in cap.unmet():
            lines.append(
                f"{key} {wanted}: if all tasks were {status.label}, refreshing them would need "
                f"{cap.demand[status]:.3g} requests/s; the budget refreshes each about every "
                f"{_human(cap.achieved[status])}"
            )
            warnings.append(
                f"{key} {wanted} cannot be met for {tasks} {status.label} tasks: each would be "
                f"refreshed about every {_human(cap.achieved[status])} (raise {key}, lower the "
                "number of tasks, or shard them over several accounts)"
            )
        else:
            lines.append(
                f"{key} {wanted}: met for {tasks} {status.label} tasks "
                f"({cap.demand[status]:.3g} of {per_second:.3g} requests/s)"
            )
    lines.append(
        "processing tasks: refreshed on every scrape as the budget allows; "
        f"n processing tasks are each refreshed about every n / {per_second * 0.9:.3g} s "
        f"when final refreshes take their {refresh.final_share:.0%} share"
    )
    return lines, warnings


def _human(seconds: float) -> str:
    if math.isinf(seconds):
        return "never"
    return format_duration(max(1.0, round(seconds)))
