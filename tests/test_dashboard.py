"""The Grafana dashboard: structure, variables, and PromQL that only uses names that exist.

No Grafana server can run here, so the dashboard's structure is asserted directly; end-to-end
tests run every query from `panel_queries` against a real Prometheus.
"""

from __future__ import annotations

import re
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboard_queries import (
    iter_panels,
    known_metric_names,
    load_dashboard,
    metric_names,
    panel_queries,
    recording_rule_names,
    substitute,
)

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana"
DASHBOARD = load_dashboard()
ROWS = [panel for panel in iter_panels(DASHBOARD) if panel["type"] == "row"]
PANELS = [panel for panel in iter_panels(DASHBOARD) if panel["type"] != "row"]
DATASOURCE = "${datasource}"
GRID_WIDTH = 24

# Topic the dashboard must cover -> (words in the panel title, names its queries must use).
TOPICS: dict[str, tuple[str, set[str]]] = {
    "tasks by status now": ("Tasks by status", {"instance_status:cloudvod_concat_task_status:sum"}),
    "status over time": ("Task status over time", {"cloudvod_concat_task_status"}),
    "failed tasks": (
        "Failed tasks",
        {"cloudvod_concat_task_status", "cloudvod_concat_task_info"},
    ),
    "processing time": (
        "Processing tasks",
        {"trans_no:cloudvod_concat_task_processing_start_timestamp_seconds:first_seen"},
    ),
    "videos": (
        "Successful tasks",
        {"cloudvod_concat_video_info", "cloudvod_concat_video_update_timestamp_seconds"},
    ),
    "video duration": ("Video duration", {"cloudvod_concat_video_duration_seconds"}),
    "video total size": ("Video total size", {"cloudvod_concat_video_size_bytes"}),
    "file size per clarity": ("File size per clarity", {"cloudvod_concat_video_file_size_bytes"}),
    "API requests": ("API requests", {"instance:cloudvod_concat_api_requests:rate5m"}),
    "API errors by code": (
        "API errors by code",
        {"instance_code:cloudvod_concat_api_errors:rate5m"},
    ),
    "budget": ("budget", {"cloudvod_concat_api_budget_remaining"}),
    "refresh backlog": ("Refresh backlog", {"cloudvod_concat_refresh_backlog"}),
    "collection duration": ("Collection duration", {"cloudvod_concat_collect_duration_seconds"}),
    "data age": ("Data age", {"cloudvod_concat_task_last_success_timestamp_seconds"}),
    "failed since": (
        "Failed tasks",
        {"trans_no:cloudvod_concat_task_failed_start_timestamp_seconds:first_seen"},
    ),
    "refresh interval": (
        "Refresh interval",
        {
            "cloudvod_concat_refresh_interval_seconds",
            "cloudvod_concat_refresh_interval_target_seconds",
        },
    ),
    "oldest answer": ("Oldest answer", {"cloudvod_concat_answer_age_max_seconds"}),
    "state store": ("State store", {"cloudvod_concat_storage_up"}),
    "replicas": ("Replicas", {"cloudvod_concat_replicas"}),
}

# The ids panels were first published with; links such as `viewPanel=8` depend on them.
STABLE_IDS = {
    1: "Tasks by status",
    2: "Watched tasks",
    3: "API budget remaining",
    4: "Refresh backlog",
    5: "Config reload",
    6: "Task status over time",
    7: "Tasks by status over time",
    8: "Failed tasks",
    9: "Processing tasks",
    10: "Successful tasks (videos)",
    11: "Video duration per task (longest 25)",
    12: "Video total size per task (largest 25)",
    13: "File size per clarity",
    14: "API requests rate",
    15: "API errors by code",
    16: "API error ratio (excluding 1560)",
    17: "API budget remaining over time",
    18: "Refresh backlog over time",
    19: "Collection duration",
    20: "API request latency",
    21: "Data age by status (oldest task)",
    22: "Tasks whose last query failed",
}


def variables() -> dict[str, dict[str, Any]]:
    """The dashboard's template variables by name."""
    return {var["name"]: var for var in DASHBOARD["templating"]["list"]}


def variable_query(var: dict[str, Any]) -> str:
    """A query variable's query, whichever form (string or query object) it is stored in."""
    query = var["query"]
    return query["query"] if isinstance(query, dict) else str(query)


def panel_exprs(panel: dict[str, Any]) -> list[str]:
    """The raw (unsubstituted) expressions of a panel's targets."""
    return [target.get("expr", "") for target in panel.get("targets", [])]


