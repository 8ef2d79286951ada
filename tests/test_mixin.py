"""The monitoring mixin: the shipped files are its default output, and a user's build works."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import main
from exporter.mixin import (
    DEFAULT_FOR,
    OUTPUTS,
    MixinConfig,
    MixinConfigError,
    alert_groups,
    parse_mixin_config,
    recording_groups,
    render_all,
)
from tests.helpers import require_tool
from tests.processes import REPO

USER_CONFIG = """\
selector: job="vod-exporter", env="prod"
grafana_url: https://grafana.example.com/
runbook_url: https://wiki.example.com/cloudvod/runbook
failed_task_window: 2h
thresholds:
  stuck_processing: 4h
  api_error_ratio: 0.25
for:
  CloudVodConcatExporterDown: 2m
  CloudVodConcatTaskQueryFailing: 1h
prometheus_rule:
  name: vod-rules
  namespace: observability
  labels: {release: kube-prometheus-stack}
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() configures the root logger for the process; undo it after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def alerts_of(config: MixinConfig) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in alert_groups(config) for rule in group["rules"]}


@pytest.mark.parametrize("relative", sorted(OUTPUTS))
def test_checked_in_files_are_the_default_output(relative: str) -> None:
    expected = render_all(MixinConfig())[relative]
    actual = (REPO / relative).read_text(encoding="utf-8")
    assert actual == expected, (
        f"{relative} differs from the mixin's output: run "
        "`cloudvod-concat-exporter mixin --out=.` and commit the result"
    )


def test_kustomization_lists_the_prometheusrule() -> None:
    kustomization = yaml.safe_load((REPO / "deploy/kubernetes/kustomization.yaml").read_text())
    assert "prometheusrule.yaml" in kustomization["resources"]


