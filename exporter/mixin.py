"""The monitoring mixin: alert rules, recording rules, dashboard and PrometheusRule from one config.

`cloudvod-concat-exporter mixin [--config=mixin.yaml] --out=DIR` writes

    DIR/prometheus/alerts.yml
    DIR/prometheus/recording.yml
    DIR/grafana/cloudvod-concat.json
    DIR/deploy/kubernetes/prometheusrule.yaml

The files checked in under prometheus/, grafana/ and deploy/kubernetes/ are the output of the
default configuration (`mixin --out=.`); tests/test_mixin.py regenerates them and compares them
byte for byte. Only the standard library and PyYAML are used, so the module runs wherever the
exporter does.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from string import Template
from typing import Any

import yaml

from exporter.config import format_duration, parse_duration

DASHBOARD_UID = "cloudvod-concat"
DASHBOARD_TITLE = "Cloud VoD splicing tasks"
DASHBOARD_SLUG = "cloud-vod-splicing-tasks"
DEFAULT_RUNBOOK = "docs/monitoring.md"

# Durations of the `for:` clause of each alert, by alert name ("0s": fire at once).
DEFAULT_FOR: dict[str, str] = {
    "CloudVodConcatTaskFailed": "0s",
    "CloudVodConcatTaskStuckProcessing": "0s",
    "CloudVodConcatTaskQueryFailing": "15m",
    "CloudVodConcatTaskConfigError": "0s",
    "CloudVodConcatDataStale": "10m",
    "CloudVodConcatProcessingRefreshSlow": "10m",
    "CloudVodConcatFinalRefreshBehindTarget": "30m",
    "CloudVodConcatApiErrorRatioHigh": "5m",
    "CloudVodConcatApiThrottled": "0s",
    "CloudVodConcatBudgetExhausted": "10m",
    "CloudVodConcatRefreshBacklogGrowing": "30m",
    "CloudVodConcatExporterDown": "5m",
    "CloudVodConcatExporterAbsent": "5m",
    "CloudVodConcatNoWatchedTasks": "10m",
    "CloudVodConcatConfigReloadFailed": "5m",
    "CloudVodConcatStorageDown": "5m",
}


class MixinConfigError(ValueError):
    """A mixin configuration with problems; `problems` names each by its YAML path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Thresholds:
    """The numbers alerts compare with (durations in seconds)."""

    stuck_processing: float = 7200.0
    stale_processing: float = 1800.0
    stale_successful: float = 7200.0
    stale_failed: float = 43200.0
    api_error_ratio: float = 0.10
    processing_answer_age_factor: float = 3.0
    processing_answer_age_slack: float = 60.0
    # Longer than refresh.error_max (30m): a rejected task is retried at least once in it.
    config_error_window: float = 3600.0


_DURATION_THRESHOLDS = {
    "stuck_processing",
    "stale_processing",
    "stale_successful",
    "stale_failed",
    "processing_answer_age_slack",
    "config_error_window",
}


@dataclass(frozen=True)
class MixinConfig:
    """Everything the generated files depend on; the defaults give the checked-in files."""

    selector: str = 'job="cloudvod-concat"'
    grafana_url: str = ""
    runbook_url: str = DEFAULT_RUNBOOK
    failed_task_window: float = 21600.0
    recording_interval: float = 60.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    for_: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FOR))
    prometheus_rule_name: str = "cloudvod-concat"
    prometheus_rule_namespace: str = "monitoring"  # as deploy/kubernetes/kustomization.yaml
    prometheus_rule_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def dashboard_url(self) -> str:
        """The dashboard's URL, absolute when a Grafana URL is configured."""
        return f"{self.grafana_url.rstrip('/')}/d/{DASHBOARD_UID}/{DASHBOARD_SLUG}"

    def runbook(self, alert: str) -> str:
        """The runbook link of an alert."""
        return f"{self.runbook_url}#{alert.lower()}"


_SELECTOR_RE = re.compile(
    r'\A\s*[a-zA-Z_]\w*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"'
    r'(\s*,\s*[a-zA-Z_]\w*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*")*\s*\Z'
)
_TOP_KEYS = {
    "selector",
    "grafana_url",
    "runbook_url",
    "failed_task_window",
    "recording_interval",
    "thresholds",
    "for",
    "prometheus_rule",
}


