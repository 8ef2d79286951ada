"""PromQL of the Grafana dashboard and the rule files, for tests.

`panel_queries` gives every panel query with Grafana's template variables substituted, ready to
send to a real Prometheus (end-to-end tests run each one against a Prometheus scraping the
exporter; invalid PromQL answers HTTP 400). `metric_names` and `known_metric_names` let
tests/test_dashboard.py and tests/test_rules.py reject metric names the exporter does not have.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_PATH = ROOT / "grafana" / "cloudvod-concat.json"
RECORDING_RULES_PATH = ROOT / "prometheus" / "recording.yml"

# What each template variable stands for when a query runs outside Grafana: "All" for the
# dashboard's own variables, fixed durations for Grafana's interval variables.
SUBSTITUTIONS: dict[str, str] = {
    "job": ".*",
    "instance": ".*",
    "trans_no": ".*",
    "datasource": "",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}

# $name, ${name} and ${name:format}; longest names first is implied by \w+ being greedy.
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def load_dashboard(path: Path = DASHBOARD_PATH) -> dict[str, Any]:
    """The dashboard JSON as a dict."""
    with path.open(encoding="utf-8") as f:
        dashboard: dict[str, Any] = json.load(f)
    return dashboard


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def substitute(expr: str) -> str:
    """Replace Grafana template variables with the values in SUBSTITUTIONS.

    Raises ValueError for a variable that is not known, so a new variable cannot slip into a
    query without the tests noticing.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in SUBSTITUTIONS:
            raise ValueError(f"unknown template variable ${name} in {expr!r}")
        return SUBSTITUTIONS[name]

    return _VARIABLE.sub(replace, expr)


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr with template variables substituted) for every panel target."""
    queries: list[tuple[str, str]] = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                queries.append((panel.get("title", ""), substitute(expr)))
    return queries


# Parts of a PromQL expression that never hold a metric name.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not preceded by a word character, colon or dot (so not inside 1e3 or 5m) and
# not followed by "(" (a function). The possessive quantifier keeps "rate(" from matching "rat".
_IDENTIFIER = re.compile(r"(?<![\w:.])[a-zA-Z_:][a-zA-Z0-9_:]*+(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "start", "end", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names a PromQL expression selects."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def recording_rule_names(path: Path = RECORDING_RULES_PATH) -> set[str]:
    """The names recorded by the bundled recording rules."""
    with path.open(encoding="utf-8") as f:
        groups = yaml.safe_load(f)["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def known_metric_names() -> set[str]:
    """Names a query may use: the exporter's metrics, the recording rules, and `up`."""
    from exporter import metrics

    names = {"up"} | recording_rule_names()
    for metric in metrics.ALL:
        names.add(metric.name)
        if metric.type == "histogram":
            names.update(metric.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names