def test_prometheusrule_holds_both_rule_files() -> None:
    manifest = yaml.safe_load((REPO / "deploy/kubernetes/prometheusrule.yaml").read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == (
        "monitoring.coreos.com/v1",
        "PrometheusRule",
    )
    files = [REPO / "prometheus/recording.yml", REPO / "prometheus/alerts.yml"]
    groups = [g for path in files for g in yaml.safe_load(path.read_text())["groups"]]
    assert manifest["spec"]["groups"] == groups


def test_a_users_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = tmp_path / "mixin.yaml"
    config_path.write_text(USER_CONFIG, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["mixin", f"--config={config_path}", f"--out={out}"]) == 0
    assert sorted(capsys.readouterr().out.split()) == sorted(str(out / p) for p in OUTPUTS)

    groups = yaml.safe_load((out / "prometheus/alerts.yml").read_text())["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    down = alerts["CloudVodConcatExporterDown"]
    assert down["expr"] == 'up{job="vod-exporter", env="prod"} == 0'
    assert down["for"] == "2m"
    assert (
        alerts["CloudVodConcatExporterAbsent"]["expr"]
        == 'absent(up{job="vod-exporter", env="prod"})'
    )
    assert alerts["CloudVodConcatTaskQueryFailing"]["for"] == "1h"
    assert "> 14400" in alerts["CloudVodConcatTaskStuckProcessing"]["expr"]
    assert "over 4h" in alerts["CloudVodConcatTaskStuckProcessing"]["annotations"]["summary"]
    assert "< 7200" in alerts["CloudVodConcatTaskFailed"]["expr"]
    assert "> 0.25" in alerts["CloudVodConcatApiErrorRatioHigh"]["expr"]
    for name, alert in alerts.items():
        annotations = alert["annotations"]
        assert annotations["dashboard"].startswith(
            "https://grafana.example.com/d/cloudvod-concat/cloud-vod-splicing-tasks?var-job="
        ), name
        assert annotations["runbook_url"] == (
            f"https://wiki.example.com/cloudvod/runbook#{name.lower()}"
        )

    dashboard = json.loads((out / "grafana/cloudvod-concat.json").read_text())
    assert dashboard["uid"] == "cloudvod-concat"
    job = next(v for v in dashboard["templating"]["list"] if v["name"] == "job")
    assert job["definition"] == (
        'label_values(cloudvod_concat_watched_tasks{job="vod-exporter", env="prod"}, job)'
    )
    assert {"title": "Runbooks", "url": "https://wiki.example.com/cloudvod/runbook"}.items() <= (
        dashboard["links"][0].items()
    )

    rule = yaml.safe_load((out / "deploy/kubernetes/prometheusrule.yaml").read_text())
    assert rule["metadata"]["name"] == "vod-rules"
    assert rule["metadata"]["namespace"] == "observability"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    promtool = require_tool("promtool")
    check = subprocess.run(
        [
            promtool,
            "check",
            "rules",
            out / "prometheus/alerts.yml",
            out / "prometheus/recording.yml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_default_links_are_relative() -> None:
    alert = alerts_of(MixinConfig())["CloudVodConcatTaskFailed"]
    assert alert["annotations"]["dashboard"].startswith("/d/cloudvod-concat/")
    assert alert["annotations"]["runbook_url"] == "docs/monitoring.md#cloudvodconcattaskfailed"


def test_recording_interval_is_configurable() -> None:
    config = parse_mixin_config({"recording_interval": "1s"})
    intervals = {g["name"]: g.get("interval") for g in recording_groups(config)}
    assert intervals["cloudvod_concat.task_first_seen"] == "1s"


def test_for_zero_drops_the_clause() -> None:
    config = parse_mixin_config({"for": {"CloudVodConcatStorageDown": "0s"}})
    assert "for" not in alerts_of(config)["CloudVodConcatStorageDown"]
    assert set(DEFAULT_FOR) == set(alerts_of(MixinConfig()))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"selectr": 'job="x"'}, "selectr: unknown key"),
        ({"selector": "job=x"}, "selector: 'job=x' is not a label matcher list"),
        ({"grafana_url": "grafana.local"}, "grafana_url: expected an http(s) URL"),
        ({"failed_task_window": "forever"}, "failed_task_window: invalid duration"),
        ({"failed_task_window": "0s"}, "failed_task_window: must be longer than 0s"),
        ({"thresholds": {"stuck": "2h"}}, "thresholds.stuck: unknown key"),
        ({"thresholds": {"api_error_ratio": "10%"}}, "thresholds.api_error_ratio: expected a"),
        ({"thresholds": {"stale_failed": "12 hours"}}, "thresholds.stale_failed: invalid duration"),
        ({"for": {"CloudVodConcatNope": "5m"}}, "for.CloudVodConcatNope: no such alert"),
        ({"prometheus_rule": {"name": "Bad_Name"}}, "prometheus_rule.name: not a Kubernetes"),
        ({"prometheus_rule": {"namespace": "a b"}}, "prometheus_rule.namespace: not a Kuber"),
        (["selector"], "(top level): expected a mapping"),
    ],
)
def test_bad_configuration_names_the_key(data: Any, problem: str) -> None:
    with pytest.raises(MixinConfigError) as info:
        parse_mixin_config(data)
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_bad_configuration_file_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixin.yaml"
    path.write_text("selector: job=x\nthresholds:\n  stuck: 1h\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["mixin", f"--config={path}", f"--out={out}"]) == 2
    err = capsys.readouterr().err
    assert "selector:" in err and "thresholds.stuck: unknown key" in err
    assert not out.exists()


def test_invalid_yaml_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mixin.yaml"
    path.write_text("selector: 'job=\"x\"'\nfor: [\n", encoding="utf-8")
    assert main(["mixin", f"--config={path}", f"--out={tmp_path / 'out'}"]) == 2
    assert "invalid YAML at line 3" in capsys.readouterr().err


def test_the_readme_build_works_as_written(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Your own build of the rules and dashboard")[1]
    config = section.split("cat > mixin.yaml <<'YAML'\n")[1].split("\nYAML\n")[0]
    command = next(line for line in section.splitlines() if line.startswith("cloudvod-concat-"))
    assert command == "cloudvod-concat-exporter mixin --config=mixin.yaml --out=build/"
    (tmp_path / "mixin.yaml").write_text(config, encoding="utf-8")
    argv = [a.replace("mixin.yaml", str(tmp_path / "mixin.yaml")) for a in command.split()[1:]]
    argv = [a.replace("build/", str(tmp_path / "build")) for a in argv]
    assert main(argv) == 0
    alerts = yaml.safe_load((tmp_path / "build/prometheus/alerts.yml").read_text())
    down = next(
        rule
        for group in alerts["groups"]
        for rule in group["rules"]
        if rule["alert"] == "CloudVodConcatExporterDown"
    )
    assert down["expr"] == 'up{job="vod-exporter"} == 0'
    assert down["annotations"]["dashboard"].startswith("https://grafana.example.com/d/")
    assert down["annotations"]["runbook_url"] == (
        "https://git.example.com/ops/runbooks/cloudvod.md#cloudvodconcatexporterdown"
    )
