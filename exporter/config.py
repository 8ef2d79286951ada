"""Configuration: the YAML file and its task files, parsed once into frozen dataclasses.

Every problem is collected and reported together, one line each, starting with the YAML path it
concerns (`tasks[3].trans_no: …`) and ending with where it is in the file (`(line 4, column 5)`);
problems inside a task file start with that file's path. Secrets never appear in a message, a
warning or a repr (see `exporter.redaction`).

`load_config` reads files with the shared loader of `exporter.yamlconf`: duplicate keys are
problems, dates stay strings and numbers are remembered as written, so an unquoted `- 0123`
watches the task "0123" rather than the octal number 83; the value of `access_key_secret` is never
converted by a YAML tag. Data built in code (`parse_config`) has no such memory: an int trans_no is
taken as `str(int)`, so quote trans_nos with leading zeros there.

Defaults live in the dataclasses only: a key that is absent (or left empty) is not passed on, and
the dataclass supplies its default.
"""

from __future__ import annotations

import datetime
import glob
import math
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exporter import redaction
from exporter.metrics import RESERVED_LABELS
from exporter.protocol import (
    DEFAULT_ENDPOINT,
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    TRANS_NO_RE,
)
from exporter.yamlconf import (
    Document,
    FileReadError,
    Position,
    Report,
    SourceInt,
    Unconverted,
    YamlError,
    join_path,
    load_yaml,
    read_regular_file,
    scalar_text,
    show,
)

LABEL_NAME_RE = re.compile(r"\A[a-zA-Z_][a-zA-Z0-9_]*\Z")

_DURATION_RE = re.compile(
    r"\A(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?"
    r"(?:([0-9]+)ms)?\Z"
)
_UNIT_MS = (
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
)
_MAX_DURATION_MS = 2**63 - 1  # Prometheus's limit (int64 milliseconds)
_DURATION_HINT = "use Prometheus syntax such as 30s, 5m, 1h30m"
_OFFSET_RE = re.compile(r"\A([+-])([0-9]{2}):?([0-9]{2})\Z")
_GLOB_MAGIC_RE = re.compile(r"[*?[]")


@dataclass(frozen=True)
class RateLimit:
    """The account's request budget: at most `requests` in any span of `period` seconds."""

    requests: int = 300
    period: float = 300.0
    probe_share: float = 0.05  # share of the budget probes of unwatched tasks may spend


@dataclass(frozen=True)
class ApiConfig:
    """How to reach and sign requests to the Cloud VoD API."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    endpoint: str = DEFAULT_ENDPOINT
    timeout: float = 10.0
    max_concurrency: int = 4
    rate_limit: RateLimit = RateLimit()
    timezone: datetime.tzinfo = datetime.timezone(datetime.timedelta(hours=8))
    max_response_bytes: int = 1_048_576


@dataclass(frozen=True)
class RefreshConfig:
    """How long an answer is reused, in seconds, by the task's last status."""

    processing: float = 0.0
    successful: float = 3600.0
    failed: float = 21600.0
    error: float = 60.0
    error_max: float = 1800.0  # cap of the exponential backoff after repeated failures
    final_share: float = 0.1  # share of the budget kept for final refreshes while any is due


@dataclass(frozen=True)
class ScrapeConfig:
    """The scrape deadline, in seconds."""

    timeout: float = 10.0  # used when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds
    timeout_offset: float = 0.5  # safety margin subtracted from Prometheus's scrape timeout


@dataclass(frozen=True)
class RedisConfig:
    """A Redis (or Valkey) shared by replicas: one budget, one answer cache, one claim per task."""

    url: str = field(repr=False)  # redis:// or rediss://; may hold a password
    password: str | None = field(default=None, repr=False)  # from password_file
    key_prefix: str = "cloudvod-concat:"
    timeout: float = 1.0  # one Redis operation; slower counts as unreachable


@dataclass(frozen=True)
class StorageConfig:
    """Where state is kept beside --storage.path: nothing here means the local SQLite file."""

    redis: RedisConfig | None = None


