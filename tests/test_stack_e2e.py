"""The whole monitoring stack with the real binaries.

A real Prometheus scrapes the exporter (running `--demo` against its built-in simulator) and loads
alert and recording rules built by the monitoring mixin (absolute links, a short failed-task
acknowledgement window, 1s rule interval); a task that failed raises CloudVodConcatTaskFailed,
which a real Alertmanager delivers to a webhook receiver run by this test, and which resolves
after the window; the unknown demo transNo raises CloudVodConcatTaskConfigError; every Grafana
panel query (template variables substituted) parses and returns data from that Prometheus; and
`promtool check metrics` is clean on the exporter's output.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.mixin import parse_mixin_config, write
from tests.dashboard_queries import load_dashboard, panel_queries
from tests.helpers import require_tool
from tests.processes import Process, exporter_command, free_port, http_ok, wait_until

pytestmark = pytest.mark.e2e

ACK_WINDOW = 45  # seconds CloudVodConcatTaskFailed fires per failed task in this stack
GRAFANA = "https://grafana.example.com"
RUNBOOK = "https://runbooks.example.com/cloudvod.md"


class Webhook:
    """An Alertmanager webhook receiver that remembers every notification."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict[str, Any]]:
        return [a for n in self.notifications for a in n.get("alerts", [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    prometheus_bin = require_tool("prometheus")
    alertmanager_bin = require_tool("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("stack")
    webhook = Webhook()
    exporter_port, prom_port, am_port = free_port(), free_port(), free_port()

    # A user's build of the rules: absolute links, a short window, a fast first-seen rule.
    mixin = parse_mixin_config(
        {
            "grafana_url": GRAFANA,
            "runbook_url": RUNBOOK,
            "failed_task_window": f"{ACK_WINDOW}s",
            "recording_interval": "1s",
        }
    )
    write(mixin, tmp / "mixin")
    rules = tmp / "mixin" / "prometheus"
    (tmp / "alertmanager.yml").write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "test",
                    "group_by": ["alertname", "trans_no"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "test", "webhook_configs": [{"url": webhook.url}]}],
            }
        )
    )
    (tmp / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules / "alerts.yml"), str(rules / "recording.yml")],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                },
                "scrape_configs": [
                    {
                        "job_name": "cloudvod-concat",
                        "scrape_timeout": "1s",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                    }
                ],
            }
        )
    )
    processes = [
        Process(
            exporter_command("--demo", f"--web.listen-address=127.0.0.1:{exporter_port}"),
            tmp / "exporter.log",
        ),
        Process(
            [
                alertmanager_bin,
                f"--config.file={tmp / 'alertmanager.yml'}",
                f"--storage.path={tmp / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            tmp / "alertmanager.log",
        ),
        Process(
            [
                prometheus_bin,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--rules.alert.resend-delay=1s",
            ],
            tmp / "prometheus.log",
        ),
    ]
    try:
        prom = f"http://127.0.0.1:{prom_port}"
        wait_until(lambda: http_ok(f"http://127.0.0.1:{exporter_port}/-/healthy"), what="exporter")
        wait_until(lambda: http_ok(f"http://127.0.0.1:{am_port}/-/ready"), what="alertmanager")
        wait_until(lambda: http_ok(prom + "/-/ready"), what="prometheus")
        yield {
            "prometheus": prom,
            "exporter": f"http://127.0.0.1:{exporter_port}",
            "webhook": webhook,
            "processes": processes,
        }
    finally:
        for process in reversed(processes):
            process.stop()
        webhook.close()


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    answer = requests.get(prom + "/api/v1/query", params={"query": expr}, timeout=10)
    assert answer.status_code == 200, f"{expr}: {answer.text}"
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def test_prometheus_scrapes_the_exporter(stack: dict[str, Any]) -> None:
    prom = stack["prometheus"]
    wait_until(
        lambda: bool(query(prom, 'up{job="cloudvod-concat"} == 1')), 30, "a successful scrape"
    )
    watched = query(prom, "cloudvod_concat_watched_tasks")
    assert watched and float(watched[0]["value"][1]) == 20


def delivered(webhook: Webhook, alertname: str, status: str, **labels: str) -> bool:
    """Whether the webhook got a notification of this alert in this status."""
    return any(
        a["labels"].get("alertname") == alertname
        and a["status"] == status
        and all(a["labels"].get(k) == v for k, v in labels.items())
        for a in webhook.alerts()
    )


def test_failed_task_alert_reaches_the_webhook_and_resolves(stack: dict[str, Any]) -> None:
    webhook: Webhook = stack["webhook"]
    failed = {"trans_no": "demo-failed-old"}
    wait_until(
        lambda: delivered(webhook, "CloudVodConcatTaskFailed", "firing", **failed),
        60,
        "CloudVodConcatTaskFailed at the webhook",
    )
    alert = next(a for a in webhook.alerts() if a["labels"].get("trans_no") == "demo-failed-old")
    assert alert["labels"]["severity"] == "warning"
    assert "demo-failed-old" in alert["annotations"]["description"]
    assert alert["annotations"]["dashboard"].startswith(
        f"{GRAFANA}/d/cloudvod-concat/cloud-vod-splicing-tasks?var-job=cloudvod-concat&"
    )
    assert alert["annotations"]["dashboard"].endswith("&var-trans_no=demo-failed-old")
    assert alert["annotations"]["runbook_url"] == f"{RUNBOOK}#cloudvodconcattaskfailed"
    # a successful task never raises it
    assert not any(
        a["labels"].get("alertname") == "CloudVodConcatTaskFailed"
        and a["labels"].get("trans_no") == "0251168101641000f4cf4da800000000"
        for a in webhook.alerts()
    )
    # The task stays failed, but the alert ends after the acknowledgement window...
    wait_until(
        lambda: delivered(webhook, "CloudVodConcatTaskFailed", "resolved", **failed),
        ACK_WINDOW + 60,
        "CloudVodConcatTaskFailed resolved",
    )
    prom = stack["prometheus"]
    still_failed = 'cloudvod_concat_task_status{trans_no="demo-failed-old",status="failed"} == 1'
    assert query(prom, still_failed)
    # ...and does not come back.
    alerts = 'ALERTS{alertname="CloudVodConcatTaskFailed",trans_no="demo-failed-old"}'
    assert not query(prom, alerts)


def test_unknown_transno_raises_the_configuration_alert(stack: dict[str, Any]) -> None:
    webhook: Webhook = stack["webhook"]
    wait_until(
        lambda: delivered(webhook, "CloudVodConcatTaskConfigError", "firing", code="1603"),
        60,
        "CloudVodConcatTaskConfigError at the webhook",
    )
    alert = next(
        a for a in webhook.alerts() if a["labels"]["alertname"] == "CloudVodConcatTaskConfigError"
    )
    instance = alert["labels"]["instance"]
    assert alert["annotations"]["description"].endswith(f"http://{instance}/?q=1603")
    # The link in the alert lists the task it is about.
    page = requests.get(f"http://{instance}/?q=1603", timeout=10).text
    assert "demo-missing" in page and "demo-ok-old" not in page


def test_every_dashboard_panel_returns_data(stack: dict[str, Any]) -> None:
    prom = stack["prometheus"]
    queries = panel_queries(load_dashboard())
    assert len(queries) >= 14

    def all_have_data() -> bool:
        return all(query(prom, expr) for _, expr in queries)

    try:
        wait_until(all_have_data, 60, "data for every panel")
    except AssertionError:
        empty = [title for title, expr in queries if not query(prom, expr)]
        raise AssertionError(f"panels without data: {empty}") from None


def test_promtool_check_metrics_is_clean(stack: dict[str, Any]) -> None:
    promtool = require_tool("promtool")
    text = requests.get(stack["exporter"] + "/metrics", timeout=10).text
    run = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_no_process_logged_a_traceback(stack: dict[str, Any]) -> None:
    exporter_log: Path = stack["processes"][0].log
    assert "Traceback" not in exporter_log.read_text(encoding="utf-8", errors="replace")
