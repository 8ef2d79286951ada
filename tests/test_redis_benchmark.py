"""The replica benchmark still runs and still meets its targets (a quarter hour, 100 tasks)."""

from __future__ import annotations

import re

import pytest

from benchmarks import replicas
from tests.helpers import require_tool


def test_replica_benchmark_quick_run_meets_its_targets(capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("redis-server", "apt-get install redis-server")
    assert replicas.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for n in (2, 4):
        figure = re.search(rf"^r{n} .*$", out, re.M)
        assert figure is not None, out
        assert "throttled 0 (target 0)" in figure.group(0)
        ratio = float(re.search(r": ([0-9.]+)x \(target", figure.group(0)).group(1))  # type: ignore[union-attr]
        assert ratio <= 1.05
        assert "every replica shows every task: True" in figure.group(0)
