"""The status page at `/`: every watched task, filtered and paged, rendered on the server.

Readable without JavaScript; everything that comes from the configuration or the API (transNos,
labels, errors, reload problems) is HTML-escaped. The page is built from `TaskRow`s and a
`Summary`; `snapshot` is the one place that reads them out of a running exporter.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from exporter import __version__

if TYPE_CHECKING:
    from exporter.service import Exporter

PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
STATUSES = ("processing", "successful", "failed", "unknown")
# `status=failing`: tasks whose latest query got no valid answer, whatever their last status.
FAILING = "failing"


@dataclass(frozen=True)
class TaskRow:
    """One watched task as the page shows it."""

    trans_no: str
    status: str  # processing, successful, failed or unknown (never answered)
    answered_at: float | None  # wall-clock time of the last valid answer
    query_ok: bool  # whether the latest query got a valid answer
    last_error: str | None  # `code` label value of the latest failed query
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Summary:
    """The exporter-wide lines at the top of the page."""

    watched: int
    budget_requests: int
    budget_period: float
    budget_remaining: int
    backlog: int
    reload_ok: bool
    reload_timestamp: float | None
    reload_problems: tuple[str, ...]
    telemetry_path: str = "/metrics"
    version: str = __version__
    storage_backend: str = "memory"
    storage_up: bool = True
    replicas: int = 1


def snapshot(exporter: Exporter, telemetry_path: str = "/metrics") -> tuple[Summary, list[TaskRow]]:
    """Read the page's data out of a running exporter (the only code that knows its insides)."""
    states = exporter.scheduler.states()
    rows = []
    for task in exporter.config.tasks:
        state = states.get(task.trans_no)
        rows.append(
            TaskRow(
                trans_no=task.trans_no,
                status=state.status if state else "unknown",
                answered_at=state.answered_at if state else None,
                query_ok=state.query_ok if state else False,
                last_error=state.last_error if state else None,
                labels=task.labels,
            )
        )
    status = exporter.status()
    limit = exporter.config.api.rate_limit
    reload = exporter.reload_status
    summary = Summary(
        watched=status.watched,
        budget_requests=limit.requests,
        budget_period=limit.period,
        budget_remaining=status.budget_remaining,
        backlog=status.backlog,
        reload_ok=reload.ok,
        reload_timestamp=reload.success_timestamp,
        reload_problems=tuple(reload.problems),
        telemetry_path=telemetry_path,
        storage_backend=status.storage_backend,
        storage_up=status.storage_up,
        replicas=status.replicas,
    )
    return summary, rows


@dataclass(frozen=True)
class Filter:
    """What the query string asks for: status, text, page and page size."""

    status: str = ""
    text: str = ""
    page: int = 1
    per_page: int = PAGE_SIZE

    @classmethod
    def from_query(cls, query: Mapping[str, Sequence[str]]) -> Filter:
        """Parse `?status=&q=&page=&per_page=`; anything malformed falls back to the default."""

        def last(name: str) -> str:
            values = query.get(name) or [""]
            return values[-1].strip()

        status = last("status").lower()
        if status not in (*STATUSES, FAILING):
            status = ""
        return cls(
            status=status,
            text=last("q")[:200],
            page=_int(last("page"), 1, 1, 10**6),
            per_page=_int(last("per_page"), PAGE_SIZE, 1, MAX_PAGE_SIZE),
        )

    def matches(self, row: TaskRow) -> bool:
        """Whether a row passes the status and text filters."""
        if self.status == FAILING:
            if row.query_ok or row.last_error is None:
                return False
        elif self.status and row.status != self.status:
            return False
        if not self.text:
            return True
        needle = self.text.lower()
        haystack = [row.trans_no, row.last_error or "", *(f"{k}={v}" for k, v in row.labels)]
        return any(needle in item.lower() for item in haystack)

    def url(self, **changes: str | int) -> str:
        """The page's URL with these parameters changed (defaults left out)."""
        params: dict[str, str | int] = {
            "status": self.status,
            "q": self.text,
            "page": self.page,
            "per_page": self.per_page,
        }
        params.update(changes)
        defaults: dict[str, str | int] = {"status": "", "q": "", "page": 1, "per_page": PAGE_SIZE}
        kept = {k: v for k, v in params.items() if v != defaults[k]}
        return "/?" + urlencode(kept) if kept else "/"


