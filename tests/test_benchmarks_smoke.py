"""The benchmark suite still runs: `python -m benchmarks.run --quick` prints every figure line,
and the figures that are deterministic at the quick sizes meet their targets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = (
    *("a1", "a2", "a3", "b1", "b2", "c1", "d1", "d2", "d3", "d4", "e1", "e2"),
    *("f1", "f2", "f3", "g1", "g2", "h1", "h2", "i1"),
)


@pytest.fixture(scope="module")
def lines() -> dict[str, str]:
    """Each figure's line of one quick run, by its id."""
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    found = {line.split(" ", 1)[0]: line for line in run.stdout.splitlines() if line}
    missing = [f for f in FIGURES if f not in found]
    assert not missing, f"figures missing: {missing}\n{run.stdout}\n{run.stderr}"
    return found


def ratio(line: str) -> float:
    """The headline ratio of a figure's line."""
    found = re.search(r"ratio (\d+\.\d+)", line)
    assert found, line
    return float(found.group(1))


def test_quick_benchmark_prints_every_figure(lines: dict[str, str]) -> None:
    # Headline figures are numbers, never nan or a placeholder.
    for figure in ("a1", "a2", "b1", "c1", "f1", "f2", "g1"):
        assert re.search(r"ratio \d+\.\d\d?", lines[figure]), lines[figure]
    assert "byte-identical output: yes" in lines["d3"]
    # Our exporter is never throttled (the naive baseline in e2 is, on purpose).
    assert "throttled answers 0" in lines["b2"]
    assert "throttled answers 0" in lines["c1"]
    assert lines["e2"].split("vs ours", 1)[1].count("throttled 0") == 1
    assert "throttled answers 0" in lines["f1"] and "throttled answers 0" in lines["f2"]


def test_fleet_figures_meet_their_targets(lines: dict[str, str]) -> None:
    """g, h and i are deterministic at the quick sizes (simulated time, or counts of zero)."""
    assert "target met" in lines["g1"], lines["g1"]
    assert ratio(lines["g1"]) >= 0.95
    assert "with top-ups" in lines["g2"] and "(met, throttled 0)" in lines["g2"], lines["g2"]
    for figure in ("h1", "h2"):  # a restart with fresh answers asks nothing, shows everything
        assert " 0 API calls (target 0, target met)" in lines[figure], lines[figure]
        shown = re.search(r"showed (\d+) of (\d+) tasks", lines[figure])
        assert shown and shown.group(1) == shown.group(2), lines[figure]
    assert "throttled answers 0 (target 0, target met)" in lines["i1"], lines["i1"]
    sent = re.search(r"requests in the period (\d+) \(limit (\d+)", lines["i1"])
    assert sent and int(sent.group(1)) <= int(sent.group(2)), lines["i1"]


def test_claims_beat_the_old_ordering(lines: dict[str, str]) -> None:
    """The old ordering serves the overdue final refreshes first: its flips wait the backlog,
    where the claims show them within the target at the best point of the budget's period."""
    target = re.search(r"one interval = (\d+\.\d+)", lines["f1"])
    each = re.search(r"each: ([^;]+) s;", lines["f1"])
    p_over_r = re.search(r"P/R = (\d+) s", lines["f1"])
    assert target and each and p_over_r, lines["f1"]
    best = min(float(v.split(" x")[0]) for v in each.group(1).split(", "))
    assert best / float(p_over_r.group(1)) <= float(target.group(1))
    assert ratio(lines["f2"]) > 5 * float(target.group(1)), lines["f2"]


def test_flips_among_final_tasks_are_visible_within_the_target(lines: dict[str, str]) -> None:
    """At the worst point of the budget's period before the pacing fix, scrapes alone and with
    the CLI's top-up rounds."""
    for figure in ("f1", "f3"):
        assert "target met" in lines[figure], lines[figure]
