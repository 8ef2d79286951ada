"""Secret hygiene: a distinctive access key secret, every path driven, all output scanned.

The console script runs against the simulator at debug level in both log formats, with the secret
in the configuration file and in the environment. Everything it prints, every HTTP body it serves
(/metrics, /, /probe with debug, /-/reload after a broken file, answers to a wrong-secret
request), and the output of `check-config` and `query` must not hold the secret, nor its base64
or hex spelling.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from exporter import logs
from exporter.config import ConfigError, load_config
from exporter.service import Exporter
from exporter.simulator import SimulatorServer
from exporter.webapp import make_app
from tests.helpers import sim_task
from tests.processes import REPO, Process, exporter_command, free_port, http_ok, wait_until

CANARY = "S3cr3t-Canary-7f3a9e"
KEY_ID = "canary-key"
WRONG_KEY_ID = "key-with-another-secret"  # the simulator knows it with a different secret
FORMS = {
    "plain": CANARY,
    "base64": base64.b64encode(CANARY.encode()).decode(),
    "hex": CANARY.encode().hex(),
}


def assert_clean(text: str, where: str) -> None:
    """No spelling of the secret in text (nor its lower-cased form, as float() printed it)."""
    for name, form in FORMS.items():
        assert form not in text, f"the secret ({name}) appears in {where}:\n{text}"
    assert CANARY.lower() not in text.lower(), f"the secret appears in {where}:\n{text}"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    credentials = {KEY_ID: CANARY, WRONG_KEY_ID: "not-the-canary-secret"}
    server = SimulatorServer([sim_task("ok-1")], credentials=credentials).start()
    yield server
    server.stop()


def config_yaml(endpoint: str, *, key_id: str = KEY_ID, inline: bool = True) -> str:
    secret = f"  access_key_secret: {CANARY}\n" if inline else ""
    return (
        f"api:\n  endpoint: {endpoint}\n  access_key_id: {key_id}\n{secret}  timeout: 1s\n"
        "refresh:\n  successful: 0s\n"
        "tasks:\n  - ok-1\n  - trans_no: missing-1\n    labels: {team: a}\n"
    )


# Broken files that quote the secret if anything does: as a key, a value, a trans_no.
BROKEN_VALIDATION = textwrap.dedent(
    f"""\
    api:
      endpoint: http://127.0.0.1:9
      access_key_id: {KEY_ID}
      access_key_secret: {CANARY}
      timeout: {CANARY}
      {CANARY}: 1
    tasks: ["{CANARY}!", ok-1]
    """
)
BROKEN_DUPLICATE_KEY = textwrap.dedent(
    f"""\
    api:
      endpoint: http://127.0.0.1:9
      access_key_id: {KEY_ID}
      access_key_secret: {CANARY}
      {CANARY}: 1
      {CANARY}: 2
    tasks: [ok-1]
    """
)
BROKEN_SYNTAX = f'api:\n  access_key_secret: "{CANARY}\n  timeout: [\ntasks: [ok-1\n'
# The secret pasted where the path of the secret file belongs.
BROKEN_SECRET_AS_PATH = f"api:\n  access_key_id: {KEY_ID}\n  access_key_secret_file: {CANARY}\n"
# The secret under a YAML tag: PyYAML's int() and float() quoted it (float lower-cased).
BROKEN_TAG_INT = f"api:\n  access_key_id: {KEY_ID}\n  access_key_secret: !!int {CANARY}\n"
BROKEN_TAG_FLOAT = f"api:\n  access_key_id: {KEY_ID}\n  access_key_secret: !!float {CANARY}\n"
BROKEN_FILES = {
    "validation": BROKEN_VALIDATION,
    "tag-int": BROKEN_TAG_INT,
    "tag-float": BROKEN_TAG_FLOAT,
    "duplicate-key": BROKEN_DUPLICATE_KEY,
    "syntax": BROKEN_SYNTAX,
    "secret-as-path": BROKEN_SECRET_AS_PATH,
}


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the console script to completion: (exit code, stdout, stderr)."""
    done = subprocess.run(
        exporter_command(*args),
        capture_output=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=REPO,
        timeout=60,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


# --- the server, both log formats, secret inline and from the environment ------------------------


@pytest.mark.parametrize(
    ("log_format", "inline"), [("logfmt", True), ("json", False)], ids=["logfmt-file", "json-env"]
)
def test_serving_never_shows_the_secret(
    sim: SimulatorServer, tmp_path: Path, log_format: str, inline: bool
) -> None:
    env = {} if inline else {"CLOUDVOD_ACCESS_KEY_SECRET": CANARY}
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(sim.url, inline=inline))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    seen: list[tuple[str, str]] = []

    def fetch(method: str, path: str, expect: int = 200) -> str:
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": "3"}
        response = requests.request(method, base + path, headers=headers, timeout=10)
        assert response.status_code == expect, (path, response.text)
        seen.append((f"{method} {path}", response.text))
        return response.text

    argv = [
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.path={tmp_path / 'data'}",
        "--log.level=debug",
        f"--log.format={log_format}",
    ]
    with Process(exporter_command(*argv), tmp_path / "exporter.log", env) as proc:
        wait_until(lambda: http_ok(base + "/-/ready"), what="exporter ready")
        assert "cloudvod_concat_task_query_success" in fetch("GET", "/metrics")
        fetch("GET", "/")
        assert "Signature=<redacted>" in fetch("GET", "/probe?trans_no=unwatched-1&debug=true")
        fetch("GET", "/probe?trans_no=missing-1&debug=true")
        fetch("GET", "/probe?trans_no=bad!&debug=true", expect=400)
        fetch("GET", "/-/healthy")
        fetch("GET", "/-/ready")
        fetch("GET", "/-/reload", expect=405)

        for name, text in BROKEN_FILES.items():
            config.write_text(text)
            fetch("POST", "/-/reload", expect=500)
            assert "FAILED" in fetch("GET", "/"), name
            fetch("GET", "/metrics")
        # A signal-driven reload of a broken file logs the problems.
        os.kill(proc.proc.pid, signal.SIGHUP)
        failures = len(BROKEN_FILES) + 1
        wait_until(
            lambda: proc.output().count("configuration reload failed") >= failures,
            what="the SIGHUP reload",
        )

        # The secret does not match the key ID: every request fails authentication (HTTP 401).
        config.write_text(config_yaml(sim.url, key_id=WRONG_KEY_ID, inline=inline))
        fetch("POST", "/-/reload")
        # Asked again a second after its last answer at the latest (refresh.successful 0s).
        wait_until(
            lambda: 'cloudvod_concat_api_errors_total{code="http_401"}' in fetch("GET", "/metrics"),
            timeout=10,
            what="a 401 counted",
        )
        assert "HTTP status: 401" in fetch("GET", "/probe?trans_no=unwatched-1&debug=true")
        wait_until(lambda: "http_401" in proc.output(), what="the 401 in the log")

        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0
        output = proc.output()

    assert "level=debug" in output or '"level": "debug"' in output  # debug lines were written
    assert "Traceback" not in output
    assert_clean(output, f"the {log_format} log")
    for where, body in seen:
        assert_clean(body, where)


