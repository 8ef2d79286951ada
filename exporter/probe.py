"""What `/probe?trans_no=X` serves: one task's series, `probe_*` gauges and a debug report.

`probe_success` follows blackbox_exporter's meaning: 1 when the exporter holds a valid, fresh
answer for the task after the probe. That is the case when the task was answered now, when its
last answer was still fresh so no request was needed, and when no request could be sent (budget,
pacing, another query in flight, the deadline) but the last answer is younger than its refresh
interval or `refresh.error`. It is 0 after a failed query, or with no fresh answer at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter import redaction
from exporter.client import Exchange
from exporter.collector import Families, task_families
from exporter.config import RefreshConfig, Task
from exporter.protocol import TRANS_NO_RE
from exporter.scheduler import Attempt, Outcome
from exporter.state import TaskState, interval

_SIGNATURE = re.compile(r"Signature=[0-9a-f]+")


@dataclass(frozen=True)
class ProbeResult:
    """What `/probe` serves: the exposition and, with debug, a readable report."""

    exposition: bytes
    debug: str
    success: bool


def check_trans_no(trans_no: str) -> None:
    """Raise ValueError for a transNo the API would refuse (before anything is sent)."""
    if not TRANS_NO_RE.fullmatch(trans_no):
        raise ValueError("trans_no must be 1-32 letters, digits, '_' or '-'")


def fresh(state: TaskState, refresh: RefreshConfig, now: float) -> bool:
    """Whether the last query succeeded and its answer is young enough to stand for now."""
    if not state.query_ok or state.answer is None or state.answered_at is None:
        return False
    grace = max(interval(state.answer.status, refresh), refresh.error)
    return now - state.answered_at <= grace


def render(
    task: Task,
    attempt: Attempt,
    *,
    seconds: float,
    refresh: RefreshConfig,
    now: float,
    budget_remaining: int,
    debug: bool,
) -> ProbeResult:
    """The probe's exposition and (with debug) its report."""
    state = attempt.state
    if attempt.outcome is Outcome.ANSWERED:
        success = True
    elif attempt.outcome is Outcome.FAILED:
        success = False
    else:
        success = fresh(state, refresh, now)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(_families(task, state, success, seconds)))
    text = _debug_text(task.trans_no, attempt, seconds, now, budget_remaining) if debug else ""
    return ProbeResult(generate_latest(registry), text, success)


def _families(task: Task, state: TaskState, success: bool, seconds: float) -> list[Metric]:
    result = GaugeMetricFamily(
        "probe_success", "1 if the exporter holds a valid, fresh answer for the task."
    )
    result.add_metric([], 1.0 if success else 0.0)
    duration = GaugeMetricFamily("probe_duration_seconds", "How long the probe took.")
    duration.add_metric([], seconds)
    return [result, duration, *task_families(task, state)]


def _debug_text(
    trans_no: str, attempt: Attempt, seconds: float, now: float, budget_remaining: int
) -> str:
    state = attempt.state
    outcome = attempt.reason or attempt.outcome.value
    lines = [
        f"trans_no: {trans_no}",
        f"probe duration: {seconds:.3f}s",
        f"outcome: {outcome}",
    ]
    if attempt.exchange is not None:
        lines += _exchange_lines(attempt.exchange)
    age = "-" if state.answered_at is None else f"{max(0.0, now - state.answered_at):.0f}s"
    lines += [
        f"status: {state.status}",
        f"query_success: {int(state.query_ok)}",
        f"answer age: {age}",
        f"last error: {state.last_error or '-'}",
        f"budget remaining: {budget_remaining}",
    ]
    return redaction.redact("\n".join(lines) + "\n")


def _exchange_lines(ex: Exchange) -> list[str]:
    lines = ["", "request:"]
    for name, value in ex.request_headers.items():
        shown = _SIGNATURE.sub("Signature=<redacted>", value) if name == "Authorization" else value
        lines.append(f"  {name}: {shown}")
    lines.append(f"  body: {ex.request_body.decode('utf-8', 'replace')}")
    lines.append(f"response (after {ex.seconds:.3f}s):")
    lines.append(f"  HTTP status: {ex.status if ex.status is not None else '-'}")
    lines.append(f"  X-WS-RequestId: {ex.request_id or '-'}")
    body = ex.response_body[:65536].decode("utf-8", "replace")
    lines.append(f"  body: {body}")
    if ex.error is not None:
        lines.append(f"  error ({ex.error.code}): {ex.error}")
    lines.append("")
    return lines
