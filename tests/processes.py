"""Start real processes on loopback for end-to-end tests, and always stop them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exporter_command(*args: str) -> list[str]:
    """The console script when installed, else `python -m exporter`."""
    script = Path(sys.executable).with_name("cloudvod-concat-exporter")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "exporter", *args]


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `check` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def http_ok(url: str, **kwargs: object) -> bool:
    """True when GET url answers 200."""
    return requests.get(url, timeout=2, **kwargs).status_code == 200  # type: ignore[arg-type]


class Process:
    """A child process whose output goes to a log file; stopped on exit of the `with`."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("wb")
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.proc = subprocess.Popen(
            list(argv), stdout=self._out, stderr=subprocess.STDOUT, env=full_env, cwd=REPO
        )

    def output(self) -> str:
        """Everything the process printed so far."""
        self._out.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