def slug(title: str) -> str:
    """Grafana's URL slug for a dashboard title."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


# --- identity --------------------------------------------------------------------------------


def test_dashboard_identity() -> None:
    assert DASHBOARD["uid"] == "cloudvod-concat"
    assert DASHBOARD["title"] == "Cloud VoD splicing tasks"
    assert DASHBOARD["schemaVersion"] >= 39
    # Importable anywhere: no instance-specific id, no hard-wired data source.
    assert DASHBOARD.get("id") is None
    assert "__inputs" not in DASHBOARD


def test_alert_links_point_at_this_dashboard() -> None:
    url = f"/d/{DASHBOARD['uid']}/{slug(DASHBOARD['title'])}?"
    with (ROOT / "prometheus" / "alerts.yml").open(encoding="utf-8") as f:
        groups = yaml.safe_load(f)["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        assert rule["annotations"]["dashboard"].startswith(url), rule["alert"]
        for name in re.findall(r"var-(\w+)=", rule["annotations"]["dashboard"]):
            assert name in variables(), f"{rule['alert']} links to unknown variable {name}"


# --- variables -------------------------------------------------------------------------------


def test_datasource_variable() -> None:
    var = variables()["datasource"]
    assert var["type"] == "datasource"
    assert var["query"] == "prometheus"


@pytest.mark.parametrize("name", ["job", "instance"])
def test_job_and_instance_variables(name: str) -> None:
    var = variables()[name]
    assert var["type"] == "query"
    assert var["datasource"]["uid"] == DATASOURCE
    query = variable_query(var)
    assert re.fullmatch(rf"label_values\(cloudvod_concat_watched_tasks(\{{.*\}})?, {name}\)", query)
    if name == "instance":
        assert 'job=~"$job"' in query


def test_trans_no_variable() -> None:
    var = variables()["trans_no"]
    assert var["type"] == "query"
    assert var["datasource"]["uid"] == DATASOURCE
    assert var["multi"] is True
    assert var["includeAll"] is True
    # "All" as one regex instead of an alternation of every watched trans_no.
    assert var["allValue"] == ".*"
    assert variable_query(var) == (
        'label_values(cloudvod_concat_task_status{job=~"$job",instance=~"$instance"}, trans_no)'
    )


def test_variable_queries_use_known_metrics() -> None:
    for var in variables().values():
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable_query(var))
        assert match, var["name"]
        assert metric_names(substitute(match.group(1))) <= known_metric_names()


# --- panels ----------------------------------------------------------------------------------


def test_panels_exist() -> None:
    assert len(PANELS) >= len(TOPICS)


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in PANELS + ROWS]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids))


def test_published_panel_ids_are_stable() -> None:
    by_id = {panel["id"]: panel["title"] for panel in PANELS}
    assert {i: by_id.get(i) for i in STABLE_IDS} == STABLE_IDS


def test_replicas_and_storage_row() -> None:
    rows = sorted(ROWS, key=lambda r: r["gridPos"]["y"])
    assert "Replicas and storage" in [r["title"] for r in rows]
    row = next(r for r in rows if r["title"] == "Replicas and storage")
    below = [r["gridPos"]["y"] for r in rows if r["gridPos"]["y"] > row["gridPos"]["y"]]
    end = min(below, default=10**6)
    inside = [p for p in PANELS if row["gridPos"]["y"] < p["gridPos"]["y"] < end]
    used = set().union(*(metric_names(e) for p in inside for e in panel_exprs(p)))
    assert {"cloudvod_concat_storage_up", "cloudvod_concat_replicas"} <= used


def test_budget_panel_is_not_red_at_full_use() -> None:
    # Remaining 0 is normal while the exporter uses the whole budget it is allowed.
    panel = next(p for p in PANELS if p["title"] == "API budget remaining")
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0]["value"] is None
    assert steps[0]["color"] not in {"red", "dark-red", "orange"}


def test_failed_tasks_table_shows_when_the_task_failed() -> None:
    panel = next(p for p in PANELS if p["title"] == "Failed tasks")
    organize = panel["transformations"][-1]["options"]
    assert "Failed since" in organize["renameByName"].values()
    assert "Last answered" not in organize["renameByName"].values()


def test_panel_titles_are_unique() -> None:
    titles = [panel["title"] for panel in PANELS]
    assert all(titles)
    assert len(titles) == len(set(titles))


@pytest.mark.parametrize("panel", PANELS, ids=[p["title"] for p in PANELS])
def test_panel_uses_the_datasource_variable(panel: dict[str, Any]) -> None:
    assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE}
    for target in panel["targets"]:
        assert target.get("datasource", panel["datasource"]) == panel["datasource"]


@pytest.mark.parametrize("panel", PANELS, ids=[p["title"] for p in PANELS])
def test_panel_targets(panel: dict[str, Any]) -> None:
    targets = panel["targets"]
    assert targets
    ref_ids = [target["refId"] for target in targets]
    assert len(ref_ids) == len(set(ref_ids))
    assert all(target.get("expr", "").strip() for target in targets)


def test_panels_fit_the_grid_without_overlapping() -> None:
    boxes = []
    for panel in PANELS + ROWS:
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid), panel["title"]
        assert grid["w"] > 0
        assert grid["h"] > 0
        assert grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        boxes.append((panel["title"], grid))
    for (a, ga), (b, gb) in combinations(boxes, 2):
        apart = (
            ga["x"] + ga["w"] <= gb["x"]
            or gb["x"] + gb["w"] <= ga["x"]
            or ga["y"] + ga["h"] <= gb["y"]
            or gb["y"] + gb["h"] <= ga["y"]
        )
        assert apart, f"panels {a!r} and {b!r} overlap"


# --- queries ---------------------------------------------------------------------------------


QUERIES = panel_queries(DASHBOARD)


@pytest.mark.parametrize(
    ("title", "expr"), QUERIES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(QUERIES)]
)
def test_query_uses_known_metrics(title: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{title}: no metric in {expr!r}"
    unknown = names - known_metric_names()
    assert not unknown, f"{title}: unknown metrics {sorted(unknown)}"


def test_panel_queries_substitute_every_variable() -> None:
    assert len(QUERIES) == sum(len(panel["targets"]) for panel in PANELS)
    for title, expr in QUERIES:
        assert "$" not in expr, title


def test_substitute_rejects_unknown_variables() -> None:
    assert substitute('x{job=~"$job"}[$__rate_interval]') == 'x{job=~".*"}[1m]'
    assert substitute('x{job=~"${job:regex}"}') == 'x{job=~".*"}'
    with pytest.raises(ValueError, match="unknown template variable"):
        substitute('x{env="$env"}')


def test_per_task_panels_filter_by_trans_no() -> None:
    per_task = {"cloudvod_concat_task_status", "cloudvod_concat_video_info"}
    for panel in PANELS:
        for expr in panel_exprs(panel):
            if metric_names(expr) & per_task:
                assert 'trans_no=~"$trans_no"' in expr, panel["title"]


def test_every_recording_rule_is_used_by_the_dashboard() -> None:
    used = set().union(*(metric_names(expr) for _, expr in QUERIES))
    assert recording_rule_names() <= used


def test_job_variable_uses_the_mixin_selector() -> None:
    assert variable_query(variables()["job"]) == (
        'label_values(cloudvod_concat_watched_tasks{job="cloudvod-concat"}, job)'
    )


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_topic_is_covered(topic: str) -> None:
    words, names = TOPICS[topic]
    panels = [p for p in PANELS if words.lower() in p["title"].lower()]
    assert panels, f"no panel title contains {words!r}"
    used = set().union(*(metric_names(expr) for p in panels for expr in panel_exprs(p)))
    assert names <= used, f"{topic}: {sorted(names - used)} not queried"


def test_status_panels_use_fitting_visualisations() -> None:
    by_title = {panel["title"]: panel for panel in PANELS}
    assert by_title["Task status over time"]["type"] == "state-timeline"
    assert by_title["Tasks by status"]["type"] in {"stat", "bargauge"}
    for title in ("Failed tasks", "Processing tasks", "Successful tasks (videos)"):
        assert by_title[title]["type"] == "table"
        assert all(t.get("format") == "table" for t in by_title[title]["targets"])
    failed = " ".join(panel_exprs(by_title["Failed tasks"]))
    assert 'status="failed"' in failed
    assert "group_left (task_id)" in failed


# --- provisioning ----------------------------------------------------------------------------


def test_provisioning_files() -> None:
    with (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").open() as f:
        datasources = yaml.safe_load(f)["datasources"]
    assert [ds["type"] for ds in datasources] == ["prometheus"]
    with (GRAFANA / "provisioning" / "dashboards" / "cloudvod.yaml").open() as f:
        providers = yaml.safe_load(f)["providers"]
    assert providers
    assert providers[0]["type"] == "file"

    with (ROOT / "docker-compose.yml").open() as f:
        grafana = yaml.safe_load(f)["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("."))
    dashboard_in_container = mounts["./grafana/cloudvod-concat.json"]
    assert Path(dashboard_in_container).parent == Path(providers[0]["options"]["path"])