def parse_mixin_config(data: Any) -> MixinConfig:
    """Validate a mixin configuration mapping; raise MixinConfigError with every problem."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise MixinConfigError(["(top level): expected a mapping"])
    problems: list[str] = []
    config = MixinConfig()
    for key in sorted(set(data) - _TOP_KEYS, key=str):
        problems.append(f"{key}: unknown key (known: {', '.join(sorted(_TOP_KEYS))})")

    def text(key: str, value: Any) -> str | None:
        if not isinstance(value, str):
            problems.append(f"{key}: expected a string")
            return None
        return value

    def duration(key: str, value: Any, *, positive: bool = False) -> float | None:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
            return None
        if positive and seconds <= 0:
            problems.append(f"{key}: must be longer than 0s")
            return None
        return seconds

    changes: dict[str, Any] = {}
    if "selector" in data and (sel := text("selector", data["selector"])) is not None:
        if _SELECTOR_RE.match(sel):
            changes["selector"] = sel.strip()
        else:
            problems.append(f'selector: {sel!r} is not a label matcher list such as job="x"')
    for key in ("grafana_url", "runbook_url"):
        if key in data and (url := text(key, data[key])) is not None:
            if url and not re.match(r"\Ahttps?://[^\s/]+", url) and key == "grafana_url":
                problems.append(f"{key}: expected an http(s) URL or an empty string")
            else:
                changes[key] = url.rstrip("/") if key == "grafana_url" else url
    for key in ("failed_task_window", "recording_interval"):
        if key in data and (seconds := duration(key, data[key], positive=True)) is not None:
            changes[key] = seconds

    thresholds = data.get("thresholds", {})
    if not isinstance(thresholds, Mapping):
        problems.append("thresholds: expected a mapping")
        thresholds = {}
    known = {f.name for f in fields(Thresholds)}
    threshold_changes: dict[str, float] = {}
    for key, value in thresholds.items():
        path = f"thresholds.{key}"
        if key not in known:
            problems.append(f"{path}: unknown key (known: {', '.join(sorted(known))})")
        elif key in _DURATION_THRESHOLDS:
            if (seconds := duration(path, value)) is not None:
                threshold_changes[key] = seconds
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            problems.append(f"{path}: expected a positive number")
        else:
            threshold_changes[key] = float(value)
    changes["thresholds"] = replace(config.thresholds, **threshold_changes)

    for_ = dict(DEFAULT_FOR)
    overrides = data.get("for", {})
    if not isinstance(overrides, Mapping):
        problems.append("for: expected a mapping of alert name to duration")
        overrides = {}
    for alert, value in overrides.items():
        if alert not in DEFAULT_FOR:
            problems.append(f"for.{alert}: no such alert")
        elif (seconds := duration(f"for.{alert}", value)) is not None:
            for_[alert] = format_duration(seconds)
    changes["for_"] = for_

    rule = data.get("prometheus_rule", {})
    if not isinstance(rule, Mapping):
        problems.append("prometheus_rule: expected a mapping")
        rule = {}
    for key in sorted(set(rule) - {"name", "namespace", "labels"}, key=str):
        problems.append(f"prometheus_rule.{key}: unknown key (known: labels, name, namespace)")
    for key in ("name", "namespace"):
        if key in rule and (name := text(f"prometheus_rule.{key}", rule[key])) is not None:
            if re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) and len(name) <= 63:
                changes[f"prometheus_rule_{key}"] = name
            else:
                problems.append(f"prometheus_rule.{key}: not a Kubernetes {key}")
    labels = rule.get("labels", {})
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        problems.append("prometheus_rule.labels: expected a mapping of strings")
    else:
        changes["prometheus_rule_labels"] = dict(labels)

    if problems:
        raise MixinConfigError(problems)
    return replace(config, **changes)


def load_mixin_config(path: str | Path | None) -> MixinConfig:
    """Read a mixin configuration file (None: the defaults)."""
    if path is None:
        return MixinConfig()
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise MixinConfigError([f"cannot read: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise MixinConfigError([f"invalid YAML{where}"]) from None
    return parse_mixin_config(data)


# --- rules -----------------------------------------------------------------------------------


def _num(value: float) -> str:
    """A number as PromQL reads it, without a trailing `.0`."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def human_duration(seconds: float) -> str:
    """A duration for annotation text ("2h", "1h30m")."""
    return format_duration(seconds)


