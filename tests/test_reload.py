"""Hot reload through the WSGI app and the task-file watcher (SIGHUP is covered in test_e2e).

A reload validates the new configuration first and swaps it in whole; on any problem the last
good configuration stays in force, `/-/reload` answers 500 naming the problems, and
`cloudvod_concat_config_last_reload_successful` is 0 until a reload succeeds again. A config
path replaced by a FIFO, a device or a folder fails at once, by POST and by SIGHUP alike.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import generate_latest

from exporter.config import load_config
from exporter.service import Exporter
from exporter.simulator import SimulatorServer
from exporter.watcher import TaskFileWatcher
from exporter.webapp import make_app
from tests.helpers import (
    ACCESS_KEY_ID,
    SECRET,
    App,
    Series,
    parse_exposition,
    require_tool,
    sim_task,
    value,
    wsgi_call,
)
from tests.processes import Process, exporter_command, free_port, http_ok, wait_until

Start = Callable[..., SimulatorServer]

RELOAD_OK = "cloudvod_concat_config_last_reload_successful"
RELOAD_TS = "cloudvod_concat_config_last_reload_success_timestamp_seconds"
WATCHED = "cloudvod_concat_watched_tasks"
STATUS = "cloudvod_concat_task_status"
LAST_SUCCESS = "cloudvod_concat_task_last_success_timestamp_seconds"


def trans_nos(series: Series) -> set[str]:
    """Every trans_no that has a series."""
    return {dict(k[1])["trans_no"] for k in series if "trans_no" in dict(k[1])}


def scrape(app: App) -> Series:
    status, _, body = wsgi_call(app, "/metrics")
    text = body.decode()
    assert status == 200
    done = subprocess.run(
        [require_tool("promtool"), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    return parse_exposition(text)


def write(path: Path, text: str) -> None:
    """Write a file and make sure its modification time moves (a watcher compares it)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    if path.stat().st_mtime_ns <= before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def config_text(endpoint: str, tasks: str, extra: str = "") -> str:
    return (
        "api:\n"
        f"  endpoint: {endpoint}\n"
        f"  access_key_id: {ACCESS_KEY_ID}\n"
        f"  access_key_secret: {SECRET}\n"
        "  timeout: 1s\n"
        f"{extra}"
        f"tasks:\n{textwrap.dedent(tasks)}"
    )


@pytest.fixture
def setup(
    start_simulator: Start, tmp_path: Path
) -> Iterator[tuple[SimulatorServer, Path, Exporter]]:
    sim = start_simulator([sim_task(f"ok-{i}") for i in range(1, 6)])
    path = tmp_path / "config.yaml"
    write(path, config_text(sim.url, "- ok-1\n- trans_no: ok-2\n  labels: {team: a}\n"))
    exporter = Exporter(load_config(path), loader=lambda: load_config(path))
    yield sim, path, exporter
    exporter.close()


def test_post_reload_success_failure_and_recovery(
    setup: tuple[SimulatorServer, Path, Exporter],
) -> None:
    sim, path, exporter = setup
    app = make_app(exporter)
    first = scrape(app)
    assert value(first, WATCHED) == 2
    assert value(first, RELOAD_OK) == 1

    write(path, config_text(sim.url, "- ok-1\n- ok-2\n- ok-3\n"))
    status, _, body = wsgi_call(app, "/-/reload", method="POST")
    assert (status, body.decode()) == (200, "configuration reloaded\n")
    loaded = scrape(app)
    assert value(loaded, WATCHED) == 3
    assert value(loaded, RELOAD_OK) == 1
    good_since = value(loaded, RELOAD_TS)
    assert good_since is not None

    write(
        path,
        config_text(sim.url, "- ok-1\n- bad/trans_no\n", extra="  max_concurrency: 0\n"),
    )
    status, _, raw = wsgi_call(app, "/-/reload", method="POST")
    body = raw.decode()
    assert status == 500
    problems = body.splitlines()
    assert any(p.startswith("api.max_concurrency: ") for p in problems), body
    assert any(p.startswith("tasks[1]: ") and "bad/trans_no" in p for p in problems), body
    broken = scrape(app)
    assert value(broken, RELOAD_OK) == 0
    assert value(broken, RELOAD_TS) == good_since
    assert value(broken, WATCHED) == 3  # the old configuration stays in force
    assert trans_nos(broken) == {"ok-1", "ok-2", "ok-3"}
    assert exporter.config.api.max_concurrency == 4
    status, _, page = wsgi_call(app, "/")
    landing = page.decode()
    assert status == 200 and "FAILED" in landing and "api.max_concurrency" in landing
    assert wsgi_call(app, "/-/ready")[0] == 200  # the old configuration still serves

    write(path, config_text(sim.url, "- ok-1\n- ok-4\n"))
    assert wsgi_call(app, "/-/reload", method="POST")[0] == 200
    fixed = scrape(app)
    assert value(fixed, RELOAD_OK) == 1
    assert trans_nos(fixed) == {"ok-1", "ok-4"}