@dataclass(frozen=True)
class Task:
    """One watched splicing task and its user labels (sorted by label name)."""

    trans_no: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    api: ApiConfig
    refresh: RefreshConfig = RefreshConfig()
    scrape: ScrapeConfig = ScrapeConfig()
    storage: StorageConfig = StorageConfig()
    tasks: tuple[Task, ...] = ()
    task_files: tuple[str, ...] = ()  # absolute glob patterns
    max_tasks: int = 10_000
    source: str = ""  # path of the config file ("" when built in code)
    warnings: tuple[str, ...] = ()  # e.g. duplicates merged across files

    def task_file_paths(self) -> tuple[Path, ...]:
        """The files the task_files patterns match now, sorted (what the reload watcher watches)."""
        itself = Path(self.source).absolute() if self.source else None
        paths = {path for pattern in self.task_files for path in _expand(pattern)}
        return tuple(sorted(paths - {itself} if itself else paths))


class ConfigError(Exception):
    """An invalid configuration: one line per problem, each starting with its YAML path."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(self.problems)


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as "500ms", "5m" or "1h30m" ("0" is zero)."""
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {show(text)} ({_DURATION_HINT})")
    if text == "0":
        return 0.0
    match = _DURATION_RE.match(text)
    if not text or match is None:
        raise ValueError(f"invalid duration {show(text)} ({_DURATION_HINT})")
    ms = sum(
        int(n) * unit
        for n, (_, unit) in zip(match.groups(), _UNIT_MS, strict=True)
        if n is not None
    )
    if ms > _MAX_DURATION_MS:
        raise ValueError(f"duration {show(text)} is out of range")
    return ms / 1000


def format_duration(seconds: float) -> str:
    """The Prometheus spelling of a number of seconds, to the millisecond ("1h30m", "0s")."""
    if not math.isfinite(seconds):
        raise ValueError(f"cannot format {seconds} as a duration")
    ms = round(seconds * 1000)
    if ms < 0:
        return "-" + format_duration(-seconds)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in _UNIT_MS:
        if unit in ("y", "w") and ms % size:
            continue  # like Prometheus: "90d" reads better than "12w6d"
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_timezone(text: str) -> datetime.tzinfo:
    """A fixed offset ("+08:00", "-0530", "Z", "UTC") or an IANA zone name ("Asia/Shanghai")."""
    if text in ("Z", "UTC"):
        return datetime.UTC
    match = _OFFSET_RE.match(text)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3))
        if hours > 23 or minutes > 59:
            raise ValueError(f"invalid UTC offset {show(text)}")
        offset = datetime.timedelta(hours=hours, minutes=minutes)
        return datetime.timezone(-offset if sign == "-" else offset)
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {show(text)} (use an offset such as +08:00, Z, "
            "or an IANA name such as Asia/Shanghai)"
        ) from None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file and the task files it names."""
    env = os.environ if environ is None else environ
    # Known before the file is read: a syntax error may quote it (pasted in the wrong place).
    redaction.register_secret(env.get(ENV_ACCESS_KEY_SECRET, "").strip())
    file = Path(path)
    try:
        document = load_yaml(file, secret_keys=SECRET_KEYS)
    except YamlError as exc:
        raise ConfigError(exc.problems) from None
    if document.data is None:
        raise ConfigError([f"{file}: the configuration file is empty"])
    return _parse(
        document.data, document, base_dir=file.absolute().parent, env=env, source=str(file)
    )


def parse_config(
    data: object,
    *,
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    source: str = "",
) -> Config:
    """Validate already-loaded YAML data; relative paths are taken against base_dir."""
    env = os.environ if environ is None else environ
    return _parse(data, None, base_dir=base_dir, env=env, source=source)


def _parse(
    data: object,
    document: Document | None,
    *,
    base_dir: Path,
    env: Mapping[str, str],
    source: str,
) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(
            [
                f"{source or 'configuration'}: the top level must be a mapping with keys such as "
                f"api and tasks, got {show(data)}"
            ]
        )
    report = document.report([]) if document is not None else Report()
    warn = Report(positions=report.positions)
    top = report.section(data, "", _TOP_KEYS)
    assert top is not None  # data is a mapping
    api = _parse_api(report, top.get("api"), base_dir, env)
    refresh = _parse_refresh(report, top.get("refresh"))
    scrape = _parse_scrape(report, top.get("scrape"))
    storage = _parse_storage(report, top.get("storage"), base_dir)
    values = report.fields(top, "", {"max_tasks": _int_between(1)})
    max_tasks: int = values.get("max_tasks", Config.max_tasks)

    groups = [_parse_tasks(report, top.get("tasks"), source or "configuration")]
    itself = Path(source).absolute() if source else None
    patterns = _parse_task_files(report, warn, top.get("task_files"), base_dir, itself, groups)
    tasks = _merge(groups, warn)
    if len(tasks) > max_tasks:
        report.add(
            "max_tasks",
            f"{len(tasks)} tasks are watched (after merging task files), "
            f"more than the limit of {max_tasks}",
        )

    if report.problems:
        raise ConfigError(redaction.REGISTRY.redact_all(report.problems))
    return Config(
        api=api,
        refresh=refresh,
        scrape=scrape,
        storage=storage,
        tasks=tasks,
        task_files=tuple(patterns),
        source=source,
        warnings=tuple(redaction.REGISTRY.redact_all(warn.problems)),
        **values,
    )


# --- the keys of each section, and how each value is read -------------------------------------

_TOP_KEYS = ("api", "refresh", "scrape", "storage", "tasks", "task_files", "max_tasks")
# Keys whose values the loader never converts and registers as secrets wherever they appear
# (`password` is no key of ours, but where a Redis password would be pasted by mistake).
SECRET_KEYS = ("access_key_secret", "password")
_CREDENTIAL_KEYS = ("access_key_id", "access_key_secret", "access_key_secret_file")


def _duration(value: object) -> float:
    """A duration >= 0 (the int 0 is accepted as 0s)."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0.0
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {show(value)} ({_DURATION_HINT})")
    return parse_duration(value)


