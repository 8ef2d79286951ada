"""Two console-script replicas sharing a real redis-server, against one simulator.

A replica killed while it holds a claim: the claim expires and the other one takes the task.
Redis killed and restarted empty: the replicas keep serving within the scrape deadline, show
storage_up 0, then 1 again.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from exporter.simulator import Fault, SimulatorServer
from tests.helpers import ACCESS_KEY_ID, SECRET, parse_exposition, sim_task, value
from tests.processes import Process, exporter_command, free_port, http_ok, wait_until
from tests.redis_server import RedisServer, redis_server, start_redis  # noqa: F401

pytestmark = pytest.mark.e2e

ENV = {"CLOUDVOD_ACCESS_KEY_ID": ACCESS_KEY_ID, "CLOUDVOD_ACCESS_KEY_SECRET": SECRET}
SLOW = "slow000000"
SCRAPE = {"X-Prometheus-Scrape-Timeout-Seconds": "2"}  # a 1.5 s deadline


def write_config(tmp_path: Path, endpoint: str, trans_nos: list[str], redis_url: str) -> Path:
    path = tmp_path / "config.yaml"
    tasks = "".join(f"  - {t}\n" for t in trans_nos)
    path.write_text(
        textwrap.dedent(
            f"""\
            api:
              endpoint: {endpoint}
              timeout: 3s
            storage:
              redis:
                url: {redis_url}
                timeout: 300ms
            tasks:
            """
        )
        + tasks,
        encoding="utf-8",
    )
    return path


def start_replica(tmp_path: Path, config: Path, name: str) -> tuple[Process, str]:
    port = free_port()
    proc = Process(
        exporter_command(
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.path={tmp_path / name}",
        ),
        tmp_path / f"{name}.log",
        ENV,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(base + "/-/ready"), what=f"replica {name} ready")
    except AssertionError:
        proc.stop()
        raise
    return proc, base


def scrape(base: str) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], float]:
    started = time.monotonic()
    response = requests.get(base + "/metrics", headers=SCRAPE, timeout=10)
    assert response.status_code == 200
    return parse_exposition(response.text), time.monotonic() - started


def answered(series: dict[tuple[str, frozenset[tuple[str, str]]], float], trans_no: str) -> bool:
    return value(series, "cloudvod_concat_task_status", trans_no=trans_no, status="successful") == 1


def test_replicas_share_answers_and_take_over_a_dead_replicas_claim(
    tmp_path: Path,
    start_simulator: Callable[..., SimulatorServer],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    names = [f"task{i:06d}" for i in range(12)]
    sim = start_simulator([sim_task(t) for t in [*names, SLOW]])
    sim.set_fault(SLOW, Fault("delay", seconds=30.0))
    config = write_config(tmp_path, sim.url, [*names, SLOW], redis_server.url)
    first, first_url = start_replica(tmp_path, config, "a")
    second, second_url = start_replica(tmp_path, config, "b")
    with first, second:
        series, seconds = scrape(first_url)  # asks everything; SLOW hangs with first's claim
        assert all(answered(series, t) for t in names)
        assert seconds < 3.0, "the scrape returned at its deadline with SLOW still in flight"
        first.proc.kill()  # dies holding the claim on SLOW
        first.proc.wait(10)
        sim.clear_faults()
        series, _ = scrape(second_url)
        assert all(answered(series, t) for t in names), "the answers the first replica got"
        assert value(series, "cloudvod_concat_replicas") == 2
        stats = sim.stats()
        assert all(stats.per_trans_no[t] == 1 for t in names), "nothing asked twice"
        assert stats.per_trans_no[SLOW] == 1, "SLOW stays claimed by the dead replica"
        # The claim lasts api.timeout + 1 s (4 s): then the second replica takes the task.
        wait_until(lambda: answered(scrape(second_url)[0], SLOW), timeout=10, what="takeover")
        stats = sim.stats()
        assert stats.per_trans_no[SLOW] == 2
        assert all(stats.per_trans_no[t] == 1 for t in names)
        assert stats.throttled == 0

        redis_server.kill()
        series, seconds = scrape(second_url)
        assert seconds < 1.5, "a dead Redis does not hold the scrape beyond its timeout"
        series, seconds = scrape(second_url)
        assert seconds < 0.5, "nor the scrapes after it (circuit breaker)"
        assert value(series, "cloudvod_concat_storage_up", backend="redis") == 0
        assert all(answered(series, t) for t in [*names, SLOW]), "served from the local mirror"
        redis_server.start()
        wait_until(
            lambda: (
                value(scrape(second_url)[0], "cloudvod_concat_storage_up", backend="redis") == 1
            ),
            timeout=15,
            what="storage_up back to 1",
        )
        log = second.output()
        assert "Redis unreachable" in log and "Redis reachable again" in log