def test_reload_endpoint_refuses_get(setup: tuple[SimulatorServer, Path, Exporter]) -> None:
    sim, path, exporter = setup
    app = make_app(exporter)
    write(path, config_text(sim.url, "- ok-5\n"))
    for method in ("GET", "HEAD", "DELETE"):
        assert wsgi_call(app, "/-/reload", method=method)[0] == 405
    assert [t.trans_no for t in exporter.config.tasks] == ["ok-1", "ok-2"]  # nothing reloaded


def test_cached_answers_survive_a_reload_and_removed_tasks_disappear(
    setup: tuple[SimulatorServer, Path, Exporter],
) -> None:
    sim, path, exporter = setup
    app = make_app(exporter)
    before = scrape(app)
    assert sim.stats().per_trans_no == {"ok-1": 1, "ok-2": 1}
    answered = value(before, LAST_SUCCESS, trans_no="ok-1")

    # ok-1 stays (new labels), ok-2 goes, ok-3 comes; the API settings change too (new client).
    write(
        path,
        config_text(
            sim.url,
            "- trans_no: ok-1\n  labels: {team: b}\n- ok-3\n",
            extra="  max_concurrency: 2\n",
        ),
    )
    assert wsgi_call(app, "/-/reload", method="POST")[0] == 200
    after = scrape(app)

    assert sim.stats().per_trans_no == {"ok-1": 1, "ok-2": 1, "ok-3": 1}  # ok-1 not asked again
    assert trans_nos(after) == {"ok-1", "ok-3"}
    assert value(after, STATUS, trans_no="ok-1", team="b", status="successful") == 1
    assert value(after, LAST_SUCCESS, trans_no="ok-1", team="b") == answered
    assert not [k for k in after if ("team", "a") in k[1]]  # the old label is gone
    assert value(after, STATUS, trans_no="ok-3", status="successful") == 1


def test_task_files_are_picked_up(start_simulator: Start, tmp_path: Path) -> None:
    sim = start_simulator([sim_task(f"ok-{i}") for i in range(1, 6)])
    folder = tmp_path / "tasks.d"
    folder.mkdir()
    path = tmp_path / "config.yaml"
    write(path, config_text(sim.url, "- ok-1\n", extra="") + "task_files:\n  - tasks.d/*.yaml\n")
    exporter = Exporter(load_config(path), loader=lambda: load_config(path))
    try:
        app = make_app(exporter)
        watcher = TaskFileWatcher(exporter)
        assert not watcher.check()
        assert trans_nos(scrape(app)) == {"ok-1"}

        added = folder / "team-a.yaml"
        write(added, "- ok-2\n- trans_no: ok-3\n  labels: {team: a}\n")
        assert watcher.check()
        assert trans_nos(scrape(app)) == {"ok-1", "ok-2", "ok-3"}
        assert not watcher.check()  # nothing changed since

        write(added, "tasks:\n  - ok-2\n  - trans_no: ok-3\n    labels: {team: b}\n  - ok-4\n")
        assert watcher.check()
        changed = scrape(app)
        assert trans_nos(changed) == {"ok-1", "ok-2", "ok-3", "ok-4"}
        assert value(changed, STATUS, trans_no="ok-3", team="b", status="successful") == 1
        requests_so_far = sim.stats().requests

        write(added, "- ok-2\n- ok 5 with spaces\n")
        assert watcher.check()
        broken = scrape(app)
        assert value(broken, RELOAD_OK) == 0
        assert trans_nos(broken) == {"ok-1", "ok-2", "ok-3", "ok-4"}
        assert any(str(added) in p and "tasks[1]" in p for p in exporter.reload_status.problems)

        write(added, "- ok-2\n- ok-5\n")
        assert watcher.check()
        fixed = scrape(app)
        assert value(fixed, RELOAD_OK) == 1
        assert trans_nos(fixed) == {"ok-1", "ok-2", "ok-5"}
        # ok-1 and ok-2 stayed watched all along: only the new ok-5 was asked about.
        assert sim.stats().requests == requests_so_far + 1

        added.unlink()
        assert watcher.check()
        assert trans_nos(scrape(app)) == {"ok-1"}
    finally:
        exporter.close()


