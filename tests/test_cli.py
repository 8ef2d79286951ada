"""The command line: sub-commands, exit codes and messages."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.simulator import Fault, SimulatorServer, documented_example
from tests.conftest import ACCESS_KEY_ID, SECRET
from tests.processes import REPO

Start = Callable[..., SimulatorServer]
EXAMPLE = "0251168101641000f4cf4da800000000"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() configures the root logger for the process; undo it after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDVOD_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("CLOUDVOD_ACCESS_KEY_SECRET", SECRET)


def config_file(tmp_path: Path, endpoint: str = "http://127.0.0.1:1", extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"api:\n  endpoint: {endpoint}\n  timeout: 2s\n{extra}tasks:\n  - {EXAMPLE}\n",
        encoding="utf-8",
    )
    return path


def test_check_config_valid(
    tmp_path: Path, creds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", f"--config.file={config_file(tmp_path)}"]) == 0
    assert "valid; 1 watched tasks" in capsys.readouterr().out


def test_check_config_example_file(creds: None) -> None:
    assert main(["check-config", f"--config.file={REPO / 'config.example.yaml'}"]) == 0


def test_check_config_reports_every_problem_by_path(
    tmp_path: Path, creds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "api:\n  timeout: ten\n  max_concurrency: 0\nrefresh:\n  failed: 6 hours\n"
        "tasks:\n  - ok-1\n  - bad/one\n  - trans_no: ok-2\n    labels: {trans_no: x}\nbogus: 1\n",
        encoding="utf-8",
    )
    assert main(["check-config", f"--config.file={path}"]) == 2
    err = capsys.readouterr().err
    for prefix in (
        "api.timeout:",
        "api.max_concurrency:",
        "refresh.failed:",
        "tasks[1]:",
        "tasks[2].labels.trans_no:",
        "bogus:",
    ):
        assert f"  {prefix}" in err, prefix
    assert "Traceback" not in err


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", f"--config.file={tmp_path / 'nope.yaml'}"]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_check_config_never_calls_the_api(
    tmp_path: Path, creds: None, start_simulator: Start
) -> None:
    sim = start_simulator([documented_example(0.0)])
    assert main(["check-config", f"--config.file={config_file(tmp_path, sim.url)}"]) == 0
    assert sim.stats().requests == 0


def test_query_text_and_exit_codes(
    tmp_path: Path, creds: None, start_simulator: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = start_simulator([documented_example(0.0)])
    path = config_file(tmp_path, sim.url)
    assert main(["query", f"--config.file={path}", EXAMPLE]) == 0
    out = capsys.readouterr().out
    assert f"{EXAMPLE}: successful" in out
    assert "duration: 7202" in out
    assert f'cloudvod_concat_task_status{{status="successful",trans_no="{EXAMPLE}"}} 1.0' in out
    assert main(["query", f"--config.file={path}", EXAMPLE, "unknown-task"]) == 1
    out = capsys.readouterr().out
    assert "unknown-task: unknown" in out
    assert "error 1603" in out


def test_query_json(
    tmp_path: Path, creds: None, start_simulator: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = start_simulator([documented_example(0.0)])
    sim.set_fault("slow", Fault(kind="code", code=1560))
    path = config_file(tmp_path, sim.url)
    assert main(["query", f"--config.file={path}", "--format=json", EXAMPLE, "slow"]) == 0
    doc = json.loads(capsys.readouterr().out)
    first, second = doc["results"]
    assert first["status"] == "successful"
    assert first["video"]["renditions"][0]["file_size_bytes"] == 1223912405
    assert (second["status"], second["api_code"]) == ("processing", 1560)
    assert "cloudvod_concat_video_size_bytes" in doc["exposition"]


def test_query_rejects_bad_trans_no_before_any_request(
    tmp_path: Path, creds: None, start_simulator: Start
) -> None:
    sim = start_simulator([documented_example(0.0)])
    path = config_file(tmp_path, sim.url)
    assert main(["query", f"--config.file={path}", "not/valid"]) == 2
    assert sim.stats().requests == 0


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["--no-such-flag"])
    assert info.value.code == 2


def test_serve_with_invalid_config_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("api: [\n", encoding="utf-8")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={path}",
            "--web.listen-address=127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=REPO,
    )
    assert run.returncode == 2
    assert "invalid YAML" in run.stderr
    assert "Traceback" not in run.stderr


def test_serve_on_a_busy_port_exits_1(tmp_path: Path, creds: None) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = config_file(tmp_path)
        argv = [f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}"]
        assert main([*argv, f"--storage.path={tmp_path / 'data'}"]) == 1


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "cloudvod-concat-exporter 0.1.0" in capsys.readouterr().out


def test_check_config_of_a_pathologically_nested_file(
    tmp_path: Path, creds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("tasks: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    assert main(["check-config", f"--config.file={path}"]) == 2
    assert "nested too deeply" in capsys.readouterr().err
