"""Configuration loading: every rule of the YAML file and task files, as a user meets it."""

from __future__ import annotations

import datetime
import logging
import os
import textwrap
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.config import (
    DEFAULT_ENDPOINT,
    TRANS_NO_RE,
    ApiConfig,
    Config,
    ConfigError,
    RateLimit,
    RefreshConfig,
    ScrapeConfig,
    Task,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
    parse_timezone,
)
from exporter.redaction import Secrets

ENV = {"CLOUDVOD_ACCESS_KEY_ID": "AKENV", "CLOUDVOD_ACCESS_KEY_SECRET": "env-secret"}
EXAMPLE = Path(__file__).parent.parent / "config.example.yaml"


def write(path: Path, text: str) -> Path:
    """Write dedented text to path (creating folders) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    """Load a config.yaml with the given text from tmp_path."""
    return load_config(write(tmp_path / "config.yaml", text), environ=ENV if env is None else env)


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    """The problems a config.yaml with the given text reports (it must be invalid)."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# --- whole files ------------------------------------------------------------------------------


def test_example_config_parses() -> None:
    config = load_config(EXAMPLE, environ=ENV)
    assert config.api.access_key_id
    assert config.api.access_key_secret
    assert all(TRANS_NO_RE.fullmatch(task.trans_no) for task in config.tasks)


def test_the_example_file_shows_the_defaults() -> None:
    # Defaults are declared once, in the dataclasses; the example writes them out for the reader.
    config = load_config(EXAMPLE, environ=ENV)
    assert config.api == ApiConfig(access_key_id="AKENV", access_key_secret="env-secret")
    assert config.refresh == RefreshConfig()
    assert config.scrape == ScrapeConfig()
    assert config.max_tasks == Config.max_tasks


def test_product_example_parses(tmp_path: Path) -> None:
    write(tmp_path / "secret", "s3cr3t-in-a-file\n")
    config = load(
        tmp_path,
        f"""\
        api:
          endpoint: https://api.cloudv.haplat.net   # default
          access_key_id: AK123
          access_key_secret_file: {tmp_path / "secret"}
          timeout: 10s
          max_concurrency: 4
          rate_limit:
            requests: 300
            period: 5m
          timezone: "+08:00"
        refresh:
          processing: 0s
          successful: 1h
          failed: 6h
          error: 1m
        tasks:
          - 0251168101641000f4cf4da800000000
          - trans_no: 025d0ca201641000acce255700000000
            labels: {{campaign: spring}}
        task_files:
          - {tmp_path}/tasks.d/*.yaml
        """,
    )
    assert config.api == ApiConfig(access_key_id="AK123", access_key_secret="s3cr3t-in-a-file")
    assert config.refresh == RefreshConfig(0.0, 3600.0, 21600.0, 60.0, 1800.0)
    assert config.tasks == (
        Task("0251168101641000f4cf4da800000000"),
        Task("025d0ca201641000acce255700000000", (("campaign", "spring"),)),
    )
    assert config.task_files == (f"{tmp_path}/tasks.d/*.yaml",)
    assert config.task_file_paths() == ()
    assert config.source == str(tmp_path / "config.yaml")
    assert config.warnings == (
        f'task_files[0]: no file matches "{tmp_path}/tasks.d/*.yaml", so it adds no task'
        " (line 21, column 5)",
    )


def test_minimal_config_takes_every_default(tmp_path: Path) -> None:
    config = load(tmp_path, "tasks: [abc]\n")
    assert config == Config(
        api=ApiConfig(access_key_id="AKENV", access_key_secret="env-secret"),
        tasks=(Task("abc"),),
        source=str(tmp_path / "config.yaml"),
    )
    assert config.api.endpoint == DEFAULT_ENDPOINT
    assert config.api.rate_limit == RateLimit(300, 300.0)
    assert config.api.timezone.utcoffset(None) == datetime.timedelta(hours=8)
    assert config.scrape == ScrapeConfig(10.0, 0.5)
    assert config.max_tasks == 10_000


