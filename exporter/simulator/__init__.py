"""The Cloud VoD API simulator: task timelines, faults and throttling behind a real HTTP server."""

from exporter.simulator.fakeapi import Fault, SimStats, SimulatorServer
from exporter.simulator.tasks import (
    Rendition,
    SimTask,
    demo_tasks,
    documented_example,
    generate_tasks,
)

__all__ = [
    "Fault",
    "Rendition",
    "SimStats",
    "SimTask",
    "SimulatorServer",
    "demo_tasks",
    "documented_example",
    "generate_tasks",
]
