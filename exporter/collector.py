"""Cached answers -> Prometheus metric families. Never calls the API and never raises.

The `/metrics` handler refreshes the scheduler's cache first; `collect()` only reads it, so
registering a collector or rendering an exposition never costs a request.
"""

from __future__ import annotations

import logging
import platform
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter import __version__
from exporter import metrics as m
from exporter.answers import VideoInfo
from exporter.config import Task
from exporter.scheduler import TaskState

log = logging.getLogger(__name__)

Samples = list[Sample]

DURATION_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _family(definition: m.MetricDef) -> Metric:
    name = definition.name
    if definition.type == "counter":
        name = name.removesuffix("_total")
    return Metric(name, definition.help, definition.type)


class TaskCollector(Collector):
    """Every watched task's series, from the scheduler's cached answers.

    cloudvod_concat_task_status{trans_no="t1",status="processing"} 0
    cloudvod_concat_task_status{trans_no="t1",status="successful"} 1
    cloudvod_concat_video_file_size_bytes{trans_no="t1",clarity="hd",server_type="0"} 8.1e+08
    """

    def __init__(
        self,
        tasks: Callable[[], Sequence[Task]],
        states: Callable[[], Mapping[str, TaskState]],
    ) -> None:
        self._tasks = tasks
        self._states = states
        self._cache: dict[str, tuple[TaskState, Task, list[Samples]]] = {}
        self._cache_lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so registration never triggers a collection."""
        return [_family(d) for d in m.PER_TASK]

    def collect(self) -> Iterable[Metric]:
        """One family per per-task metric, one group of samples per watched task."""
        tasks = self._tasks()
        states = self._states()
        families = [_family(d) for d in m.PER_TASK]
        fresh: dict[str, tuple[TaskState, Task, list[Samples]]] = {}
        with self._cache_lock:
            for task in tasks:
                state = states.get(task.trans_no, TaskState())
                cached = self._cache.get(task.trans_no)
                if cached is not None and cached[0] is state and cached[1] is task:
                    per_family = cached[2]
                else:
                    per_family = _task_samples(task, state)
                fresh[task.trans_no] = (state, task, per_family)
                for family, samples in zip(families, per_family, strict=True):
                    family.samples.extend(samples)
            self._cache = fresh
        return families


def task_families(task: Task, state: TaskState) -> list[Metric]:
    """The families of one task alone (for /probe)."""
    families = [_family(d) for d in m.PER_TASK]
    for family, samples in zip(families, _task_samples(task, state), strict=True):
        family.samples.extend(samples)
    return families


def _task_samples(task: Task, state: TaskState) -> list[Samples]:
    """Samples of one task, one list per entry of metrics.PER_TASK (in that order)."""
    try:
        return _build(task, state)
    except Exception:  # one odd answer must never cost the whole scrape
        log.exception("cannot render task", extra={"trans_no": task.trans_no})
        return _build(task, TaskState())


def _build(task: Task, state: TaskState) -> list[Samples]:
    base = {"trans_no": task.trans_no, **dict(task.labels)}
    out: dict[m.MetricDef, Samples] = {d: [] for d in m.PER_TASK}

    def add(d: m.MetricDef, value: float | None, **extra: str) -> None:
        if value is not None:
            out[d].append(Sample(d.name, {**base, **extra}, float(value), None, None))

    current = state.status
    for status in m.STATUS_VALUES:
        add(m.TASK_STATUS, 1.0 if status == current else 0.0, status=status)
    add(m.TASK_QUERY_SUCCESS, 1.0 if state.query_ok else 0.0)
    add(m.TASK_LAST_SUCCESS, state.answered_at)
    answer = state.answer
    if answer is not None:
        add(m.TASK_STATUS_CODE, answer.status)
        if answer.task_id:
            add(m.TASK_INFO, 1.0, task_id=answer.task_id)
        if answer.video is not None:
            _video(add, answer.video)
    return [out[d] for d in m.PER_TASK]


def _video(add: Callable[..., None], video: VideoInfo) -> None:
    add(
        m.VIDEO_INFO,
        1.0,
        video_id=video.video_id,
        video_name=video.video_name,
        publish_domain=video.publish_domain,
        player_name=video.player_name,
    )
    add(m.VIDEO_DURATION, video.duration)
    add(m.VIDEO_SIZE, video.size)
    add(m.VIDEO_TRANSCODE_STATE, video.transcode_state)
    add(m.VIDEO_ENCRYPTED, video.encrypt)
    if video.video_state is not None:
        add(m.VIDEO_ENABLED, 1.0 if video.video_state == 0 else 0.0)
    add(m.VIDEO_UPLOAD_TS, video.upload_time)
    add(m.VIDEO_UPDATE_TS, video.update_time)
    seen: set[tuple[str, str]] = set()
    for rendition in video.renditions:
        clarity = m.clarity_name(rendition.clarity)
        server_type = "" if rendition.server_type is None else str(rendition.server_type)
        if (clarity, server_type) in seen:  # a duplicate series would break the exposition
            continue
        seen.add((clarity, server_type))
        add(m.VIDEO_FILE_SIZE, rendition.file_size, clarity=clarity, server_type=server_type)
        add(m.VIDEO_WIDTH, rendition.width, clarity=clarity, server_type=server_type)
        add(m.VIDEO_HEIGHT, rendition.height, clarity=clarity, server_type=server_type)


class ApiStats:
    """Counts of API requests, errors by code and request latency (the scheduler's observer)."""

    def __init__(self, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._buckets = tuple(buckets)
        self.requests = 0
        self.errors: dict[str, int] = {}
        self._bucket_counts = [0] * len(self._buckets)
        self._sum = 0.0

    def observe(self, seconds: float, error_code: str | None) -> None:
        """Count one request and, if it failed, its error code."""
        with self._lock:
            self.requests += 1
            self._sum += seconds
            for i, bound in enumerate(self._buckets):
                if seconds <= bound:
                    self._bucket_counts[i] += 1
            if error_code is not None:
                self.errors[error_code] = self.errors.get(error_code, 0) + 1

    def families(self) -> list[Metric]:
        """The api_requests_total, api_errors_total and api_request_duration_seconds families."""
        with self._lock:
            requests = _family(m.API_REQUESTS)
            requests.add_sample(m.API_REQUESTS.name, {}, float(self.requests))
            errors = _family(m.API_ERRORS)
            for code in sorted(self.errors):
                errors.add_sample(m.API_ERRORS.name, {"code": code}, float(self.errors[code]))
            duration = _family(m.API_REQUEST_DURATION)
            name = m.API_REQUEST_DURATION.name
            for bound, count in zip(self._buckets, self._bucket_counts, strict=True):
                duration.add_sample(name + "_bucket", {"le": _le(bound)}, float(count))
            duration.add_sample(name + "_bucket", {"le": "+Inf"}, float(self.requests))
            duration.add_sample(name + "_count", {}, float(self.requests))
            duration.add_sample(name + "_sum", {}, self._sum)
            return [requests, errors, duration]


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass(frozen=True)
class ExporterStatus:
    """The exporter's own state at collection time."""

    budget_remaining: int
    backlog: int
    watched: int
    collect_seconds: float
    reload_ok: bool
    reload_timestamp: float | None


class ExporterCollector(Collector):
    """The exporter's own metrics: API use, budget, backlog, reloads, build info."""

    def __init__(self, status: Callable[[], ExporterStatus], api: ApiStats) -> None:
        self._status = status
        self._api = api

    def describe(self) -> Iterable[Metric]:
        """The families without samples."""
        return [_family(d) for d in m.EXPORTER]

    def collect(self) -> Iterable[Metric]:
        """The exporter-level families."""
        status = self._status()
        yield from self._api.families()
        gauges: list[tuple[m.MetricDef, float | None]] = [
            (m.API_BUDGET_REMAINING, status.budget_remaining),
            (m.REFRESH_BACKLOG, status.backlog),
            (m.WATCHED_TASKS, status.watched),
            (m.COLLECT_DURATION, status.collect_seconds),
            (m.CONFIG_RELOAD_OK, 1.0 if status.reload_ok else 0.0),
            (m.CONFIG_RELOAD_TS, status.reload_timestamp),
        ]
        for definition, value in gauges:
            family = _family(definition)
            if value is not None:
                family.add_sample(definition.name, {}, float(value))
            yield family
        build = _family(m.BUILD_INFO)
        build.add_sample(
            m.BUILD_INFO.name,
            {"version": __version__, "python_version": platform.python_version()},
            1.0,
        )
        yield build