def test_every_key_is_read(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        api:
          endpoint: http://127.0.0.1:8080/vod/
          timeout: 2500ms
          max_concurrency: 64
          rate_limit: {requests: 60, period: 1m}
          timezone: UTC
          max_response_bytes: 1024
        refresh: {processing: 30s, successful: 2h, failed: 1d, error: 10s, error_max: 10m}
        scrape: {timeout: 15s, timeout_offset: 1s}
        max_tasks: 5
        """,
    )
    assert config.api.endpoint == "http://127.0.0.1:8080/vod"
    assert config.api.timeout == 2.5
    assert config.api.max_concurrency == 64
    assert config.api.rate_limit == RateLimit(60, 60.0)
    assert config.api.timezone is datetime.UTC
    assert config.api.max_response_bytes == 1024
    assert config.refresh == RefreshConfig(30.0, 7200.0, 86400.0, 10.0, 600.0)
    assert config.scrape == ScrapeConfig(15.0, 1.0)
    assert config.max_tasks == 5


def test_empty_keys_mean_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "api:\nrefresh:\nscrape:\ntasks:\ntask_files:\n")
    assert config.tasks == ()
    assert config.refresh == RefreshConfig()


def test_error_cap_follows_a_larger_error_interval(tmp_path: Path) -> None:
    assert load(tmp_path, "refresh: {error: 1h}\n").refresh.error_max == 3600.0
    assert load(tmp_path, "refresh: {error: 5s}\n").refresh.error_max == 1800.0


def test_parse_config_from_code(tmp_path: Path) -> None:
    config = parse_config(
        {"tasks": [123, {"trans_no": "b", "labels": {"z": 1, "a": True, "f": 1.5}}]},
        base_dir=tmp_path,
        environ=ENV,
    )
    assert config.tasks == (Task("123"), Task("b", (("a", "true"), ("f", "1.5"), ("z", "1"))))
    assert config.source == ""


def test_environ_none_means_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDVOD_ACCESS_KEY_ID", "from-os")
    monkeypatch.setenv("CLOUDVOD_ACCESS_KEY_SECRET", "os-secret")
    config = load_config(write(tmp_path / "c.yaml", "tasks: []\n"))
    assert config.api.access_key_id == "from-os"
    assert config.api.access_key_secret == "os-secret"


def test_config_is_immutable(tmp_path: Path) -> None:
    config = load(tmp_path, "tasks: [a]\n")
    with pytest.raises(AttributeError):
        config.max_tasks = 1  # type: ignore[misc]


# --- bad configs ------------------------------------------------------------------------------

BAD = [
    pytest.param("foo: 1\n", "foo: unknown key", id="unknown-top-key"),
    pytest.param("taks: [a]\n", "taks: unknown key (did you mean tasks?)", id="typo-hint"),
    pytest.param("api: {foo: 1}\n", "api.foo: unknown key", id="unknown-api-key"),
    pytest.param("api: [1]\n", "api: must be a mapping", id="api-not-mapping"),
    pytest.param("api: {endpoint: 'ftp://h'}\n", "api.endpoint: ", id="endpoint-scheme"),
    pytest.param("api: {endpoint: 'https://h/?a=1'}\n", "api.endpoint: ", id="endpoint-query"),
    pytest.param("api: {endpoint: 'https://h/#x'}\n", "api.endpoint: ", id="endpoint-fragment"),
    pytest.param("api: {endpoint: 'https://'}\n", "api.endpoint: has no host", id="endpoint-host"),
    pytest.param("api: {endpoint: 'https://h:99999'}\n", "api.endpoint: ", id="endpoint-port"),
    pytest.param("api: {endpoint: 'https://u:p@h'}\n", "api.endpoint: ", id="endpoint-userinfo"),
    pytest.param("api: {timeout: 0s}\n", "api.timeout: must be more than 0s", id="timeout-zero"),
    pytest.param("api: {timeout: 10}\n", "api.timeout: invalid duration 10", id="timeout-int"),
    pytest.param("api: {max_concurrency: 0}\n", "api.max_concurrency: ", id="concurrency-0"),
    pytest.param("api: {max_concurrency: 65}\n", "api.max_concurrency: ", id="concurrency-65"),
    pytest.param("api: {max_concurrency: true}\n", "api.max_concurrency: ", id="concurrency-bool"),
    pytest.param("api: {max_concurrency: 2.0}\n", "api.max_concurrency: ", id="concurrency-float"),
    pytest.param(
        "api: {rate_limit: {requests: 0}}\n", "api.rate_limit.requests: ", id="rate-requests"
    ),
    pytest.param(
        "api: {rate_limit: {period: 5 minutes}}\n",
        'api.rate_limit.period: invalid duration "5 minutes"',
        id="rate-period",
    ),
    pytest.param(
        "api: {rate_limit: {burst: 1}}\n", "api.rate_limit.burst: unknown key", id="rate-key"
    ),
    pytest.param("api: {rate_limit: 300}\n", "api.rate_limit: must be a mapping", id="rate-int"),
    pytest.param("api: {timezone: Mars/Olympus}\n", "api.timezone: unknown", id="tz-unknown"),
    pytest.param("api: {timezone: '+25:00'}\n", "api.timezone: ", id="tz-offset"),
    pytest.param("api: {timezone: 8}\n", "api.timezone: ", id="tz-int"),
    pytest.param("api: {max_response_bytes: 100}\n", "api.max_response_bytes: ", id="max-bytes"),
    pytest.param("api: {access_key_id: ''}\n", "api.access_key_id: ", id="id-empty"),
    pytest.param("api: {access_key_id: [a]}\n", "api.access_key_id: ", id="id-list"),
    pytest.param("api: {access_key_secret: 12345}\n", "api.access_key_secret: ", id="secret-int"),
    pytest.param(
        "refresh: {failed: 6 hours}\n",
        'refresh.failed: invalid duration "6 hours" (use Prometheus syntax such as 30s, 5m, 1h30m)',
        id="duration-words",
    ),
    pytest.param("refresh: {processing: -1s}\n", "refresh.processing: ", id="duration-negative"),
    pytest.param("refresh: {successful: 1.5h}\n", "refresh.successful: ", id="duration-fraction"),
    pytest.param("refresh: {failed: 3600}\n", "refresh.failed: invalid duration", id="seconds-int"),
    pytest.param("refresh: {error: 0s}\n", "refresh.error: must be more than 0s", id="error-zero"),
    pytest.param(
        "refresh: {error: 10m, error_max: 5m}\n",
        "refresh.error_max: must be at least refresh.error (10m), got 5m",
        id="error-max-below-error",
    ),
    pytest.param("refresh: {successfull: 1h}\n", "refresh.successfull: unknown", id="refresh-key"),
    pytest.param("scrape: {timeout: 0s}\n", "scrape.timeout: ", id="scrape-timeout"),
    pytest.param(
        "scrape: {timeout: 1s, timeout_offset: 1s}\n",
        "scrape.timeout_offset: must be less than scrape.timeout (1s), got 1s",
        id="offset-not-below-timeout",
    ),
    pytest.param("scrape: {timeout_offset: 1.5}\n", "scrape.timeout_offset: ", id="offset-float"),
    pytest.param("tasks: abc\n", "tasks: must be a list", id="tasks-string"),
    pytest.param("tasks: [a b]\n", 'tasks[0]: invalid trans_no "a b"', id="trans-no-space"),
    pytest.param(f"tasks: [ok, {'x' * 33}]\n", "tasks[1]: invalid trans_no", id="trans-no-long"),
    pytest.param("tasks: [a, '']\n", "tasks[1]: invalid trans_no", id="trans-no-empty"),
    pytest.param("tasks: [a.b]\n", "tasks[0]: invalid trans_no", id="trans-no-dot"),
    pytest.param("tasks: [1.5]\n", "tasks[0]: invalid trans_no 1.5", id="trans-no-float"),
    pytest.param("tasks: [yes]\n", "tasks[0]: must be a trans_no string, got true", id="bool"),
    pytest.param("tasks: [[a]]\n", "tasks[0]: must be a trans_no string", id="trans-no-list"),
    pytest.param("tasks:\n  -\n", "tasks[0]: must be a trans_no string, got null", id="null"),
    pytest.param("tasks: [{labels: {a: b}}]\n", "tasks[0].trans_no: missing", id="no-trans-no"),
    pytest.param(
        "tasks: [{trans_no: a, label: {}}]\n",
        "tasks[0].label: unknown key (did you mean labels?)",
        id="task-key",
    ),
    pytest.param(
        "tasks: [a, {trans_no: 'a b'}]\n", "tasks[1].trans_no: invalid", id="mapping-trans-no"
    ),
    pytest.param(
        "tasks: [{trans_no: a, labels: [x]}]\n", "tasks[0].labels: must be a mapping", id="labels"
    ),
    pytest.param(
        "tasks: [{trans_no: a, labels: {__x: 1}}]\n",
        "tasks[0].labels.__x: invalid label name",
        id="label-dunder",
    ),
    pytest.param(
        "tasks: [{trans_no: a, labels: {1a: x}}]\n",
        "tasks[0].labels.1a: invalid label name",
        id="label-digit",
    ),
    pytest.param(
        "tasks: [{trans_no: a, labels: {a.b: x}}]\n",
        'tasks[0].labels["a.b"]: invalid label name',
        id="label-dot",
    ),
    pytest.param(
        "tasks: [{trans_no: a, labels: {job: x}}]\n",
        "tasks[0].labels.job: shadows the exporter's own label",
        id="label-job",
    ),
    pytest.param(
        "tasks: [{trans_no: a, labels: {status: x}}]\n",
        "tasks[0].labels.status: shadows the exporter's own label",
        id="label-status",
    ),
    pytest.param(
        "tasks: [{trans_no: a, labels: {trans_no: x}}]\n",
        "tasks[0].labels.trans_no: shadows the exporter's own label",
        id="label-trans-no",
    ),
    pytest.param(
        "tasks: [{trans_no: a, labels: {x: [1]}}]\n",
        "tasks[0].labels.x: label value must be a string, number or true/false, got a list",
        id="label-list",
    ),
    pytest.param(
        "tasks: [{trans_no: a, labels: {x: null}}]\n",
        "tasks[0].labels.x: label value must be",
        id="label-null",
    ),
    pytest.param(
        "tasks: [a, b, a]\n",
        'tasks[2]: duplicate trans_no "a" (first at tasks[0], line 1, column 9)'
        " (line 1, column 15)",
        id="dup",
    ),
    pytest.param(
        "tasks: [a, {trans_no: a}]\n", 'tasks[1]: duplicate trans_no "a"', id="dup-mapping"
    ),
    pytest.param("task_files: x.yaml\n", "task_files: must be a list", id="task-files-str"),
    pytest.param("task_files: [missing.yaml]\n", "task_files[0]: file not found", id="no-file"),
    pytest.param("task_files: [1]\n", "task_files[0]: must be a file path", id="task-file-int"),
    pytest.param("task_files: [.]\n", "task_files[0]: is not a regular file", id="task-file-dir"),
    pytest.param("max_tasks: 0\n", "max_tasks: must be an integer >= 1, got 0", id="max-tasks-0"),
    pytest.param("max_tasks: many\n", "max_tasks: ", id="max-tasks-str"),
    pytest.param("max_tasks: 1\ntasks: [a, b]\n", "max_tasks: 2 tasks", id="too-many-tasks"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_config_names_the_path(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        api:
          endpoint: ftp://example.com
          max_concurrency: 0
          colour: blue
        refresh:
          failed: 6 hours
        scrape:
          timeout: 0s
        tasks:
          - good
          - "bad one"
          - trans_no: x
            labels: {instance: a}
        task_files: [nowhere.yaml]
        max_tasks: 0
        """,
        env={},
    )
    prefixes = [line.split(": ", 1)[0] for line in found]
    assert sorted(prefixes) == sorted(
        [
            "api.colour",
            "api.access_key_id",
            "api.access_key_secret",
            "api.endpoint",
            "api.max_concurrency",
            "refresh.failed",
            "scrape.timeout",
            "tasks[1]",
            "tasks[2].labels.instance",
            "task_files[0]",
            "max_tasks",
        ]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "the configuration file is empty", id="empty"),
        pytest.param("# only a comment\n", "the configuration file is empty", id="comment"),
        pytest.param("- a\n- b\n", "the top level must be a mapping", id="list"),
        pytest.param("just text\n", "the top level must be a mapping", id="scalar"),
    ],
)
def test_empty_or_non_mapping_file_is_one_clear_error(
    tmp_path: Path, text: str, expected: str
) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0] == f"{tmp_path / 'config.yaml'}: {expected}" or found[0].startswith(
        f"{tmp_path / 'config.yaml'}: {expected}"
    )


