"""Configuration: the YAML file and its task files, parsed once into frozen dataclasses.

Every problem is collected and reported together, one line each, starting with the YAML path it
concerns (`tasks[3].trans_no: …`); problems inside a task file start with that file's path. The
access key secret never appears in a message, a warning or a repr.

`load_config` reads files with a YAML loader that rejects duplicate keys, keeps dates as strings
and remembers how each number was written, so an unquoted `- 0123` watches the task "0123" rather
than the octal number 83. Data built in code (`parse_config`) has no such memory: an int trans_no is
taken as `str(int)`, so quote trans_nos with leading zeros there.
"""

from __future__ import annotations

import datetime
import difflib
import glob
import json
import math
import os
import re
import zoneinfo
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from exporter.metrics import RESERVED_LABELS
from exporter.protocol import (
    DEFAULT_ENDPOINT,
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    TRANS_NO_RE,
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
_MAX_SECRET_FILE_BYTES = 4096


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


def redact(text: str, secret: str) -> str:
    """The text with every occurrence of the secret (raw, JSON- or repr-escaped) as "<secret>"."""
    if not secret:
        return text
    forms = {secret, json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1]}
    for form in sorted(forms, key=len, reverse=True):
        if form:
            text = text.replace(form, "<secret>")
    return text


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as "500ms", "5m" or "1h30m" ("0" is zero)."""
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {_show(text)} ({_DURATION_HINT})")
    if text == "0":
        return 0.0
    match = _DURATION_RE.match(text)
    if not text or match is None:
        raise ValueError(f"invalid duration {_show(text)} ({_DURATION_HINT})")
    ms = sum(
        int(n) * unit
        for n, (_, unit) in zip(match.groups(), _UNIT_MS, strict=True)
        if n is not None
    )
    if ms > _MAX_DURATION_MS:
        raise ValueError(f"duration {_show(text)} is out of range")
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
            raise ValueError(f"invalid UTC offset {_show(text)}")
        offset = datetime.timedelta(hours=hours, minutes=minutes)
        return datetime.timezone(-offset if sign == "-" else offset)
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {_show(text)} (use an offset such as +08:00, Z, "
            "or an IANA name such as Asia/Shanghai)"
        ) from None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file and the task files it names."""
    file = Path(path)
    try:
        data = _read_yaml(file)
    except ConfigError as exc:  # a YAML error may quote the secret, unparsed so far
        env = os.environ if environ is None else environ
        secrets = [env.get(ENV_ACCESS_KEY_SECRET, "").strip(), *_inline_secrets(file)]
        raise ConfigError(_redact_all(exc.problems, [s for s in secrets if s])) from None
    if data is None:
        raise ConfigError([f"{file}: the configuration file is empty"])
    return parse_config(data, base_dir=file.absolute().parent, environ=environ, source=str(file))


def parse_config(
    data: object,
    *,
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    source: str = "",
) -> Config:
    """Validate already-loaded YAML data; relative paths are taken against base_dir."""
    env = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise ConfigError(
            [
                f"{source or 'configuration'}: the top level must be a mapping with keys such as "
                f"api and tasks, got {_show(data)}"
            ]
        )
    report = _Report([])
    top = _section(report, data, "", _TOP_KEYS)
    assert top is not None  # data is a mapping
    api, secrets = _parse_api(report, top.get("api"), base_dir, env)
    refresh = _parse_refresh(report, top.get("refresh"))
    scrape = _parse_scrape(report, top.get("scrape"))
    storage = _parse_storage(report, top.get("storage"), base_dir, secrets)
    max_tasks = _field(report, top, "max_tasks", 10_000, _int_between(1))

    groups = [_parse_tasks(report, top.get("tasks"), source or "configuration")]
    itself = Path(source).absolute() if source else None
    patterns = _parse_task_files(report, top.get("task_files"), base_dir, itself, groups)
    tasks, warnings = _merge(groups)
    if len(tasks) > max_tasks:
        report.add(
            "max_tasks",
            f"{len(tasks)} tasks are watched (after merging task files), "
            f"more than the limit of {max_tasks}",
        )

    if report.problems:
        raise ConfigError(_redact_all(report.problems, secrets))
    return Config(
        api=api,
        refresh=refresh,
        scrape=scrape,
        storage=storage,
        tasks=tasks,
        task_files=tuple(patterns),
        max_tasks=max_tasks,
        source=source,
        warnings=tuple(_redact_all(warnings, secrets)),
    )