def _positive_duration(value: object) -> float:
    """A duration > 0."""
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError(f"must be more than 0s, got {show(value)}")
    return seconds


def _int_between(low: int, high: int | None = None) -> Callable[[object], int]:
    """A converter to an int in [low, high] (bool is not an int)."""
    wanted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be {wanted}, got {show(value)}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be {wanted}, got {show(value)}")
        return int(value)

    return convert


def _endpoint(value: object) -> str:
    """An http(s) base URL without query, fragment or credentials; trailing slash dropped."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be an http:// or https:// URL, got {show(value)}")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain whitespace")
    url = urlsplit(value)
    if "@" in url.netloc:
        raise ValueError("must not contain a user name or password")  # nor echo them
    if url.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {show(value)}")
    if not url.hostname:
        raise ValueError(f"has no host: {show(value)}")
    try:
        url.port  # noqa: B018 -- urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError(f"has an invalid port: {show(value)}") from None
    if url.query or url.fragment or value.endswith(("?", "#")):
        raise ValueError(f"must not have a query or fragment: {show(value)}")
    return value.rstrip("/")


def _timezone(value: object) -> datetime.tzinfo:
    """A zone from a string (or from `+10:00`, which YAML 1.1 reads as a number)."""
    text = value if isinstance(value, str) else None
    if isinstance(value, SourceInt):
        text = value.source
    if text is None:
        raise ValueError(f'must be a string such as "+08:00" or "Asia/Shanghai", got {show(value)}')
    return parse_timezone(text)


def _fraction(value: object) -> float:
    """A number from 0 to 1 (a share of the budget)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number from 0 to 1, got {show(value)}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"must be a number from 0 to 1, got {show(value)}")
    return float(value)


