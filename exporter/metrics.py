"""Every metric the exporter exposes: name, type, help and labels, defined once.

The collector builds its families from these definitions, the README's metric table is
checked against them, and the dashboard and rule tests use them to reject unknown names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PREFIX = "cloudvod_concat_"

MetricType = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True)
class MetricDef:
    """One metric family: its full name, type, help text and label names."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    per_task: bool = False  # carries trans_no plus the task's user labels


def _d(
    suffix: str, type_: MetricType, help_: str, labels: tuple[str, ...] = (), per_task: bool = False
) -> MetricDef:
    if per_task:
        labels = ("trans_no", *labels)
    return MetricDef(PREFIX + suffix, type_, help_, labels, per_task)


RENDITION = ("clarity", "server_type")

TASK_STATUS = _d(
    "task_status", "gauge", "1 for the task's current status, 0 for the others.", ("status",), True
)
TASK_STATUS_CODE = _d(
    "task_status_code", "gauge", "Raw task status from the API (1, 2, 3).", per_task=True
)
TASK_QUERY_SUCCESS = _d(
    "task_query_success",
    "gauge",
    "1 if the last query of this task got a valid answer, else 0.",
    per_task=True,
)
TASK_LAST_SUCCESS = _d(
    "task_last_success_timestamp_seconds",
    "gauge",
    "When this task was last answered, as Unix seconds.",
    per_task=True,
)
TASK_QUERIED = _d(
    "task_queried",
    "gauge",
    "1 once the task has been asked since it was added (answered or failed), "
    "0 while it waits for its first query.",
    per_task=True,
)
TASK_INFO = _d("task_info", "gauge", "The vendor's task ID.", ("task_id",), True)
VIDEO_INFO = _d(
    "video_info",
    "gauge",
    "The video a successful task produced.",
    ("video_id", "video_name", "publish_domain", "player_name"),
    True,
)
VIDEO_DURATION = _d(
    "video_duration_seconds", "gauge", "Duration of the resulting video.", per_task=True
)
VIDEO_SIZE = _d(
    "video_size_bytes",
    "gauge",
    "Total size of the resulting video: source plus all renditions.",
    per_task=True,
)
VIDEO_FILE_SIZE = _d(
    "video_file_size_bytes", "gauge", "File size of each rendition.", RENDITION, True
)
VIDEO_WIDTH = _d("video_width_pixels", "gauge", "Width of each rendition.", RENDITION, True)
VIDEO_HEIGHT = _d("video_height_pixels", "gauge", "Height of each rendition.", RENDITION, True)
VIDEO_TRANSCODE_STATE = _d(
    "video_transcode_state", "gauge", "Raw transcodeState of the video.", per_task=True
)
VIDEO_ENCRYPTED = _d("video_encrypted", "gauge", "1 if the video is encrypted.", per_task=True)
VIDEO_ENABLED = _d(
    "video_enabled", "gauge", "1 when the video is enabled (videoState 0).", per_task=True
)
VIDEO_UPLOAD_TS = _d(
    "video_upload_timestamp_seconds", "gauge", "uploadTime as Unix seconds.", per_task=True
)
VIDEO_UPDATE_TS = _d(
    "video_update_timestamp_seconds", "gauge", "updateTime as Unix seconds.", per_task=True
)

API_REQUESTS = _d("api_requests_total", "counter", "Requests sent to the Cloud VoD API.")
API_ERRORS = _d(
    "api_errors_total",
    "counter",
    "Failed API requests by error code or failure kind.",
    ("code",),
)
API_REQUEST_DURATION = _d(
    "api_request_duration_seconds", "histogram", "Latency of requests to the Cloud VoD API."
)
API_BUDGET_REMAINING = _d(
    "api_budget_remaining",
    "gauge",
    "Requests left in the current rate-limit window.",
)
REFRESH_BACKLOG = _d(
    "refresh_backlog",
    "gauge",
    "Tasks whose refresh was due but deferred (budget or deadline) at the last collection.",
)
WATCHED_TASKS = _d("watched_tasks", "gauge", "Tasks in the configuration.")
COLLECT_DURATION = _d(
    "collect_duration_seconds", "gauge", "How long the last collection (refresh round) took."
)
CONFIG_RELOAD_OK = _d(
    "config_last_reload_successful",
    "gauge",
    "1 if the last configuration reload succeeded.",
)
CONFIG_RELOAD_TS = _d(
    "config_last_reload_success_timestamp_seconds",
    "gauge",
    "When the configuration was last loaded successfully, as Unix seconds.",
)
API_PAUSE = _d(
    "api_throttle_pause_seconds",
    "gauge",
    "Seconds until sends resume after the API throttled the account (0 when not paused).",
)
REFRESH_INTERVAL = _d(
    "refresh_interval_seconds",
    "gauge",
    "The refresh interval the budget achieves for tasks of this status, with the current mix.",
    ("status",),
)
REFRESH_INTERVAL_TARGET = _d(
    "refresh_interval_target_seconds",
    "gauge",
    "The configured refresh interval (refresh.<status>) for tasks of this status.",
    ("status",),
)
ANSWER_AGE_MAX = _d(
    "answer_age_max_seconds",
    "gauge",
    "Time since the longest-waiting task of this status was last asked.",
    ("status",),
)
STORAGE_UP = _d("storage_up", "gauge", "1 while the state store answers, else 0.", ("backend",))
REPLICAS = _d(
    "replicas", "gauge", "Exporters seen alive sharing the state store (1 without Redis)."
)
BUILD_INFO = _d(
    "exporter_build_info", "gauge", "Version of the exporter.", ("version", "python_version")
)

PER_TASK: tuple[MetricDef, ...] = (
    TASK_STATUS,
    TASK_STATUS_CODE,
    TASK_QUERY_SUCCESS,
    TASK_LAST_SUCCESS,
    TASK_QUERIED,
    TASK_INFO,
    VIDEO_INFO,
    VIDEO_DURATION,
    VIDEO_SIZE,
    VIDEO_FILE_SIZE,
    VIDEO_WIDTH,
    VIDEO_HEIGHT,
    VIDEO_TRANSCODE_STATE,
    VIDEO_ENCRYPTED,
    VIDEO_ENABLED,
    VIDEO_UPLOAD_TS,
    VIDEO_UPDATE_TS,
)

EXPORTER: tuple[MetricDef, ...] = (
    API_REQUESTS,
    API_ERRORS,
    API_REQUEST_DURATION,
    API_BUDGET_REMAINING,
    REFRESH_BACKLOG,
    WATCHED_TASKS,
    COLLECT_DURATION,
    CONFIG_RELOAD_OK,
    CONFIG_RELOAD_TS,
    API_PAUSE,
    REFRESH_INTERVAL,
    REFRESH_INTERVAL_TARGET,
    ANSWER_AGE_MAX,
    STORAGE_UP,
    REPLICAS,
    BUILD_INFO,
)

ALL: tuple[MetricDef, ...] = PER_TASK + EXPORTER

# Labels the exporter sets itself; user labels may not shadow them (nor Prometheus's target labels).
RESERVED_LABELS: frozenset[str] = frozenset(
    {label for metric in ALL for label in metric.labels} | {"le", "job", "instance"}
)

CLARITY_NAMES: dict[int, str] = {
    1: "original",
    2: "ld",
    3: "sd",
    4: "hd",
    5: "uhd",
    -99: "recording",
}


def clarity_name(clarity: int) -> str:
    """The `clarity` label value: a name for known codes, else the raw number."""
    return CLARITY_NAMES.get(clarity, str(clarity))