def test_parse_config_rejects_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^configuration: the top level must be a mapping"):
        parse_config(["a"], base_dir=tmp_path, environ=ENV)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    found = problems(tmp_path, "api:\n  timeout: 10s\n tasks: [a\n")
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'config.yaml'}:3:")
    assert "invalid YAML" in found[0]
    assert "Traceback" not in found[0]


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    found = problems(tmp_path, "tasks: [a]\nrefresh: {}\ntasks: [b]\n")
    assert found == ["tasks: duplicate key (first at line 1, column 1) (line 3, column 1)"]


def test_every_duplicate_key_is_reported_with_the_other_problems(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        api:
          timeout: 1s
          timeout: 2s
          max_concurrency: 0
        tasks:
          - {trans_no: a, labels: {x: 1, x: 2}}
        """,
    )
    assert found == [
        "api.timeout: duplicate key (first at line 2, column 3) (line 3, column 3)",
        "tasks[0].labels.x: duplicate key (first at line 6, column 28) (line 6, column 34)",
        "api.max_concurrency: must be an integer from 1 to 64, got 0 (line 4, column 3)",
    ]


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        tasks:
          - &base {trans_no: a, labels: {team: x}}
          - <<: *base
            trans_no: b
        """,
    )
    assert config.tasks == (Task("a", (("team", "x"),)), Task("b", (("team", "x"),)))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml", environ=ENV)
    assert caught.value.problems == [
        f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"
    ]


# --- YAML scalars -----------------------------------------------------------------------------