def _redis_url(value: object) -> str:
    """A redis:// or rediss:// URL (never echoed: it may hold a password)."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be a redis:// or rediss:// URL")
    try:
        url = urlsplit(value)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    try:
        url.port  # noqa: B018 -- urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError("has an invalid port") from None
    if url.scheme not in ("redis", "rediss") or not url.hostname:
        raise ValueError("must be a redis:// or rediss:// URL with a host")
    db = url.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError("the path must be a database number such as /0")
    return value


def _key_prefix(value: object) -> str:
    """A non-empty key prefix without spaces."""
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError(f"must be a non-empty string without spaces, got {show(value)}")
    return value


_API_FIELDS: Mapping[str, Callable[[object], Any]] = {
    "endpoint": _endpoint,
    "timeout": _positive_duration,
    "max_concurrency": _int_between(1, 64),
    "timezone": _timezone,
    "max_response_bytes": _int_between(1024),
}
_RATE_LIMIT_FIELDS: Mapping[str, Callable[[object], Any]] = {
    "requests": _int_between(1),
    "period": _positive_duration,
    "probe_share": _fraction,
}
_REFRESH_FIELDS: Mapping[str, Callable[[object], Any]] = {
    "processing": _duration,
    "successful": _duration,
    "failed": _duration,
    "error": _positive_duration,
    "error_max": _positive_duration,
    "final_share": _fraction,
}
_SCRAPE_FIELDS: Mapping[str, Callable[[object], Any]] = {
    "timeout": _positive_duration,
    "timeout_offset": _duration,
}
_REDIS_FIELDS: Mapping[str, Callable[[object], Any]] = {
    "key_prefix": _key_prefix,
    "timeout": _positive_duration,
}
_REDIS_KEYS = ("url", "password_file", *_REDIS_FIELDS)
# Words of the configuration itself: a "secret" inside one would be redacted out of messages.
_VOCABULARY = (
    *_TOP_KEYS,
    *_API_FIELDS,
    *_CREDENTIAL_KEYS,
    "rate_limit",
    *_RATE_LIMIT_FIELDS,
    *_REFRESH_FIELDS,
    *_SCRAPE_FIELDS,
    "redis",
    *_REDIS_KEYS,
    "trans_no",
    "labels",
)


# --- sections --------------------------------------------------------------------------------


def _parse_api(report: Report, value: object, base_dir: Path, env: Mapping[str, str]) -> ApiConfig:
    """The api section."""
    keys = (*_API_FIELDS, *_CREDENTIAL_KEYS, "rate_limit")
    section = report.section(value, "api", keys)
    if section is None:
        return ApiConfig(access_key_id="", access_key_secret="")
    rate = report.section(section.get("rate_limit"), "api.rate_limit", _RATE_LIMIT_FIELDS) or {}
    return ApiConfig(
        access_key_id=_access_key_id(report, section, env),
        access_key_secret=_access_key_secret(report, section, base_dir, env),
        rate_limit=RateLimit(**report.fields(rate, "api.rate_limit", _RATE_LIMIT_FIELDS)),
        **report.fields(section, "api", _API_FIELDS),
    )


def _access_key_id(report: Report, section: Mapping[str, object], env: Mapping[str, str]) -> str:
    """The access key ID from the file, else from the environment."""
    if "access_key_id" not in section:
        key_id = env.get(ENV_ACCESS_KEY_ID, "").strip()
        if not key_id:
            report.add(
                "api.access_key_id",
                f"missing: set it here or in the environment variable {ENV_ACCESS_KEY_ID}",
            )
        return key_id
    key_id_value = section["access_key_id"]
    if not isinstance(key_id_value, str) or not key_id_value:
        report.add("api.access_key_id", "must be a non-empty string")
        return ""
    if any(c.isspace() for c in key_id_value):
        report.add("api.access_key_id", "must not contain whitespace")
    return key_id_value


def _access_key_secret(
    report: Report, section: Mapping[str, object], base_dir: Path, env: Mapping[str, str]
) -> str:
    """The secret: inline, else from access_key_secret_file, else from the environment."""
    where = "api.access_key_secret"
    if "access_key_secret" in section and "access_key_secret_file" in section:
        report.add(where, "set access_key_secret or access_key_secret_file, not both")
        return ""
    if "access_key_secret" in section:
        inline = section["access_key_secret"]
        if not isinstance(inline, str) or not inline:
            # Never echo it: only what kind of value it is ("a value tagged !!int").
            report.add(where, f"must be a string (quote it), got {_kind(inline)}")
            return ""
        return _checked_secret(report, where, inline, "")
    if "access_key_secret_file" in section:
        where_file = "api.access_key_secret_file"
        secret = read_secret_file(report, where_file, section["access_key_secret_file"], base_dir)
        return _checked_secret(report, where_file, secret, "the secret in the file ")
    env_secret = env.get(ENV_ACCESS_KEY_SECRET, "").strip()
    if not env_secret:
        report.add(
            where,
            "missing: set access_key_secret or access_key_secret_file, "
            f"or the environment variable {ENV_ACCESS_KEY_SECRET}",
        )
        return ""
    return _checked_secret(report, where, env_secret, f"the secret in {ENV_ACCESS_KEY_SECRET} ")


def _checked_secret(report: Report, where: str, secret: str, origin: str) -> str:
    """The secret if it can be real (and registered for redaction), else "" with a problem."""
    if not secret:
        return ""
    if any(c.isspace() for c in secret):
        report.add(where, f"{origin}must not contain whitespace")
        return ""
    weak = redaction.weak_secret(secret, _VOCABULARY)
    if weak is not None:
        report.add(where, f"{origin}{weak}")
        return ""
    redaction.register_secret(secret)
    return secret


def _kind(value: object) -> str:
    """What a value is, without showing it (for values that may be secrets)."""
    if isinstance(value, Unconverted):
        return value.kind
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    return show(value)  # containers are shown by their kind only


MAX_SECRET_FILE_BYTES = 4096


def read_secret_file(report: Report, where: str, value: object, base_dir: Path) -> str:
    """The stripped content of a secret file; problems name the file, never its content."""
    if not isinstance(value, str) or not value:
        report.add(where, f"must be a file path, got {show(value)}")
        return ""
    path = base_dir / os.path.expanduser(value)
    try:
        raw = read_regular_file(path, max_bytes=MAX_SECRET_FILE_BYTES)
    except FileReadError as exc:
        report.add(where, f"cannot read {path}: {exc}")
        return ""
    try:
        secret = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        report.add(where, f"{path} is not UTF-8 text")
        return ""
    if not secret:
        report.add(where, f"{path} is empty")
    elif any(c.isspace() for c in secret):
        report.add(where, f"{path} must hold the secret alone, on one line")
        return ""
    return secret


def _parse_refresh(report: Report, value: object) -> RefreshConfig:
    """The refresh section."""
    section = report.section(value, "refresh", _REFRESH_FIELDS) or {}
    values = report.fields(section, "refresh", _REFRESH_FIELDS)
    error = values.get("error", RefreshConfig.error)
    # Without an explicit cap, raising `error` above the default cap raises the cap too.
    values.setdefault("error_max", max(RefreshConfig.error_max, error))
    refresh = RefreshConfig(**values)
    if refresh.error_max < refresh.error:
        report.add(
            "refresh.error_max",
            f"must be at least refresh.error ({format_duration(refresh.error)}), "
            f"got {format_duration(refresh.error_max)}",
        )
    return refresh


def _parse_storage(report: Report, value: object, base_dir: Path) -> StorageConfig:
    """The storage section: optionally a Redis shared by replicas."""
    section = report.section(value, "storage", ("redis",)) or {}
    if "redis" not in section:
        return StorageConfig()
    redis = report.section(section["redis"], "storage.redis", _REDIS_KEYS)
    if redis is None:
        return StorageConfig()
    if "url" not in redis:
        report.add("storage.redis.url", "is required (redis://host:port/db or rediss://…)")
        return StorageConfig()
    url = _redis_password_checked(report, redis["url"])
    password = None
    if "password_file" in redis:
        where = "storage.redis.password_file"
        secret = read_secret_file(report, where, redis["password_file"], base_dir)
        password = _checked_secret(report, where, secret, "the password in the file ") or None
    if not url:
        return StorageConfig()
    values = report.fields(redis, "storage.redis", _REDIS_FIELDS)
    return StorageConfig(RedisConfig(url=url, password=password, **values))


def _redis_password_checked(report: Report, value: object) -> str:
    """storage.redis.url, its password registered as a secret before anything can show it."""
    where = "storage.redis.url"
    try:
        password = urlsplit(value).password if isinstance(value, str) else None
    except ValueError:
        password = None
    if password:
        redaction.register_secret(password)
    try:
        url = _redis_url(value)
    except ValueError as exc:
        report.add(where, str(exc))
        return ""
    if password and not _checked_secret(report, where, password, "the password in the URL "):
        return ""
    return url


def _parse_scrape(report: Report, value: object) -> ScrapeConfig:
    """The scrape section."""
    section = report.section(value, "scrape", _SCRAPE_FIELDS) or {}
    scrape = ScrapeConfig(**report.fields(section, "scrape", _SCRAPE_FIELDS))
    if scrape.timeout_offset >= scrape.timeout:
        report.add(
            "scrape.timeout_offset",
            f"must be less than scrape.timeout ({format_duration(scrape.timeout)}), "
            f"got {format_duration(scrape.timeout_offset)}",
        )
    return scrape


# --- tasks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """A task and where it was listed ("tasks.yaml: tasks[2]"), for merge warnings."""

    task: Task
    where: str
    position: Position | None


def _parse_tasks(report: Report, value: object, origin: str) -> list[_Entry]:
    """The tasks of one file; duplicates inside it are problems."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        report.add("tasks", f"must be a list of trans_nos or tasks, got {show(value)}")
        return []
    first_at: dict[str, str] = {}
    entries = []
    for index, item in enumerate(value):
        path = f"tasks[{index}]"
        task = _parse_task(report, item, path)
        if task is None:
            continue
        position = report.position(path)
        if task.trans_no in first_at:
            report.add(
                path,
                f"duplicate trans_no {show(task.trans_no)} (first at {first_at[task.trans_no]})",
            )
            continue
        first_at[task.trans_no] = f"{path}, {position}" if position else path
        entries.append(_Entry(task, f"{origin}: {path}", position))
    return entries


