"""The exporter people write by hand: on every scrape, ask the API about every task, one by one.

No cache, no budget, no concurrency, a new connection per request (plain `requests.post`).
It is the baseline of figure e; it signs its requests with the exporter's signing helper only
so that the simulator accepts them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence

import requests
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import signing

PATH = "/vod/videoManage/videoConcatQuery"
CONTENT_TYPE = "application/json; charset=utf-8"
STATUSES = {1: "processing", 2: "successful", 3: "failed"}


class NaiveCollector(Collector):
    """`collect()` queries every task sequentially and reports what came back."""

    def __init__(self, endpoint: str, key: str, secret: str, trans_nos: Sequence[str]) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.host = self.endpoint.split("://", 1)[1]
        self.key, self.secret, self.trans_nos = key, secret, list(trans_nos)

    def collect(self) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            "cloudvod_task_status", "1 for the task's status.", labels=["trans_no", "status"]
        )
        size = GaugeMetricFamily("cloudvod_video_size_bytes", "Video size.", labels=["trans_no"])
        for trans_no in self.trans_nos:
            body = json.dumps({"transNo": trans_no}).encode()
            headers = signing.signed_headers(
                access_key_id=self.key,
                secret=self.secret,
                timestamp=int(time.time()),
                method="POST",
                path=PATH,
                host=self.host,
                content_type=CONTENT_TYPE,
                body=body,
            )
            try:
                answer = requests.post(self.endpoint + PATH, data=body, headers=headers, timeout=10)
                data = answer.json().get("data") or {}
            except (requests.RequestException, ValueError):
                data = {}
            current = STATUSES.get(int(data.get("status") or 0), "unknown")
            for name in (*STATUSES.values(), "unknown"):
                status.add_metric([trans_no, name], 1.0 if name == current else 0.0)
            video = data.get("videoInfo") or {}
            if "videoSize" in video:
                size.add_metric([trans_no], float(video["videoSize"]))
        yield status
        yield size
