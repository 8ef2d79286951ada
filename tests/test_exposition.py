"""Whole-output comparison: a fixed scenario against the simulator, rendered to text.

Set UPDATE_GOLDEN=1 to rewrite tests/golden/scenario.prom after an intended change, then
review the diff like any other code change.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path

from prometheus_client import generate_latest

from exporter import __version__
from exporter.service import Exporter
from exporter.simulator import Fault, Rendition, SimTask, SimulatorServer
from tests.fakes import FakeClock
from tests.helpers import make_config

GOLDEN = Path(__file__).parent / "golden" / "scenario.prom"
NOW = 1_700_000_000.0


def scenario_tasks() -> list[SimTask]:
    """Every status, several renditions, odd clarities, a name that needs escaping."""

    def task(trans_no: str, outcome: str, **extra: object) -> SimTask:
        fields: dict[str, object] = {
            "video_id": f"vid-{trans_no}",
            "video_name": f"Video {trans_no}",
            "video_duration": 7202,
            "publish_domain": "vod.example.com",
            "player_name": "player",
            "upload_time": NOW - 3600,
            "update_time": NOW - 60,
            "renditions": [Rendition(1, -1, 1280, 720, 1_223_912_405)],
        }
        fields.update(extra)
        return SimTask(
            trans_no=trans_no,
            task_id=f"task-{trans_no}",
            created_at=NOW - 3600,
            processing_seconds=3000 if outcome != "processing" else 1e9,
            outcome=outcome,  # type: ignore[arg-type]
            **fields,  # type: ignore[arg-type]
        )

    return [
        task("gold-processing", "processing"),
        task(
            "gold-success",
            "successful",
            video_name='春晚 "Gala" \\ part\n1',
            encrypt=1,
            transcode_state=1,
            renditions=[
                Rendition(1, -1, 1920, 1080, 900_000_000),
                Rendition(4, 0, 1280, 720, 450_000_000),
                Rendition(3, 1, 854, 480, 150_000_000),
            ],
        ),
        task("gold-failed", "failed"),
        task("gold-1560", "processing"),
        task("gold-1602", "successful"),
        task("gold-missing", "missing"),
        task(
            "gold-odd",
            "successful",
            time_format="datetime",
            video_state=1,
            renditions=[
                Rendition(-99, -1, 1920, 1080, 500_000_000),
                Rendition(7, 1, 2560, 1440, 700_000_000),
            ],
        ),
    ]


def render(
    start_simulator: Callable[..., SimulatorServer], make_exporter: Callable[..., Exporter]
) -> str:
    tasks = scenario_tasks()
    sim = start_simulator(tasks, clock=lambda: NOW)
    sim.set_fault("gold-1560", Fault(kind="code", code=1560, message="视频处理中"))
    sim.set_fault("gold-1602", Fault(kind="code", code=1602, message="transNo is illegal"))
    config = make_config(
        sim.url, [t.trans_no for t in tasks], labels={"gold-success": {"team": "a"}}
    )
    clock = FakeClock(NOW)
    exporter = make_exporter(config, clock=clock, timer=clock)
    report = exporter.refresh()
    assert report.backlog == 0
    text = without_runtime(generate_latest(exporter.registry))
    text = text.replace(f'python_version="{platform.python_version()}"', 'python_version="X"')
    return text.replace(f'version="{__version__}"', 'version="X"')


def without_runtime(exposition: bytes) -> str:
    """The exposition without prometheus_client's process_* and python_info families, whose
    values (CPU seconds, memory, the interpreter) differ from run to run."""
    lines = exposition.decode("utf-8").splitlines(keepends=True)
    runtime = ("process_", "python_info")
    return "".join(
        line
        for line in lines
        if not line.startswith(runtime)
        and not line.startswith(
            tuple(f"# {kind} {name}" for kind in ("HELP", "TYPE") for name in runtime)
        )
    )


def test_scenario_matches_golden_exposition(start_simulator, make_exporter) -> None:  # type: ignore[no-untyped-def]
    text = render(start_simulator, make_exporter)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_cached_renderer_matches_prometheus_client(start_simulator, make_exporter) -> None:  # type: ignore[no-untyped-def]
    """/metrics serves text cached per task: it must equal what prometheus_client renders."""
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

    tasks = scenario_tasks()
    sim = start_simulator(tasks, clock=lambda: NOW)
    config = make_config(
        sim.url, [t.trans_no for t in tasks], labels={"gold-success": {"team": "a"}}
    )
    exporter = make_exporter(config, clock=FakeClock(NOW))
    for _ in range(2):  # the second time from the cache
        exporter.refresh()
        assert without_runtime(exporter.exposition()) == without_runtime(
            generate_latest(exporter.registry)
        )
        body = exporter.exposition(openmetrics_format=True)
        assert without_runtime(body) == without_runtime(openmetrics_latest(exporter.registry))
        assert b"process_resident_memory_bytes" in body  # served, just not compared
        assert b"python_info{" in body