# --- walking the YAML: a problems list and a path -------------------------------------------

_TOP_KEYS = ("api", "refresh", "scrape", "storage", "tasks", "task_files", "max_tasks")
_API_KEYS = (
    "endpoint",
    "access_key_id",
    "access_key_secret",
    "access_key_secret_file",
    "timeout",
    "max_concurrency",
    "rate_limit",
    "timezone",
    "max_response_bytes",
)
_T = TypeVar("_T")


@dataclass
class _Report:
    """Collects problems; `prefix` names the task file they were found in."""

    problems: list[str]
    prefix: str = ""

    def add(self, path: str, message: str) -> None:
        """Record one problem at a YAML path ("" for the whole document)."""
        where = f"{self.prefix}: {path}" if self.prefix and path else (self.prefix or path)
        self.problems.append(f"{where}: {message}")


def _join(path: str, key: object) -> str:
    """The YAML path of a mapping key below path."""
    name = key if isinstance(key, str) else _show(key)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        name = f"[{json.dumps(name, ensure_ascii=False)}]"
        return path + name if path else name
    return f"{path}.{name}" if path else name


def _show(value: object) -> str:
    """A value as a message quotes it: scalars as written, containers by their kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _SourceInt | _SourceFloat):
        return value.source
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _scalar_text(value: object) -> str | None:
    """A string, or a number as it was written; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, _SourceInt | _SourceFloat):
        return value.source
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _section(
    report: _Report, value: object, path: str, keys: Collection[str]
) -> dict[str, object] | None:
    """The set entries of a mapping with only known keys ({} if null, None if not a mapping)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        report.add(path, f"must be a mapping, got {_show(value)}")
        return None
    entries: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str) or key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            report.add(_join(path, key), f"unknown key{hint}")
        elif item is not None:  # a key left empty means "use the default"
            entries[key] = item
    return entries


def _field(
    report: _Report,
    section: Mapping[str, object],
    path: str,
    default: _T,
    convert: Callable[[object], _T],
) -> _T:
    """The entry at path (its last part is the key) converted, or the default if absent/invalid."""
    key = path.rpartition(".")[2]
    if key not in section:
        return default
    try:
        return convert(section[key])
    except ValueError as exc:
        report.add(path, str(exc))
        return default


def _duration(value: object) -> float:
    """A duration >= 0 (the int 0 is accepted as 0s)."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0.0
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {_show(value)} ({_DURATION_HINT})")
    return parse_duration(value)


def _positive_duration(value: object) -> float:
    """A duration > 0."""
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError(f"must be more than 0s, got {_show(value)}")
    return seconds


def _int_between(low: int, high: int | None = None) -> Callable[[object], int]:
    """A converter to an int in [low, high] (bool is not an int)."""
    wanted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be {wanted}, got {_show(value)}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be {wanted}, got {_show(value)}")
        return int(value)

    return convert


