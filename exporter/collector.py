"""Cached answers -> Prometheus metric families and exposition text. Never calls the API.

The `/metrics` handler refreshes the scheduler's states first; the collectors only read them, so
registering a collector or rendering an exposition never costs a request. One renderer,
`exposition()`, writes the same bytes as prometheus_client: the per-task part from exposition text
kept per task (a scrape of thousands of unchanged tasks only joins it), the rest through
prometheus_client. Which format to write is the web layer's decision.
"""

from __future__ import annotations

import functools
import logging
import math
import platform
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter import metrics as m
from exporter.answers import VideoInfo
from exporter.config import Task
from exporter.protocol import STATUS_LABELS, TaskStatus
from exporter.state import NEVER_ASKED, TaskState

log = logging.getLogger(__name__)

Samples = list[Sample]
Points = list[tuple[dict[str, str], float]]  # one family's (labels, value) pairs for one task
Lines = tuple[bytes, ...]  # one task's exposition lines, one UTF-8 chunk per PER_TASK family

DURATION_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_UNKNOWN = NEVER_ASKED  # one shared object, so a never-answered task's rendering stays cached
_SLOTS: dict[str, int] = {d.name: i for i, d in enumerate(m.PER_TASK)}  # family -> its index
# Label names the exposition writes as they are (user labels are checked against this on load).
_PLAIN_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# prometheus_client's own formatting of a sample value, and its OpenMetrics encoder (unannotated).
_go_float = cast(Callable[[float], str], floatToGoString)
_openmetrics_latest = cast(Callable[[object], bytes], openmetrics.generate_latest)


def _family(definition: m.MetricDef) -> Metric:
    name = definition.name
    if definition.type == "counter":
        name = name.removesuffix("_total")
    return Metric(name, definition.help, definition.type)


class Families(Collector):
    """A collector serving fixed families (to have prometheus_client render them)."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Sequence[Metric]:
        return self._families


class _Collectors(Collector):
    """Several collectors seen as one, in order (a registry without the registration rules)."""

    def __init__(self, collectors: Sequence[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


@functools.cache
def _headers(openmetrics_format: bool) -> Lines:
    """`# HELP` and `# TYPE` of every per-task family, exactly as prometheus_client writes them."""
    if openmetrics_format:
        eof = b"# EOF\n"
        return tuple(
            _openmetrics_latest(Families([_family(d)])).removesuffix(eof) for d in m.PER_TASK
        )
    return tuple(generate_latest(Families([_family(d)])) for d in m.PER_TASK)


class TaskCollector(Collector):
    """Every watched task's series, from the scheduler's states.

    cloudvod_concat_task_status{trans_no="t1",status="processing"} 0
    cloudvod_concat_task_status{trans_no="t1",status="successful"} 1
    cloudvod_concat_video_file_size_bytes{trans_no="t1",clarity="hd",server_type="0"} 8.1e+08

    `render()` keeps each task's exposition lines until the task's state (or its configuration)
    is replaced, so a scrape of 10,000 unchanged tasks costs a join of cached bytes, where
    `generate_latest` over `collect()` formats every sample again (about 5 us each). `collect()`
    serves prometheus_client's own paths (filtered scrapes, formats other than the two below).
    """

    def __init__(
        self,
        tasks: Callable[[], Sequence[Task]],
        states: Callable[[], Mapping[str, TaskState]],
    ) -> None:
        self._tasks = tasks
        self._states = states
        self._text: dict[str, tuple[TaskState, Task, Lines]] = {}
        self._text_lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so registration never triggers a collection."""
        return [_family(d) for d in m.PER_TASK]

    def collect(self) -> Iterable[Metric]:
        """One family per per-task metric, one group of samples per watched task."""
        states = self._states()
        families = [_family(d) for d in m.PER_TASK]
        for task in self._tasks():
            per_family = _task_samples(task, states.get(task.trans_no, _UNKNOWN))
            for family, samples in zip(families, per_family, strict=True):
                family.samples.extend(samples)
        return families

    def render(self, *, openmetrics_format: bool = False) -> list[bytes] | None:
        """The per-task families as exposition text, in chunks to join.

        Byte for byte what `generate_latest` (or the OpenMetrics encoder, without its `# EOF`)
        writes for the families of `collect()`. None when a task has a user label name that the
        exposition would rewrite (only possible for tasks built in code, not from a
        configuration file): prometheus_client must render those.
        """
        tasks = self._tasks()
        if not all(_PLAIN_LABEL.fullmatch(name) for task in tasks for name, _ in task.labels):
            return None
        states = self._states()
        rendered: list[Lines] = []
        fresh: dict[str, tuple[TaskState, Task, Lines]] = {}
        with self._text_lock:
            old = self._text
            for task in tasks:
                state = states.get(task.trans_no, _UNKNOWN)
                cached = old.get(task.trans_no)
                if cached is not None and cached[0] is state and cached[1] is task:
                    lines = cached[2]
                else:
                    lines = _task_lines(task, state)
                fresh[task.trans_no] = (state, task, lines)
                rendered.append(lines)
            self._text = fresh
        out: list[bytes] = []
        for i, header in enumerate(_headers(openmetrics_format)):
            out.append(header)
            out.extend([lines[i] for lines in rendered])
        return out


def exposition(
    tasks: TaskCollector, others: Sequence[Collector] = (), *, openmetrics_format: bool = False
) -> bytes:
    """The exposition of a registry holding `tasks` and then `others`, byte for byte.

    The text format (0.0.4) of `generate_latest`, or OpenMetrics 1.0.0 when asked. Metric and
    label names here are all plain, so every name-escaping scheme writes these same bytes.
    """
    encode = _openmetrics_latest if openmetrics_format else generate_latest
    chunks = tasks.render(openmetrics_format=openmetrics_format)
    if chunks is None:
        return encode(_Collectors([tasks, *others]))
    chunks.append(encode(_Collectors(others)))
    return b"".join(chunks)