def test_numbers_are_taken_as_written(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        tasks:
          - 0123            # YAML 1.1 octal: 83 without the loader's help
          - 1_000
          - 42
          - trans_no: 007
            labels: {release: 1.10, build: 0x1F, flag: yes, day: 2024-05-01, n: 5}
        """,
    )
    assert [task.trans_no for task in config.tasks] == ["0123", "1_000", "42", "007"]
    assert dict(config.tasks[3].labels) == {
        "release": "1.10",
        "build": "0x1F",
        "flag": "true",
        "day": "2024-05-01",
        "n": "5",
    }
    assert all(type(value) is str for _, value in config.tasks[3].labels)
    assert type(config.max_tasks) is int


def test_plain_ints_are_stringified_in_code(tmp_path: Path) -> None:
    config = parse_config({"tasks": [83, {"trans_no": 7}]}, base_dir=tmp_path, environ=ENV)
    assert [task.trans_no for task in config.tasks] == ["83", "7"]


def test_labels_are_sorted_by_name(tmp_path: Path) -> None:
    config = load(tmp_path, "tasks: [{trans_no: a, labels: {zone: z, app: x, mid: y}}]\n")
    assert config.tasks[0].labels == (("app", "x"), ("mid", "y"), ("zone", "z"))


# --- credentials ------------------------------------------------------------------------------


def test_credentials_from_the_file_win_over_env(tmp_path: Path) -> None:
    config = load(tmp_path, "api: {access_key_id: AKFILE, access_key_secret: file-secret}\n")
    assert config.api.access_key_id == "AKFILE"
    assert config.api.access_key_secret == "file-secret"


def test_credentials_fall_back_to_env(tmp_path: Path) -> None:
    config = load(tmp_path, "api: {access_key_id: AKFILE}\n")
    assert config.api.access_key_id == "AKFILE"
    assert config.api.access_key_secret == "env-secret"
    config = load(tmp_path, "api:\n  access_key_secret:\n", env={**ENV, "X": "y"})
    assert config.api.access_key_id == "AKENV"
    assert config.api.access_key_secret == "env-secret"


def test_missing_credentials_name_the_env_vars(tmp_path: Path) -> None:
    found = problems(tmp_path, "tasks: [a]\n", env={"CLOUDVOD_ACCESS_KEY_ID": ""})
    assert len(found) == 2
    assert found[0].startswith("api.access_key_id: missing")
    assert "CLOUDVOD_ACCESS_KEY_ID" in found[0]
    assert found[1].startswith("api.access_key_secret: missing")
    assert "CLOUDVOD_ACCESS_KEY_SECRET" in found[1]
    assert "access_key_secret_file" in found[1]


def test_secret_file_relative_to_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "conf" / "secrets" / "ak", "from-file \n\n")
    write(tmp_path / "conf" / "config.yaml", "api: {access_key_secret_file: secrets/ak}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/config.yaml", environ=ENV)
    assert config.api.access_key_secret == "from-file"
    assert config.api.access_key_id == "AKENV"


def test_secret_file_absolute_path(tmp_path: Path) -> None:
    secret = write(tmp_path / "elsewhere" / "ak", "\ufeffabs-secret\r\n")
    config = load(tmp_path / "cfg", f"api: {{access_key_secret_file: {secret}}}\n")
    assert config.api.access_key_secret == "abs-secret"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "cannot read {path}: No such file or directory", id="missing"),
        pytest.param("", "{path} is empty", id="empty"),
        pytest.param(" \n\n", "{path} is empty", id="blank"),
        pytest.param(
            "line-one-secret\nline-two\n",
            "{path} must hold the secret alone, on one line",
            id="lines",
        ),
        pytest.param("x" * 5000, "cannot read {path}: is larger than 4096 bytes", id="huge"),
        pytest.param("short\n", "the secret in the file is shorter than 8 characters", id="short"),
        pytest.param(b"\xff\xfe\xfa-secret", "{path} is not UTF-8 text", id="binary"),
    ],
)
def test_bad_secret_file_names_the_path_not_the_content(
    tmp_path: Path, content: str | bytes | None, expected: str
) -> None:
    path = tmp_path / "ak"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    found = problems(tmp_path, "api: {access_key_secret_file: ak}\n", env={})
    secret_lines = [line for line in found if line.startswith("api.access_key_secret_file: ")]
    assert secret_lines == [
        f"api.access_key_secret_file: {expected.format(path=path)}"
        + (", so it cannot be a real secret (a placeholder?)" if "shorter" in expected else "")
        + " (line 1, column 7)"
    ]
    for word in ("line-one-secret", "line-two", "xxxxx", "-secret"):
        assert word not in str(found)


def test_secret_file_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "ak").mkdir()
    found = problems(tmp_path, "api: {access_key_secret_file: ak}\n")
    assert found == [
        f"api.access_key_secret_file: cannot read {tmp_path / 'ak'}: is a directory"
        " (line 1, column 7)"
    ]


def test_secret_and_secret_file_together_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "ak", "x\n")
    found = problems(
        tmp_path, "api: {access_key_secret: inline-secret, access_key_secret_file: ak}\n"
    )
    assert found == [
        "api.access_key_secret: set access_key_secret or access_key_secret_file, not both"
        " (line 1, column 7)"
    ]


# --- task files -------------------------------------------------------------------------------


def test_task_files_list_and_mapping_forms(tmp_path: Path) -> None:
    write(tmp_path / "tasks.d" / "a.yaml", "- t1\n- trans_no: t2\n  labels: {team: video}\n")
    write(tmp_path / "tasks.d" / "b.yaml", "tasks:\n  - t3\n")
    write(tmp_path / "tasks.d" / "ignored.txt", "- nope\n")
    config = load(tmp_path, "tasks: [t0]\ntask_files: ['tasks.d/*.yaml']\n")
    assert config.tasks == (
        Task("t0"),
        Task("t1"),
        Task("t2", (("team", "video"),)),
        Task("t3"),
    )
    assert config.task_files == (str(tmp_path / "tasks.d" / "*.yaml"),)
    assert config.task_file_paths() == (tmp_path / "tasks.d/a.yaml", tmp_path / "tasks.d/b.yaml")
    assert config.warnings == ()


def test_task_file_paths_follow_the_disk(tmp_path: Path) -> None:
    config = load(tmp_path, "task_files: ['tasks.d/**/*.yaml', '/nowhere/*.yaml']\n")
    assert config.task_file_paths() == ()
    write(tmp_path / "tasks.d" / "deep" / "x.yaml", "[]\n")
    write(tmp_path / "tasks.d" / "y.yaml", "[]\n")
    assert config.task_file_paths() == (
        tmp_path / "tasks.d/deep/x.yaml",
        tmp_path / "tasks.d/y.yaml",
    )


def test_literal_task_file_relative_to_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "etc" / "more.yaml", "[m1]\n")
    write(tmp_path / "etc" / "config.yaml", "task_files: [more.yaml]\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/config.yaml", environ=ENV)
    assert config.tasks == (Task("m1"),)
    assert config.task_file_paths() == (tmp_path / "etc" / "more.yaml",)


def test_config_folder_with_glob_characters(tmp_path: Path) -> None:
    folder = tmp_path / "[prod]"
    write(folder / "t.yaml", "[p1]\n")
    config = load(folder, "task_files: ['*.yaml', t.yaml]\n")
    assert config.tasks == (Task("p1"),)


def test_duplicates_across_files_are_merged_with_a_warning(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", "- shared\n- trans_no: labelled\n  labels: {team: a}\n")
    second = write(
        tmp_path / "b.yaml",
        "tasks:\n  - x\n  - shared\n  - {trans_no: labelled, labels: {team: b}}\n",
    )
    config = load(tmp_path, "tasks: [shared]\ntask_files: [a.yaml, '*.yaml']\n")
    config_path = tmp_path / "config.yaml"
    assert config.tasks == (Task("shared"), Task("labelled", (("team", "a"),)), Task("x"))
    assert config.warnings == (
        f'{first}: tasks[0]: trans_no "shared" is already listed at {config_path}: tasks[0]'
        " (line 1, column 9); keeping the first (line 1, column 3)",
        f'{second}: tasks[1]: trans_no "shared" is already listed at {config_path}: tasks[0]'
        " (line 1, column 9); keeping the first (line 3, column 5)",
        f'{second}: tasks[2]: trans_no "labelled" is already listed at {first}: tasks[1]'
        " (line 2, column 3); keeping the first and its labels (they differ) (line 4, column 5)",
    )


def test_duplicate_inside_a_task_file_is_an_error(tmp_path: Path) -> None:
    tasks = write(tmp_path / "t.yaml", "- a\n- b\n- a\n")
    found = problems(tmp_path, "task_files: [t.yaml]\n")
    assert found == [
        f'{tasks}: tasks[2]: duplicate trans_no "a" (first at tasks[0], line 1, column 3)'
        " (line 3, column 3)"
    ]


def test_missing_literal_task_file_is_an_error_but_empty_glob_a_warning(tmp_path: Path) -> None:
    found = problems(tmp_path, "task_files: [gone.yaml, 'none/*.yaml', 'x?.yaml']\n")
    assert found == [f"task_files[0]: file not found: {tmp_path / 'gone.yaml'} (line 1, column 14)"]
    config = load(tmp_path, "tasks: [a]\ntask_files:\n  - 'none/*.yaml'\n  - 'x?.yaml'\n")
    assert config.tasks == (Task("a"),)
    assert config.warnings == (
        f'task_files[0]: no file matches "{tmp_path}/none/*.yaml", so it adds no task'
        " (line 3, column 5)",
        f'task_files[1]: no file matches "{tmp_path}/x?.yaml", so it adds no task'
        " (line 4, column 5)",
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("- a\n- b\n- {trans_no: 'c d'}\n", "tasks[2].trans_no: invalid", id="item"),
        pytest.param("tasks: [a, b, 'c d']\n", "tasks[2]: invalid trans_no", id="mapping-form"),
        pytest.param("tasks: [a]\nextra: 1\n", "extra: unknown key", id="unknown-key"),
        pytest.param("task: [a]\n", "task: unknown key (did you mean tasks?)", id="typo"),
        pytest.param("{}\n", "tasks: missing", id="no-tasks-key"),
        pytest.param("tasks: a\n", "tasks: must be a list", id="tasks-str"),
        pytest.param("just-a-string\n", "must be a list of tasks or a mapping", id="scalar"),
        pytest.param("", "the file is empty (write [] for a file with no tasks)", id="empty"),
        pytest.param("- [a\n", "invalid YAML", id="syntax"),
        pytest.param(
            "- {trans_no: a, labels: {job: x}}\n",
            "tasks[0].labels.job: shadows the exporter's own label",
            id="reserved-label",
        ),
    ],
)
def test_task_file_problems_start_with_the_file(
    tmp_path: Path, content: str, expected: str
) -> None:
    tasks = write(tmp_path / "tasks.d" / "t.yaml", content)
    found = problems(tmp_path, "task_files: ['tasks.d/*.yaml']\n")
    assert len(found) == 1, found
    assert found[0].startswith(f"{tasks}"), found
    assert expected in found[0], found


def test_task_file_syntax_error_has_position(tmp_path: Path) -> None:
    tasks = write(tmp_path / "t.yaml", "- a\n- b: [\n")
    found = problems(tmp_path, "task_files: [t.yaml]\n")
    assert len(found) == 1
    assert found[0].startswith(f"{tasks}:3:1: invalid YAML: ")


def test_problems_across_config_and_task_files_come_together(tmp_path: Path) -> None:
    one = write(tmp_path / "one.yaml", "['bad 1']\n")
    two = write(tmp_path / "two.yaml", "tasks: ['bad 2']\n")
    found = problems(tmp_path, "tasks: ['bad 0']\ntask_files: ['*.yaml']\nscrape: {x: 1}\n")
    assert [line.split(" (")[0] for line in found] == [
        "scrape.x: unknown key",
        'tasks[0]: invalid trans_no "bad 0"',
        f'{one}: tasks[0]: invalid trans_no "bad 1"',
        f'{two}: tasks[0]: invalid trans_no "bad 2"',
    ]


def test_a_file_matched_twice_is_read_once(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", "[a, b]\n")
    config = load(tmp_path, "task_files: [t.yaml, '*.yaml', t.yaml]\n")
    assert config.tasks == (Task("a"), Task("b"))
    assert config.warnings == ()


# --- max_tasks --------------------------------------------------------------------------------


def test_max_tasks_counts_tasks_after_merging(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", "[a, b, c]\n")
    config = load(tmp_path, "max_tasks: 3\ntasks: [a, b]\ntask_files: [t.yaml]\n")
    assert len(config.tasks) == 3
    found = problems(tmp_path, "max_tasks: 2\ntasks: [a, b]\ntask_files: [t.yaml]\n")
    assert found == [
        "max_tasks: 3 tasks are watched (after merging task files), more than the limit of 2"
        " (line 1, column 1)"
    ]


@pytest.mark.parametrize("value", ["0", "-1", "true", "1.0", "'10'", "[]"])
def test_max_tasks_must_be_a_positive_int(tmp_path: Path, value: str) -> None:
    found = problems(tmp_path, f"max_tasks: {value}\n")
    assert len(found) == 1
    assert found[0].startswith("max_tasks: must be an integer >= 1, got ")


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("0ms", 0.0),
        ("1ms", 0.001),
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h0m", 3600.0),
        ("90s", 90.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1y", 365 * 86400.0),
        ("1y2w3d4h5m6s7ms", 365 * 86400 + 14 * 86400 + 3 * 86400 + 4 * 3600 + 5 * 60 + 6.007),
        ("05m", 300.0),
    ],
)
def test_parse_duration_good(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "10",
        "1.5h",
        "5 m",
        " 5m",
        "5m ",
        "-5m",
        "+5m",
        "1m1h",
        "1h1h",
        "5mm",
        "ms",
        "5M",
        "10sec",
        "1h 30m",
        "1e3s",
        "\u0665s",  # an Arabic-Indic digit
        "99999999999999999999y",
    ],
)
def test_parse_duration_bad(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0001, "0s"),
        (0.5, "500ms"),
        (1, "1s"),
        (10.25, "10s250ms"),
        (300, "5m"),
        (5400, "1h30m"),
        (86400, "1d"),
        (14 * 86400, "2w"),
        (90 * 86400, "90d"),
        (365 * 86400, "1y"),
        (-60, "-1m"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_duration_rejects_infinity() -> None:
    with pytest.raises(ValueError):
        format_duration(float("inf"))


@given(st.integers(min_value=0, max_value=10**13))
def test_duration_round_trip(ms: int) -> None:
    assert parse_duration(format_duration(ms / 1000)) == ms / 1000


def test_duration_zero_int_is_accepted(tmp_path: Path) -> None:
    assert load(tmp_path, "refresh: {processing: 0}\n").refresh.processing == 0.0


# --- timezones --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("+08:00", datetime.timedelta(hours=8)),
        ("-05:30", -datetime.timedelta(hours=5, minutes=30)),
        ("+0545", datetime.timedelta(hours=5, minutes=45)),
        ("+00:00", datetime.timedelta(0)),
        ("Z", datetime.timedelta(0)),
        ("UTC", datetime.timedelta(0)),
    ],
)
def test_parse_timezone_offsets(text: str, offset: datetime.timedelta) -> None:
    assert parse_timezone(text).utcoffset(None) == offset


def test_parse_timezone_iana() -> None:
    zone = parse_timezone("Asia/Shanghai")
    assert zone == zoneinfo.ZoneInfo("Asia/Shanghai")
    assert datetime.datetime(2024, 1, 1, tzinfo=zone).utcoffset() == datetime.timedelta(hours=8)


@pytest.mark.parametrize(
    "text", ["Mars/Olympus", "+24:00", "+08:60", "8", "+8", "", "../etc/passwd", "/etc/localtime"]
)
def test_parse_timezone_bad(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timezone(text)


def test_unquoted_offset_in_yaml(tmp_path: Path) -> None:
    # YAML 1.1 reads +10:00 as the sexagesimal number 600; the loader keeps what was written.
    config = load(tmp_path, "api: {timezone: +10:00}\n")
    assert config.api.timezone.utcoffset(None) == datetime.timedelta(hours=10)
    config = load(tmp_path, "api: {timezone: America/New_York}\n")
    assert config.api.timezone == zoneinfo.ZoneInfo("America/New_York")


# --- endpoint ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("https://api.cloudv.haplat.net/", "https://api.cloudv.haplat.net"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:9000/prefix/", "http://[::1]:9000/prefix"),
    ],
)
def test_endpoint_is_normalised(tmp_path: Path, text: str, endpoint: str) -> None:
    assert load(tmp_path, f"api: {{endpoint: '{text}'}}\n").api.endpoint == endpoint


# --- secrets ----------------------------------------------------------------------------------

SECRET = "Zq9uX-SECRET-wv7Rk2"

TAGS = ["!!int", "!!float", "!!bool", "!!binary", "!!timestamp", "!!null", "!!seq", "!vault"]

LEAKY_CONFIGS = [
    # the secret is set, and something else is wrong
    f"api: {{access_key_secret: {SECRET}, timeout: soon}}\n",
    f"api: {{access_key_secret: {SECRET}, foo: 1}}\ntasks: ['bad one']\n",
    f"api: {{access_key_secret: {SECRET}, access_key_secret_file: ak}}\n",
    f"api: {{access_key_secret: '{SECRET} ', access_key_id: AK}}\n",
    f"api: {{access_key_secret: '{SECRET}\"quoted'}}\nrefresh: {{failed: x}}\n",
    # the secret pasted where it does not belong
    f"api: {{access_key_secret: {SECRET}}}\ntasks: [{SECRET}]\nmax_tasks: 0\n",
    f"api: {{access_key_secret: {SECRET}}}\ntasks: ['{SECRET}!']\n",
    f"api: {{access_key_secret: {SECRET}}}\ntasks: [{{trans_no: a, labels: {{'{SECRET}': 1}}}}]\n",
    f"api: {{access_key_secret: {SECRET}}}\ntasks: [{{trans_no: a, labels: {{a: [{SECRET}]}}}}]\n",
    f"api: {{access_key_secret: {SECRET}, {SECRET}: 1}}\n",
    f"api: {{access_key_secret: {SECRET}, endpoint: 'https://ak:{SECRET}@h'}}\n",
    f"api: {{access_key_secret: {SECRET}, endpoint: 'https://h/{SECRET}?x'}}\n",
    f"api: {{access_key_secret: {SECRET}, timezone: {SECRET}}}\n",
    f"api: {{access_key_secret: {SECRET}, access_key_id: {SECRET} x}}\n",
    f"api: {{access_key_secret: {SECRET}}}\nrefresh: {{failed: {SECRET}}}\n",
    f"api: {{access_key_secret: {SECRET}}}\ntask_files: [{SECRET}.yaml]\n",
    f"api: {{access_key_secret: {SECRET}}}\n{SECRET}: 1\n",
    # the secret in the wrong shape
    f"api: {{access_key_secret: [{SECRET}]}}\n",
    f"api: {{access_key_secret: {{{SECRET}: 1}}}}\n",
    f"api:\n  access_key_secret:\n    - {SECRET}\n    - {SECRET}\n",
    # YAML syntax errors on the secret's line
    f'api:\n  access_key_secret: "{SECRET}\n',
    f"api:\n  access_key_secret: {SECRET}: x\n",
    f"api:\n  access_key_secret: [{SECRET}\n",
    f"api:\n  access_key_secret: {SECRET}\n  access_key_secret: {SECRET}\n",
    f"api: {{access_key_secret: {SECRET}}}\n\t{SECRET}\n",
    # the secret under any YAML tag or type: never converted, never echoed
    *(f"api:\n  access_key_secret: {tag} {SECRET}\n" for tag in TAGS),
    *(f"api:\n  access_key_secret: {tag} {SECRET}\ntasks: ['{SECRET}!']\n" for tag in TAGS),
    f"api:\n  access_key_secret: !{SECRET} x\n",
    f"api:\n  access_key_secret: *{SECRET}\n",
    f"api:\n  access_key_secret: &{SECRET} x\n  timeout: *{SECRET}\n",
    f"api:\n  access_key_secret: {SECRET}\n  timeout: !!int {SECRET}\n",
    f"api:\n  access_key_secret: !!int {SECRET}\n  access_key_secret: !!float {SECRET}\n",
    f"api: {{access_key_secret: !!str {SECRET}}}\nstorage: {{redis: {{url: 'redis://:{SECRET}@h:99999'}}}}\n",
    f"storage: {{redis: {{url: 'redis://:{SECRET}@h/x'}}}}\n",
    f"storage: {{redis: {{url: 'redis://:{SECRET}@h/0', password: {SECRET}}}}}\n",
]


@pytest.mark.parametrize("text", LEAKY_CONFIGS)
@pytest.mark.parametrize("env_secret", [False, True])
def test_secret_never_leaks_into_errors(tmp_path: Path, text: str, env_secret: bool) -> None:
    env = {"CLOUDVOD_ACCESS_KEY_ID": "AK"}
    if env_secret:
        env["CLOUDVOD_ACCESS_KEY_SECRET"] = SECRET
    write(tmp_path / "ak", f"{SECRET}\n")
    try:
        config = load(tmp_path, text, env)
    except ConfigError as exc:
        assert SECRET not in str(exc)
        assert SECRET not in repr(exc)
        assert not any(SECRET in line for line in exc.problems)
    else:
        pytest.fail(f"accepted: {config!r}")


def test_secret_never_leaks_from_secret_file_errors(tmp_path: Path) -> None:
    write(tmp_path / "ak", f"{SECRET}\nsecond line\n")
    found = problems(tmp_path, "api: {access_key_secret_file: ak}\ntasks: ['x y']\n")
    assert SECRET not in "\n".join(found)


def test_secret_never_leaks_from_task_files(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", f"- {SECRET}!\n- [{SECRET}\n")
    write(tmp_path / "u.yaml", f"- {{trans_no: a, labels: {{x: [{SECRET}]}}}}\n- '{SECRET} '\n")
    found = problems(tmp_path, f"api: {{access_key_secret: {SECRET}}}\ntask_files: ['*.yaml']\n")
    assert found
    assert SECRET not in "\n".join(found)


@pytest.mark.parametrize(
    "text",
    [
        f"api: {{access_key_secret: {SECRET}}}\ntasks: [a]\n",
        "api: {access_key_secret_file: ak}\ntasks: [a]\n",
        "tasks: [a]\n",
    ],
)
def test_secret_never_in_config_repr(tmp_path: Path, text: str) -> None:
    write(tmp_path / "ak", f"{SECRET}\n")
    write(tmp_path / "t.yaml", "[a]\n")
    config = load(
        tmp_path, text + "task_files: [t.yaml]\n", {**ENV, "CLOUDVOD_ACCESS_KEY_SECRET": SECRET}
    )
    assert config.api.access_key_secret == SECRET
    for shown in (repr(config), str(config), repr(config.api), str(config.api), *config.warnings):
        assert SECRET not in shown
    assert config.warnings  # "a" is listed twice


def test_redact() -> None:
    secrets = Secrets([SECRET])
    assert secrets.redact(f"sig={SECRET}; again {SECRET}") == "sig=<secret>; again <secret>"
    assert Secrets([SECRET]).redact("nothing here") == "nothing here"
    assert Secrets([""]).redact("keep") == "keep"
    assert Secrets(['a"bcdefgh']).redact('{"k": "a\\"bcdefgh"}') == '{"k": "<secret>"}'
    assert Secrets(["a\\bcdefgh"]).redact("'a\\\\bcdefgh'") == "'<secret>'"


def test_config_error_keeps_problems() -> None:
    error = ConfigError(["a: one", "b: two"])
    assert error.problems == ["a: one", "b: two"]
    assert str(error) == "a: one\nb: two"


def test_trans_no_re() -> None:
    assert TRANS_NO_RE.match("a" * 32)
    assert not TRANS_NO_RE.match("a" * 33)
    assert not TRANS_NO_RE.match("abc\n")
    assert TRANS_NO_RE.fullmatch("A_b-9")


# --- secrets too weak to be real --------------------------------------------------------------

WEAK = "is shorter than 8 characters, so it cannot be a real secret (a placeholder?)"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        pytest.param(
            "api: {access_key_secret: x}\n",
            ENV,
            f"api.access_key_secret: {WEAK} (line 1, column 7)",
            id="inline-one-letter",
        ),
        pytest.param(
            "api: {access_key_secret: '1234567'}\n",
            ENV,
            f"api.access_key_secret: {WEAK} (line 1, column 7)",
            id="inline-seven",
        ),
        pytest.param(
            "tasks: [a]\n",
            {**ENV, "CLOUDVOD_ACCESS_KEY_SECRET": "t"},
            f"api.access_key_secret: the secret in CLOUDVOD_ACCESS_KEY_SECRET {WEAK}",
            id="env",
        ),
        pytest.param(
            "api: {access_key_secret: processing}\n",
            ENV,
            "api.access_key_secret: is a word of the configuration itself, not a real secret"
            " (a placeholder?) (line 1, column 7)",
            id="vocabulary",
        ),
        pytest.param(
            "storage: {redis: {url: 'redis://:pw@redis:6379/0'}}\n",
            ENV,
            f"storage.redis.url: the password in the URL {WEAK} (line 1, column 19)",
            id="redis-url",
        ),
    ],
)
def test_a_secret_too_short_to_be_real_is_refused(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    assert problems(tmp_path, text, env) == [expected]


def test_a_one_letter_secret_does_not_mangle_other_messages(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "api: {timeout: soon}\ntasks: [t t]\n",
        {**ENV, "CLOUDVOD_ACCESS_KEY_SECRET": "t"},
    )
    assert found == [
        f"api.access_key_secret: the secret in CLOUDVOD_ACCESS_KEY_SECRET {WEAK}"
        " (line 1, column 1)",
        'api.timeout: invalid duration "soon" (use Prometheus syntax such as 30s, 5m, 1h30m)'
        " (line 1, column 7)",
        'tasks[0]: invalid trans_no "t t" (use 1 to 32 letters, digits, _ or -) (line 2, column 9)',
    ]


def test_the_minimum_is_exactly_eight_characters(tmp_path: Path) -> None:
    config = load(tmp_path, "api: {access_key_secret: '12345678'}\n")
    assert config.api.access_key_secret == "12345678"


# --- files that are not regular files ---------------------------------------------------------


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _link(path: Path, target: str) -> Path:
    path.symlink_to(target)
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(_fifo, "is a FIFO (named pipe), not a regular file", id="fifo"),
        pytest.param(
            lambda p: _link(p, "/dev/zero"), "is a character device, not a regular file", id="zero"
        ),
        pytest.param(lambda p: p.mkdir() or p, "is a directory", id="folder"),
    ],
)
def test_a_config_file_that_is_not_a_regular_file_is_one_line(
    tmp_path: Path, make: Any, reason: str
) -> None:
    path = make(tmp_path / "config.yaml")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert caught.value.problems == [f"{path}: cannot read: {reason}"]


def test_a_config_file_larger_than_16_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    with path.open("wb") as file:
        file.truncate(16 * 1024 * 1024 + 1)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert caught.value.problems == [f"{path}: cannot read: is larger than 16777216 bytes"]


def test_task_files_and_secret_files_that_are_not_regular_files(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "fifo.yaml")
    zero = _link(tmp_path / "zero.yaml", "/dev/zero")
    secret = _fifo(tmp_path / "ak")
    _fifo(tmp_path / "tasks.d-fifo.yaml")  # matched by the glob below: skipped, not read
    found = problems(
        tmp_path,
        "api: {access_key_secret_file: ak}\ntask_files: [fifo.yaml, zero.yaml, 'tasks.d-*.yaml']\n",
    )
    assert found == [
        f"api.access_key_secret_file: cannot read {secret}: is a FIFO (named pipe), not a"
        " regular file (line 1, column 7)",
        f"task_files[0]: is not a regular file: {fifo} (line 2, column 14)",
        f"task_files[1]: is not a regular file: {zero} (line 2, column 25)",
    ]


def test_a_task_file_replaced_by_a_fifo_after_globbing_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = write(tmp_path / "t.yaml", "[a]\n")
    config = load(tmp_path, "task_files: [t.yaml]\n")
    assert config.tasks == (Task("a"),)
    # The glob saw a regular file; by the time it is read it is a FIFO (a race with a writer).
    monkeypatch.setattr("exporter.config._expand", lambda pattern: [real])
    real.unlink()
    os.mkfifo(real)
    found = problems(tmp_path, "task_files: [t.yaml]\n")
    assert found == [f"{real}: cannot read: is a FIFO (named pipe), not a regular file"]


# --- every problem says where it is -----------------------------------------------------------


def test_every_path_named_problem_carries_its_line_and_column(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", "- ok\n- trans_no: 'bad one'\n")
    found = problems(
        tmp_path,
        """\
        api:
          endpoint: ftp://example.com
          rate_limit:
            requests: 0
            perod: 5m
        refresh:
          failed: 6 hours
        tasks:
          - good
          - "bad one"
          - trans_no: x
            labels: {instance: a}
        task_files: [t.yaml]
        max_tasks: 0
        """,
    )
    ends = [line[line.rindex(" (line") :] for line in found]
    assert sorted(
        line.split(":")[0] + end for line, end in zip(found, ends, strict=True)
    ) == sorted(
        path + end
        for path, end in [
            ("api.rate_limit.perod", " (line 5, column 5)"),
            ("api.endpoint", " (line 2, column 3)"),
            ("api.rate_limit.requests", " (line 4, column 5)"),
            ("refresh.failed", " (line 7, column 3)"),
            ("tasks[1]", " (line 10, column 5)"),
            ("tasks[2].labels.instance", " (line 12, column 14)"),
            (str(tmp_path / "t.yaml"), " (line 2, column 3)"),
            ("max_tasks", " (line 14, column 1)"),
        ]
    )
    assert any("perod: unknown key (did you mean period?)" in line for line in found)


# --- check-config: warnings do not make a file invalid ----------------------------------------


@pytest.fixture
def cli_main(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[str]], int]]:
    """exporter.cli.main with the test credentials; the root logger restored afterwards."""
    from exporter.cli import main

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield main
    root.handlers[:] = handlers
    root.setLevel(level)


def test_check_config_warns_about_patterns_that_match_nothing_and_exits_0(
    tmp_path: Path, cli_main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "config.yaml", "task_files: [/etc/cloudvod/nothing-here/*.yaml]\n")
    assert cli_main(["check-config", f"--config.file={path}"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: valid; 0 watched tasks")
    assert err.splitlines()[:2] == [
        'warning: task_files[0]: no file matches "/etc/cloudvod/nothing-here/*.yaml", so it adds'
        " no task (line 1, column 14)",
        "warning: no task is watched: tasks and task_files list none",
    ]


def test_check_config_warns_about_a_task_listed_twice_and_exits_0(
    tmp_path: Path, cli_main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    team = write(tmp_path / "tasks.d" / "team.yaml", "- a\n- b\n")
    path = write(tmp_path / "config.yaml", "tasks: [a]\ntask_files: ['tasks.d/*.yaml']\n")
    assert cli_main(["check-config", f"--config.file={path}"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: valid; 2 watched tasks")
    assert (
        f'warning: {team}: tasks[0]: trans_no "a" is already listed at {path}: tasks[0]'
        " (line 1, column 9); keeping the first (line 1, column 3)"
    ) in err.splitlines()
    # A duplicate inside one file is an error, not a warning.
    write(tmp_path / "config.yaml", "tasks: [a, a]\n")
    assert cli_main(["check-config", f"--config.file={path}"]) == 2
    assert 'tasks[1]: duplicate trans_no "a"' in capsys.readouterr().err
