"""The signed Cloud VoD client: one pooled session, typed answers, one error family.

It knows nothing of Prometheus; the scheduler decides when to call it.

Every request has one deadline, `timeout` seconds after it starts: connecting, the TLS handshake,
sending, the status line, the headers and the body all fit in it, however slowly the peer
trickles. A per-read timeout alone restarts with every byte, so a watchdog thread shuts the
request's socket down when its deadline passes; the blocked read returns at once and the request
fails with ApiTimeout. `close()` aborts the requests in flight the same way.
"""

from __future__ import annotations

import contextlib
import datetime
import heapq
import itertools
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from exporter import signing
from exporter.answers import TaskAnswer, parse_answer
from exporter.config import ApiConfig
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
_TIMED_OUT, _CLOSED = "timed out", "closed"


class _Deadline:
    """The deadline of one request: shuts its connection's socket down when it fires."""

    def __init__(self, expires: float) -> None:
        self.expires = expires
        self._lock = threading.Lock()
        self._conn: HTTPConnection | None = None
        self._fired: str | None = None
        self._done = False

    def remaining(self) -> float:
        """Seconds left, never less than a millisecond (a zero timeout means non-blocking)."""
        return max(0.001, self.expires - time.monotonic())

    def attach(self, conn: HTTPConnection) -> None:
        """The connection this request now uses (shut down at once if the deadline passed)."""
        with self._lock:
            self._conn = conn
            if self._fired is not None:
                _shutdown(conn)

    def detach(self, conn: HTTPConnection) -> None:
        """The connection went back to the pool: another request may use it now."""
        with self._lock:
            if self._conn is conn:
                self._conn = None

    def fire(self, reason: str) -> None:
        """End the request now (its deadline passed, or the client closed)."""
        with self._lock:
            if self._done or self._fired is not None:
                return
            self._fired = reason
            if self._conn is not None:
                _shutdown(self._conn)

    def finish(self) -> str | None:
        """The request is over; the reason it was cut short, if it was."""
        with self._lock:
            self._done = True
            self._conn = None
            return self._fired


def _shutdown(conn: HTTPConnection) -> None:
    """Make every blocked read or write on the connection return at once."""
    sock = conn.sock
    if isinstance(sock, socket.socket):
        # socket.socket's own shutdown: SSLSocket.shutdown would also drop its TLS state under
        # the feet of the thread that is reading. Not connected yet, or closed already: the
        # connect and handshake timeouts bound those phases.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One thread per client that fires request deadlines as they pass."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._active: set[_Deadline] = set()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, seconds: float) -> _Deadline:
        """A deadline `seconds` from now; raises ApiConnectionError once the client is closed."""
        deadline = _Deadline(time.monotonic() + seconds)
        with self._cond:
            if self._closed:
                raise ApiConnectionError("the client is closed")
            heapq.heappush(self._heap, (deadline.expires, next(self._seq), deadline))
            self._active.add(deadline)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cloudvod-request-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return deadline

    def disarm(self, deadline: _Deadline) -> str | None:
        """The request ended; why it was cut short, if it was."""
        with self._cond:
            self._active.discard(deadline)
        return deadline.finish()

    def close(self) -> None:
        """Abort every request in flight and refuse new ones."""
        with self._cond:
            self._closed = True
            active, self._active = list(self._active), set()
            self._heap.clear()
            self._cond.notify()
        for deadline in active:
            deadline.fire(_CLOSED)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, deadline = heapq.heappop(self._heap)
                    if deadline in self._active:
                        self._active.discard(deadline)
                        deadline.fire(_TIMED_OUT)
                wait = self._heap[0][0] - now if self._heap else None
                self._cond.wait(wait)


_current = threading.local()


def _current_deadline() -> _Deadline | None:
    deadline: _Deadline | None = getattr(_current, "deadline", None)
    return deadline


class _DeadlineConnection(HTTPConnection):
    """Tells the request's deadline which connection it uses, and connects within it."""

    _deadline: _Deadline | None = None

    def _new_conn(self) -> socket.socket:
        deadline = self._deadline = _current_deadline()
        if deadline is not None:
            deadline.attach(self)
            timeout = self.timeout if isinstance(self.timeout, int | float) else math.inf
            self.timeout = min(timeout, deadline.remaining())
        sock = super()._new_conn()
        if deadline is not None:
            # The TLS handshake that follows is bounded as a whole by the socket's timeout.
            sock.settimeout(deadline.remaining())
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = self._deadline = _current_deadline()
        if deadline is not None:
            deadline.attach(self)  # also a pooled connection, connected by an earlier request
        super().request(*args, **kwargs)

    def release(self) -> None:
        """Called when the pool takes the connection back."""
        if self._deadline is not None:
            self._deadline.detach(self)
            self._deadline = None


class _DeadlineHTTPSConnection(_DeadlineConnection, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection

    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _DeadlineConnection):
            conn.release()
        super()._put_conn(conn)


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _DeadlineConnection):
            conn.release()
        super()._put_conn(conn)


class _Adapter(HTTPAdapter):
    """requests' adapter with connection pools whose connections honour request deadlines."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


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
        timeout: float = ApiConfig.timeout,
        max_response_bytes: int = ApiConfig.max_response_bytes,
        pool_size: int = ApiConfig.max_concurrency,
        timezone: datetime.tzinfo = ApiConfig.timezone,
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
        adapter = _Adapter(pool_connections=1, pool_maxsize=pool_size, max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.clear()
        self._watchdog = _Watchdog()

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
        deadline = self._watchdog.arm(max(0.0, self._timeout - (time.monotonic() - started)))
        _current.deadline = deadline
        error: ApiError | None = None
        try:
            self._transfer(ex, headers, body, started)
        except ApiError as exc:
            error = exc
        finally:
            _current.deadline = None
            cut_short = self._watchdog.disarm(deadline)
        # Whatever the shut-down socket made the read look like (a short body, a reset, EOF
        # before the status line), the cause is the deadline or close().
        if cut_short == _TIMED_OUT:
            raise ApiTimeout(
                f"no complete answer within {self._timeout:g}s", request_id=ex.request_id
            )
        if cut_short == _CLOSED:
            raise ApiConnectionError(
                "the client was closed while the request was in flight", request_id=ex.request_id
            )
        if error is not None:
            raise error
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

    def _transfer(self, ex: Exchange, headers: dict[str, str], body: bytes, started: float) -> None:
        """Send the request and read the whole answer into `ex`."""
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
        except OSError as exc:  # e.g. a shut-down socket surfacing outside requests' wrapping
            raise ApiConnectionError(f"connection failed: {exc}") from None

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
        """Abort the requests in flight (ApiConnectionError), refuse new ones, close the pool."""
        self._watchdog.close()
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