def _words(seconds: float) -> str:
    """A duration in words for prose ("10 minutes", "1 hour", "90 seconds")."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return format_duration(seconds)


def _links(config: MixinConfig, alert: str, *, per_task: bool) -> dict[str, str]:
    variables = "var-job={{ $labels.job }}&var-instance={{ $labels.instance }}"
    if per_task:
        variables += "&var-trans_no={{ $labels.trans_no }}"
    return {
        "dashboard": f"{config.dashboard_url}?{variables}",
        "runbook_url": config.runbook(alert),
    }


def _alert(
    config: MixinConfig,
    name: str,
    expr: str,
    severity: str,
    summary: str,
    description: str,
    *,
    per_task: bool = False,
    values: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One alerting rule; `$name` placeholders in the texts are filled from `values`."""
    fill = dict(values or {})

    def sub(text: str) -> str:
        return Template(text).safe_substitute(fill)

    rule: dict[str, Any] = {"alert": name, "expr": _block(sub(expr))}
    if config.for_[name] != "0s":
        rule["for"] = config.for_[name]
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": sub(summary),
        "description": " ".join(sub(description).split()),
        **_links(config, name, per_task=per_task),
    }
    return rule


def _block(expr: str) -> str:
    """An expression as stored: one line, or several lines ending in a newline."""
    text = "\n".join(line.rstrip() for line in textwrap.dedent(expr.strip("\n")).splitlines())
    text = text.strip("\n")
    return text + "\n" if "\n" in text else text


# The share of failed requests; 0 (not "no data") while there were requests but no errors.
RATIO_1560 = """
(
    sum by (job, instance) (rate(cloudvod_concat_api_errors_total{code!="1560"}[5m]))
  or
    0 * sum by (job, instance) (rate(cloudvod_concat_api_requests_total[5m]))
)
/
(sum by (job, instance) (rate(cloudvod_concat_api_requests_total[5m])) > 0)
"""
FAILED_FIRST_SEEN = "trans_no:cloudvod_concat_task_failed_start_timestamp_seconds:first_seen"
PROCESSING_FIRST_SEEN = (
    "trans_no:cloudvod_concat_task_processing_start_timestamp_seconds:first_seen"
)


def recording_groups(config: MixinConfig) -> list[dict[str, Any]]:
    """The recording rule groups."""
    interval = format_duration(config.recording_interval)
    first_seen = []
    for status, name in (("processing", PROCESSING_FIRST_SEEN), ("failed", FAILED_FIRST_SEEN)):
        first_seen.append(
            {
                "record": name,
                "expr": _block(
                    f"""
                    (
                        last_over_time({name}[1h])
                      and
                        (cloudvod_concat_task_status{{status="{status}"}} == 1)
                    )
                    or
                      timestamp(cloudvod_concat_task_status{{status="{status}"}} == 1)
                    """
                ),
            }
        )
    return [
        {
            "name": "cloudvod_concat.recording",
            "rules": [
                {
                    "record": "instance_status:cloudvod_concat_task_status:sum",
                    "expr": "sum by (job, instance, status) (cloudvod_concat_task_status)",
                },
                {
                    "record": "instance:cloudvod_concat_api_requests:rate5m",
                    "expr": "sum by (job, instance) (rate(cloudvod_concat_api_requests_total[5m]))",
                },
                {
                    "record": "instance_code:cloudvod_concat_api_errors:rate5m",
                    "expr": "sum by (job, instance, code) "
                    "(rate(cloudvod_concat_api_errors_total[5m]))",
                },
                {
                    # 0 (not "no data") while there were requests but no errors.
                    "record": "instance:cloudvod_concat_api_errors_excluding_1560:ratio_rate5m",
                    "expr": _block(RATIO_1560),
                },
                {
                    "record": "instance_le:cloudvod_concat_api_request_duration_seconds_bucket"
                    ":rate5m",
                    "expr": "sum by (job, instance, le) "
                    "(rate(cloudvod_concat_api_request_duration_seconds_bucket[5m]))",
                },
            ],
        },
        {"name": "cloudvod_concat.task_first_seen", "interval": interval, "rules": first_seen},
    ]


