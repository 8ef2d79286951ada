"""The shared YAML layer: safe file reading, the loader, positions and the problem report."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from exporter import redaction, yamlconf
from exporter.webconfig import WebConfigError, load_web_config
from exporter.yamlconf import (
    FileReadError,
    Position,
    Report,
    SourceFloat,
    SourceInt,
    Unconverted,
    YamlError,
    load_yaml,
    read_regular_file,
)

SECRET = "Sx9TOPSECRETq7Vb2mN4zz"


def write(tmp_path: Path, text: str, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_problem(tmp_path: Path, text: str) -> str:
    """The one problem a file with this text raises."""
    path = write(tmp_path, text)
    with pytest.raises(YamlError) as caught:
        load_yaml(path, secret_keys=("access_key_secret",))
    [problem] = caught.value.problems
    return problem


# --- reading files ---------------------------------------------------------------------------


def test_a_regular_file_and_a_symlink_to_one_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, "a: 1\n")
    (tmp_path / "link.yaml").symlink_to(path)
    assert read_regular_file(path, max_bytes=100) == b"a: 1\n"
    assert read_regular_file(tmp_path / "link.yaml", max_bytes=100) == b"a: 1\n"
    assert read_regular_file(path, max_bytes=5) == b"a: 1\n"  # exactly the limit


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(fifo, "is a FIFO (named pipe), not a regular file", id="fifo"),
        pytest.param(
            lambda tmp: _link(tmp, "/dev/zero"),
            "is a character device, not a regular file",
            id="dev-zero",
        ),
        pytest.param(
            lambda tmp: _link(tmp, "/dev/null"),
            "is a character device, not a regular file",
            id="dev-null",
        ),
        pytest.param(lambda tmp: _link(tmp, str(tmp)), "is a directory", id="symlink-to-folder"),
        pytest.param(lambda tmp: tmp, "is a directory", id="folder"),
        pytest.param(lambda tmp: tmp / "nope.yaml", "No such file or directory", id="missing"),
        pytest.param(
            lambda tmp: _link(tmp, str(tmp / "gone")), "No such file or directory", id="dangling"
        ),
        pytest.param(lambda tmp: write(tmp, "x" * 101), "is larger than 100 bytes", id="too-large"),
    ],
)
def test_anything_but_a_bounded_regular_file_is_refused_at_once(
    tmp_path: Path, make: object, reason: str
) -> None:
    assert callable(make)
    path = make(tmp_path)
    started = time.monotonic()
    with pytest.raises(FileReadError) as caught:
        read_regular_file(path, max_bytes=100)
    assert str(caught.value) == reason
    assert time.monotonic() - started < 2.0  # a FIFO without a writer does not block


def _link(tmp_path: Path, target: str) -> Path:
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    return link


def test_a_read_that_never_returns_gives_up_after_the_timeout(tmp_path: Path) -> None:
    stuck = threading.Event()

    def never_returns(path: str, max_bytes: int) -> bytes:
        stuck.wait(30)  # a hung network file system; released at the end of the test
        return b""

    started = time.monotonic()
    with pytest.raises(FileReadError, match=r"not read within 0\.2s"):
        read_regular_file(tmp_path / "x", max_bytes=10, timeout=0.2, read_file=never_returns)
    assert time.monotonic() - started < 2.0
    stuck.set()


def test_load_yaml_reports_a_fifo_as_one_line(tmp_path: Path) -> None:
    path = fifo(tmp_path)
    with pytest.raises(YamlError) as caught:
        load_yaml(path)
    assert caught.value.problems == [
        f"{path}: cannot read: is a FIFO (named pipe), not a regular file"
    ]


# --- syntax errors name the line of the mistake ------------------------------------------------

SYNTAX = [
    pytest.param(
        'api:\n  timeout: 10s\n  endpoint: "http://x\n  foo: 1\nrefresh:\n  failed: 1h\n'
        "tasks: [a]\n",
        "3:13: invalid YAML: while scanning a quoted scalar: found unexpected end of stream"
        " at line 8, column 1",
        id="unclosed-quote",
    ),
    pytest.param(
        "api:\n  timeout: 10s\n  max_concurrency: [1\nrefresh:\n  failed: 1h\n\n\ntasks: [a]\n",
        "3:20: invalid YAML: while parsing a flow sequence: expected ',' or ']', but got ':'"
        " at line 4, column 8",
        id="unclosed-bracket",
    ),
    pytest.param(
        "tasks:\n  - a\n  - {trans_no: b\n  - c\n  - d\n",
        "3:5: invalid YAML: while parsing a flow mapping: expected ',' or '}', but got"
        " '<stream end>' at line 6, column 1",
        id="unclosed-brace",
    ),
    pytest.param(
        "api:\n  timeout: 10s\n bad: 1\nrefresh:\n  failed: 1h\n",
        "3:2: invalid YAML: expected <block end>, but found '<block mapping start>'"
        " (while parsing a block mapping at line 1, column 1)",
        id="indentation",
    ),
    pytest.param(
        "a: b\nc\nd: e\n",
        "2:1: invalid YAML: while scanning a simple key: could not find expected ':'"
        " at line 3, column 1",
        id="key-without-colon",
    ),
    pytest.param(
        "api:\n  timeout: 10s\n\tendpoint: x\n",
        "3:1: invalid YAML: found character '\\t' that cannot start any token"
        " (while scanning for the next token)",
        id="tab",
    ),
    pytest.param(
        "a: 1\nb: 2\nc: d: e\n",
        "3:5: invalid YAML: mapping values are not allowed here",
        id="colon-in-value",
    ),
    pytest.param(
        "a: 1\nb: *nothing\n", "2:4: invalid YAML: found undefined alias 'nothing'", id="alias"
    ),
    pytest.param(
        "a: 1\n---\nb: 2\n",
        "2:1: invalid YAML: but found another document (expected a single document in the stream"
        " at line 1, column 1)",
        id="two-documents",
    ),
    pytest.param(
        "a: 1\nb: !!int x12\n",
        "2:4: invalid YAML: b: the value cannot be read as !!int",
        id="bad-int-tag",
    ),
    pytest.param(
        "a: 1\nb: !vault x12\n",
        "2:4: invalid YAML: b: could not determine a constructor for the tag '!vault'",
        id="unknown-tag",
    ),
    pytest.param(
        "a:\n  ? [x]\n  : 1\n",
        "2:5: invalid YAML: a: a mapping key must be a plain value",
        id="list-key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), SYNTAX)
def test_syntax_errors_name_the_line_and_column_of_the_mistake(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert load_problem(tmp_path, text) == f"{tmp_path / 'f.yaml'}:{expected}"


def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(b"a: 1\nb: 2\nc: \xff\n")
    with pytest.raises(YamlError) as caught:
        load_yaml(path)
    [problem] = caught.value.problems
    assert problem == f"{path}:3: invalid YAML: not utf-8 text (invalid start byte)"


# --- what the loader builds ------------------------------------------------------------------


def test_numbers_are_remembered_as_written_and_dates_stay_strings(tmp_path: Path) -> None:
    data = load_yaml(write(tmp_path, "a: 0123\nb: 1.10\nc: 2024-05-01\nd: +10:00\ne: 7\n")).data
    assert isinstance(data, dict)
    assert isinstance(data["a"], SourceInt) and (data["a"], data["a"].source) == (83, "0123")
    assert isinstance(data["b"], SourceFloat) and data["b"].source == "1.10"
    assert data["c"] == "2024-05-01"
    assert isinstance(data["d"], SourceInt) and data["d"].source == "+10:00"
    assert data["e"] == 7


def test_positions_of_every_path(tmp_path: Path) -> None:
    text = "api:\n  timeout: 1s\ntasks:\n  - a\n  - {trans_no: b, labels: {x.y: 1}}\n"
    document = load_yaml(write(tmp_path, text))
    assert dict(document.positions) == {
        "api": Position(1, 1),
        "api.timeout": Position(2, 3),
        "tasks": Position(3, 1),
        "tasks[0]": Position(4, 5),
        "tasks[1]": Position(5, 5),
        "tasks[1].trans_no": Position(5, 6),
        "tasks[1].labels": Position(5, 19),
        'tasks[1].labels["x.y"]': Position(5, 28),
    }


def test_duplicate_keys_are_problems_with_both_positions(tmp_path: Path) -> None:
    document = load_yaml(write(tmp_path, "a: 1\nb:\n  c: 1\n  c: 2\na: 3\n"))
    assert document.data == {"a": 1, "b": {"c": 1}}  # the first of each is kept
    assert document.report([]).problems == [
        "b.c: duplicate key (first at line 3, column 3) (line 4, column 3)",
        "a: duplicate key (first at line 1, column 1) (line 5, column 1)",
    ]


def test_merge_keys_are_not_duplicates_and_explicit_keys_win(tmp_path: Path) -> None:
    text = "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  <<: [*b, *o]\n  x: 9\n"
    document = load_yaml(write(tmp_path, text))
    assert document.problems == ()
    assert isinstance(document.data, dict)
    assert document.data["m"] == {"x": 9, "y": 2, "z": 4}


def test_nesting_is_bounded(tmp_path: Path) -> None:
    problem = load_problem(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply (more than 64 levels)" in problem
    problem = load_problem(tmp_path, "a: &x [*x]\n")  # a list that contains itself
    assert "nested too deeply" in problem
    assert len(problem) < 300


def test_alias_expansion_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlconf, "MAX_VALUES", 1000)
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for name, prev in zip("bcd", "abc", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")
    problem = load_problem(tmp_path, "\n".join(lines) + "\n")
    assert "aliases expand to more than 1000 values" in problem


# --- secret keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(SECRET, SECRET, id="plain"),
        pytest.param(f"'{SECRET}'", SECRET, id="quoted"),
        pytest.param("!!str 12345678", "12345678", id="str-tag"),
        pytest.param(f"!!int {SECRET}", Unconverted("a value tagged !!int"), id="int-tag"),
        pytest.param(f"!!float {SECRET}", Unconverted("a value tagged !!float"), id="float-tag"),
        pytest.param(f"!!bool {SECRET}", Unconverted("a value tagged !!bool"), id="bool-tag"),
        pytest.param(f"!!binary {SECRET}", Unconverted("a value tagged !!binary"), id="binary"),
        pytest.param(f"!!timestamp {SECRET}", Unconverted("a value tagged !!timestamp"), id="date"),
        pytest.param(f"!!null {SECRET}", Unconverted("a value tagged !!null"), id="null-tag"),
        pytest.param(f"!vault {SECRET}", Unconverted("a value with a custom tag"), id="custom-tag"),
        pytest.param(f"!{SECRET} x", Unconverted("a value with a custom tag"), id="secret-as-tag"),
        pytest.param("123456789", Unconverted("a number"), id="int"),
        pytest.param("1.5", Unconverted("a number"), id="float"),
        pytest.param("yes", Unconverted("true/false"), id="bool"),
        pytest.param("2024-05-01", Unconverted("a date"), id="date-text"),
        pytest.param(f"[{SECRET}]", Unconverted("a list"), id="list"),
        pytest.param(f"{{{SECRET}: !!int {SECRET}}}", Unconverted("a mapping"), id="mapping"),
        pytest.param("", None, id="empty"),
        pytest.param("~", None, id="null"),
    ],
)
def test_secret_values_are_never_converted(tmp_path: Path, value: str, expected: object) -> None:
    document = load_yaml(
        write(tmp_path, f"api:\n  access_key_secret: {value}\n"), secret_keys=("access_key_secret",)
    )
    assert document.data == {"api": {"access_key_secret": expected}}
    if SECRET in value:
        assert redaction.redact(f"x {SECRET} y") == "x <secret> y"  # registered while loading


def test_a_secret_in_a_file_that_does_not_parse_is_redacted(tmp_path: Path) -> None:
    secret = "Qw7-unparsed-secret-Zx"
    problem = load_problem(tmp_path, f"api:\n  access_key_secret: *{secret}\n")
    assert secret not in problem
    assert "found undefined alias '<secret>'" in problem


# --- the report ------------------------------------------------------------------------------


def test_report_adds_the_nearest_position_and_did_you_mean() -> None:
    report = Report(positions={"api": Position(1, 1), "api.timeout": Position(2, 3)})
    report.section({"timeot": "1s", "endpoint": None}, "api", ("timeout", "endpoint"))
    report.add("api.timeout", "bad")
    report.add("api.rate_limit.requests", "missing")  # not in the file: the section's line
    report.add("max_tasks", "no position")
    assert report.problems == [
        "api.timeot: unknown key (did you mean timeout?) (line 1, column 1)",
        "api.timeout: bad (line 2, column 3)",
        "api.rate_limit.requests: missing (line 1, column 1)",
        "max_tasks: no position",
    ]


def test_report_fields_pass_only_what_is_set_and_valid() -> None:
    report = Report()

    def positive(value: object) -> int:
        if not isinstance(value, int) or value <= 0:
            raise ValueError("must be positive")
        return value

    values = report.fields({"a": 1, "b": -1}, "s", {"a": positive, "b": positive, "c": positive})
    assert values == {"a": 1}
    assert report.problems == ["s.b: must be positive"]


# --- the web configuration is read by the same loader ----------------------------------------


def _web_problems(path: Path) -> list[str]:
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    return caught.value.problems


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(fifo, "is a FIFO (named pipe), not a regular file", id="fifo"),
        pytest.param(
            lambda tmp: _link(tmp, "/dev/zero"),
            "is a character device, not a regular file",
            id="dev-zero",
        ),
    ],
)
def test_a_web_config_that_is_not_a_regular_file_is_one_line(
    tmp_path: Path, make: Any, reason: str
) -> None:
    path = make(tmp_path)
    assert _web_problems(path) == [f"{path}: cannot read: {reason}"]


def test_a_web_config_names_lines_duplicates_and_close_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tls_server_confg:\n  cert_file: x\n"
        "http_server_config:\n  http2: true\n  http2: false\n"
        "basic_auth_users:\n  alice: not-a-hash\n",
        "web.yml",
    )
    problems = _web_problems(path)
    assert "tls_server_confg: unknown key (did you mean tls_server_config?) (line 1, column 1)" in (
        problems
    )
    assert (
        "http_server_config.http2: duplicate key (first at line 4, column 3) (line 5, column 3)"
        in problems
    )
    assert any(
        p.startswith("basic_auth_users.alice: not a bcrypt hash")
        and p.endswith("(line 7, column 3)")
        for p in problems
    ), problems


def test_a_web_config_syntax_error_names_the_line_of_the_mistake(tmp_path: Path) -> None:
    path = write(tmp_path, "basic_auth_users:\n  alice: 'unclosed\nhttp_server_config: {}\n")
    [problem] = _web_problems(path)
    assert problem.startswith(f"{path}:2:10: invalid YAML: while scanning a quoted scalar")


def test_a_certificate_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "server.crt")
    (tmp_path / "server.key").write_text("key\n")
    path = write(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    started = time.monotonic()
    problems = _web_problems(path)
    assert time.monotonic() - started < 2.0
    assert (
        f"tls_server_config.cert_file: cannot read {tmp_path / 'server.crt'}: is a FIFO (named"
        " pipe), not a regular file (line 2, column 3)" in problems
    )