def _int(text: str, default: int, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        return default
    return min(max(value, low), high)


def age(seconds: float | None) -> str:
    """A data age for people: "never", "45s", "12m 5s", "3h 2m", "4d 1h"."""
    if seconds is None or not math.isfinite(seconds):
        return "never"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _probe_url(trans_no: str) -> str:
    return "/probe?" + urlencode({"trans_no": trans_no, "debug": "true"})


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:80em}
h1{font-size:1.4em;margin:0 0 .6em}
table{border-collapse:collapse}
td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.summary th{background:none;font-weight:600}
.processing{color:#1f60c4}.successful{color:#37872d}.failed{color:#c4162a}.unknown{color:#777}
.err{color:#c4162a}
form{margin:.8em 0}
nav{margin:.6em 0}
nav a,nav strong{margin-right:.8em}
code{font-size:.95em}
"""


def render(summary: Summary, rows: Sequence[TaskRow], flt: Filter, now: float | None = None) -> str:
    """The whole HTML page."""
    now = time.time() if now is None else now
    counts = {status: 0 for status in STATUSES}
    failing = 0
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
        failing += (not row.query_ok) and row.last_error is not None
    selected = [row for row in rows if flt.matches(row)]
    pages = max(1, math.ceil(len(selected) / flt.per_page))
    page = min(flt.page, pages)
    shown = selected[(page - 1) * flt.per_page : page * flt.per_page]

    used = summary.budget_requests - summary.budget_remaining
    if summary.reload_ok:
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(summary.reload_timestamp))
            if summary.reload_timestamp
            else "-"
        )
        reload_line = f"successful ({_e(when)})"
    else:
        problems = "".join(f"<li>{_e(p)}</li>" for p in summary.reload_problems)
        reload_line = (
            '<span class="err">FAILED: the previous configuration stays in force</span>'
            f"<ul>{problems}</ul>"
        )
    summary_rows = [
        ("Version", _e(summary.version)),
        ("Watched tasks", _e(summary.watched)),
        (
            "Rate budget",
            f"{_e(used)} of {_e(summary.budget_requests)} requests used in the last "
            f"{_e(f'{summary.budget_period:g}')}s ({_e(summary.budget_remaining)} left)",
        ),
        ("Refresh backlog", f"{_e(summary.backlog)} tasks deferred at the last collection"),
        ("Last reload", reload_line),
        (
            "State store",
            f"{_e(summary.storage_backend)}, "
            + ("up" if summary.storage_up else '<span class="err">not answering</span>')
            + f"; {_e(summary.replicas)} replica{'' if summary.replicas == 1 else 's'} alive",
        ),
    ]
    summary_html = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary_rows)

    def status_link(value: str, label: str, count: int) -> str:
        text = f"{_e(label)} ({count})"
        if flt.status == value:
            return f"<strong>{text}</strong>"
        return f'<a href="{_e(flt.url(status=value, page=1))}">{text}</a>'

    status_nav = " ".join(
        [status_link("", "all", len(rows))]
        + [status_link(s, s, counts[s]) for s in STATUSES]
        + [status_link(FAILING, "query failing", failing)]
    )
    body_rows = "\n".join(_row(row, now) for row in shown) or (
        '<tr><td colspan="5">No task matches.</td></tr>'
    )
    paging = [f"page {page} of {pages}, {len(selected)} of {len(rows)} tasks"]
    if page > 1:
        paging.insert(0, f'<a href="{_e(flt.url(page=page - 1))}" rel="prev">previous</a>')
    if page < pages:
        paging.append(f'<a href="{_e(flt.url(page=page + 1))}" rel="next">next</a>')
    status_options = "".join(
        f'<option value="{_e(v)}"{" selected" if flt.status == v else ""}>{_e(label)}</option>'
        for v, label in [
            ("", "any status"),
            *((s, s) for s in STATUSES),
            (FAILING, "query failing"),
        ]
    )
    metrics = _e(summary.telemetry_path)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cloud VoD splicing exporter</title>
<style>{STYLE}</style></head>
<body>
<h1>Cloud VoD splicing exporter</h1>
<table class="summary">
{summary_html}
</table>
<nav><a href="{metrics}">Metrics</a> <a href="/-/healthy">Health</a>
<a href="/-/ready">Readiness</a></nav>
<form id="lookup" action="/probe" method="get">
<label>Look up a transNo (queries the API now, within the budget):
<input name="trans_no" required maxlength="32" pattern="[A-Za-z0-9_\\-]{{1,32}}" size="34"></label>
<input type="hidden" name="debug" value="true">
<button type="submit">Probe</button>
</form>
<h2>Watched tasks</h2>
<nav id="status-filter">{status_nav}</nav>
<form id="filter" action="/" method="get">
<label>Search transNo, label or error: <input name="q" value="{_e(flt.text)}" size="30"></label>
<select name="status" aria-label="status">{status_options}</select>
<button type="submit">Filter</button>
</form>
<p id="paging">{" ".join(paging)}</p>
<table id="tasks">
<thead><tr><th>transNo</th><th>status</th><th>data age</th><th>last error</th>
<th>labels</th></tr></thead>
<tbody>
{body_rows}
</tbody>
</table>
</body></html>
"""


def _row(row: TaskRow, now: float) -> str:
    data_age = age(None if row.answered_at is None else now - row.answered_at)
    if row.query_ok or row.last_error is None:
        error = ""
    else:
        error = f'<span class="err">{_e(row.last_error)}</span>'
    labels = ", ".join(f"{_e(k)}={_e(v)}" for k, v in row.labels)
    return (
        f'<tr data-status="{_e(row.status)}"><td><a href="{_e(_probe_url(row.trans_no))}">'
        f"<code>{_e(row.trans_no)}</code></a></td>"
        f'<td class="{_e(row.status)}">{_e(row.status)}</td><td>{_e(data_age)}</td>'
        f"<td>{error}</td><td>{labels}</td></tr>"
    )
