"""The Cloud VoD wire protocol of `videoConcatQuery`, defined once.

The client, the answer parser, the configuration and the simulator all import these names, so
the path, the field rules, the task statuses and the error codes cannot drift apart. It knows
nothing of HTTP libraries or Prometheus.
"""

from __future__ import annotations

import enum
import re

DEFAULT_ENDPOINT = "https://api.cloudv.haplat.net"
QUERY_PATH = "/vod/videoManage/videoConcatQuery"
CONTENT_TYPE = "application/json; charset=utf-8"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
REQUEST_ID_HEADER = "X-WS-RequestId"

ENV_ACCESS_KEY_ID = "CLOUDVOD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "CLOUDVOD_ACCESS_KEY_SECRET"

# 1-32 letters, digits, "_" or "-". \A...\Z: "$" would also accept a trailing newline.
TRANS_NO_RE = re.compile(r"\A[A-Za-z0-9_-]{1,32}\Z")
MAX_TRANS_NO = 32

# The documented rate limit of this API, per account.
DEFAULT_RATE_REQUESTS = 300
DEFAULT_RATE_PERIOD = 300.0


class TaskStatus(enum.IntEnum):
    """The `status` of a splicing task, as the API sends it."""

    PROCESSING = 1
    SUCCESSFUL = 2
    FAILED = 3

    @property
    def label(self) -> str:
        """The `status` label value of `cloudvod_concat_task_status`."""
        return self.name.lower()

    @property
    def final(self) -> bool:
        """A successful or failed task does not change any more."""
        return self is not TaskStatus.PROCESSING


UNKNOWN_STATUS = "unknown"  # the label of a task never answered
STATUS_LABELS: tuple[str, ...] = (*(s.label for s in TaskStatus), UNKNOWN_STATUS)


class Code(enum.IntEnum):
    """The `code` values of the answer envelope this exporter gives a meaning to."""

    SUCCESS = 200
    PARAMETER_ERROR = 1000  # seen on sibling interfaces
    NO_PERMISSION = 1301  # seen on sibling interfaces
    STILL_PROCESSING = 1560  # "the video is being processed": the task is still running
    TRANS_NO_EMPTY = 1601
    TRANS_NO_ILLEGAL = 1602
    TRANS_NO_UNKNOWN = 1603


# Codes that say the request or the account is wrong: asking again will not help, and they are
# never mistaken for throttling whatever their message says.
CONFIGURATION_CODES = frozenset(
    {
        Code.PARAMETER_ERROR,
        Code.NO_PERMISSION,
        Code.TRANS_NO_EMPTY,
        Code.TRANS_NO_ILLEGAL,
        Code.TRANS_NO_UNKNOWN,
    }
)

# How a throttled request is answered is not documented: HTTP 429 and 503, or an unknown
# business code whose message speaks of a limit (English or Chinese).
THROTTLE_HTTP_STATUSES = frozenset({429, 503})
_LIMIT_WORDS = re.compile(r"limit|throttl|too many|frequen|频|限", re.IGNORECASE)


def is_throttling_code(code: int, message: str) -> bool:
    """Whether a non-200 business code means the account was throttled."""
    if code in CONFIGURATION_CODES or code in (Code.SUCCESS, Code.STILL_PROCESSING):
        return False
    return bool(_LIMIT_WORDS.search(message))