def _endpoint(value: object) -> str:
    """An http(s) base URL without query, fragment or credentials; trailing slash dropped."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be an http:// or https:// URL, got {_show(value)}")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain whitespace")
    url = urlsplit(value)
    if "@" in url.netloc:
        raise ValueError("must not contain a user name or password")  # nor echo them
    if url.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {_show(value)}")
    if not url.hostname:
        raise ValueError(f"has no host: {_show(value)}")
    try:
        url.port  # noqa: B018 -- urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError(f"has an invalid port: {_show(value)}") from None
    if url.query or url.fragment or value.endswith(("?", "#")):
        raise ValueError(f"must not have a query or fragment: {_show(value)}")
    return value.rstrip("/")


def _timezone(value: object) -> datetime.tzinfo:
    """A zone from a string (or from `+10:00`, which YAML 1.1 reads as a number)."""
    text = value if isinstance(value, str) else None
    if isinstance(value, _SourceInt):
        text = value.source
    if text is None:
        raise ValueError(
            f'must be a string such as "+08:00" or "Asia/Shanghai", got {_show(value)}'
        )
    return parse_timezone(text)


# --- sections --------------------------------------------------------------------------------


def _parse_api(
    report: _Report, value: object, base_dir: Path, env: Mapping[str, str]
) -> tuple[ApiConfig, list[str]]:
    """The api section, and every secret seen (for redacting messages)."""
    section = _section(report, value, "api", _API_KEYS)
    env_secret = env.get(ENV_ACCESS_KEY_SECRET, "").strip()
    secrets = [env_secret] if env_secret else []
    if section is None:
        return ApiConfig(access_key_id="", access_key_secret=""), secrets
    key_id = _access_key_id(report, section, env)
    secret = _access_key_secret(report, section, base_dir, env_secret, secrets)
    rate = _section(
        report, section.get("rate_limit"), "api.rate_limit", ("requests", "period", "probe_share")
    )
    rate = rate or {}
    api = ApiConfig(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=_field(report, section, "api.endpoint", DEFAULT_ENDPOINT, _endpoint),
        timeout=_field(report, section, "api.timeout", 10.0, _positive_duration),
        max_concurrency=_field(report, section, "api.max_concurrency", 4, _int_between(1, 64)),
        rate_limit=RateLimit(
            requests=_field(report, rate, "api.rate_limit.requests", 300, _int_between(1)),
            period=_field(report, rate, "api.rate_limit.period", 300.0, _positive_duration),
            probe_share=_field(
                report, rate, "api.rate_limit.probe_share", RateLimit.probe_share, _fraction
            ),
        ),
        timezone=_field(report, section, "api.timezone", ApiConfig.timezone, _timezone),
        max_response_bytes=_field(
            report, section, "api.max_response_bytes", 1_048_576, _int_between(1024)
        ),
    )
    return api, secrets


def _access_key_id(report: _Report, section: Mapping[str, object], env: Mapping[str, str]) -> str:
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
    report: _Report,
    section: Mapping[str, object],
    base_dir: Path,
    env_secret: str,
    secrets: list[str],
) -> str:
    """The secret: inline, else from access_key_secret_file, else from the environment."""
    where = "api.access_key_secret"
    inline = section.get("access_key_secret")
    inline_text = _scalar_text(inline)
    if inline_text:
        secrets.append(inline_text)
    if "access_key_secret" in section and "access_key_secret_file" in section:
        report.add(where, "set access_key_secret or access_key_secret_file, not both")
        return ""
    if "access_key_secret" in section:
        if not isinstance(inline, str) or not inline:
            report.add(where, "must be a non-empty string (quote it)")  # never echo it
            return ""
        if any(c.isspace() for c in inline):
            report.add(where, "must not contain whitespace")
        return inline
    if "access_key_secret_file" in section:
        secret = _read_secret_file(report, section["access_key_secret_file"], base_dir)
        if secret:
            secrets.append(secret)
        return secret
    if not env_secret:
        report.add(
            where,
            "missing: set access_key_secret or access_key_secret_file, "
            f"or the environment variable {ENV_ACCESS_KEY_SECRET}",
        )
    return env_secret


def _read_secret_file(
    report: _Report, value: object, base_dir: Path, where: str = "api.access_key_secret_file"
) -> str:
    """The stripped content of the secret file; problems name the file, never its content."""
    if not isinstance(value, str) or not value:
        report.add(where, f"must be a file path, got {_show(value)}")
        return ""
    path = base_dir / os.path.expanduser(value)
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        report.add(where, f"cannot read {path}: {exc.strerror or type(exc).__name__}")
        return ""
    if len(raw) > _MAX_SECRET_FILE_BYTES:
        report.add(
            where, f"{path} is larger than {_MAX_SECRET_FILE_BYTES} bytes; is it the secret?"
        )
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


def _parse_refresh(report: _Report, value: object) -> RefreshConfig:
    """The refresh section."""
    section = (
        _section(
            report,
            value,
            "refresh",
            ("processing", "successful", "failed", "error", "error_max", "final_share"),
        )
        or {}
    )
    error = _field(report, section, "refresh.error", 60.0, _positive_duration)
    # Without an explicit cap, raising `error` above the default cap raises the cap too.
    default_max = max(RefreshConfig.error_max, error)
    error_max = _field(report, section, "refresh.error_max", default_max, _positive_duration)
    if error_max < error:
        report.add(
            "refresh.error_max",
            f"must be at least refresh.error ({format_duration(error)}), "
            f"got {format_duration(error_max)}",
        )
    return RefreshConfig(
        processing=_field(report, section, "refresh.processing", 0.0, _duration),
        successful=_field(report, section, "refresh.successful", 3600.0, _duration),
        failed=_field(report, section, "refresh.failed", 21600.0, _duration),
        error=error,
        error_max=error_max,
        final_share=_field(
            report, section, "refresh.final_share", RefreshConfig.final_share, _fraction
        ),
    )


_REDIS_KEYS = ("url", "password_file", "key_prefix", "timeout")


def _parse_storage(
    report: _Report, value: object, base_dir: Path, secrets: list[str]
) -> StorageConfig:
    """The storage section: optionally a Redis shared by replicas."""
    section = _section(report, value, "storage", ("redis",)) or {}
    if "redis" not in section:
        return StorageConfig()
    redis = _section(report, section["redis"], "storage.redis", _REDIS_KEYS)
    if redis is None:
        return StorageConfig()
    if "url" not in redis:
        report.add("storage.redis.url", "is required (redis://host:port/db or rediss://…)")
        return StorageConfig()
    url = _field(report, redis, "storage.redis.url", "", _redis_url)
    password = urlsplit(url).password if url else None
    if password:
        secrets.append(password)
    password_file = None
    if "password_file" in redis:
        password_file = _read_secret_file(
            report, redis["password_file"], base_dir, "storage.redis.password_file"
        )
        if password_file:
            secrets.append(password_file)
    if not url:
        return StorageConfig()
    return StorageConfig(
        RedisConfig(
            url=url,
            password=password_file or None,
            key_prefix=_field(
                report, redis, "storage.redis.key_prefix", RedisConfig.key_prefix, _key_prefix
            ),
            timeout=_field(
                report, redis, "storage.redis.timeout", RedisConfig.timeout, _positive_duration
            ),
        )
    )


def _redis_url(value: object) -> str:
    """A redis:// or rediss:// URL (never echoed: it may hold a password)."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be a redis:// or rediss:// URL")
    url = urlsplit(value)
    if url.scheme not in ("redis", "rediss") or not url.hostname:
        raise ValueError("must be a redis:// or rediss:// URL with a host")
    try:
        url.port  # noqa: B018 -- urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError("has an invalid port") from None
    db = url.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError("the path must be a database number such as /0")
    return value