def _parse_task(report: Report, item: object, path: str) -> Task | None:
    """One task: a plain trans_no or a mapping {trans_no, labels}."""
    if not isinstance(item, Mapping):
        try:
            return Task(_trans_no(item))
        except ValueError as exc:
            report.add(path, str(exc))
            return None
    section = report.section(item, path, ("trans_no", "labels")) or {}
    trans_no = None
    if "trans_no" not in section:
        report.add(f"{path}.trans_no", "missing")
    else:
        try:
            trans_no = _trans_no(section["trans_no"])
        except ValueError as exc:
            report.add(f"{path}.trans_no", str(exc))
    labels = _parse_labels(report, section.get("labels"), f"{path}.labels")
    if trans_no is None or labels is None:
        return None
    return Task(trans_no, labels)


def _trans_no(value: object) -> str:
    """A trans_no: 1–32 letters, digits, _ or -; YAML numbers are taken as written."""
    if isinstance(value, bool):
        raise ValueError(
            f"must be a trans_no string, got {show(value)} "
            "(quote it: YAML reads yes, no, on and off as true/false)"
        )
    text = scalar_text(value) if isinstance(value, int | float) else value
    if not isinstance(text, str):
        raise ValueError(f"must be a trans_no string, got {show(value)}")
    if not TRANS_NO_RE.match(text):
        raise ValueError(f"invalid trans_no {show(value)} (use 1 to 32 letters, digits, _ or -)")
    return text


