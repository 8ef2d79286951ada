"""The bundled Prometheus rules, their promtool unit tests and the example configurations.

promtool and amtool come with the Debian packages prometheus and prometheus-alertmanager. When
one is missing the test is skipped, except under CI (CI=true), where it fails.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import metrics
from tests.dashboard_queries import known_metric_names, metric_names
from tests.helpers import require_tool

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "prometheus"
ALERTS_PATH = RULES_DIR / "alerts.yml"
RECORDING_PATH = RULES_DIR / "recording.yml"
RULE_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
EXAMPLES = ROOT / "examples"
ALERTMANAGER_PATH = EXAMPLES / "alertmanager.yml"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"

DASHBOARD_URL = "/d/cloudvod-concat/cloud-vod-splicing-tasks"
SEVERITIES = {"critical", "warning", "info"}
REQUIRED_ALERTS = {
    "CloudVodConcatTaskFailed",
    "CloudVodConcatTaskStuckProcessing",
    "CloudVodConcatTaskQueryFailing",
    "CloudVodConcatApiErrorRatioHigh",
    "CloudVodConcatApiThrottled",
    "CloudVodConcatBudgetExhausted",
    "CloudVodConcatRefreshBacklogGrowing",
    "CloudVodConcatExporterDown",
    "CloudVodConcatConfigReloadFailed",
    "CloudVodConcatDataStale",
    "CloudVodConcatTaskConfigError",
    "CloudVodConcatExporterAbsent",
    "CloudVodConcatNoWatchedTasks",
    "CloudVodConcatStorageDown",
    "CloudVodConcatProcessingRefreshSlow",
    "CloudVodConcatFinalRefreshBehindTarget",
}
PER_TASK_METRICS = {metric.name for metric in metrics.PER_TASK}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root and capture its output."""
    return subprocess.run(
        [str(arg) for arg in args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def rules(path: Path) -> list[dict[str, Any]]:
    """Every rule of a rule file."""
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


ALERTS = {rule["alert"]: rule for rule in rules(ALERTS_PATH)}
RECORDS = {rule["record"]: rule for rule in rules(RECORDING_PATH)}


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub generates for the headings of a Markdown document."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
        anchors.add(text.replace(" ", "-"))
    return anchors


# --- promtool --------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    result = run(require_tool("promtool"), "check", "rules", ALERTS_PATH, RECORDING_PATH)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool tests in prometheus/tests/"
    result = run(require_tool("promtool"), "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-compose.yml"])
def test_promtool_check_example_config(config: str) -> None:
    result = run(require_tool("promtool"), "check", "config", EXAMPLES / config)
    assert result.returncode == 0, result.stdout + result.stderr
    # The rule files resolve (promtool resolves them relative to the config file).
    assert "SUCCESS: 2 rule files found" in result.stdout


# --- the alerting rules ----------------------------------------------------------------------


def test_required_alerts_exist() -> None:
    assert set(ALERTS) >= REQUIRED_ALERTS


def test_rule_groups_are_prefixed() -> None:
    for path in (ALERTS_PATH, RECORDING_PATH):
        for group in load_yaml(path)["groups"]:
            assert group["name"].startswith("cloudvod_concat."), group["name"]


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_alert_metadata(name: str) -> None:
    alert = ALERTS[name]
    assert name.startswith("CloudVodConcat")
    assert alert["labels"]["severity"] in SEVERITIES
    annotations = alert["annotations"]
    for key in ("summary", "description", "dashboard", "runbook_url"):
        assert annotations.get(key, "").strip(), f"{name}: annotation {key} is missing"
    assert annotations["dashboard"].startswith(DASHBOARD_URL + "?")
    assert annotations["runbook_url"] == f"docs/monitoring.md#{name.lower()}"


def is_per_task(expr: str) -> bool:
    """Whether an expression yields one series per task (so its alerts carry trans_no)."""
    used = metric_names(expr)
    return bool(used & PER_TASK_METRICS) or any(name.startswith("trans_no:") for name in used)


PER_TASK_ALERTS = sorted(name for name, alert in ALERTS.items() if is_per_task(alert["expr"]))


def test_per_task_alerts_are_recognised() -> None:
    assert {"CloudVodConcatTaskFailed", "CloudVodConcatTaskStuckProcessing"} <= set(PER_TASK_ALERTS)
    assert "CloudVodConcatExporterDown" not in PER_TASK_ALERTS


@pytest.mark.parametrize("name", PER_TASK_ALERTS)
def test_per_task_alerts_name_the_task(name: str) -> None:
    annotations = ALERTS[name]["annotations"]
    assert "$labels.trans_no" in annotations["description"]
    assert "var-trans_no={{ $labels.trans_no }}" in annotations["dashboard"]


def test_every_alert_has_a_runbook_section() -> None:
    anchors = github_anchors(MONITORING_DOC.read_text(encoding="utf-8"))
    missing = {name for name in ALERTS if name.lower() not in anchors}
    assert not missing, f"docs/monitoring.md has no section for {sorted(missing)}"


def test_links_into_the_monitoring_doc_resolve() -> None:
    anchors = github_anchors(MONITORING_DOC.read_text(encoding="utf-8"))
    files = [
        *RULES_DIR.glob("*.yml"),
        *EXAMPLES.glob("*.yml"),
        *(ROOT / "deploy" / "kubernetes").glob("*.yaml"),
        ROOT / "README.md",
    ]
    for path in files:
        if not path.exists():
            continue
        for anchor in re.findall(r"monitoring\.md#([\w-]+)", path.read_text(encoding="utf-8")):
            assert anchor in anchors, f"{path.relative_to(ROOT)} links to a missing #{anchor}"


def test_exporter_down_matches_the_documented_job() -> None:
    # The convention the docs, examples and the ServiceMonitor (Service name) follow.
    assert 'up{job="cloudvod-concat"}' in ALERTS["CloudVodConcatExporterDown"]["expr"]
    assert ALERTS["CloudVodConcatExporterAbsent"]["expr"] == 'absent(up{job="cloudvod-concat"})'
    jobs = {job["job_name"] for job in load_yaml(EXAMPLES / "prometheus.yml")["scrape_configs"]}
    assert "cloudvod-concat" in jobs


# --- every name in every expression exists ---------------------------------------------------


@pytest.mark.parametrize(
    "name", sorted(ALERTS) + sorted(RECORDS), ids=sorted(ALERTS) + sorted(RECORDS)
)
def test_rule_uses_known_metrics(name: str) -> None:
    rule = ALERTS.get(name) or RECORDS[name]
    unknown = metric_names(rule["expr"]) - known_metric_names()
    assert not unknown, f"{name} uses metrics the exporter does not expose: {sorted(unknown)}"


def test_recording_rule_names_follow_convention() -> None:
    for name in RECORDS:
        level, metric, operations = name.split(":")
        assert level and operations, name
        assert metric.startswith("cloudvod_concat_"), name
        assert not metric.endswith("_total"), f"{name}: drop _total after rate()"


# --- the promtool tests cover every rule -----------------------------------------------------


def rule_test_groups() -> list[tuple[Path, dict[str, Any]]]:
    """(file, test group) for every test group of every promtool test file."""
    return [(path, test) for path in RULE_TESTS for test in load_yaml(path)["tests"]]


def test_rule_tests_load_the_bundled_rules() -> None:
    for path in RULE_TESTS:
        files = {(path.parent / f).resolve() for f in load_yaml(path)["rule_files"]}
        assert RECORDING_PATH.resolve() in files, path.name
        uses_alerts = any(t.get("alert_rule_test") for t in load_yaml(path)["tests"])
        if uses_alerts:
            assert ALERTS_PATH.resolve() in files, path.name


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for _, test in rule_test_groups():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert not set(ALERTS) - firing, f"never tested firing: {sorted(set(ALERTS) - firing)}"
    assert not set(ALERTS) - silent, f"never tested silent: {sorted(set(ALERTS) - silent)}"
    assert not (firing | silent) - set(ALERTS), "tests name alerts that do not exist"


def test_every_recording_rule_value_is_tested() -> None:
    tested: set[str] = set()
    for _, test in rule_test_groups():
        for case in test.get("promql_expr_test", []):
            if case.get("exp_samples"):
                tested |= metric_names(case["expr"])
    assert not set(RECORDS) - tested, f"untested: {sorted(set(RECORDS) - tested)}"


# --- examples/prometheus.yml -----------------------------------------------------------------


def test_example_scrape_jobs() -> None:
    config = load_yaml(EXAMPLES / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    metrics_job = jobs["cloudvod-concat"]
    assert metrics_job["metrics_path"] == "/metrics"
    assert "scrape_timeout" in metrics_job

    probe = jobs["cloudvod-concat-probe"]
    assert probe["metrics_path"] == "/probe"
    relabel = probe["relabel_configs"]
    targets = [r.get("target_label") for r in relabel]
    assert {"__param_trans_no", "instance", "__address__"} <= set(targets)
    hashmod = [r for r in relabel if r.get("action") == "hashmod"]
    assert hashmod
    assert hashmod[0]["target_label"] == "__tmp_hash"
    assert hashmod[0]["modulus"] >= 1
    keep = [r for r in relabel if r.get("action") == "keep"]
    assert keep
    assert keep[0]["source_labels"] == ["__tmp_hash"]
    # Shard before the address is rewritten to the exporter's.
    assert relabel.index(hashmod[0]) < targets.index("__address__")

    for sd in probe.get("file_sd_configs", []):
        for pattern in sd["files"]:
            assert list(EXAMPLES.glob(pattern)), f"no example task file for {pattern}"

    assert config["alerting"]["alertmanagers"]


# --- examples/alertmanager.yml ---------------------------------------------------------------


def test_alertmanager_config_is_valid() -> None:
    result = run(
        require_tool("amtool", "apt-get install prometheus-alertmanager"),
        "check-config",
        ALERTMANAGER_PATH,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("severity", "receiver"),
    [("critical", "webhook-critical"), ("warning", "webhook"), ("info", "webhook-info")],
)
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    result = run(
        require_tool("amtool", "apt-get install prometheus-alertmanager"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_PATH}",
        f"--verify.receivers={receiver}",
        f"severity={severity}",
        "alertname=CloudVodConcatTaskFailed",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_exporter_down_inhibits_the_other_alerts() -> None:
    config = load_yaml(ALERTMANAGER_PATH)
    rules_ = [
        rule
        for rule in config["inhibit_rules"]
        if 'alertname="CloudVodConcatExporterDown"' in rule["source_matchers"]
    ]
    assert rules_
    assert 'alertname=~"CloudVodConcat.+"' in rules_[0]["target_matchers"]
    assert {"job", "instance"} <= set(rules_[0]["equal"])
    severities = {alert["labels"]["severity"] for alert in ALERTS.values()}
    routed = {m for route in config["route"]["routes"] for m in route["matchers"]}
    assert {f'severity="{s}"' for s in severities} <= routed