def alert_groups(config: MixinConfig) -> list[dict[str, Any]]:
    """The alerting rule groups."""
    t = config.thresholds
    sel = config.selector
    window = config.failed_task_window
    values = {
        "sel": sel,
        "cfg_window": format_duration(t.config_error_window),
        "window": _num(window),
        "window_h": human_duration(window),
        "stuck": _num(t.stuck_processing),
        "stuck_h": human_duration(t.stuck_processing),
        "stale_p": _num(t.stale_processing),
        "stale_s": _num(t.stale_successful),
        "stale_f": _num(t.stale_failed),
        "stale_p_h": human_duration(t.stale_processing),
        "stale_s_h": human_duration(t.stale_successful),
        "stale_f_h": human_duration(t.stale_failed),
        "ratio": _num(t.api_error_ratio),
        "ratio_pct": _num(round(t.api_error_ratio * 100, 6)) + "%",
        "factor": _num(t.processing_answer_age_factor),
        "slack": _num(t.processing_answer_age_slack),
        "failed_first_seen": FAILED_FIRST_SEEN,
        "processing_first_seen": PROCESSING_FIRST_SEEN,
    }
    for name, duration in config.for_.items():
        values["for_" + name.removeprefix("CloudVodConcat")] = duration
        values["words_" + name.removeprefix("CloudVodConcat")] = _words(parse_duration(duration))

    def alert(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return _alert(config, *args, values=values, **kwargs)

    tasks = [
        alert(
            "CloudVodConcatTaskFailed",
            """
            (
                (time() - $failed_first_seen < $window)
              * on (job, instance, trans_no) group_left (task_id)
                cloudvod_concat_task_info
            )
            or on (job, instance, trans_no)
              (time() - $failed_first_seen < $window)
            """,
            "warning",
            "Cloud VoD splicing task {{ $labels.trans_no }} failed.",
            """
            The Cloud VoD API reports splicing task {{ $labels.trans_no }}
            (task ID {{ with $labels.task_id }}{{ . }}{{ else }}unknown{{ end }}) as failed.
            The result is final: resubmit the task. This alert resolves by itself $window_h
            after the failure was first seen.
            """,
            per_task=True,
        ),
        alert(
            "CloudVodConcatTaskStuckProcessing",
            "time() - $processing_first_seen > $stuck",
            "warning",
            "Cloud VoD splicing task {{ $labels.trans_no }} has been processing for over $stuck_h.",
            """
            Splicing task {{ $labels.trans_no }} has been in status processing for
            {{ $value | humanizeDuration }} (since Prometheus first saw it processing), longer
            than the $stuck_h threshold.
            """,
            per_task=True,
        ),
        alert(
            "CloudVodConcatTaskQueryFailing",
            """
            cloudvod_concat_task_query_success == 0
            and on (job, instance, trans_no)
            cloudvod_concat_task_queried == 1
            """,
            "warning",
            "Queries for Cloud VoD task {{ $labels.trans_no }} have been failing for"
            " $for_TaskQueryFailing.",
            """
            The last query of splicing task {{ $labels.trans_no }} got no valid answer, and that
            has lasted for at least $words_TaskQueryFailing. Its series show the last known status
            and an old timestamp. See cloudvod_concat_api_errors_total by code for the reason
            (1603: the trans_no does not exist).
            """,
            per_task=True,
        ),
        alert(
            "CloudVodConcatTaskConfigError",
            """
            sum by (job, instance, code) (
                increase(cloudvod_concat_api_errors_total{code=~"1601|1602|1603"}[$cfg_window]) > 0
              or
                (
                    cloudvod_concat_api_errors_total{code=~"1601|1602|1603"}
                  unless
                    cloudvod_concat_api_errors_total{code=~"1601|1602|1603"} offset $cfg_window
                )
            )
            """,
            "warning",
            "Exporter {{ $labels.instance }} watches tasks the API rejects (error {{"
            " $labels.code }}).",
            """
            Over the last $cfg_window the Cloud VoD API answered queries of exporter
            {{ $labels.instance }} with error {{ $labels.code }} ({{ if eq $labels.code "1603"
            }}the transNo does not exist{{ else if eq $labels.code "1602" }}illegal
            transNo{{ else }}missing or invalid parameter{{ end }}): the task list or the account
            is wrong, and retrying will not help. The exporter's status page lists the tasks:
            http://{{ $labels.instance }}/?q={{ $labels.code }}
            """,
        ),
        alert(
            "CloudVodConcatDataStale",
            """
            (
                (
                    time() - cloudvod_concat_task_last_success_timestamp_seconds > $stale_p
                  and on (job, instance, trans_no)
                    (cloudvod_concat_task_status{status="processing"} == 1)
                )
              or
                (
                    time() - cloudvod_concat_task_last_success_timestamp_seconds > $stale_s
                  and on (job, instance, trans_no)
                    (cloudvod_concat_task_status{status="successful"} == 1)
                )
              or
                (
                    time() - cloudvod_concat_task_last_success_timestamp_seconds > $stale_f
                  and on (job, instance, trans_no)
                    (cloudvod_concat_task_status{status="failed"} == 1)
                )
            )
            unless on (job, instance, trans_no)
              (cloudvod_concat_task_query_success == 0)
            """,
            "warning",
            "Data of Cloud VoD task {{ $labels.trans_no }} is {{ $value | humanizeDuration }} old.",
            """
            Splicing task {{ $labels.trans_no }} was last answered {{ $value | humanizeDuration }}
            ago, more than its threshold (processing $stale_p_h, successful $stale_s_h, failed
            $stale_f_h), although its queries do not fail: the exporter is not getting to it
            (API budget or scrape deadline).
            """,
            per_task=True,
        ),
    ]
    refresh = [
        alert(
            "CloudVodConcatProcessingRefreshSlow",
            """
            cloudvod_concat_answer_age_max_seconds{status="processing"}
            > on (job, instance, status)
              (
                  $factor * cloudvod_concat_refresh_interval_seconds{status="processing"}
                + $slack
              )
            """,
            "warning",
            "Processing tasks of exporter {{ $labels.instance }} are refreshed less often than"
            " the budget allows.",
            """
            The oldest answer among the processing tasks of exporter {{ $labels.instance }} is
            {{ $value | humanizeDuration }} old, more than $factor times the refresh interval
            the API budget achieves for them (plus $slack s), for $words_ProcessingRefreshSlow:
            refresh rounds do not get to every processing task (scrape deadline, stuck requests,
            or a scheduler problem).
            """,
        ),
        alert(
            "CloudVodConcatFinalRefreshBehindTarget",
            """
            cloudvod_concat_refresh_interval_seconds{status=~"successful|failed"}
            > on (job, instance, status)
              cloudvod_concat_refresh_interval_target_seconds
            """,
            "info",
            "Exporter {{ $labels.instance }} cannot refresh {{ $labels.status }} tasks as often"
            " as configured.",
            """
            The API budget lets exporter {{ $labels.instance }} refresh its {{ $labels.status }}
            tasks every {{ $value | humanizeDuration }}, less often than refresh.{{
            $labels.status }} asks: their data is older than configured (not wrong). Watch fewer
            tasks, lengthen the interval, or split the tasks across accounts.
            """,
        ),
    ]
    api = [
        alert(
            "CloudVodConcatApiErrorRatioHigh",
            """
            (
                sum by (job, instance) (rate(cloudvod_concat_api_errors_total{code!="1560"}[10m]))
              /
                sum by (job, instance) (rate(cloudvod_concat_api_requests_total[10m]))
            ) > $ratio
            """,
            "warning",
            "{{ $value | humanizePercentage }} of Cloud VoD API requests from"
            " {{ $labels.instance }} fail.",
            """
            Over the last 10 minutes {{ $value | humanizePercentage }} of the requests that
            exporter {{ $labels.instance }} sent to the Cloud VoD API failed (code 1560 not
            counted), above the $ratio_pct threshold.
            """,
        ),
        alert(
            "CloudVodConcatApiThrottled",
            'sum by (job, instance) (increase(cloudvod_concat_api_errors_total{code="throttled"}'
            "[10m])) > 0",
            "warning",
            "The Cloud VoD API throttled exporter {{ $labels.instance }}.",
            """
            The Cloud VoD API answered requests from exporter {{ $labels.instance }} with its rate
            limit in the last 10 minutes. The exporter never exceeds its configured budget, so
            the budget is set too high or another client spends the same account's budget.
            """,
        ),
        alert(
            "CloudVodConcatBudgetExhausted",
            "cloudvod_concat_api_budget_remaining == 0",
            "info",
            "Exporter {{ $labels.instance }} has used up its Cloud VoD API budget for"
            " $for_BudgetExhausted.",
            """
            Exporter {{ $labels.instance }} has had no requests left in its rate-limit window
            for $words_BudgetExhausted: it is refreshing tasks as fast as the account allows. Fine
            for a burst; if it lasts, refreshes fall behind (see
            CloudVodConcatRefreshBacklogGrowing).
            """,
        ),
        alert(
            "CloudVodConcatRefreshBacklogGrowing",
            """
            cloudvod_concat_refresh_backlog > 0
            and
            deriv(cloudvod_concat_refresh_backlog[30m]) > 0
            """,
            "warning",
            "The refresh backlog of exporter {{ $labels.instance }} keeps growing.",
            """
            {{ $value }} tasks of exporter {{ $labels.instance }} were due for a refresh but
            deferred, and the number has been growing for $words_RefreshBacklogGrowing: the API
            budget cannot keep up with the watched tasks.
            """,
        ),
    ]
    exporter = [
        alert(
            "CloudVodConcatExporterDown",
            "up{$sel} == 0",
            "critical",
            "Exporter {{ $labels.instance }} cannot be scraped.",
            """
            Prometheus has failed to scrape cloudvod-concat-exporter {{ $labels.instance }}
            (job {{ $labels.job }}) for $words_ExporterDown: no task of this exporter is monitored.
            """,
        ),
        alert(
            "CloudVodConcatExporterAbsent",
            "absent(up{$sel})",
            "critical",
            "No cloudvod-concat-exporter target is scraped ($sel).",
            """
            Prometheus has had no scrape target matching {$sel} for $words_ExporterAbsent:
            the job is missing from its configuration, its service discovery finds nothing, or
            the exporter's Service or ServiceMonitor is gone. No task is monitored.
            """,
        ),
        alert(
            "CloudVodConcatNoWatchedTasks",
            "cloudvod_concat_watched_tasks == 0",
            "warning",
            "Exporter {{ $labels.instance }} watches no task.",
            """
            Exporter {{ $labels.instance }} has had no task in its configuration for
            $words_NoWatchedTasks: every task_files pattern matches nothing or every file is empty,
            so nothing is monitored although the exporter is up.
            """,
        ),
        alert(
            "CloudVodConcatConfigReloadFailed",
            "cloudvod_concat_config_last_reload_successful == 0",
            "warning",
            "Exporter {{ $labels.instance }} failed to reload its configuration.",
            """
            The last configuration reload of exporter {{ $labels.instance }} failed; it still
            runs with the previous configuration, so recent task list changes are not in effect.
            """,
        ),
        alert(
            "CloudVodConcatStorageDown",
            "cloudvod_concat_storage_up == 0",
            "warning",
            "The {{ $labels.backend }} state store of exporter {{ $labels.instance }} does not"
            " answer.",
            """
            Exporter {{ $labels.instance }} has not been able to use its {{ $labels.backend }}
            state store for $words_StorageDown. It keeps serving its last answers, but a restart
            loses what it learnt, and with Redis each replica spends only its share of the budget.
            """,
        ),
    ]
    return [
        {"name": "cloudvod_concat.tasks", "rules": tasks},
        {"name": "cloudvod_concat.refresh", "rules": refresh},
        {"name": "cloudvod_concat.api", "rules": api},
        {"name": "cloudvod_concat.exporter", "rules": exporter},
    ]


# --- output ----------------------------------------------------------------------------------


_FOLDED_KEYS = {"description"}
_WIDTH = 100


def _scalar(value: Any) -> str:
    """A one-line scalar: plain when YAML allows it, else quoted, never wrapped."""
    text: str = yaml.safe_dump(value, width=10**6, allow_unicode=True, default_flow_style=True)
    return text.removesuffix("\n").removesuffix("\n...").rstrip("\n")


def _emit(value: Any, indent: int, lines: list[str], key: str = "") -> None:
    """Append `value` as block YAML; the caller has written the key (or "- ") already."""
    pad = " " * indent
    if isinstance(value, Mapping):
        for k, v in value.items():
            _emit_entry(f"{pad}{_scalar(k)}:", v, indent, lines, str(k))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping) and item:
                first = len(lines)
                _emit(item, indent + 2, lines)
                lines[first] = pad + "- " + lines[first][indent + 2 :]
            else:
                _emit_entry(f"{pad}-", item, indent, lines, key)
    else:
        raise TypeError(f"cannot emit {type(value).__name__} as a block")