def _key_prefix(value: object) -> str:
    """A non-empty key prefix without spaces."""
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError(f"must be a non-empty string without spaces, got {_show(value)}")
    return value


def _fraction(value: object) -> float:
    """A number from 0 to 1 (a share of the budget)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number from 0 to 1, got {_show(value)}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"must be a number from 0 to 1, got {_show(value)}")
    return float(value)


def _parse_scrape(report: _Report, value: object) -> ScrapeConfig:
    """The scrape section."""
    section = _section(report, value, "scrape", ("timeout", "timeout_offset")) or {}
    timeout = _field(report, section, "scrape.timeout", 10.0, _positive_duration)
    offset = _field(report, section, "scrape.timeout_offset", 0.5, _duration)
    if offset >= timeout:
        report.add(
            "scrape.timeout_offset",
            f"must be less than scrape.timeout ({format_duration(timeout)}), "
            f"got {format_duration(offset)}",
        )
    return ScrapeConfig(timeout=timeout, timeout_offset=offset)


# --- tasks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """A task and where it was listed ("tasks.yaml: tasks[2]"), for merge warnings."""

    task: Task
    where: str


def _parse_tasks(report: _Report, value: object, origin: str) -> list[_Entry]:
    """The tasks of one file; duplicates inside it are problems."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        report.add("tasks", f"must be a list of trans_nos or tasks, got {_show(value)}")
        return []
    first_at: dict[str, str] = {}
    entries = []
    for index, item in enumerate(value):
        path = f"tasks[{index}]"
        task = _parse_task(report, item, path)
        if task is None:
            continue
        if task.trans_no in first_at:
            report.add(
                path,
                f"duplicate trans_no {_show(task.trans_no)} (first at {first_at[task.trans_no]})",
            )
            continue
        first_at[task.trans_no] = path
        entries.append(_Entry(task, f"{origin}: {path}"))
    return entries


