"""The status page at `/`: tasks with status, age, error and labels; filters; paging; escaping."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

from exporter.service import Exporter
from exporter.simulator import SimulatorServer
from exporter.statuspage import Filter, Summary, TaskRow, render
from exporter.webapp import make_app
from tests.helpers import make_config, sim_task, wsgi_call

NOW = 1_700_000_000.0
SUMMARY = Summary(
    watched=4,
    budget_requests=300,
    budget_period=300.0,
    budget_remaining=280,
    backlog=0,
    reload_ok=True,
    reload_timestamp=NOW - 60,
    reload_problems=(),
)
ROWS = [
    TaskRow("t-proc", "processing", NOW - 5, True, None, (("campaign", "spring"),)),
    TaskRow("t-ok", "successful", NOW - 3700, True, None),
    TaskRow("t-fail", "failed", NOW - 70, True, None),
    TaskRow("t-missing", "unknown", None, False, "1603"),
]


class Cells(HTMLParser):
    """The text of every cell of the task table, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table(page: str) -> list[list[str]]:
    parser = Cells()
    parser.feed(page)
    return parser.rows


def page_for(query: dict[str, list[str]], rows: list[TaskRow] = ROWS) -> str:
    return render(SUMMARY, rows, Filter.from_query(query), now=NOW)


def test_every_task_with_status_age_error_and_labels() -> None:
    assert table(page_for({})) == [
        ["t-proc", "processing", "5s", "", "campaign=spring"],
        ["t-ok", "successful", "1h 1m", "", ""],
        ["t-fail", "failed", "1m 10s", "", ""],
        ["t-missing", "unknown", "never", "1603", ""],
    ]


def test_budget_reload_and_version_are_shown() -> None:
    page = page_for({})
    assert "20 of 300 requests used in the last 300s (280 left)" in page
    assert "successful (2023-11-14 22:12:20 UTC)" in page
    assert "Version" in page
    assert "memory, up; 1 replica alive" in page
    down = Summary(**{**SUMMARY.__dict__, "storage_backend": "redis", "storage_up": False})
    assert 'redis, <span class="err">not answering</span>' in render(down, ROWS, Filter(), now=NOW)


def test_failed_reload_lists_the_problems() -> None:
    summary = Summary(
        **{**SUMMARY.__dict__, "reload_ok": False, "reload_problems": ("tasks[0]: bad",)}
    )
    page = render(summary, ROWS, Filter(), now=NOW)
    assert "FAILED" in page and "<li>tasks[0]: bad</li>" in page


def test_filter_by_status() -> None:
    assert [r[0] for r in table(page_for({"status": ["failed"]}))] == ["t-fail"]
    assert [r[0] for r in table(page_for({"status": ["failing"]}))] == ["t-missing"]
    # An unknown status shows everything rather than nothing.
    assert len(table(page_for({"status": ["bogus"]}))) == 4


def test_filter_by_text_matches_trans_no_labels_and_errors() -> None:
    assert [r[0] for r in table(page_for({"q": ["OK"]}))] == ["t-ok"]
    assert [r[0] for r in table(page_for({"q": ["campaign=spr"]}))] == ["t-proc"]
    assert [r[0] for r in table(page_for({"q": ["1603"]}))] == ["t-missing"]
    assert table(page_for({"q": ["nothing-like-this"]})) == [["No task matches."]]


def test_filter_form_keeps_its_values() -> None:
    page = page_for({"q": ["t-"], "status": ["failed"]})
    assert 'name="q" value="t-"' in page
    assert '<option value="failed" selected>' in page


def test_lookup_form_opens_the_probe_debug_view() -> None:
    page = page_for({})
    form = re.search(r'<form id="lookup" action="(.*?)" method="get">(.*?)</form>', page, re.S)
    assert form is not None
    assert form.group(1) == "/probe"
    assert re.search(r'<input name="trans_no" required', form.group(2))
    assert '<input type="hidden" name="debug" value="true">' in form.group(2)
    assert "trans_no=&" not in page  # the old link that answered 400
    assert 'href="/probe?trans_no=t-ok&amp;debug=true"' in page


def test_ten_thousand_tasks_are_paged() -> None:
    rows = [TaskRow(f"task-{i:05d}", "successful", NOW - i, True, None) for i in range(10_000)]
    first = page_for({}, rows)
    assert len(table(first)) == 100
    assert len(first.encode()) < 60_000
    assert "page 1 of 100, 10000 of 10000 tasks" in first
    assert 'href="/?page=2" rel="next"' in first
    last = page_for({"page": ["100"]}, rows)
    assert table(last)[-1][0] == "task-09999"
    assert 'rel="prev"' in last and 'rel="next"' not in last
    # Past the end: the last page, not an empty one.
    assert table(page_for({"page": ["999"]}, rows))[-1][0] == "task-09999"
    assert len(table(page_for({"per_page": ["5000"]}, rows))) == 1000
    filtered = page_for({"q": ["task-0999"], "page": ["1"]}, rows)
    assert "10 of 10000 tasks" in filtered


def test_paging_links_keep_the_filter() -> None:
    rows = [TaskRow(f"x-{i}", "failed", NOW, True, None) for i in range(250)]
    page = page_for({"status": ["failed"], "q": ["x-"]}, rows)
    assert 'href="/?status=failed&amp;q=x-&amp;page=2" rel="next"' in page


def test_everything_from_outside_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    rows = [TaskRow("t-1", "unknown", None, False, evil, (("team", evil),))]
    summary = Summary(**{**SUMMARY.__dict__, "reload_ok": False, "reload_problems": (evil,)})
    page = render(summary, rows, Filter.from_query({"q": ['"><b>x']}), now=NOW)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert 'value="&quot;&gt;&lt;b&gt;x"' in page


def test_served_at_root_from_a_running_exporter(
    start_simulator: Callable[..., SimulatorServer], make_exporter: Callable[..., Exporter]
) -> None:
    sim = start_simulator([sim_task("t-ok"), sim_task("t-bad", outcome="failed")])
    config = make_config(sim.url, ["t-ok", "t-bad", "t-nope"], labels={"t-ok": {"team": "a&b"}})
    exporter = make_exporter(config)
    app = make_app(exporter)
    wsgi_call(app, "/metrics")  # the first scrape answers the tasks
    code, headers, body = wsgi_call(app, "/", query="q=t-")
    assert code == 200
    assert headers["Content-Type"] == "text/html"
    rows = {row[0]: row for row in table(body.decode())}
    assert rows["t-ok"][1:] == ["successful", "0s", "", "team=a&b"]
    assert rows["t-bad"][1] == "failed"
    assert rows["t-nope"][1:4] == ["unknown", "never", "1603"]