def _emit_entry(head: str, value: Any, indent: int, lines: list[str], key: str) -> None:
    inner = " " * (indent + 2)
    if isinstance(value, Mapping | list) and value:
        lines.append(head)
        _emit(value, indent + 2, lines, key)
    elif isinstance(value, str) and "\n" in value:
        lines.append(f"{head} |" + ("" if value.endswith("\n") else "-"))
        lines.extend(inner + line if line else "" for line in value.removesuffix("\n").split("\n"))
    elif isinstance(value, str) and key in _FOLDED_KEYS and len(head) + len(value) > _WIDTH:
        lines.append(f"{head} >-")
        lines.extend(
            textwrap.wrap(
                value,
                _WIDTH,
                initial_indent=inner,
                subsequent_indent=inner,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    else:
        lines.append(f"{head} {_scalar(value)}")


def _yaml(data: Mapping[str, Any]) -> str:
    """Block YAML with expressions as literal blocks and prose folded at 100 columns."""
    lines: list[str] = []
    _emit(data, 0, lines)
    text = "\n".join(lines) + "\n"
    if yaml.safe_load(text) != data:  # the emitter is small; never ship a file it got wrong
        raise AssertionError("the YAML emitter changed the data")
    return text


_HEADER = """\
# Generated by `cloudvod-concat-exporter mixin` (exporter/mixin.py): do not edit by hand.
# Build your own with `cloudvod-concat-exporter mixin --config=mixin.yaml --out=DIR`
# (job selector, Grafana and runbook URLs, thresholds, `for` durations; see docs/monitoring.md).
"""


def render_alerts(config: MixinConfig) -> str:
    """prometheus/alerts.yml."""
    note = (
        "# Load recording.yml too: CloudVodConcatTaskFailed and CloudVodConcatTaskStuckProcessing\n"
        "# read the first-seen timestamps recorded there.\n"
    )
    return _HEADER + note + _yaml({"groups": alert_groups(config)})


def render_recording(config: MixinConfig) -> str:
    """prometheus/recording.yml."""
    note = (
        "# Names follow level:metric:operations. The group cloudvod_concat.task_first_seen\n"
        "# remembers, per task, when this Prometheus first saw it processing or failed, by\n"
        "# reading its own previous value\n"
        "# (docs/monitoring.md#how-long-has-a-task-been-processing).\n"
    )
    return _HEADER + note + _yaml({"groups": recording_groups(config)})


def render_prometheus_rule(config: MixinConfig) -> str:
    """deploy/kubernetes/prometheusrule.yaml: both rule files for the Prometheus Operator."""
    labels = {"app.kubernetes.io/name": "cloudvod-concat-exporter", **config.prometheus_rule_labels}
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": config.prometheus_rule_name,
            "namespace": config.prometheus_rule_namespace,
            "labels": labels,
        },
        "spec": {"groups": recording_groups(config) + alert_groups(config)},
    }
    note = (
        "# Needs the Prometheus Operator's CRDs; its Prometheus selects rules by label\n"
        "# (spec.ruleSelector): set prometheus_rule.labels in the mixin configuration.\n"
    )
    return _HEADER + note + _yaml(manifest)


def render_dashboard(config: MixinConfig) -> str:
    """grafana/cloudvod-concat.json."""
    from exporter.dashboard import dashboard  # it imports this module's names

    return json.dumps(dashboard(config), indent=2, ensure_ascii=False) + "\n"


OUTPUTS = {
    "prometheus/alerts.yml": render_alerts,
    "prometheus/recording.yml": render_recording,
    "grafana/cloudvod-concat.json": render_dashboard,
    "deploy/kubernetes/prometheusrule.yaml": render_prometheus_rule,
}


def render_all(config: MixinConfig) -> dict[str, str]:
    """Every generated file by its path relative to the output folder."""
    return {path: render(config) for path, render in OUTPUTS.items()}


def write(config: MixinConfig, out: str | Path) -> list[Path]:
    """Write every generated file under `out`; return the paths written."""
    written = []
    for relative, text in render_all(config).items():
        path = Path(out) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