def task_families(task: Task, state: TaskState) -> list[Metric]:
    """The families of one task alone (for /probe)."""
    families = [_family(d) for d in m.PER_TASK]
    for family, samples in zip(families, _task_samples(task, state), strict=True):
        family.samples.extend(samples)
    return families


def _task_points(task: Task, state: TaskState) -> list[Points]:
    """(labels, value) of one task, one list per entry of metrics.PER_TASK (in that order)."""
    try:
        return _build(task, state)
    except Exception:  # one odd answer must never cost the whole scrape
        log.exception("cannot render task", extra={"trans_no": task.trans_no})
        return _build(task, _UNKNOWN)


def _task_samples(task: Task, state: TaskState) -> list[Samples]:
    """Samples of one task, one list per entry of metrics.PER_TASK (in that order)."""
    return [
        [Sample(d.name, labels, value, None, None) for labels, value in points]
        for d, points in zip(m.PER_TASK, _task_points(task, state), strict=True)
    ]


def _task_lines(task: Task, state: TaskState) -> Lines:
    """Exposition lines of one task, one UTF-8 chunk per entry of metrics.PER_TASK."""
    try:
        return _format(_task_points(task, state))
    except Exception:  # as in _task_points: this task alone is shown as never answered
        log.exception("cannot render task", extra={"trans_no": task.trans_no})
        return _format(_build(task, _UNKNOWN))


def _format(per_family: list[Points]) -> Lines:
    return tuple(
        "".join(_line(d.name, labels, value) for labels, value in points).encode("utf-8")
        for d, points in zip(m.PER_TASK, per_family, strict=True)
    )


def _line(name: str, labels: Mapping[str, str], value: float) -> str:
    """One sample as both formats write it (label names are plain: checked by render())."""
    if not labels:
        return f"{name} {_go_float(value)}\n"
    pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{pairs}}} {_go_float(value)}\n"


def _escape(value: str) -> str:
    """A label value escaped as the exposition formats want: backslash, newline, double quote."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _clean(value: str) -> str:
    """A label value that encodes to UTF-8 (lone surrogates from JSON escapes would not)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _build(task: Task, state: TaskState) -> list[Points]:
    base = {"trans_no": _clean(task.trans_no), **{k: _clean(v) for k, v in task.labels}}
    out: list[Points] = [[] for _ in m.PER_TASK]

    def add(d: m.MetricDef, value: float | None, **extra: str) -> None:
        if value is not None:
            # Samples without labels of their own share the task's dict (nobody mutates it).
            labels = {**base, **{k: _clean(v) for k, v in extra.items()}} if extra else base
            out[_SLOTS[d.name]].append((labels, float(value)))

    current = state.status
    for status in STATUS_LABELS:
        add(m.TASK_STATUS, 1.0 if status == current else 0.0, status=status)
    add(m.TASK_QUERY_SUCCESS, 1.0 if state.query_ok else 0.0)
    add(m.TASK_LAST_SUCCESS, state.answered_at)
    add(m.TASK_QUERIED, 1.0 if state.queried else 0.0)
    answer = state.answer
    if answer is not None:
        add(m.TASK_STATUS_CODE, answer.status)
        if answer.task_id:
            add(m.TASK_INFO, 1.0, task_id=answer.task_id)
        if answer.video is not None:
            _video(add, answer.video)
    return out


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
    pause_seconds: float = 0.0
    storage_backend: str = "memory"
    storage_up: bool = True
    replicas: int = 1
    # per status label: the achieved and configured refresh intervals, the oldest check's age
    refresh_interval: Mapping[str, float] = field(default_factory=dict)
    refresh_target: Mapping[str, float] = field(default_factory=dict)
    age_max: Mapping[str, float] = field(default_factory=dict)


def oldest_check_age(states: Iterable[TaskState], now: float) -> dict[str, float]:
    """Per status, the time since the longest-waiting task of that status was last asked."""
    oldest: dict[str, float] = {}
    for state in states:
        if state.answer is None or state.checked_at is None:
            continue
        label = state.answer.status.label
        oldest[label] = min(oldest.get(label, math.inf), state.checked_at)
    return {label: max(0.0, now - t) for label, t in oldest.items()}


class ExporterCollector(Collector):
    """The exporter's own metrics: API use, budget, backlog, reloads, storage, build info."""

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
            (m.API_PAUSE, status.pause_seconds),
        ]
        for definition, value in gauges:
            family = _family(definition)
            if value is not None:
                family.add_sample(definition.name, {}, float(value))
            yield family
        by_status = (
            (m.REFRESH_INTERVAL, status.refresh_interval),
            (m.REFRESH_INTERVAL_TARGET, status.refresh_target),
            (m.ANSWER_AGE_MAX, status.age_max),
        )
        for definition, values in by_status:
            family = _family(definition)
            for s in TaskStatus:
                value = values.get(s.label)
                if value is not None and math.isfinite(value):
                    family.add_sample(definition.name, {"status": s.label}, float(value))
            yield family
        storage = _family(m.STORAGE_UP)
        storage.add_sample(
            m.STORAGE_UP.name, {"backend": status.storage_backend}, float(status.storage_up)
        )
        yield storage
        replicas = _family(m.REPLICAS)
        replicas.add_sample(m.REPLICAS.name, {}, float(status.replicas))
        yield replicas
        build = _family(m.BUILD_INFO)
        build.add_sample(
            m.BUILD_INFO.name,
            {"version": __version__, "python_version": platform.python_version()},
            1.0,
        )
        yield build
