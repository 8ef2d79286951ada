"""A Cloud VoD API simulator: a real HTTP server on loopback answering `videoConcatQuery`."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Protocol, get_args
from urllib.parse import parse_qs, urlsplit

from exporter import signing
from exporter.protocol import QUERY_PATH, TRANS_NO_RE, Code
from exporter.simulator.tasks import STATUS_PROCESSING, SimTask, generate_tasks

logger = logging.getLogger("exporter.simulator")

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
SUCCESS_MESSAGE = "操作成功"
MAX_SKEW_SECONDS = 300.0
# The public demo credential: the simulator's default, what --demo and the README use.
DEMO_ACCESS_KEY_ID = "demo-access-key"
DEMO_ACCESS_KEY_SECRET = "demo-secret"
DEFAULT_CREDENTIALS: Mapping[str, str] = {DEMO_ACCESS_KEY_ID: DEMO_ACCESS_KEY_SECRET}
DEFAULT_STATS_PERIOD = 300.0

FaultKind = Literal[
    "delay", "reset", "http_status", "body", "truncated", "code", "throttle", "auth", "data"
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_SIGNED_REQUEST_HEADERS = (
    "Authorization",
    "X-WS-AccessKey",
    "X-WS-Timestamp",
    "Content-Type",
    "Host",
)

_ERROR_MESSAGES: dict[int, str] = {
    Code.PARAMETER_ERROR: "parameter error",
    Code.STILL_PROCESSING: "the video is being processed",
    Code.TRANS_NO_EMPTY: "transNo cannot be empty",
    Code.TRANS_NO_ILLEGAL: "transNo is illegal",
    Code.TRANS_NO_UNKNOWN: "transNo does not exist",
}


class Verifier(Protocol):
    """Checks a request's signature (exporter.signing.verify's signature): None when valid."""

    def __call__(
        self,
        headers: Mapping[str, str],
        *,
        secret_for: Mapping[str, str],
        method: str,
        path: str,
        query: str,
        body: bytes,
    ) -> str | None: ...


@dataclass
class Fault:
    """A misbehaviour injected for one transNo (or "*" for every request)."""

    kind: FaultKind
    seconds: float = 0.0
    status: int = 200
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    code: int = 0
    message: str = ""
    data: dict[str, Any] | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or None for until cleared)")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Fault:
        """A fault from its JSON form (the control endpoint's; `body` is a UTF-8 string)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        values = dict(obj)
        body = values.get("body", "")
        if not isinstance(body, str):
            raise ValueError("body must be a string")
        values["body"] = body.encode("utf-8")
        checks: dict[str, tuple[type, ...]] = {
            "kind": (str,),
            "seconds": (int, float),
            "status": (int,),
            "content_type": (str,),
            "code": (int,),
            "message": (str,),
            "data": (dict, type(None)),
            "times": (int, type(None)),
        }
        for name, types in checks.items():
            if name in values and not isinstance(values[name], types):
                raise ValueError(f"{name} has the wrong type")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The JSON form of this fault."""
        out = asdict(self)
        out["body"] = self.body.decode("utf-8", "replace")
        return out


@dataclass(frozen=True)
class SimStats:
    """A snapshot of what the simulator has seen."""

    requests: int
    answered_ok: int
    throttled: int
    auth_failures: int
    per_trans_no: Mapping[str, int]
    max_in_window: int

    def to_json(self) -> dict[str, Any]:
        """The stats as a JSON-ready dict."""
        out = asdict(self)
        out["per_trans_no"] = dict(self.per_trans_no)
        return out


@dataclass
class _Answer:
    """What the handler sends back: a normal answer, a truncated one, or a reset."""

    status: int
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    mode: Literal["normal", "truncated", "reset"] = "normal"
    delay: float = 0.0
    ok: bool = False  # a code-200 business answer (counted in answered_ok when delivered whole)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _envelope(code: int, message: str, data: dict[str, Any] | None, status: int = 200) -> _Answer:
    return _Answer(status, _json_bytes({"code": code, "message": message, "data": data}))


def _deep_merge(base: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Merge `patch` into `base` in place; a None value removes the key."""
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    sim: SimulatorServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that go away mid-answer are normal here; no traceback on stderr.
        logger.debug("error while handling a request from %s", client_address, exc_info=True)


class _HTTP6Server(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CloudVodSimulator/1.0"
    timeout = 120.0
    disable_nagle_algorithm = True  # headers and body go out separately; avoid 40 ms ACK stalls
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.sim._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sim._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        sim = self.server.sim
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(_envelope(400, "bad request framing", None, status=400))
            return
        split = urlsplit(self.path)
        if split.path.startswith("/_sim/"):
            self._send(sim._control(self.command, split.path, body))
            return
        if split.path != QUERY_PATH or self.command not in ("GET", "POST"):
            answer = _envelope(404, f"no such interface: {self.command} {split.path}", None, 404)
        else:
            headers = {
                name: value for name in _SIGNED_REQUEST_HEADERS if (value := self.headers.get(name))
            }
            answer = sim._query(self.command, split.path, split.query, headers, body)
        if not sim._sleep(sim.latency + answer.delay):
            self._reset()  # the simulator stopped while this request waited
            return
        if answer.mode == "reset":
            self._reset()
        else:
            self._send(answer)

    def _send(self, answer: _Answer) -> None:
        request_id = uuid.uuid4().hex
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("X-WS-RequestId", request_id)
        if answer.mode == "truncated":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        body = answer.body
        if answer.mode == "truncated":
            body = body[: len(body) // 2]
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        logger.debug("%s %s -> %s (%s)", self.command, self.path, answer.status, request_id)

    def _reset(self) -> None:
        """Close the connection abruptly: SO_LINGER 0 makes close() send an RST."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            logger.debug("reset of an already closed connection", exc_info=True)


class SimulatorServer:
    """The Cloud VoD simulator; `start()` serves it on a loopback port in a daemon thread."""

    def __init__(
        self,
        tasks: Iterable[SimTask] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Mapping[str, str] | None = None,
        latency: float = 0.0,
        rate_limit: tuple[int, float] | None = (300, 300.0),
        clock: Callable[[], float] = time.time,
        wall_clock: Callable[[], float] = time.time,
        limit_clock: Callable[[], float] = time.monotonic,
        processing_as_1560: bool = False,
        verifier: Verifier = signing.verify,
    ) -> None:
        self.host = host
        # Injectable so tests verify with an implementation independent of the client's.
        self.verifier = verifier
        self.requested_port = port
        self.credentials: Mapping[str, str] = dict(
            DEFAULT_CREDENTIALS if credentials is None else credentials
        )
        self.latency = latency
        self.rate_limit = rate_limit
        self.clock = clock
        self.wall_clock = wall_clock
        self.limit_clock = limit_clock
        self.processing_as_1560 = processing_as_1560
        # Without a limit, max_in_window is still measured over the documented 5-minute period.
        self._window_period = rate_limit[1] if rate_limit else DEFAULT_STATS_PERIOD
        self._lock = threading.Lock()
        self._tasks: dict[str, SimTask] = {}
        self._faults: dict[str, Fault] = {}
        self._windows: dict[str, deque[float]] = {}
        self._connections: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reset_counters()
        self.add_tasks(tasks)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> SimulatorServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        server_class = _HTTP6Server if ":" in self.host else _HTTPServer
        httpd = server_class((self.host, self.requested_port), _Handler)
        httpd.sim = self
        self._httpd = httpd
        self._stopped.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="cloudvod-simulator"
        )
        self._thread.daemon = True
        self._thread.start()
        logger.debug("simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection; idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopped.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (valid after start)."""
        if self._httpd is None:
            raise RuntimeError("simulator not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL such as http://127.0.0.1:PORT (valid after start)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- state -----------------------------------------------------------------------------

    def add_tasks(self, tasks: Iterable[SimTask]) -> None:
        """Add tasks (a task with a known transNo replaces the old one)."""
        with self._lock:
            for task in tasks:
                self._tasks[task.trans_no] = task

    def tasks(self) -> list[SimTask]:
        """The simulated tasks."""
        with self._lock:
            return list(self._tasks.values())

    def set_fault(self, trans_no: str, fault: Fault) -> None:
        """Inject a fault for one transNo, or for every request with "*"."""
        with self._lock:
            self._faults[trans_no] = fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._faults.clear()

    def stats(self) -> SimStats:
        """A snapshot of the counters."""
        with self._lock:
            return SimStats(
                requests=self._requests,
                answered_ok=self._answered_ok,
                throttled=self._throttled,
                auth_failures=self._auth_failures,
                per_trans_no=dict(self._per_trans_no),
                max_in_window=self._max_in_window,
            )

    def reset_stats(self) -> None:
        """Zero the counters (the rate-limit windows are kept)."""
        with self._lock:
            self._reset_counters()

    def _reset_counters(self) -> None:
        self._requests = 0
        self._answered_ok = 0
        self._throttled = 0
        self._auth_failures = 0
        self._per_trans_no: dict[str, int] = {}
        self._max_in_window = 0

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` in this request's thread; False if the simulator stopped meanwhile."""
        if seconds > 0:
            return not self._stopped.wait(seconds)
        return not self._stopped.is_set()

    # --- the API ---------------------------------------------------------------------------

    def _query(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> _Answer:
        content_type = headers.get("Content-Type", "")
        trans_no, parse_error = _parse_trans_no(method, query, content_type, body)
        with self._lock:
            self._requests += 1
            if trans_no:
                self._per_trans_no[trans_no] = self._per_trans_no.get(trans_no, 0) + 1
        reason = self._authenticate(method, path, query, headers, body)
        if reason is not None:
            with self._lock:
                self._auth_failures += 1
            logger.debug("authentication failed: %s", reason)
            return _auth_failure(reason)
        if not self._admit(_credential(headers)):
            return _throttled()
        fault = self._take_fault(trans_no)
        if fault is not None and fault.kind != "data":
            answer = _fault_answer(fault, lambda: self._answer(trans_no, parse_error, None))
        else:
            answer = self._answer(trans_no, parse_error, fault.data if fault else None)
        if answer.ok and answer.mode == "normal":
            with self._lock:
                self._answered_ok += 1
        return answer

    def _authenticate(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        reason = self.verifier(
            headers,
            secret_for=self.credentials,
            method=method,
            path=path,
            query=query,  # raw: the verifier drops it for POST and decodes it otherwise
            body=body,
        )
        if reason is not None:
            return reason
        timestamp = headers.get("X-WS-Timestamp", "")
        if not timestamp.isascii() or not timestamp.isdigit():
            return "X-WS-Timestamp is not an integer number of seconds"
        if abs(int(timestamp) - self.wall_clock()) > MAX_SKEW_SECONDS:
            return "X-WS-Timestamp is more than 5 minutes off the server clock"
        return None

    def _admit(self, access_key: str) -> bool:
        """Count a correctly signed arrival in its key's sliding window; False if over the limit."""
        now = self.limit_clock()
        with self._lock:
            window = self._windows.setdefault(access_key, deque())
            while window and window[0] <= now - self._window_period:
                window.popleft()
            if self.rate_limit is not None and len(window) >= self.rate_limit[0]:
                self._throttled += 1
                return False
            window.append(now)
            self._max_in_window = max(self._max_in_window, len(window))
            return True

    def _take_fault(self, trans_no: str) -> Fault | None:
        with self._lock:
            key = trans_no if trans_no in self._faults else "*"
            fault = self._faults.get(key)
            if fault is not None and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[key]
            return fault

    def _answer(
        self, trans_no: str, parse_error: bool, data_patch: Mapping[str, Any] | None
    ) -> _Answer:
        """The normal business answer for a transNo (after authentication and throttling)."""
        if parse_error:
            return _error(1000)
        if not trans_no:
            return _error(Code.TRANS_NO_EMPTY)
        if not TRANS_NO_RE.fullmatch(trans_no):
            return _error(Code.TRANS_NO_ILLEGAL)
        with self._lock:
            task = self._tasks.get(trans_no)
        now = self.clock()
        status = task.status_at(now) if task is not None else None
        if task is None or status is None:
            return _error(Code.TRANS_NO_UNKNOWN)
        if status == STATUS_PROCESSING and self.processing_as_1560:
            return _error(Code.STILL_PROCESSING)
        data = task.data_at(now)
        if data_patch:
            _deep_merge(data, data_patch)
        answer = _envelope(200, SUCCESS_MESSAGE, data)
        answer.ok = True
        return answer

    # --- control endpoints -----------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> _Answer:
        try:
            payload: Any = json.loads(body) if body.strip() else {}
        except ValueError:
            return _control_error(400, "body is not JSON")
        route = (method, path)
        if route == ("GET", "/_sim/stats"):
            return _Answer(200, _json_bytes(self.stats().to_json()))
        if route == ("GET", "/_sim/tasks"):
            now = self.clock()
            truth = [
                {
                    "transNo": t.trans_no,
                    "outcome": t.outcome,
                    "status": t.status_at(now),
                    "data": t.data_at(now) if t.status_at(now) is not None else None,
                }
                for t in self.tasks()
            ]
            return _Answer(200, _json_bytes({"now": now, "tasks": truth}))
        if route == ("POST", "/_sim/tasks"):
            if not isinstance(payload, dict):
                return _control_error(400, "expected a JSON object")
            params = dict(payload)
            try:
                count = int(params.pop("count"))
                tasks = generate_tasks(count, now=self.clock(), **params)
            except (KeyError, TypeError, ValueError) as exc:
                return _control_error(400, f"bad task request: {exc}")
            self.add_tasks(tasks)
            return _Answer(200, _json_bytes({"added": len(tasks)}))
        if route == ("POST", "/_sim/faults"):
            if not isinstance(payload, dict) or not isinstance(payload.get("fault"), dict):
                return _control_error(400, 'expected {"trans_no": ..., "fault": {...}}')
            trans_no = payload.get("trans_no", "*")
            if not isinstance(trans_no, str):
                return _control_error(400, "trans_no must be a string")
            try:
                fault = Fault.from_json(payload["fault"])
            except (TypeError, ValueError) as exc:
                return _control_error(400, f"bad fault: {exc}")
            self.set_fault(trans_no, fault)
            return _Answer(200, _json_bytes({"trans_no": trans_no, "fault": fault.to_json()}))
        if route == ("DELETE", "/_sim/faults"):
            self.clear_faults()
            return _Answer(200, _json_bytes({"cleared": True}))
        if route == ("POST", "/_sim/reset-stats"):
            self.reset_stats()
            return _Answer(200, _json_bytes({"reset": True}))
        return _control_error(404, f"no such control endpoint: {method} {path}")


def _parse_trans_no(method: str, query: str, content_type: str, body: bytes) -> tuple[str, bool]:
    """The transNo of a request ("" when absent) and whether the body could not be parsed."""
    if method == "GET":
        return parse_qs(query, keep_blank_values=True).get("transNo", [""])[0], False
    if not body.strip():
        return "", False
    if content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return "", True
        return form.get("transNo", [""])[0], False
    try:
        obj = json.loads(body)
    except ValueError:
        return "", True
    if not isinstance(obj, dict):
        return "", True
    value = obj.get("transNo")
    if value is None:
        return "", False
    if isinstance(value, str):
        return value, False
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), False
    return json.dumps(value), False  # present but not a string: illegal (1602)


def _credential(headers: Mapping[str, str]) -> str:
    parsed = signing.parse_authorization(headers.get("Authorization", ""))
    return parsed.access_key_id if parsed else ""


def _error(code: int) -> _Answer:
    return _envelope(code, _ERROR_MESSAGES[code], None)


def _auth_failure(reason: str) -> _Answer:
    return _envelope(401, f"authentication failed: {reason}", None, status=401)


def _throttled() -> _Answer:
    return _envelope(429, "request rate limit exceeded", None, status=429)


def _control_error(status: int, message: str) -> _Answer:
    return _Answer(status, _json_bytes({"error": message}))


def _fault_answer(fault: Fault, normal: Callable[[], _Answer]) -> _Answer:
    """The answer an injected fault gives (`normal` computes the undisturbed answer)."""
    if fault.kind == "delay":
        answer = normal()
        answer.delay = fault.seconds
        return answer
    if fault.kind == "reset":
        return _Answer(0, mode="reset")
    if fault.kind == "truncated":
        answer = normal()
        answer.mode = "truncated"
        return answer
    if fault.kind == "http_status":
        if fault.body:
            return _Answer(fault.status, fault.body, fault.content_type)
        message = fault.message or _phrase(fault.status)
        return _envelope(fault.status, message, None, status=fault.status)
    if fault.kind == "body":
        return _Answer(200, fault.body, fault.content_type)
    if fault.kind == "code":
        return _envelope(fault.code, fault.message or f"error {fault.code}", None)
    if fault.kind == "throttle":
        return _throttled()
    if fault.kind == "auth":
        return _auth_failure(fault.message or "injected fault")
    raise ValueError(f"fault kind {fault.kind!r} has no answer of its own")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
