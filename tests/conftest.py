"""Shared fixtures: the simulator on loopback and exporters wired to it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from exporter.config import ApiConfig, Config, RateLimit, RefreshConfig, Task
from exporter.service import Exporter
from exporter.simulator import SimTask, SimulatorServer
from tests import vendor_signer

ACCESS_KEY_ID = "test-access-key"
SECRET = "s3cr3t-Zq9-never-print-me"
IN_CI = os.environ.get("CI") == "true"


def require_tool(name: str, hint: str = "run `make tools`") -> str:
    """The path of a binary the test needs: missing is a failure in CI, a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({hint})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def start_simulator() -> Iterator[Callable[..., SimulatorServer]]:
    """Start simulators on 127.0.0.1 with the test credentials; stopped after the test.

    They verify signatures with tests/vendor_signer.py, not the exporter's own signing code.
    """
    started: list[SimulatorServer] = []

    def start(tasks: list[SimTask] | tuple[SimTask, ...] = (), **kwargs: Any) -> SimulatorServer:
        kwargs.setdefault("credentials", {ACCESS_KEY_ID: SECRET})
        kwargs.setdefault("verifier", vendor_signer.verify)
        sim = SimulatorServer(tasks, **kwargs).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def make_config(
    endpoint: str,
    trans_nos: list[str] | tuple[str, ...],
    *,
    labels: dict[str, dict[str, str]] | None = None,
    **api: Any,
) -> Config:
    """A configuration watching these tasks on this endpoint with the test credentials."""
    labels = labels or {}
    tasks = tuple(Task(t, tuple(sorted(labels.get(t, {}).items()))) for t in trans_nos)
    api.setdefault("timeout", 2.0)
    api.setdefault("rate_limit", RateLimit(300, 300.0))
    return Config(
        api=ApiConfig(
            access_key_id=ACCESS_KEY_ID, access_key_secret=SECRET, endpoint=endpoint, **api
        ),
        refresh=RefreshConfig(),
        tasks=tasks,
    )


@pytest.fixture
def make_exporter() -> Iterator[Callable[..., Exporter]]:
    """Build exporters (closed after the test)."""
    made: list[Exporter] = []

    def make(config: Config, **kwargs: Any) -> Exporter:
        exporter = Exporter(config, **kwargs)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.close()
