"""The status page in a real browser: headless Chromium against a running exporter (--demo).

Chromium loads the page the exporter serves, takes a screenshot, and prints the DOM it built
(--dump-dom), which is what the test asserts on: a task's row, a filter, and the look-up form,
submitted the way a browser submits a GET form, landing on the probe's debug view. Chromium comes
with Debian's `chromium` package; missing, the test is skipped, except under CI=true.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from tests.helpers import require_tool
from tests.processes import Process, exporter_command, free_port, http_ok, wait_until

pytestmark = pytest.mark.e2e


def chromium(*args: str, profile: Path) -> str:
    """Run headless Chromium once; its standard output."""
    run = subprocess.run(
        [
            require_tool("chromium", "apt-get install chromium"),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


class Page(HTMLParser):
    """What the DOM shows: the task table's rows and the look-up form's fields."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.lookup: tuple[str, str, list[tuple[str, str]]] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._form: list[tuple[str, str]] | None = None
        self._form_attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-status" in a:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "form" and a.get("id") == "lookup":
            self._form, self._form_attrs = [], a
        elif tag == "input" and self._form is not None:
            self._form.append((a.get("name") or "", a.get("value") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows[self._row[0]] = self._row
            self._row = None
        elif tag == "form" and self._form is not None:
            action = self._form_attrs.get("action") or ""
            method = (self._form_attrs.get("method") or "get").lower()
            self.lookup = (action, method, self._form)
            self._form = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(dom: str) -> Page:
    page = Page()
    page.feed(dom)
    return page


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    process = Process(
        exporter_command("--demo", f"--web.listen-address=127.0.0.1:{port}"), tmp / "exporter.log"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(url + "/-/healthy"), what="the exporter")
        # The first scrape answers every demo task (20 tasks, well within the budget).
        assert requests.get(url + "/metrics", timeout=30).status_code == 200
        yield url
    finally:
        process.stop()


def test_screenshot_of_the_status_page(exporter: str, tmp_path: Path) -> None:
    shot = tmp_path / "status.png"
    chromium(
        "--window-size=1280,900",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        exporter + "/",
        profile=tmp_path / "profile",
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1280, 900)
    assert len(data) > 20_000  # a rendered table of 20 tasks, not a blank page


def test_the_page_shows_every_task(exporter: str, tmp_path: Path) -> None:
    page = parse(chromium("--dump-dom", exporter + "/", profile=tmp_path / "profile"))
    assert len(page.rows) == 20
    assert page.rows["demo-failed-old"][1] == "failed"
    assert page.rows["demo-missing"][1:4] == ["unknown", "never", "1603"]
    assert page.rows["demo-ok-old"][1] == "successful"
    assert page.rows["demo-ok-old"][2].endswith("s")  # answered seconds ago
    assert page.rows["0251168101641000f4cf4da800000000"][4] == "campaign=spring"


def test_filters_narrow_the_list(exporter: str, tmp_path: Path) -> None:
    failed = parse(chromium("--dump-dom", exporter + "/?status=failed", profile=tmp_path / "p"))
    assert "demo-failed-old" in failed.rows
    assert {row[1] for row in failed.rows.values()} == {"failed"}
    text = parse(chromium("--dump-dom", exporter + "/?q=stuck", profile=tmp_path / "p"))
    assert sorted(text.rows) == ["demo-stuck-1", "demo-stuck-2"]


def test_lookup_form_leads_to_the_debug_view(exporter: str, tmp_path: Path) -> None:
    page = parse(chromium("--dump-dom", exporter + "/", profile=tmp_path / "profile"))
    assert page.lookup is not None
    action, method, fields = page.lookup
    assert method == "get"
    # What a browser sends for this form when the operator types a transNo into it.
    values = [(name, "demo-ok-old" if name == "trans_no" else value) for name, value in fields]
    assert [name for name, _ in values] == ["trans_no", "debug"]
    target = exporter + action + "?" + urlencode(values)
    debug = chromium("--dump-dom", target, profile=tmp_path / "profile")
    assert "trans_no: demo-ok-old" in debug
    assert "status: successful" in debug
    assert "budget remaining:" in debug