def _parse_labels(report: Report, value: object, path: str) -> tuple[tuple[str, str], ...] | None:
    """User labels sorted by name, or None if any is invalid (reported)."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        report.add(path, f"must be a mapping of label names to values, got {show(value)}")
        return None
    labels: list[tuple[str, str]] = []
    valid = True
    for name, raw in value.items():
        where = join_path(path, name)
        problem = None
        if not isinstance(name, str) or not LABEL_NAME_RE.match(name):
            problem = "invalid label name (use letters, digits and _, not starting with a digit)"
        elif name.startswith("__"):
            problem = "invalid label name (names starting with __ are reserved for Prometheus)"
        elif name in RESERVED_LABELS:
            problem = "shadows the exporter's own label"
        elif isinstance(raw, bool):
            labels.append((name, "true" if raw else "false"))
        elif (text := scalar_text(raw)) is not None:
            labels.append((name, text))
        else:
            problem = f"label value must be a string, number or true/false, got {show(raw)}"
        if problem:
            report.add(where, problem)
            valid = False
    return tuple(sorted(labels)) if valid else None


def _parse_task_files(
    report: Report,
    warn: Report,
    value: object,
    base_dir: Path,
    itself: Path | None,
    groups: list[list[_Entry]],
) -> list[str]:
    """The absolute task_files patterns; appends each matched file's tasks to groups.

    A glob such as `*.yaml` next to the configuration file does not match that file itself. A
    glob that matches no file is a warning (the files may come later), a missing literal path
    an error.
    """
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        report.add(
            "task_files", f"must be a list of file paths or glob patterns, got {show(value)}"
        )
        return []
    patterns: list[str] = []
    read: set[Path] = {itself} if itself else set()
    for index, item in enumerate(value):
        where = f"task_files[{index}]"
        if not isinstance(item, str) or not item:
            report.add(where, f"must be a file path or glob pattern, got {show(item)}")
            continue
        text = os.path.expanduser(item)
        # The config folder is escaped so a "[" in its name is not taken for a glob.
        pattern = os.path.abspath(os.path.join(glob.escape(str(base_dir.absolute())), text))
        patterns.append(pattern)
        matches = [path for path in _expand(pattern) if path != itself]
        if not matches and not _GLOB_MAGIC_RE.search(text):
            literal = base_dir.absolute() / text
            reason = "is not a regular file" if literal.exists() else "file not found"
            report.add(where, f"{reason}: {literal}")
        elif not matches:
            warn.add(where, f"no file matches {show(pattern)}, so it adds no task")
        for path in matches:
            if path not in read:
                read.add(path)
                groups.append(_read_task_file(report, path))
    return patterns


def _read_task_file(report: Report, path: Path) -> list[_Entry]:
    """The tasks in one task file: a list of tasks or a mapping with the key `tasks`."""
    try:
        document = load_yaml(path, secret_keys=SECRET_KEYS)
    except YamlError as exc:
        report.problems.extend(exc.problems)
        return []
    data = document.data
    # A bare list reads as the value of `tasks`, so its problems are named tasks[N] too.
    here = document.report(
        report.problems, str(path), root="tasks" if isinstance(data, list) else ""
    )
    if data is None:
        # Also what a reader sees while the file is being rewritten: keep the old tasks.
        here.add("", "the file is empty (write [] for a file with no tasks)")
        return []
    if isinstance(data, Mapping):
        section = here.section(data, "", ("tasks",)) or {}
        if not data:
            here.add("tasks", "missing")
        data = section.get("tasks")
    elif not isinstance(data, list):
        here.add("", f"must be a list of tasks or a mapping with key tasks, got {show(data)}")
        return []
    return _parse_tasks(here, data, str(path))


def _merge(groups: list[list[_Entry]], warn: Report) -> tuple[Task, ...]:
    """Tasks across files, first occurrence first; duplicates become warnings."""
    first: dict[str, _Entry] = {}
    for entries in groups:
        for entry in entries:
            kept = first.setdefault(entry.task.trans_no, entry)
            if kept is entry:
                continue
            warning = f"{entry.where}: trans_no {show(entry.task.trans_no)} is already listed at"
            warning += f" {kept.where}" + (f" ({kept.position})" if kept.position else "")
            warning += "; keeping the first"
            if entry.task.labels != kept.task.labels:
                warning += " and its labels (they differ)"
            if entry.position:
                warning += f" ({entry.position})"
            warn.problems.append(warning)
    return tuple(entry.task for entry in first.values())


def _expand(pattern: str) -> list[Path]:
    """The regular files a glob pattern matches now, sorted (symlinks to them included)."""
    return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
