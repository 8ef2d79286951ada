"""Log lines: logfmt and JSON, extra fields kept, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from exporter import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_logfmt_quotes_values_that_need_it(stream: io.StringIO) -> None:
    logs.setup("info", "logfmt", stream)
    logging.getLogger("exporter.x").warning(
        "query failed", extra={"trans_no": "t1", "err": 'bad "answer"\nnext'}
    )
    line = stream.getvalue().strip()
    assert "level=warn logger=exporter.x" in line
    assert 'msg="query failed" trans_no=t1' in line
    assert 'err="bad \\"answer\\"\\nnext"' in line
    assert "\n" not in line


def test_json_lines(stream: io.StringIO) -> None:
    logs.setup("debug", "json", stream)
    logging.getLogger("exporter.y").debug("round", extra={"due": 3})
    record = json.loads(stream.getvalue())
    assert (record["level"], record["msg"], record["due"]) == ("debug", "round", 3)


def test_level_filters(stream: io.StringIO) -> None:
    logs.setup("warn", "logfmt", stream)
    logging.getLogger("exporter.z").info("hidden")
    assert stream.getvalue() == ""


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_registered_secrets_never_reach_a_line(stream: io.StringIO, fmt: str) -> None:
    logs.setup("debug", fmt, stream)
    logs.register_secret("Sup3r-S3cret-Log-Canary")
    try:
        raise ValueError("signing with Sup3r-S3cret-Log-Canary failed")
    except ValueError:
        logging.getLogger("exporter.s").exception(
            "oops Sup3r-S3cret-Log-Canary", extra={"detail": "Sup3r-S3cret-Log-Canary"}
        )
    out = stream.getvalue()
    assert "Sup3r-S3cret-Log-Canary" not in out
    assert "<secret>" in out


HOSTILE = "GET /\x1b[2J\x1b[31mred\rfake=line\nlevel=error\x00\x7f\x85\u2028\u202eevil HTTP/1.1"


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_control_characters_are_escaped_in_every_field(stream: io.StringIO, fmt: str) -> None:
    logs.setup("debug", fmt, stream)
    logging.getLogger("exporter.http").debug(
        '%s "%s" %s', "127.0.0.1:5000", HOSTILE, 400, extra={"header": HOSTILE}
    )
    out = stream.getvalue()
    assert out.endswith("\n") and out.count("\n") == 1  # one line, however hostile the input
    line = out[:-1]
    assert all(c.isprintable() for c in line), repr(line)
    for escaped in (
        "\\u001b[2J",
        "\\r",
        "\\n",
        "\\u0000",
        "\\u007f",
        "\\u0085",
        "\\u2028",
        "\\u202e",
    ):
        assert line.count(escaped) == 2, escaped  # in the message and in the extra field
    if fmt == "json":
        record = json.loads(line)
        assert record["header"] == HOSTILE  # escaped, not lost: it decodes back
        assert record["msg"] == f'127.0.0.1:5000 "{HOSTILE}" 400'
    else:
        assert "\\rfake=line\\nlevel=error" in line  # no forged line or field
        assert line.startswith("ts=")


def test_a_traceback_stays_on_one_line(stream: io.StringIO) -> None:
    logs.setup("info", "logfmt", stream)
    try:
        raise ValueError("bad\x1b]0;title\x07")
    except ValueError:
        logging.getLogger("exporter.t").exception("failed")
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert "\\u001b]0;title\\u0007" in line
