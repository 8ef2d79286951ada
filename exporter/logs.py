"""Structured logging in logfmt or JSON, with secrets scrubbed from every record.

Every line is one line of printable text: control characters from anywhere (a request line, a
header, an API answer) are escaped by the formatters, so a log line cannot be split, recoloured
with terminal escapes or reordered with bidirectional overrides.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from typing import Any, TextIO

from exporter import redaction

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
LEVELS = ("debug", "info", "warn", "error")


def register_secret(secret: str) -> None:
    """Never let this string reach a log line (kept in the one registry, exporter.redaction)."""
    redaction.register_secret(secret)


def scrub(text: str) -> str:
    """Replace every registered secret in `text` with <secret>."""
    return redaction.redact(text)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
            timespec="milliseconds"
        ),
        "level": record.levelname.lower().replace("warning", "warn"),
        "logger": record.name,
        "msg": scrub(record.getMessage()),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            # Scrubbed before encoding: escaping would hide a secret holding `"` or `\`.
            out[key] = scrub(value) if isinstance(value, str) else value
    if record.exc_info:
        out["exc"] = scrub(logging.Formatter().formatException(record.exc_info))
    return out


# C0 and C1 controls, DEL, line and paragraph separators, bidirectional marks and overrides.
_OTHER_CONTROLS = r"\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROLS = r"\x00-\x1f" + _OTHER_CONTROLS
_JSON_RAW = re.compile(f"[{_OTHER_CONTROLS}]")  # what json.dumps leaves unescaped
_LOGFMT_ESCAPE = re.compile(f'[{_CONTROLS}"\\\\]')
_LOGFMT_QUOTE = re.compile(f'[{_CONTROLS} ="\\\\]')
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT.get(char) or f"\\u{ord(char):04x}"


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text and not _LOGFMT_QUOTE.search(text):
        return text
    return '"' + _LOGFMT_ESCAPE.sub(_escape, text) + '"'


class LogfmtFormatter(logging.Formatter):
    """key=value lines, as Prometheus's own components log."""

    def format(self, record: logging.LogRecord) -> str:
        """One logfmt line, secrets scrubbed."""
        line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())
        return scrub(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line, secrets scrubbed."""
        line = json.dumps(_fields(record), ensure_ascii=False, default=str)
        # json escapes C0 controls itself; these others it leaves raw (only inside strings).
        return scrub(_JSON_RAW.sub(_escape, line))


def setup(level: str = "info", fmt: str = "logfmt", stream: TextIO | None = None) -> None:
    """Configure the root logger once for the whole process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel({"warn": logging.WARNING}.get(level, level.upper()))
    # urllib3 logs every retry and pool event at debug; those lines carry no extra value.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
