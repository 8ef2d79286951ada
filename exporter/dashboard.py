"""The Grafana dashboard of the monitoring mixin, built as data (see exporter/mixin.py).

Panel ids are stable (1-22 as first published, new panels get new ids), so links to a panel
(`viewPanel=8`) survive regeneration. Every query filters by the `job` and `instance`
variables; per-task queries also by `trans_no`.
"""

from __future__ import annotations

from typing import Any

from exporter.mixin import (
    DASHBOARD_TITLE,
    DASHBOARD_UID,
    FAILED_FIRST_SEEN,
    PROCESSING_FIRST_SEEN,
    MixinConfig,
    human_duration,
)

DS = {"type": "prometheus", "uid": "${datasource}"}
EXP = 'job=~"$job",instance=~"$instance"'
TASK = EXP + ',trans_no=~"$trans_no"'
STATUS_COLORS = {"processing": "blue", "successful": "green", "failed": "red", "unknown": "text"}
REDUCE = {"calcs": ["lastNotNull"], "fields": "", "values": False}


def _color(name: str, color: str) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
    }


def _unit(name: str, unit: str, *extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": "unit", "value": unit}, *extra],
    }


STATUS_OVERRIDES = [_color(status, color) for status, color in STATUS_COLORS.items()]


def _target(expr: str, legend: str, ref: str, *, instant: bool, table: bool) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if table:
        target["format"] = "table"
    return target


def _panel(
    id_: int,
    type_: str,
    title: str,
    description: str,
    grid: tuple[int, int, int, int],
    exprs: list[tuple[str, str]],
    *,
    instant: bool,
    table: bool = False,
) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "id": id_,
        "type": type_,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            _target(expr, legend, chr(ord("A") + i), instant=instant, table=table)
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def stat(
    id_: int,
    title: str,
    description: str,
    grid: tuple[int, int, int, int],
    expr: str,
    legend: str,
    defaults: dict[str, Any],
    *,
    overrides: list[dict[str, Any]] | None = None,
    color_mode: str = "value",
    text_mode: str = "auto",
) -> dict[str, Any]:
    """A stat panel of one instant query."""
    panel = _panel(id_, "stat", title, description, grid, [(expr, legend)], instant=True)
    panel["fieldConfig"] = {"defaults": defaults, "overrides": overrides or []}
    panel["options"] = {
        "reduceOptions": REDUCE,
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": text_mode,
        "showPercentChange": False,
    }
    return panel


def timeseries(
    id_: int,
    title: str,
    description: str,
    grid: tuple[int, int, int, int],
    exprs: list[tuple[str, str]],
    unit: str,
    *,
    stacked: bool = False,
    bars: bool = False,
    overrides: list[dict[str, Any]] | None = None,
    **defaults: Any,
) -> dict[str, Any]:
    """A time series panel (lines, or stacked bars)."""
    panel = _panel(id_, "timeseries", title, description, grid, exprs, instant=False)
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 20 if stacked else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
        "axisSoftMin": 0,
    }
    if "thresholds" in defaults:
        custom["thresholdsStyle"] = {"mode": "line"}
    panel["fieldConfig"] = {
        "defaults": {
            "unit": unit,
            "min": 0,
            "color": {"mode": "palette-classic"},
            "custom": custom,
            **defaults,
        },
        "overrides": overrides or [],
    }
    panel["options"] = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def table(
    id_: int,
    title: str,
    description: str,
    grid: tuple[int, int, int, int],
    exprs: list[str],
    columns: list[tuple[str, str]],
    overrides: list[dict[str, Any]],
    sort_by: str,
    hidden: tuple[str, ...] = ("Time", "__name__", "status"),
) -> dict[str, Any]:
    """A table of instant queries merged by labels; `columns` is (field, header) in order."""
    panel = _panel(
        id_,
        "table",
        title,
        description,
        grid,
        [(expr, "__auto") for expr in exprs],
        instant=True,
        table=True,
    )
    panel["fieldConfig"] = {
        "defaults": {"custom": {"align": "auto", "filterable": True}},
        "overrides": overrides,
    }
    panel["options"] = {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"]},
        "sortBy": [{"displayName": sort_by, "desc": True}],
    }
    organize = {
        "id": "organize",
        "options": {
            "excludeByName": dict.fromkeys(hidden, True),
            "renameByName": dict(columns),
            "indexByName": {name: i for i, (name, _) in enumerate(columns)},
        },
    }
    panel["transformations"] = ([{"id": "merge", "options": {}}] if len(exprs) > 1 else []) + [
        organize
    ]
    return panel


