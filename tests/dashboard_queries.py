"""Read the Grafana dashboard's PromQL: every panel query, ready to send to a real Prometheus.

Shared by tests/test_dashboard.py (static checks) and end-to-end tests that run each panel's
query against a Prometheus scraping the exporter (invalid PromQL answers HTTP 400).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_PATH = ROOT / "grafana" / "cloudvod-concat.json"

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
