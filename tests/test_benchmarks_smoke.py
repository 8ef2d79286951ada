"""The benchmark suite still runs: `python -m benchmarks.run --quick` prints every figure line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("a1", "a2", "a3", "b1", "b2", "c1", "d1", "d2", "d3", "d4", "e1", "e2")


def test_quick_benchmark_prints_every_figure() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = {line.split(" ", 1)[0]: line for line in run.stdout.splitlines() if line}
    missing = [f for f in FIGURES if f not in lines]
    assert not missing, f"figures missing: {missing}\n{run.stdout}\n{run.stderr}"
    # Headline figures are numbers, never nan or a placeholder.
    for figure in ("a1", "a2", "b1", "c1"):
        assert re.search(r"ratio \d+\.\d\d", lines[figure]), lines[figure]
    assert "byte-identical output: yes" in lines["d3"]
    # Our exporter is never throttled (the naive baseline in e2 is, on purpose).
    assert "throttled answers 0" in lines["b2"]
    assert "throttled answers 0" in lines["c1"]
    assert lines["e2"].split("vs ours", 1)[1].count("throttled 0") == 1
