"""The signed Cloud VoD client: one pooled session, typed answers, one error family.

It knows nothing of Prometheus; the scheduler decides when to call it.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from exporter import signing
from exporter.answers import TaskAnswer, parse_answer
from exporter.errors import (
    ApiConnectionError,
    ApiError,
    ApiHttpError,
    ApiInvalidResponse,
    ApiThrottled,
    ApiTimeout,
)
from exporter.protocol import CONTENT_TYPE, QUERY_PATH, REQUEST_ID_HEADER, THROTTLE_HTTP_STATUSES

log = logging.getLogger(__name__)

_CHUNK = 16384


class TaskQuerier(Protocol):
    """What the scheduler needs from a client."""

    def query(self, trans_no: str) -> TaskAnswer:
        """Ask about one task; raise ApiError on failure."""
        ...


@dataclass
class Exchange:
    """One request and what came back, for `/probe?debug=true` and the `query` command."""

    trans_no: str
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: bytes = b""
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    request_id: str | None = None
    seconds: float = 0.0
    answer: TaskAnswer | None = None
    error: ApiError | None = None


class CloudVodClient:
    """Signs and sends `videoConcatQuery` requests over one pooled HTTP session."""

    def __init__(
        self,
        endpoint: str,
        access_key_id: str,
        access_key_secret: str,
        *,
        timeout: float = 10.0,
        max_response_bytes: int = 1_048_576,
        pool_size: int = 4,
        timezone: datetime.tzinfo = datetime.UTC,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(endpoint)
        self._url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}{QUERY_PATH}"
        self._path = f"{parts.path.rstrip('/')}{QUERY_PATH}"
        self._host = parts.netloc.rpartition("@")[2]
        self._access_key_id = access_key_id
        self._secret = access_key_secret
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._tz = timezone
        self._clock = clock
        self._session = requests.Session()
        # A failed connect never reached the API, so one quick retry costs no budget; a request
        # that was sent is never retried here (the scheduler decides when to ask again).
        retry = Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.clear()

    def query(self, trans_no: str) -> TaskAnswer:
        """Ask the API about one task; raise an ApiError subclass on any failure."""
        exchange = self.exchange(trans_no)
        if exchange.error is not None:
            raise exchange.error
        assert exchange.answer is not None
        return exchange.answer

    def exchange(self, trans_no: str) -> Exchange:
        """Send one signed query and keep everything about it; never raises ApiError."""
        body = json.dumps({"transNo": trans_no}, separators=(",", ":")).encode()
        headers = signing.signed_headers(
            access_key_id=self._access_key_id,
            secret=self._secret,
            timestamp=int(self._clock()),
            method="POST",
            path=self._path,
            host=self._host,
            content_type=CONTENT_TYPE,
            body=body,
        )
        ex = Exchange(trans_no=trans_no, request_headers=headers, request_body=body)
        started = time.monotonic()
        try:
            self._send(ex, headers, body, started)
        except ApiError as exc:
            ex.error = exc
        ex.seconds = time.monotonic() - started
        if ex.error is not None:
            log.warning(
                "query failed",
                extra={
                    "trans_no": trans_no,
                    "code": ex.error.code,
                    "request_id": ex.request_id or "-",
                    "err": str(ex.error),
                },
            )
        return ex

    def _send(self, ex: Exchange, headers: dict[str, str], body: bytes, started: float) -> None:
        try:
            with self._session.post(
                self._url,
                data=body,
                headers=headers,
                timeout=(self._timeout, self._timeout),
                stream=True,
                allow_redirects=False,
            ) as response:
                ex.status = response.status_code
                ex.response_headers = dict(response.headers)
                ex.request_id = response.headers.get(REQUEST_ID_HEADER)
                ex.response_body = self._read_bounded(response, started, ex.request_id)
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            urllib3.exceptions.ProtocolError,  # from the body read: cut short or reset
            urllib3.exceptions.DecodeError,
        ):
            raise ApiInvalidResponse(
                "answer truncated or undecodable", request_id=ex.request_id
            ) from None
        except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
            raise ApiTimeout(f"no answer within {self._timeout:g}s: {exc}") from None
        except (requests.ConnectionError, urllib3.exceptions.HTTPError) as exc:
            raise ApiConnectionError(f"connection failed: {_reason(exc)}") from None
        except requests.RequestException as exc:
            raise ApiConnectionError(f"request failed: {_reason(exc)}") from None
        if ex.status != 200:
            message = ex.response_body[:200].decode("utf-8", "replace").strip()
            if ex.status in THROTTLE_HTTP_STATUSES:
                raise ApiThrottled(
                    f"HTTP {ex.status}: {message}",
                    retry_after=_retry_after(ex.response_headers.get("Retry-After")),
                    request_id=ex.request_id,
                )
            raise ApiHttpError(ex.status or 0, message, request_id=ex.request_id)
        ex.answer = parse_answer(ex.response_body, ex.trans_no, self._tz, request_id=ex.request_id)

    def _read_bounded(self, response: requests.Response, started: float, rid: str | None) -> bytes:
        """Read at most max_response_bytes, and give up when the whole read exceeds the timeout."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise ApiInvalidResponse(
                f"answer of {declared} bytes exceeds the {self._max_bytes}-byte limit",
                request_id=rid,
            )
        # read1 returns whatever has arrived (one receive at most), so a server that trickles the
        # body a byte at a time cannot stretch the read past the timeout: read(n), which
        # iter_content uses, waits until n bytes are in and only times out on silence.
        read = getattr(response.raw, "read1", None) or response.raw.read
        chunks: list[bytes] = []
        size = 0
        while chunk := read(_CHUNK, decode_content=True):
            size += len(chunk)
            if size > self._max_bytes:
                raise ApiInvalidResponse(
                    f"answer exceeds the {self._max_bytes}-byte limit", request_id=rid
                )
            if time.monotonic() - started > self._timeout:
                raise ApiTimeout(f"answer not complete within {self._timeout:g}s", request_id=rid)
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()


def _reason(exc: Exception) -> str:
    """The innermost cause of a requests error, short enough for a log line."""
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        nxt = cause.__cause__ or cause.__context__
        assert nxt is not None
        cause = nxt
    text = str(cause) or type(cause).__name__
    return text[:300]


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
