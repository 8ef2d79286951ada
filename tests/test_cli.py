"""The command line: sub-commands, exit codes and messages."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter import __version__
from exporter.cli import apply_environment, build_parser, env_name, main
from exporter.simulator import Fault, SimulatorServer, documented_example
from tests.helpers import ACCESS_KEY_ID, SECRET
from tests.processes import REPO, Process, exporter_command, free_port, wait_until

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
    assert f"cloudvod-concat-exporter {__version__}" in capsys.readouterr().out


def test_check_config_of_a_pathologically_nested_file(
    tmp_path: Path, creds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("tasks: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    assert main(["check-config", f"--config.file={path}"]) == 2
    assert "nested too deeply" in capsys.readouterr().err


# --- help, environment variables, query without a configuration file -----------------------


def help_text(*command: str) -> str:
    """The --help output of a command (the serve command when none is given)."""
    run = subprocess.run(
        [sys.executable, "-m", "exporter", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.parametrize("command", [(), ("check-config",), ("query",), ("simulate",), ("mixin",)])
def test_help_explains_every_command(command: tuple[str, ...]) -> None:
    text = help_text(*command)
    assert "examples:" in text
    assert "exit codes: 0" in text
    assert "CLOUDVOD_ACCESS_KEY_ID" in text
    parser = build_parser()
    if command:
        parser = next(
            a.choices[command[0]]
            for a in parser._actions
            if isinstance(a, argparse._SubParsersAction)
        )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help, f"{action.option_strings or action.dest} has no help"
        if (
            action.option_strings
            and action.option_strings[0].startswith("--")
            and action.dest
            not in {
                "help",
                "version",
            }
        ):
            assert env_name(action.option_strings[0]) in " ".join(text.split()), action.dest


def test_help_shows_defaults() -> None:
    text = " ".join(help_text().split())
    assert "(default: :9877; env CLOUDVOD_CONCAT_WEB_LISTEN_ADDRESS)" in text
    assert "log line format on stderr (default: logfmt; env CLOUDVOD_CONCAT_LOG_FORMAT)" in text
    query = " ".join(help_text("query").split())
    assert "TRANSNO transNo of a splicing task" in query
    assert "(default: text; env CLOUDVOD_CONCAT_FORMAT)" in query


def test_every_flag_can_come_from_the_environment() -> None:
    env = {
        "CLOUDVOD_CONCAT_WEB_LISTEN_ADDRESS": "127.0.0.1:1234",
        "CLOUDVOD_CONCAT_LOG_LEVEL": "debug",
        "CLOUDVOD_CONCAT_DEMO": "true",
        "CLOUDVOD_CONCAT_CONFIG_WATCH_INTERVAL": "1m",
        "CLOUDVOD_CONCAT_FORMAT": "json",
        "CLOUDVOD_CONCAT_TASKS": "7",
        "CLOUDVOD_CONCAT_OUT": "build/",
    }
    parser = build_parser()
    assert apply_environment(parser, env) == []
    args = parser.parse_args([])
    assert (args.listen_address, args.log_level, args.demo, args.watch_interval) == (
        "127.0.0.1:1234",
        "debug",
        True,
        "1m",
    )
    assert parser.parse_args(["query", "t-1"]).format == "json"
    assert parser.parse_args(["simulate"]).tasks == 7  # converted like the flag
    assert parser.parse_args(["mixin"]).out == "build/"  # a required flag is satisfied
    # The command line wins.
    assert parser.parse_args(["--web.listen-address=:9"]).listen_address == ":9"
    assert parser.parse_args(["query", "--format=text", "t-1"]).format == "text"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CLOUDVOD_CONCAT_LOG_LEVEL", "loud", "expected one of debug, info, warn, error"),
        ("CLOUDVOD_CONCAT_DEMO", "maybe", "expected true or false"),
        ("CLOUDVOD_CONCAT_TASKS", "many", "invalid value for --tasks"),
    ],
)
def test_bad_environment_value_exits_2(
    variable: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config"], environ={variable: value}) == 2
    err = capsys.readouterr().err
    assert f"{variable}={value!r}: {message}" in err


def test_query_without_a_config_file(
    creds: None, start_simulator: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = start_simulator([documented_example(0.0)])
    assert main(["query", f"--api.endpoint={sim.url}", EXAMPLE, "nope"]) == 1
    out = capsys.readouterr().out
    assert f"{EXAMPLE}: successful" in out
    # The names and units of the metrics: clarity names, integers, bytes, one "error 1603".
    assert "rendition clarity original server_type -1: 1280x720 pixels, 1223912405 bytes" in out
    assert "duration: 7202 s, size: " in out and ".0 bytes" not in out and ".0x" not in out
    assert "nope: unknown\n  error 1603: " in out
    assert "API error 1603" not in out


def test_query_credentials_from_flags(
    tmp_path: Path, start_simulator: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = start_simulator([documented_example(0.0)])
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    argv = [
        "query",
        f"--api.endpoint={sim.url}",
        f"--api.access-key-id={ACCESS_KEY_ID}",
        f"--api.access-key-secret-file={secret}",
        EXAMPLE,
    ]
    assert main(argv, environ={}) == 0
    assert SECRET not in capsys.readouterr().out


def test_query_without_credentials_says_where_to_put_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CLOUDVOD_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("CLOUDVOD_ACCESS_KEY_SECRET", raising=False)
    assert main(["query", "--api.endpoint=http://127.0.0.1:1", EXAMPLE]) == 2
    err = capsys.readouterr().err
    assert "--api.access-key-id: missing" in err and "CLOUDVOD_ACCESS_KEY_ID" in err
    assert "CLOUDVOD_ACCESS_KEY_SECRET" in err
    assert main(["query", "--api.endpoint=ftp://x", EXAMPLE]) == 2
    assert "--api.endpoint:" in capsys.readouterr().err


def test_query_flags_override_the_config_file(
    tmp_path: Path, creds: None, start_simulator: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = start_simulator([documented_example(0.0)])
    path = config_file(tmp_path)  # points at a port nothing listens on
    assert main(["query", f"--config.file={path}", f"--api.endpoint={sim.url}", EXAMPLE]) == 0
    assert f"{EXAMPLE}: successful" in capsys.readouterr().out


@pytest.mark.parametrize("demo", [False, True])
def test_bad_listen_address_exits_2_before_anything_starts(tmp_path: Path, demo: bool) -> None:
    argv = ["--web.listen-address=nonsense"]
    argv += ["--demo"] if demo else [f"--config.file={tmp_path / 'not-read.yaml'}"]
    run = subprocess.run(
        [sys.executable, "-m", "exporter", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=REPO,
    )
    assert run.returncode == 2
    assert "--web.listen-address: invalid listen address 'nonsense'" in run.stderr
    assert "demo mode" not in run.stderr and "simulator" not in run.stderr
    assert "not-read.yaml" not in run.stderr  # rejected before the configuration is read


def test_listen_address_from_the_environment_is_checked_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--demo"], environ={"CLOUDVOD_CONCAT_WEB_LISTEN_ADDRESS": "127.0.0.1:http"}) == 2
    assert "port must be a number" in capsys.readouterr().err


def test_simulator_prints_its_credentials_and_transnos() -> None:
    from exporter.simulator.cli import startup_message
    from exporter.simulator.tasks import demo_tasks

    text = startup_message(
        "http://127.0.0.1:8080", demo_tasks(0.0), "demo-access-key", "demo-secret"
    )
    assert "access key ID:     demo-access-key" in text
    assert "access key secret: demo-secret" in text
    assert f"sample transNos:   {EXAMPLE} demo-ok-10s" in text
    custom = startup_message("http://h:1", demo_tasks(0.0), "mine", "real-secret-value")
    assert "real-secret-value" not in custom


def test_readme_query_against_simulate_works_as_written(tmp_path: Path) -> None:
    """The README's three lines, run as a user would (with a free port instead of 8080)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- query-against-simulate -->")[1].split("```sh\n")[1].split("```")[0]
    lines = [line for line in block.splitlines() if line and not line.startswith("#")]
    simulate, export, query_line = lines
    port = str(free_port())
    script = exporter_command()

    def argv(line: str) -> list[str]:
        words = shlex.split(line.replace("8080", port).removesuffix("&"))
        assert words[0] == "cloudvod-concat-exporter"
        return [*script, *words[1:]]

    assert export.startswith("export ")
    env = dict(word.split("=", 1) for word in shlex.split(export)[1:])
    with Process(argv(simulate), tmp_path / "simulate.log") as sim:
        wait_until(lambda: "sample transNos" in sim.output(), what="the simulator")
        for key, value in env.items():
            assert f"{value}" in sim.output(), f"the simulator does not print {key}"
        run = subprocess.run(
            argv(query_line),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,  # no config.yaml anywhere near
            env={**os.environ, **env},
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{EXAMPLE}: successful" in run.stdout