def bargauge(
    id_: int,
    title: str,
    description: str,
    grid: tuple[int, int, int, int],
    expr: str,
    legend: str,
    unit: str,
    color: str,
) -> dict[str, Any]:
    """A horizontal bar gauge of one instant query."""
    panel = _panel(id_, "bargauge", title, description, grid, [(expr, legend)], instant=True)
    panel["fieldConfig"] = {
        "defaults": {"unit": unit, "min": 0, "color": {"mode": color}},
        "overrides": [],
    }
    panel["options"] = {
        "reduceOptions": REDUCE,
        "orientation": "horizontal",
        "displayMode": "basic",
        "valueMode": "color",
        "namePlacement": "auto",
        "showUnfilled": True,
        "sizing": "auto",
        "minVizHeight": 16,
        "minVizWidth": 8,
        "maxVizHeight": 300,
    }
    return panel


def row(id_: int, title: str, y: int) -> dict[str, Any]:
    """An (expanded) row header; the panels below it belong to it."""
    return {
        "id": id_,
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def _steps(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def _mapping(values: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    options = {
        key: {"text": text, "color": color, "index": i}
        for i, (key, (text, color)) in enumerate(values.items())
    }
    return [{"type": "value", "options": options}]


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }


def panels(config: MixinConfig) -> list[dict[str, Any]]:
    """Every panel, top to bottom."""
    t = config.thresholds
    status_of = f'cloudvod_concat_task_status{{{TASK},status="%s"}}'
    failed = f'(cloudvod_concat_task_status{{{TASK},status="failed"}} == 1)'
    failed_since = (
        f"{FAILED_FIRST_SEEN}{{{TASK}}} * 1000\n  and on (job, instance, trans_no) {failed}"
    )
    with_video = (
        "\n* on (job, instance, trans_no) group_left (video_id, video_name, publish_domain,"
        f" player_name)\n  cloudvod_concat_video_info{{{TASK}}}"
    )
    return [
        stat(
            1,
            "Tasks by status",
            "Watched tasks per status right now, over the selected exporters (all tasks, not "
            "filtered by trans_no). From the recording rule "
            "instance_status:cloudvod_concat_task_status:sum.",
            (0, 0, 8, 5),
            f"sum by (status) (instance_status:cloudvod_concat_task_status:sum{{{EXP}}})",
            "{{status}}",
            {"unit": "short", "color": {"mode": "fixed", "fixedColor": "text"}},
            overrides=STATUS_OVERRIDES,
            color_mode="background",
            text_mode="value_and_name",
        ),
        stat(
            2,
            "Watched tasks",
            "Tasks in the configuration of the selected exporters (tasks plus task_files). "
            "0: nothing is watched (alert CloudVodConcatNoWatchedTasks).",
            (8, 0, 4, 5),
            f"sum(cloudvod_concat_watched_tasks{{{EXP}}})",
            "tasks",
            {
                "unit": "short",
                "thresholds": _steps(("red", None), ("text", 1)),
                "color": {"mode": "thresholds"},
            },
        ),
        stat(
            3,
            "API budget remaining",
            "Requests left in the current rate-limit window (default 300 per 5 minutes per "
            "account); the lowest of the selected exporters. 0 is normal while the exporter "
            "uses the whole budget; 0 for long: alert CloudVodConcatBudgetExhausted.",
            (12, 0, 4, 5),
            f"min(cloudvod_concat_api_budget_remaining{{{EXP}}})",
            "requests left",
            {
                "unit": "short",
                "thresholds": _steps(("blue", None), ("green", 1)),
                "color": {"mode": "thresholds"},
            },
        ),
        stat(
            4,
            "Refresh backlog",
            "Tasks whose refresh was due but deferred (budget or scrape deadline) at the last "
            "collection.",
            (16, 0, 4, 5),
            f"sum(cloudvod_concat_refresh_backlog{{{EXP}}})",
            "deferred tasks",
            {
                "unit": "short",
                "thresholds": _steps(("green", None), ("orange", 1)),
                "color": {"mode": "thresholds"},
            },
        ),
        stat(
            5,
            "Config reload",
            "Whether the last configuration reload succeeded on every selected exporter (alert "
            "CloudVodConcatConfigReloadFailed).",
            (20, 0, 4, 5),
            f"min(cloudvod_concat_config_last_reload_successful{{{EXP}}})",
            "reload",
            {
                "unit": "none",
                "mappings": _mapping({"0": ("FAILED", "red"), "1": ("OK", "green")}),
                "thresholds": _steps(("red", None), ("green", 1)),
                "color": {"mode": "thresholds"},
            },
            color_mode="background",
        ),
        _state_timeline(status_of),
        timeseries(
            7,
            "Tasks by status over time",
            "Watched tasks per status over time (all tasks of the selected exporters).",
            (16, 5, 8, 9),
            [
                (
                    f"sum by (status) (instance_status:cloudvod_concat_task_status:sum{{{EXP}}})",
                    "{{status}}",
                )
            ],
            "short",
            stacked=True,
            overrides=STATUS_OVERRIDES,
        ),
        table(
            8,
            "Failed tasks",
            "Tasks the API reports as failed (final), with the vendor's task ID and when this "
            "Prometheus first saw them failed (recording rule "
            f"{FAILED_FIRST_SEEN}). Failed tasks have no video. Alert: CloudVodConcatTaskFailed, "
            f"for {human_duration(config.failed_task_window)} after the failure was first seen.",
            (0, 14, 12, 9),
            [
                f"(\n  {failed_since}\n)\n* on (job, instance, trans_no) group_left (task_id) "
                f"cloudvod_concat_task_info{{{TASK}}}\nor on (job, instance, trans_no)\n"
                f"(\n  {failed_since}\n)"
            ],
            [
                ("trans_no", "Trans no"),
                ("task_id", "Task ID"),
                ("Value", "Failed since"),
                ("instance", "Instance"),
                ("job", "Job"),
            ],
            [_unit("Failed since", "dateTimeFromNow")],
            "Failed since",
        ),
        table(
            9,
            "Processing tasks",
            'Tasks still processing. "Processing for": since this Prometheus first saw the task '
            f"processing (recording rule {PROCESSING_FIRST_SEEN}; a lower bound if the task was "
            'already processing when the rule was loaded). "Data age": time since the last '
            "answer. Alert: CloudVodConcatTaskStuckProcessing (over "
            f"{human_duration(t.stuck_processing)}).",
            (12, 14, 12, 9),
            [
                f"time() - {PROCESSING_FIRST_SEEN}{{{TASK}}}",
                f"(time() - cloudvod_concat_task_last_success_timestamp_seconds{{{TASK}}})\n"
                "* on (job, instance, trans_no) group_left (status) "
                f"({status_of % 'processing'} == 1)",
            ],
            [
                ("trans_no", "Trans no"),
                ("Value #A", "Processing for"),
                ("Value #B", "Data age"),
                ("instance", "Instance"),
                ("job", "Job"),
            ],
            [
                _unit(
                    "Processing for",
                    "dtdurations",
                    {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                    {
                        "id": "thresholds",
                        "value": _steps(
                            ("text", None),
                            ("orange", t.stuck_processing / 2),
                            ("red", t.stuck_processing),
                        ),
                    },
                ),
                _unit("Data age", "dtdurations"),
            ],
            "Processing for",
        ),
        table(
            10,
            "Successful tasks (videos)",
            "Tasks that produced a video: its name and ID, last update (updateTime), duration "
            "and total size (source plus all renditions).",
            (0, 23, 24, 9),
            [
                f"cloudvod_concat_video_update_timestamp_seconds{{{TASK}}} * 1000{with_video}",
                f"cloudvod_concat_video_duration_seconds{{{TASK}}}{with_video}",
                f"cloudvod_concat_video_size_bytes{{{TASK}}}{with_video}",
            ],
            [
                ("trans_no", "Trans no"),
                ("video_name", "Video name"),
                ("Value #A", "Last update"),
                ("Value #B", "Duration"),
                ("Value #C", "Total size"),
                ("video_id", "Video ID"),
                ("publish_domain", "Publish domain"),
                ("player_name", "Player"),
                ("instance", "Instance"),
                ("job", "Job"),
            ],
            [
                _unit("Last update", "dateTimeAsIso"),
                _unit("Duration", "dtdurations"),
                _unit("Total size", "bytes"),
            ],
            "Last update",
            hidden=("Time", "__name__"),
        ),
        bargauge(
            11,
            "Video duration per task (longest 25)",
            "Duration of the resulting video, per task (the 25 longest of the selection).",
            (0, 32, 8, 9),
            f"topk(25, cloudvod_concat_video_duration_seconds{{{TASK}}})",
            "{{trans_no}}",
            "dtdurations",
            "continuous-BlPu",
        ),
        bargauge(
            12,
            "Video total size per task (largest 25)",
            "videoSize: the source plus all renditions, per task (the 25 largest of the "
            "selection).",
            (8, 32, 8, 9),
            f"topk(25, cloudvod_concat_video_size_bytes{{{TASK}}})",
            "{{trans_no}}",
            "bytes",
            "continuous-BlPu",
        ),
        bargauge(
            13,
            "File size per clarity",
            "Total fileSize of the renditions of the selected tasks, per clarity (original, ld, "
            "sd, hd, uhd, recording). Select one trans_no to see one video's renditions.",
            (16, 32, 8, 9),
            f"sum by (clarity) (cloudvod_concat_video_file_size_bytes{{{TASK}}})",
            "{{clarity}}",
            "bytes",
            "palette-classic",
        ),
        timeseries(
            14,
            "API requests rate",
            "Requests sent to the Cloud VoD API per second (5m rate). The account allows about "
            "1 request/s (300 per 5 minutes), shared by every client of the account.",
            (0, 41, 8, 8),
            [
                (
                    f"sum by (instance) (instance:cloudvod_concat_api_requests:rate5m{{{EXP}}})",
                    "{{instance}}",
                )
            ],
            "reqps",
        ),
        timeseries(
            15,
            "API errors by code",
            "Failed requests per second by code: API codes (1560 = still processing, normal "
            "for a running task; 1601-1603 = the task list is wrong, alert "
            "CloudVodConcatTaskConfigError) or timeout, connection, throttled, http_<status>, "
            "invalid_response.",
            (8, 41, 8, 8),
            [
                (
                    f"sum by (code) (instance_code:cloudvod_concat_api_errors:rate5m{{{EXP}}})",
                    "{{code}}",
                )
            ],
            "reqps",
            stacked=True,
            bars=True,
        ),
        timeseries(
            16,
            "API error ratio (excluding 1560)",
            "Share of requests that failed, not counting code 1560. Alert "
            "CloudVodConcatApiErrorRatioHigh fires above "
            f"{round(t.api_error_ratio * 100, 6):g}% (over 10m, for "
            f"{config.for_['CloudVodConcatApiErrorRatioHigh']}).",
            (16, 41, 8, 8),
            [
                (
                    f"instance:cloudvod_concat_api_errors_excluding_1560:ratio_rate5m{{{EXP}}}",
                    "{{instance}}",
                )
            ],
            "percentunit",
            max=1,
            thresholds=_steps(("green", None), ("red", t.api_error_ratio)),
        ),
        timeseries(
            17,
            "API budget remaining over time",
            "Requests left in the current rate-limit window, per exporter.",
            (0, 49, 8, 8),
            [(f"cloudvod_concat_api_budget_remaining{{{EXP}}}", "{{instance}}")],
            "short",
        ),
        timeseries(
            18,
            "Refresh backlog over time",
            "Tasks due for a refresh but deferred at the last collection. Growing for "
            f"{config.for_['CloudVodConcatRefreshBacklogGrowing']}: alert "
            "CloudVodConcatRefreshBacklogGrowing.",
            (8, 49, 8, 8),
            [(f"cloudvod_concat_refresh_backlog{{{EXP}}}", "{{instance}}")],
            "short",
        ),
        timeseries(
            19,
            "Collection duration",
            "How long the last collection (refresh round) took. It stays below the scrape "
            "timeout: what does not fit is deferred.",
            (16, 49, 8, 8),
            [(f"cloudvod_concat_collect_duration_seconds{{{EXP}}}", "{{instance}}")],
            "s",
        ),
        timeseries(
            20,
            "API request latency",
            "Latency quantiles of requests to the Cloud VoD API (5m rate).",
            (0, 57, 8, 8),
            [
                (
                    f"histogram_quantile({q}, sum by (le) "
                    "(instance_le:cloudvod_concat_api_request_duration_seconds_bucket:rate5m"
                    f"{{{EXP}}}))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            "s",
        ),
        timeseries(
            21,
            "Data age by status (oldest task)",
            "Time since the oldest answer among the selected tasks, per status. Normal up to "
            "about the refresh interval of that status (default: processing every scrape, "
            "successful 1h, failed 6h); alert CloudVodConcatDataStale above "
            f"{human_duration(t.stale_processing)} (processing), "
            f"{human_duration(t.stale_successful)} (successful), "
            f"{human_duration(t.stale_failed)} (failed).",
            (8, 57, 8, 8),
            [
                (
                    "max by (status) (\n"
                    f"  (time() - cloudvod_concat_task_last_success_timestamp_seconds{{{TASK}}})\n"
                    "  * on (job, instance, trans_no) group_left (status)\n"
                    f"    (cloudvod_concat_task_status{{{TASK}}} == 1)\n)",
                    "{{status}}",
                )
            ],
            "s",
            overrides=STATUS_OVERRIDES,
        ),
        timeseries(
            22,
            "Tasks whose last query failed",
            "Selected tasks whose last query got no valid answer (they keep their last known "
            "status; tasks waiting for their first query are not counted). Failing for "
            f"{config.for_['CloudVodConcatTaskQueryFailing']}: alert "
            "CloudVodConcatTaskQueryFailing.",
            (16, 57, 8, 8),
            [
                (
                    "sum by (instance) (\n"
                    f"  (1 - cloudvod_concat_task_query_success{{{TASK}}})\n"
                    f"  * on (job, instance, trans_no) cloudvod_concat_task_queried{{{TASK}}}\n)",
                    "{{instance}}",
                )
            ],
            "short",
            decimals=0,
        ),
        row(23, "Refresh intervals", 65),
        timeseries(
            24,
            "Refresh interval achieved vs target",
            "Per status: how often the API budget lets the exporter refresh a task "
            "(cloudvod_concat_refresh_interval_seconds) and the configured refresh.<status> "
            "(dashed, _target_seconds). Final tasks above their target: alert "
            "CloudVodConcatFinalRefreshBehindTarget.",
            (0, 66, 12, 8),
            [
                (
                    f"max by (status) (cloudvod_concat_refresh_interval_seconds{{{EXP}}})",
                    "{{status}}",
                ),
                (
                    f"max by (status) (cloudvod_concat_refresh_interval_target_seconds{{{EXP}}})",
                    "{{status}} target",
                ),
            ],
            "s",
            overrides=[
                {
                    "matcher": {"id": "byRegexp", "options": ".* target"},
                    "properties": [
                        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
                    ],
                }
            ],
        ),
        timeseries(
            25,
            "Oldest answer by status",
            "Age of the oldest answer among the tasks of each status "
            "(cloudvod_concat_answer_age_max_seconds). Processing tasks far above their achieved "
            "refresh interval: alert CloudVodConcatProcessingRefreshSlow.",
            (12, 66, 12, 8),
            [
                (
                    f"max by (status) (cloudvod_concat_answer_age_max_seconds{{{EXP}}})",
                    "{{status}}",
                )
            ],
            "s",
            overrides=STATUS_OVERRIDES,
        ),
        row(26, "Replicas and storage", 74),
        stat(
            27,
            "State store",
            "Whether each exporter's state store (memory, sqlite or redis) answers. Down for "
            f"{config.for_['CloudVodConcatStorageDown']}: alert CloudVodConcatStorageDown.",
            (0, 75, 12, 5),
            f"cloudvod_concat_storage_up{{{EXP}}}",
            "{{instance}} {{backend}}",
            {
                "unit": "none",
                "mappings": _mapping({"0": ("DOWN", "red"), "1": ("UP", "green")}),
                "thresholds": _steps(("red", None), ("green", 1)),
                "color": {"mode": "thresholds"},
            },
            color_mode="background",
            text_mode="value_and_name",
        ),
        timeseries(
            28,
            "Replicas",
            "Replicas each exporter sees alive in the shared store (1 without Redis). While "
            "Redis is unreachable each replica spends at most budget / replicas.",
            (12, 75, 12, 5),
            [(f"cloudvod_concat_replicas{{{EXP}}}", "{{instance}}")],
            "short",
            decimals=0,
        ),
    ]


def _state_timeline(status_of: str) -> dict[str, Any]:
    expr = (
        "max by (trans_no) (\n    "
        + "\n  or ".join(
            status_of % status + ("" if i == 0 else f" * {i + 1}")
            for i, status in enumerate(STATUS_COLORS)
        )
        + "\n)"
    )
    panel = _panel(
        6,
        "state-timeline",
        "Task status over time",
        "One row per selected task: its status over time. Narrow the trans_no variable when "
        "many tasks are watched.",
        (0, 5, 16, 9),
        [(expr, "{{trans_no}}")],
        instant=False,
    )
    panel["fieldConfig"] = {
        "defaults": {
            "color": {"mode": "thresholds"},
            "thresholds": _steps(("text", None)),
            "mappings": _mapping(
                {str(i + 1): (s, c) for i, (s, c) in enumerate(STATUS_COLORS.items())}
            ),
            "custom": {"fillOpacity": 80, "lineWidth": 0},
        },
        "overrides": [],
    }
    panel["options"] = {
        "mergeValues": True,
        "showValue": "never",
        "alignValue": "left",
        "rowHeight": 0.9,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return panel


def dashboard(config: MixinConfig) -> dict[str, Any]:
    """The whole dashboard JSON document."""
    links: list[dict[str, Any]] = []
    if config.runbook_url.startswith(("http://", "https://")):
        links.append(
            {
                "title": "Runbooks",
                "type": "link",
                "url": config.runbook_url,
                "targetBlank": True,
                "icon": "doc",
            }
        )
    datasource = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "regex": "",
        "current": {},
        "options": [],
        "refresh": 1,
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "skipUrlSync": False,
    }
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "Cloud VoD (CDNetworks/Wangsu) videoConcat splicing tasks watched by "
        "cloudvod-concat-exporter: task status, failed and processing tasks, resulting videos, "
        "API health and budget. Needs the recording rules in prometheus/recording.yml. "
        "Generated by `cloudvod-concat-exporter mixin`.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": links,
        "panels": panels(config),
        "refresh": "1m",
        "schemaVersion": 39,
        "tags": ["cloudvod", "cloudvod-concat-exporter", "prometheus"],
        "templating": {
            "list": [
                datasource,
                _variable(
                    "job",
                    "Job",
                    f"label_values(cloudvod_concat_watched_tasks{{{config.selector}}}, job)",
                ),
                _variable(
                    "instance",
                    "Instance",
                    'label_values(cloudvod_concat_watched_tasks{job=~"$job"}, instance)',
                ),
                _variable(
                    "trans_no",
                    "Trans no",
                    'label_values(cloudvod_concat_task_status{job=~"$job",instance=~"$instance"},'
                    " trans_no)",
                ),
            ]
        },
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": DASHBOARD_TITLE,
        "uid": DASHBOARD_UID,
        "version": 1,
        "weekStart": "",
    }