def _parse_task(report: _Report, item: object, path: str) -> Task | None:
    """One task: a plain trans_no or a mapping {trans_no, labels}."""
    if not isinstance(item, Mapping):
        try:
            return Task(_trans_no(item))
        except ValueError as exc:
            report.add(path, str(exc))
            return None
    section = _section(report, item, path, ("trans_no", "labels")) or {}
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
            f"must be a trans_no string, got {_show(value)} "
            "(quote it: YAML reads yes, no, on and off as true/false)"
        )
    text = _scalar_text(value) if isinstance(value, int | float) else value
    if not isinstance(text, str):
        raise ValueError(f"must be a trans_no string, got {_show(value)}")
    if not TRANS_NO_RE.match(text):
        raise ValueError(f"invalid trans_no {_show(value)} (use 1 to 32 letters, digits, _ or -)")
    return text


def _parse_labels(report: _Report, value: object, path: str) -> tuple[tuple[str, str], ...] | None:
    """User labels sorted by name, or None if any is invalid (reported)."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        report.add(path, f"must be a mapping of label names to values, got {_show(value)}")
        return None
    labels: list[tuple[str, str]] = []
    valid = True
    for name, raw in value.items():
        where = _join(path, name)
        problem = None
        if not isinstance(name, str) or not LABEL_NAME_RE.match(name):
            problem = "invalid label name (use letters, digits and _, not starting with a digit)"
        elif name.startswith("__"):
            problem = "invalid label name (names starting with __ are reserved for Prometheus)"
        elif name in RESERVED_LABELS:
            problem = "shadows the exporter's own label"
        elif isinstance(raw, bool):
            labels.append((name, "true" if raw else "false"))
        elif (text := _scalar_text(raw)) is not None:
            labels.append((name, text))
        else:
            problem = f"label value must be a string, number or true/false, got {_show(raw)}"
        if problem:
            report.add(where, problem)
            valid = False
    return tuple(sorted(labels)) if valid else None


def _parse_task_files(
    report: _Report, value: object, base_dir: Path, itself: Path | None, groups: list[list[_Entry]]
) -> list[str]:
    """The absolute task_files patterns; appends each matched file's tasks to groups.

    A glob such as `*.yaml` next to the configuration file does not match that file itself.
    """
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        report.add(
            "task_files", f"must be a list of file paths or glob patterns, got {_show(value)}"
        )
        return []
    patterns: list[str] = []
    read: set[Path] = {itself} if itself else set()
    for index, item in enumerate(value):
        where = f"task_files[{index}]"
        if not isinstance(item, str) or not item:
            report.add(where, f"must be a file path or glob pattern, got {_show(item)}")
            continue
        text = os.path.expanduser(item)
        # The config folder is escaped so a "[" in its name is not taken for a glob.
        pattern = os.path.abspath(os.path.join(glob.escape(str(base_dir.absolute())), text))
        patterns.append(pattern)
        matches = [path for path in _expand(pattern) if path != itself]
        if not matches and not _GLOB_MAGIC_RE.search(text):
            literal = base_dir.absolute() / text
            reason = "is not a file" if literal.exists() else "file not found"
            report.add(where, f"{reason}: {literal}")
        for path in matches:
            if path not in read:
                read.add(path)
                groups.append(_read_task_file(report, path))
    return patterns


def _read_task_file(report: _Report, path: Path) -> list[_Entry]:
    """The tasks in one task file: a list of tasks or a mapping with the key `tasks`."""
    try:
        data = _read_yaml(path)
    except ConfigError as exc:
        report.problems.extend(exc.problems)
        return []
    here = _Report(report.problems, prefix=str(path))
    if data is None:
        # Also what a reader sees while the file is being rewritten: keep the old tasks.
        here.add("", "the file is empty (write [] for a file with no tasks)")
        return []
    if isinstance(data, Mapping):
        section = _section(here, data, "", ("tasks",)) or {}
        if not data:
            here.add("tasks", "missing")
        data = section.get("tasks")
    elif not isinstance(data, list):
        here.add("", f"must be a list of tasks or a mapping with key tasks, got {_show(data)}")
        return []
    return _parse_tasks(here, data, str(path))


def _merge(groups: list[list[_Entry]]) -> tuple[tuple[Task, ...], list[str]]:
    """Tasks across files, first occurrence first; duplicates become warnings."""
    first: dict[str, _Entry] = {}
    warnings = []
    for entries in groups:
        for entry in entries:
            kept = first.setdefault(entry.task.trans_no, entry)
            if kept is entry:
                continue
            warning = f"{entry.where}: trans_no {_show(entry.task.trans_no)} is already listed at"
            warning += f" {kept.where}; keeping the first"
            if entry.task.labels != kept.task.labels:
                warning += " and its labels (they differ)"
            warnings.append(warning)
    return tuple(entry.task for entry in first.values()), warnings


def _expand(pattern: str) -> list[Path]:
    """The regular files a glob pattern matches now, sorted."""
    return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


def _redact_all(lines: list[str], secrets: list[str]) -> list[str]:
    """Lines with every known secret redacted."""
    for secret in secrets:
        lines = [redact(line, secret) for line in lines]
    return lines


# --- YAML -------------------------------------------------------------------------------------


class _SourceInt(int):
    """An int read from YAML that remembers how it was written ("0123", "+10:00")."""

    source: str


class _SourceFloat(float):
    """A float read from YAML that remembers how it was written ("1.10")."""

    source: str


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, keeps dates as strings and remembers numbers."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """A mapping, refusing a key given twice (PyYAML would silently keep the last)."""
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {_show(key)}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_INLINE_SECRET_RE = re.compile(r"""access_key_secret\s*:\s*["']?([^"'\s#,}]+)""")


def _inline_secrets(file: Path) -> list[str]:
    """Best-effort: inline secrets of a file that does not parse, so errors can hide them."""
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return _INLINE_SECRET_RE.findall(text)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    number = _SourceInt(loader.construct_yaml_int(node))
    number.source = str(node.value)
    return number


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> float:
    number = _SourceFloat(loader.construct_yaml_float(node))
    number.source = str(node.value)
    return number


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> str:
    return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _read_yaml(path: Path) -> object:
    """A YAML file's data; unreadable files and syntax errors raise a one-line ConfigError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or type(exc).__name__}"]) from None
    try:
        return yaml.load(raw, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        # Only the marks and the problem: str(exc) would quote the line, which may hold a secret.
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError([f"{path}: invalid YAML: {first_line}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: invalid YAML: nested too deeply"]) from None