# --- one-shot commands ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret_in_env"),
    [
        ("validation", False),
        ("validation", True),
        ("duplicate-key", True),
        ("syntax", False),
        ("secret-as-path", True),
        ("duplicate-key", False),
        ("tag-int", False),
        ("tag-float", False),
        ("tag-int", True),
    ],
)
def test_check_config_of_a_broken_file(tmp_path: Path, name: str, secret_in_env: bool) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BROKEN_FILES[name])
    env = {"CLOUDVOD_ACCESS_KEY_SECRET": CANARY} if secret_in_env else {}
    code, out, err = run(["check-config", f"--config.file={config}", "--log.level=debug"], env)
    output = out + err
    assert code == 2
    assert "invalid configuration" in output
    assert_clean(output, "check-config")
    if name.startswith("tag-"):
        tag = name.removeprefix("tag-")
        wanted = f"api.access_key_secret: must be a string (quote it), got a value tagged !!{tag}"
        assert wanted in output
    # Serving the same file fails the same way, without a traceback.
    code, out, err = run([f"--config.file={config}", "--log.level=debug"], env)
    output = out + err
    assert code == 2
    assert "Traceback" not in output
    assert_clean(output, "serve with a broken file")


def test_check_config_of_a_valid_file(tmp_path: Path, sim: SimulatorServer) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(sim.url))
    code, out, err = run(["check-config", f"--config.file={config}", "--log.level=debug"])
    output = out + err
    assert code == 0, output
    assert_clean(output, "check-config")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_query_command(sim: SimulatorServer, tmp_path: Path, fmt: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(sim.url))
    argv = ["query", f"--config.file={config}", f"--format={fmt}", "--log.level=debug"]
    code, out, err = run([*argv, "ok-1", "missing-1"], {"CLOUDVOD_ACCESS_KEY_SECRET": CANARY})
    assert code == 1  # missing-1 is answered with 1603
    assert "ok-1" in out and "1603" in out
    assert_clean(out + err, f"query --format={fmt}")
    if fmt == "json":
        assert [r["answered"] for r in json.loads(out)["results"]] == [True, False]

    config.write_text(config_yaml(sim.url, key_id=WRONG_KEY_ID))
    code, out, err = run([*argv, "ok-1"])
    assert code == 1
    assert "http_401" in out
    assert_clean(out + err, f"query --format={fmt} with the wrong secret")
    if fmt == "json":
        assert json.loads(out)["results"][0]["error"]["code"] == "http_401"


