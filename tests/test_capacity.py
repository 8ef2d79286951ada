"""What a configuration costs: the refresh intervals the budget achieves, in check-config too."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import capacity
from exporter.cli import main
from exporter.config import RateLimit, RefreshConfig
from exporter.protocol import TaskStatus

DEFAULT = RateLimit()  # 300 per 5 min: 1 request/s


def test_ten_thousand_successful_tasks_cannot_be_refreshed_hourly() -> None:
    cap = capacity.estimate({TaskStatus.SUCCESSFUL: 10_000}, DEFAULT, RefreshConfig())
    assert cap.demand[TaskStatus.SUCCESSFUL] == pytest.approx(10_000 / 3600)
    assert cap.unmet() == [TaskStatus.SUCCESSFUL]
    assert cap.achieved[TaskStatus.SUCCESSFUL] == pytest.approx(10_000.0)  # all of 1/s


def test_processing_tasks_leave_finals_their_share_and_no_more_than_needed() -> None:
    counts = {TaskStatus.PROCESSING: 20, TaskStatus.SUCCESSFUL: 10_000}
    cap = capacity.estimate(counts, DEFAULT, RefreshConfig(), scrape_interval=15.0)
    # 20 processing tasks on a 15 s scrape want 1.33/s; they get 90 % of 1/s.
    assert cap.achieved[TaskStatus.PROCESSING] == pytest.approx(20 / 0.9)
    # The finals get the 10 %: each refreshed every 10,000 / 0.1 s.
    assert cap.achieved[TaskStatus.SUCCESSFUL] == pytest.approx(100_000.0)


def test_a_small_fleet_meets_every_target() -> None:
    counts = {TaskStatus.PROCESSING: 5, TaskStatus.SUCCESSFUL: 500, TaskStatus.FAILED: 10}
    cap = capacity.estimate(counts, DEFAULT, RefreshConfig(), scrape_interval=15.0)
    assert cap.unmet() == []
    assert cap.achieved[TaskStatus.PROCESSING] == 15.0  # every scrape
    assert cap.achieved[TaskStatus.SUCCESSFUL] == 3600.0


def test_first_answers_of_new_tasks_take_what_the_budget_needs() -> None:
    cap = capacity.estimate({None: 10_000}, DEFAULT, RefreshConfig())
    assert cap.first_answers == pytest.approx(10_000 - 60)  # 60 at once, then 1/s
    assert capacity.estimate({None: 10}, DEFAULT, RefreshConfig()).first_answers == 0.0


def test_check_config_prints_the_cost_and_warns_when_a_target_cannot_be_met(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDVOD_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("CLOUDVOD_ACCESS_KEY_SECRET", "a-long-enough-secret")
    tasks = "".join(f"  - t{i:05d}\n" for i in range(5000))
    path = tmp_path / "config.yaml"
    path.write_text(f"tasks:\n{tasks}", encoding="utf-8")
    assert main(["check-config", f"--config.file={path}"]) == 0
    out, err = capsys.readouterr()
    assert "budget: 300 requests per 5m (1 requests/s); 5000 watched tasks" in out
    assert "first answers: 60 at once, all 5000 within 1h22m20s of being added" in out
    assert "refresh.failed 6h: met for 5000 failed tasks" in out
    assert (
        "warning: refresh.successful 1h cannot be met for 5000 successful tasks: each would be "
        "refreshed about every 1h23m20s" in err
    )