def test_a_scrape_during_a_reload_sees_the_old_or_the_new_configuration(
    setup: tuple[SimulatorServer, Path, Exporter],
) -> None:
    sim, path, exporter = setup
    app = make_app(exporter)
    scrape(app)  # ok-1 and ok-2 answered
    scheduler = exporter.scheduler
    apply = scheduler.apply
    during: list[Series] = []

    def apply_with_scrapes(*args: Any, **kwargs: Any) -> None:
        # Render the exposition at both sides of the swap of the watched set.
        during.append(parse_exposition(generate_latest(exporter.registry).decode()))
        apply(*args, **kwargs)
        during.append(parse_exposition(generate_latest(exporter.registry).decode()))

    scheduler.apply = apply_with_scrapes  # type: ignore[method-assign]
    write(path, config_text(sim.url, "- ok-1\n- ok-3\n"))  # ok-2 goes, ok-3 comes
    assert wsgi_call(app, "/-/reload", method="POST")[0] == 200

    assert len(during) == 2
    for series in during:
        # Tasks that were answered never flash "unknown"; only the never-asked ok-3 may be.
        unknown = {
            dict(k[1])["trans_no"]
            for k, v in series.items()
            if k[0] == STATUS and ("status", "unknown") in k[1] and v == 1
        }
        assert unknown <= {"ok-3"}
        assert value(series, STATUS, trans_no="ok-1", status="successful") == 1


def test_a_task_file_change_during_a_reload_is_not_lost(
    start_simulator: Start, tmp_path: Path
) -> None:
    sim = start_simulator([sim_task(t) for t in ("a", "b", "c")])
    (tmp_path / "tasks.d").mkdir()
    one, two = tmp_path / "tasks.d" / "one.yaml", tmp_path / "tasks.d" / "two.yaml"
    one.write_text("[]\n")
    two.write_text("[b]\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        config_text(sim.url, "  - a\n", "task_files: [tasks.d/*.yaml]\n"), encoding="utf-8"
    )
    env = {"CLOUDVOD_ACCESS_KEY_ID": ACCESS_KEY_ID, "CLOUDVOD_ACCESS_KEY_SECRET": SECRET}

    def loader_that_races():  # type: ignore[no-untyped-def]
        loaded = load_config(config, env)
        if two.read_text() == "[b]\n":  # a second file lands while the first reload reads
            write(two, "[b, c]\n")
        return loaded

    exporter = Exporter(load_config(config, env), loader=loader_that_races)
    try:
        watcher = TaskFileWatcher(exporter, interval=60)
        write(one, "[]\n# touched\n")
        assert watcher.check()  # the reload that raced with the second write
        assert watcher.check()  # ... so the second write is seen and loaded
        assert [t.trans_no for t in exporter.config.tasks] == ["a", "b", "c"]
    finally:
        exporter.close()


# --- a configuration path that is not a regular file ---------------------------------------------


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _folder(path: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize(
    ("replace", "reason"),
    [
        pytest.param(_fifo, "is a FIFO (named pipe), not a regular file", id="fifo"),
        pytest.param(_dev_zero, "is a character device, not a regular file", id="dev-zero"),
        pytest.param(_folder, "is a directory", id="folder"),
    ],
)
def test_a_reload_of_a_path_that_is_not_a_file_returns_at_once_and_keeps_the_old_config(
    setup: tuple[SimulatorServer, Path, Exporter], replace: Callable[[Path], None], reason: str
) -> None:
    _, path, exporter = setup
    app = make_app(exporter)
    assert value(scrape(app), WATCHED) == 2
    path.unlink()
    replace(path)
    for _ in range(2):  # the second reload shows the lock was released
        started = time.monotonic()
        status, _, body = wsgi_call(app, "/-/reload", method="POST")
        assert time.monotonic() - started < 3.0
        assert (status, body.decode()) == (500, f"{path}: cannot read: {reason}\n")
    broken = scrape(app)
    assert value(broken, RELOAD_OK) == 0
    assert value(broken, WATCHED) == 2
    assert trans_nos(broken) == {"ok-1", "ok-2"}


def test_sighup_with_a_fifo_config_neither_hangs_nor_holds_the_reload_lock(
    start_simulator: Start, tmp_path: Path
) -> None:
    sim = start_simulator([sim_task("ok-1")])
    path = tmp_path / "config.yaml"
    write(path, config_text(sim.url, "- ok-1\n"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}"]
    with Process(exporter_command(*argv), tmp_path / "exporter.log") as proc:
        wait_until(lambda: http_ok(base + "/-/ready"), what="exporter ready")
        path.unlink()
        os.mkfifo(path)
        os.kill(proc.proc.pid, signal.SIGHUP)
        wait_until(
            lambda: "configuration reload failed" in proc.output(), what="the failed SIGHUP reload"
        )
        assert "is a FIFO (named pipe), not a regular file" in proc.output()
        started = time.monotonic()
        response = requests.post(base + "/-/reload", timeout=10)
        assert time.monotonic() - started < 3.0
        assert response.status_code == 500
        assert response.text == f"{path}: cannot read: is a FIFO (named pipe), not a regular file\n"
        assert http_ok(base + "/-/healthy")
        assert (
            "cloudvod_concat_watched_tasks 1.0" in requests.get(base + "/metrics", timeout=10).text
        )

        path.unlink()
        write(path, config_text(sim.url, "- ok-1\n- ok-2\n"))
        assert requests.post(base + "/-/reload", timeout=10).status_code == 200
        assert (
            "cloudvod_concat_watched_tasks 2.0" in requests.get(base + "/metrics", timeout=10).text
        )
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0