# --- in-process: the pieces the paths above go through -------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[Callable[[str], list[str]]]:
    """Format records with the exporter's formatters; restore the root logger afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def capture(fmt: str) -> list[str]:
        lines: list[str] = []

        class Sink(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(self.format(record))

        sink = Sink()
        sink.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.LogfmtFormatter())
        root.handlers[:] = [sink]
        root.setLevel(logging.DEBUG)
        return lines

    yield capture
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
@pytest.mark.parametrize(
    "secret", [CANARY, 'S3cr3t"Canary\\7f3a9e', "S3cr3t=Canary\u00e9\U0001f511"]
)
def test_log_formatters_scrub_secrets_that_need_escaping(
    log_lines: Callable[[str], list[str]], fmt: str, secret: str
) -> None:
    logs.register_secret(secret)
    lines = log_lines(fmt)
    log = logging.getLogger("exporter.test")
    log.debug("message with %s inside", secret)
    log.warning("extra field", extra={"err": f"boom: {secret}!", "path": f"/x/{secret}"})
    try:
        raise ValueError(f"bad value {secret!r}")
    except ValueError:
        log.exception("with a traceback")
    assert len(lines) == 3
    escaped = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        secret.replace("\\", "\\\\").replace('"', '\\"'),
        repr(secret)[1:-1],
    }
    for line in lines:
        for form in escaped:
            assert form not in line, f"{form!r} in {line}"
        assert "<secret>" in line


def test_failed_reload_problems_are_redacted(tmp_path: Path, sim: SimulatorServer) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(sim.url))
    exporter = Exporter(load_config(config), loader=lambda: load_config(config))
    try:
        app = make_app(exporter)
        for name, text in BROKEN_FILES.items():
            config.write_text(text)
            problems = exporter.reload()
            assert problems, name
            assert_clean("\n".join(problems), f"reload problems ({name})")
            assert_clean("\n".join(exporter.reload_status.problems), f"reload status ({name})")
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": ""}
            page = b"".join(app(environ, lambda *a: None)).decode()
            assert_clean(page, f"the landing page ({name})")
    finally:
        exporter.close()


def test_configuration_objects_do_not_show_the_secret(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml("http://127.0.0.1:9"))
    loaded = load_config(config)
    assert loaded.api.access_key_secret == CANARY
    assert_clean(repr(loaded), "repr(Config)")
    assert_clean(str(loaded.api), "str(ApiConfig)")
    config.write_text(BROKEN_VALIDATION)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert_clean(str(info.value), "ConfigError")
    assert_clean(repr(info.value), "repr(ConfigError)")
