"""The bounded HTTP(S) server that serves the exporter's WSGI app.

Built to stay up under hostile clients (slowloris, floods, fd exhaustion):

- At most `max_connections` connections are open at once, each served by its own thread (so
  threads are bounded too). The cap is also kept below the process's file-descriptor limit minus
  a reserve, so the exporter's own API requests always find a descriptor.
- At the cap, a new connection makes room by evicting the oldest connection that has not sent a
  complete request yet (a TLS handshake, a request still arriving, an idle keep-alive); when
  every connection is busy answering, new ones wait in the listen backlog.
- The TLS handshake, the request line and the headers must all arrive within `header_timeout` of
  the connection (or, on a kept-alive connection, of the next request's first byte), however
  slowly they trickle. A kept-alive connection waits at most `idle_timeout` for its next request;
  writing an answer to a client that does not read is bounded by `connection_timeout`.
- When accept() fails for lack of descriptors or memory, the accept loop backs off instead of
  spinning.

HTTP/1.1 with keep-alive; HEAD answers carry no body. Access lines go to the `exporter.http`
logger at debug level; handshake failures and client disconnects are logged at debug without
tracebacks.
"""

from __future__ import annotations

import contextlib
import errno
import http
import http.client
import io
import ipaddress
import logging
import os
import re
import resource
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any
from wsgiref.handlers import SimpleHandler
from wsgiref.headers import Headers

from exporter import __version__
from exporter.webconfig import WebConfig, WSGIApp, protect

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

__all__ = ["HTTPServer", "connection_budget", "parse_listen_address"]

_log = logging.getLogger("exporter.http")

_SOFTWARE = f"cloudvod-concat-exporter/{__version__}"
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_MAX_REQUEST_LINE = 65536
_MAX_HEAD = _MAX_REQUEST_LINE + 65536  # request line plus all headers
_MAX_BODY = 1_048_576  # the exporter's endpoints take no body; this bounds what is drained
_POLL_INTERVAL = 0.25  # how quickly shutdown() stops the accept loop and deadlines are checked
_LINGER = 0.5  # how long a refused request's remaining bytes are read and dropped
# A backlog that holds a whole flood: a dropped SYN costs a legitimate client a 1 s retransmit
# (the kernel caps it at net.core.somaxconn).
_BACKLOG = 1024

DEFAULT_MAX_CONNECTIONS = 64
EVICTION_SLACK = 8  # evicted connections still closing, beyond the cap
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 120.0
DEFAULT_CONNECTION_TIMEOUT = 30.0
# Descriptors kept free for everything but client connections: the API client's pool (up to 64
# connections), configuration and task files, logs, the listening socket.
FD_RESERVE = 128
_ACCEPT_BACKOFF_MAX = 1.0
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def parse_listen_address(addr: str) -> tuple[str, int]:
    """Split "host:port" ("[v6]:port", ":port" for all interfaces) into (host, port)."""
    hint = 'expected "host:port", "[ipv6]:port" or ":port", e.g. ":9877" or "127.0.0.1:9877"'
    if not addr or addr != addr.strip():
        raise ValueError(f"invalid listen address {addr!r}: {hint}")
    if addr.startswith("["):
        host, sep, port_text = addr[1:].partition("]:")
        if not sep:
            raise ValueError(f"invalid listen address {addr!r}: {hint}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"invalid listen address {addr!r}: {host!r} is not an IPv6 address"
            ) from None
    else:
        host, sep, port_text = addr.rpartition(":")
        if not sep:
            raise ValueError(f"invalid listen address {addr!r}: missing port; {hint}")
        if ":" in host:
            raise ValueError(
                f"invalid listen address {addr!r}: IPv6 addresses need brackets, e.g. [::1]:9877"
            )
        if host and not _valid_host(host):
            raise ValueError(f"invalid listen address {addr!r}: bad host name {host!r}")
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"invalid listen address {addr!r}: port must be a number 0-65535")
    return host, int(port_text)


def _valid_host(host: str) -> bool:
    """An IPv4 address or a DNS name (letters, digits, '-', dots; at most 253 characters)."""
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _open_descriptors() -> int:
    """How many file descriptors this process has open now (0 when it cannot tell)."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory))
        except OSError:
            continue
    return 0


def connection_budget(max_connections: int, reserve: int = FD_RESERVE) -> int:
    """How many client connections fit under RLIMIT_NOFILE with `reserve` descriptors to spare.

    The soft limit is raised towards the hard limit first when that makes room (as Go programs
    do at start); the answer is at least 1 and at most `max_connections`.
    """
    open_now = _open_descriptors()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = open_now + reserve + max_connections
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - open_now - reserve))


class HTTPServer:
    """Serves a WSGI app over HTTP or HTTPS as the web config says, within bounded resources.

    The web config's basic auth and headers are applied here (via `protect`), so the app does
    not need to be wrapped by the caller (wrapping it anyway is harmless).
    """

    def __init__(
        self,
        app: WSGIApp,
        listen_address: str,
        web: WebConfig = WebConfig(),  # noqa: B008 - frozen, immutable
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        connection_timeout: float = DEFAULT_CONNECTION_TIMEOUT,
    ) -> None:
        """Validate the listen address and limits; nothing is bound until start()."""
        self._host, self._requested_port = parse_listen_address(listen_address)
        if max_connections < 1:
            raise ValueError(f"max connections must be at least 1, not {max_connections}")
        for name, value in (
            ("header timeout", header_timeout),
            ("idle timeout", idle_timeout),
            ("connection timeout", connection_timeout),
        ):
            if not value > 0:
                raise ValueError(f"the {name} must be positive, not {value}")
        self._listen_address = listen_address
        self._app = protect(app, web)
        self._web = web
        self._requested_connections = max_connections
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.connection_timeout = connection_timeout
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._conns: set[_Conn] = set()
        self._listener: socket.socket | None = None
        self._ssl: ssl.SSLContext | None = None
        self._dualstack = False
        self._server_name = ""
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._last_warning = -float("inf")

    def start(self) -> HTTPServer:
        """Bind the listening socket and serve in a daemon thread; returns self."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this HTTPServer was shut down; create a new one")
            if self._listener is not None:
                return self
            self._ssl = self._web.ssl_context()
            self._listener = self._bind()
            self.max_connections = connection_budget(self._requested_connections)
            self._thread = threading.Thread(
                target=self._run, name=f"http-server {self._listen_address}", daemon=True
            )
            self._thread.start()
        if self.max_connections < self._requested_connections:
            _log.warning(
                "the file descriptor limit leaves room for fewer connections than asked",
                extra={"max_connections": self.max_connections, "reserve": FD_RESERVE},
            )
        _log.debug(
            "listening on %s, bound port %d (%s), at most %d connections",
            self._listen_address,
            self.port,
            "TLS" if self._ssl else "plain HTTP",
            self.max_connections,
        )
        return self

    def serve_forever(self) -> None:
        """Start (if needed) and block until shutdown() is called, e.g. from a signal handler."""
        self.start()
        try:
            while not self._stopped.wait(1.0):
                pass
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop accepting, close the listening socket and idle connections; idempotent.

        Requests being answered finish in their (daemon) threads and then close.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            listener, thread = self._listener, self._thread
        self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        if listener is not None:
            listener.close()
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            if conn.evictable:
                conn.abort()
        self._stopped.set()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self._bound().getsockname()[1])

    @property
    def url(self) -> str:
        """The base URL in loopback form when bound to all interfaces, e.g. http://127.0.0.1:9877."""
        address = self._bound().getsockname()
        host = str(address[0])
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "127.0.0.1" if self._dualstack else "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{host}:{address[1]}"

    @property
    def open_connections(self) -> int:
        """Client connections open right now."""
        with self._cond:
            return len(self._conns)

    def __enter__(self) -> HTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def _bound(self) -> socket.socket:
        if self._listener is None:
            raise RuntimeError("the server is not started")
        return self._listener

    def _bind(self) -> socket.socket:
        host, port = self._host, self._requested_port
        if host in ("", "::") and socket.has_dualstack_ipv6():
            family, address, self._dualstack = socket.AF_INET6, ("::", port), True
        elif host == "":
            family, address = socket.AF_INET, ("0.0.0.0", port)
        else:
            try:
                infos = socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
            except socket.gaierror as exc:
                raise OSError(f"cannot resolve listen address host {host!r}: {exc}") from None
            family, _, _, _, sockaddr = infos[0]
            address = (str(sockaddr[0]), port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._dualstack:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._server_name = str(sock.getsockname()[0]) or "localhost"
        return sock

    # -- the accept loop -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._accept_loop(self._bound())
        except Exception:
            _log.exception("the HTTP accept loop failed; no new connections are served")
        finally:
            self._stopped.set()

    def _accept_loop(self, listener: socket.socket) -> None:
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        backoff = 0.0
        while not self._stopping.is_set():
            self._reap()
            if not poller.poll(_POLL_INTERVAL * 1000):
                continue
            if not self._make_room():
                continue
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:
                if self._stopping.is_set():
                    return
                # Out of descriptors or memory: the pending connection stays readable, so
                # retrying at once would spin; wait, longer each time, for a connection to end.
                backoff = min(_ACCEPT_BACKOFF_MAX, max(0.01, backoff * 2))
                if exc.errno in _RESOURCE_ERRNOS:
                    self._warn("cannot accept connections: %s; backing off", exc)
                else:
                    self._warn("accept failed: %s; backing off", exc)
                self._stopping.wait(backoff)
                continue
            backoff = 0.0
            self._open(sock, peer)

    def _make_room(self) -> bool:
        """True when a connection may be accepted now; at the cap, evict the oldest idle one.

        Evicted connections may take a moment to close; up to EVICTION_SLACK of them may still
        be closing while their replacements are accepted, so a flood churns fast.
        """
        with self._cond:
            for attempt in range(2):
                live = [c for c in self._conns if not c.evicted]
                if len(live) < self.max_connections and len(self._conns) < (
                    self.max_connections + EVICTION_SLACK
                ):
                    return True
                if attempt:
                    break
                idle = [c for c in live if c.evictable]
                if len(live) >= self.max_connections and idle:
                    victim = min(idle, key=lambda c: c.since)
                    victim.evicted = True
                    victim.evictable = False
                    victim.abort()
                    continue
                # Every connection is busy answering (or closing): new ones wait in the
                # listen backlog until one ends.
                self._cond.wait(_POLL_INTERVAL)
            return False

    def _reap(self) -> None:
        """Abort connections past their deadline (a backstop for what socket timeouts miss)."""
        now = time.monotonic()
        with self._cond:
            expired = [c for c in self._conns if c.deadline < now]
        for conn in expired:
            conn.abort()

    def _open(self, sock: socket.socket, peer: Any) -> None:
        conn = _Conn(sock, peer, time.monotonic() + self.header_timeout)
        with self._cond:
            self._conns.add(conn)
        thread = threading.Thread(target=self._serve, args=(conn,), name="http-conn", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # cannot start a thread: the process is at a limit
            self._warn("cannot start a connection thread: %s", exc)
            self._release(conn)

    def _release(self, conn: _Conn) -> None:
        with contextlib.suppress(OSError):
            conn.sock.close()
        with self._cond:
            self._conns.discard(conn)
            self._cond.notify_all()

    def _warn(self, message: str, *args: Any) -> None:
        """A warning at most every 10 seconds: a flood must not flood the log too."""
        now = time.monotonic()
        if now - self._last_warning >= 10.0:
            self._last_warning = now
            _log.warning(message, *args)

    # -- one connection --------------------------------------------------------------------

    def _serve(self, conn: _Conn) -> None:
        try:
            if self._ssl is not None and not self._handshake(conn, self._ssl):
                return
            self._requests(conn)
        except OSError as exc:  # resets, timeouts, evictions
            _log.debug("connection from %s ended: %s", _peer(conn.peer), exc)
        except Exception:
            _log.error("error serving %s", _peer(conn.peer), exc_info=True)
        finally:
            self._release(conn)

    def _handshake(self, conn: _Conn, context: ssl.SSLContext) -> bool:
        try:
            # One timeout bounds the whole handshake, however the client trickles it (and the
            # web config's look at the ClientHello before it).
            conn.sock.settimeout(max(0.001, conn.deadline - time.monotonic()))
            tls = context.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False)
            conn.sock = tls
            tls.settimeout(max(0.001, conn.deadline - time.monotonic()))
            tls.do_handshake()
        except OSError as exc:  # ssl.SSLError, timeouts and resets are all OSErrors
            _log.debug("TLS handshake with %s failed: %s", _peer(conn.peer), exc)
            return False
        tls_config = self._web.tls
        if tls_config is not None and not tls_config.client_allowed(tls.getpeercert()):
            _log.debug(
                "client certificate from %s has none of client_allowed_sans", _peer(conn.peer)
            )
            return False
        return True

    def _requests(self, conn: _Conn) -> None:
        reader = _Reader(conn)
        waiting_for_next = False
        while not self._stopping.is_set():
            try:
                head = reader.read_head(self.header_timeout, waiting_for_next)
            except _BadRequest as bad:
                self._refuse(conn, bad.status, bad.reason)
                return
            if head is None:
                return  # closed, timed out or evicted before a whole request arrived
            conn.evictable = False
            conn.deadline = float("inf")  # the app's own deadlines bound it from here
            try:
                request = _parse_head(head)
            except _BadRequest as bad:
                self._refuse(conn, bad.status, bad.reason, head.split(b"\n", 1)[0])
                return
            if not self._answer(conn, reader, request):
                return
            conn.evictable = True
            conn.since = time.monotonic()
            conn.deadline = conn.since + self.idle_timeout
            waiting_for_next = True

    def _answer(self, conn: _Conn, reader: _Reader, request: _Request) -> bool:
        """Run the app for one request; True when the connection may carry another."""
        length = request.content_length
        body = _Body(reader, length, self.connection_timeout)
        writer = _Writer(conn, self.connection_timeout)
        handler = _ResponseHandler(
            body,
            writer,
            self._environ(conn, request),
            keep_alive=request.keep_alive and not self._stopping.is_set(),
            head=request.method == "HEAD",
        )
        handler.run(self._app)
        _log.debug(
            "%s %s %s %s",
            _peer(conn.peer),
            '"' + request.line + '"',
            handler.status_code or "-",
            handler.sent,
        )
        if not (handler.finished and handler.keep_alive):
            return False
        conn.deadline = time.monotonic() + self.connection_timeout
        return body.drain()

    def _environ(self, conn: _Conn, request: _Request) -> dict[str, Any]:
        path, _, query = request.target.partition("?")
        peer = conn.peer if isinstance(conn.peer, tuple) else (str(conn.peer), 0)
        environ: dict[str, Any] = {
            "SERVER_NAME": self._server_name,
            "SERVER_PORT": str(self.port),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SCRIPT_NAME": "",
            "SERVER_PROTOCOL": request.version,
            "REQUEST_METHOD": request.method,
            "PATH_INFO": urllib.parse.unquote(path, "iso-8859-1"),
            "QUERY_STRING": query,
            "REMOTE_ADDR": str(peer[0]),
            "REMOTE_PORT": str(peer[1]),
        }
        if self._ssl is not None:
            environ["HTTPS"] = "on"  # makes wsgi.url_scheme "https"
        for name, value in request.headers.items():
            if "_" in name:
                continue  # X_Foo would pass for X-Foo (as wsgiref drops them too)
            key = name.replace("-", "_").upper()
            text = value.strip()
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = text
                continue
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{text}" if key in environ else text
        return environ

    def _refuse(self, conn: _Conn, status: int, reason: str, line: bytes = b"") -> None:
        """Answer a request that cannot be served with a short error, then close."""
        body = f"{reason}\n".encode()
        phrase = http.HTTPStatus(status).phrase
        head = (
            f"HTTP/1.1 {status} {phrase}\r\nServer: {_SOFTWARE}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        _log.debug(
            "%s %s %d (%s)", _peer(conn.peer), '"' + line.decode("iso-8859-1") + '"', status, reason
        )
        with contextlib.suppress(OSError):
            _Writer(conn, self.connection_timeout).write(head.encode() + body)
            # Closing with unread request bytes would reset the connection and could destroy
            # the answer before the client reads it: half-close, then drop what still comes.
            conn.sock.shutdown(socket.SHUT_WR)
            give_up = time.monotonic() + _LINGER
            dropped = 0
            while dropped < _MAX_HEAD and (left := give_up - time.monotonic()) > 0:
                conn.sock.settimeout(left)
                data = conn.sock.recv(65536)
                if not data:
                    break
                dropped += len(data)


class _Conn:
    """One client connection as the accept loop sees it."""

    __slots__ = ("deadline", "evictable", "evicted", "peer", "since", "sock")

    def __init__(self, sock: socket.socket, peer: Any, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.since = time.monotonic()
        self.deadline = deadline  # abort the connection after this (monotonic clock)
        self.evictable = True  # no complete request received yet: may make room for another
        self.evicted = False  # aborted to make room, closing

    def abort(self) -> None:
        """Make the connection's blocked reads and writes return at once."""
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Request:
    """A parsed request line and headers."""

    __slots__ = ("content_length", "headers", "keep_alive", "line", "method", "target", "version")

    def __init__(
        self, method: str, target: str, version: str, headers: http.client.HTTPMessage, line: str
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.line = line
        tokens = {t.strip().lower() for t in ",".join(headers.get_all("Connection", [])).split(",")}
        if version == "HTTP/1.1":
            self.keep_alive = "close" not in tokens
        else:
            self.keep_alive = "keep-alive" in tokens
        if "Transfer-Encoding" in headers:
            raise _BadRequest(501, "request bodies in chunks are not supported")
        lengths = set(headers.get_all("Content-Length", []))
        if len(lengths) > 1:
            raise _BadRequest(400, "conflicting Content-Length headers")
        text = lengths.pop().strip() if lengths else "0"
        if not text.isascii() or not text.isdigit():
            raise _BadRequest(400, "bad Content-Length")
        self.content_length = int(text)
        if self.content_length > _MAX_BODY:
            raise _BadRequest(413, f"request bodies are limited to {_MAX_BODY} bytes")


_HEAD_END = re.compile(rb"\r?\n\r?\n")


def _parse_head(head: bytes) -> _Request:
    raw_line, _, rest = head.partition(b"\n")
    raw_line = raw_line.rstrip(b"\r")
    line = raw_line.decode("iso-8859-1")
    parts = raw_line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise _BadRequest(400, "bad request line")
    method, target, version = (p.decode("iso-8859-1") for p in parts)
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if re.fullmatch(r"HTTP/\d\.\d", version):
            raise _BadRequest(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        raise _BadRequest(400, "bad request line")
    if not target.startswith("/"):
        split = urllib.parse.urlsplit(target)
        if split.scheme not in ("http", "https") or not split.netloc:
            raise _BadRequest(400, "bad request target")
        target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException as exc:
        raise _BadRequest(431, f"bad or too many headers: {exc}") from None
    return _Request(method, target, version, headers, line)


class _Reader:
    """Reads a connection's requests; bytes past one request's head wait for the next."""

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self._buffer = b""

    def read_head(self, header_timeout: float, waiting_for_next: bool) -> bytes | None:
        """The request line and headers (None if the client closed or missed the deadline).

        The deadline is the connection's; on a kept-alive connection it becomes
        `header_timeout` from the first byte of the next request.
        """
        conn = self._conn
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")  # stray line ends between requests
            match = _HEAD_END.search(self._buffer)
            if match is not None:
                head, self._buffer = self._buffer[: match.end()], self._buffer[match.end() :]
                if head.find(b"\n") > _MAX_REQUEST_LINE:
                    raise _BadRequest(414, "request line too long")
                return head
            if b"\n" not in self._buffer and len(self._buffer) > _MAX_REQUEST_LINE:
                raise _BadRequest(414, "request line too long")
            if len(self._buffer) > _MAX_HEAD:
                raise _BadRequest(431, "request headers too large")
            if waiting_for_next and self._buffer:
                waiting_for_next = False
                conn.deadline = time.monotonic() + header_timeout
            data = self._recv(conn.deadline - time.monotonic(), 65536)
            if not data:
                return None
            self._buffer += data

    def read_some(self, size: int, timeout: float) -> bytes:
        """Up to `size` bytes: buffered ones first, else one receive (b"" at the end)."""
        if self._buffer:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return self._recv(timeout, min(size, 65536))

    def _recv(self, timeout: float, size: int) -> bytes:
        if timeout <= 0:
            return b""
        sock = self._conn.sock
        sock.settimeout(timeout)
        try:
            return sock.recv(size)
        except TimeoutError:
            return b""


class _Body:
    """wsgi.input: the request body, never read past its Content-Length."""

    def __init__(self, reader: _Reader, length: int, timeout: float) -> None:
        self._reader = reader
        self.remaining = length
        self._timeout = timeout

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes of the body (all of it by default)."""
        want = self.remaining if size is None or size < 0 else min(size, self.remaining)
        chunks = []
        while want > 0:
            data = self._reader.read_some(want, self._timeout)
            if not data:
                self.remaining = 0  # the client stopped sending: the body is cut short
                break
            chunks.append(data)
            want -= len(data)
            self.remaining -= len(data)
        return b"".join(chunks)

    def readline(self, size: int | None = -1) -> bytes:
        """One line of the body."""
        limit = self.remaining if size is None or size < 0 else min(size, self.remaining)
        out = bytearray()
        while len(out) < limit and not out.endswith(b"\n"):
            data = self.read(1)
            if not data:
                break
            out += data
        return bytes(out)

    def readlines(self, hint: int = -1) -> list[bytes]:
        """The remaining lines of the body."""
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Any:
        return iter(self.readlines())

    def drain(self) -> bool:
        """Read and drop what the app left unread; False when the body was cut short."""
        while self.remaining > 0:
            if not self.read(65536):
                return False
        return True


class _Writer:
    """wsgiref's stdout: whole writes, each bounded by the connection timeout."""

    def __init__(self, conn: _Conn, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout

    def write(self, data: bytes) -> int:
        """Send all of `data` or raise."""
        conn = self._conn
        conn.deadline = min(conn.deadline, time.monotonic() + self._timeout)
        conn.sock.settimeout(max(0.001, conn.deadline - time.monotonic()))
        conn.sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered."""


class _ResponseHandler(SimpleHandler):
    """wsgiref's response writing, with keep-alive, HEAD without a body and quiet logging."""

    server_software = _SOFTWARE
    http_version = "1.1"
    os_environ: dict[str, str] = {}  # noqa: RUF012 - the process environment stays out of environ
    # wsgiref's own state, declared for the type checker.
    headers: Headers | None
    status: str | None
    environ: dict[str, Any] | None
    headers_sent: bool
    bytes_sent: int

    def __init__(
        self,
        stdin: _Body,
        stdout: _Writer,
        environ: dict[str, Any],
        *,
        keep_alive: bool,
        head: bool,
    ) -> None:
        super().__init__(stdin, stdout, _LogStream(), environ, multithread=True)  # type: ignore[arg-type]
        self.keep_alive = keep_alive
        self.head = head
        self.finished = False
        self.status_code = 0
        self.sent = 0

    def cleanup_headers(self) -> None:
        """Frame the answer: keep the connection only when its end is known."""
        super().cleanup_headers()
        assert self.headers is not None and self.status is not None
        code = int(self.status.split()[0])
        framed = self.head or "Content-Length" in self.headers or code in (204, 304)
        if self.keep_alive and framed:
            if self.request_version() == "HTTP/1.0":
                self.headers["Connection"] = "keep-alive"
        else:
            self.keep_alive = False
            del self.headers["Connection"]
            self.headers["Connection"] = "close"

    def request_version(self) -> str:
        """The request's protocol version."""
        environ = self.environ
        assert environ is not None
        return str(environ.get("SERVER_PROTOCOL", "HTTP/1.0"))

    def write(self, data: bytes) -> None:
        """Send a piece of the body (HEAD: only count it, so Content-Length stays right)."""
        if not self.head:
            super().write(data)
            return
        if not self.headers_sent:
            self.bytes_sent = len(data)
            self.send_headers()
        else:
            self.bytes_sent += len(data)

    def finish_content(self) -> None:
        """End an answer (HEAD: without claiming a zero length the app did not state)."""
        if self.head and not self.headers_sent:
            self.send_headers()
            return
        super().finish_content()

    def close(self) -> None:
        """The answer is complete: remember its status and size for the access line."""
        if self.status:
            self.status_code = int(self.status.split()[0])
        self.sent = self.bytes_sent
        self.finished = True
        super().close()

    def log_exception(self, exc_info: OptExcInfo) -> None:
        """An app failure is an error with its traceback; a broken connection only debug."""
        self.keep_alive = False
        environ = self.environ or {}
        if isinstance(exc_info[1], OSError):
            _log.debug("connection broke while answering: %s", exc_info[1])
        else:
            _log.error(
                "unhandled exception answering %s %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                exc_info=exc_info,
            )


class _LogStream(io.TextIOBase):
    """wsgi.errors: what the app writes there becomes log records, not stderr output."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer: list[str] = []

    def write(self, s: str) -> int:
        self._buffer.append(s)
        if "\n" in s:
            self.flush()
        return len(s)

    def writelines(self, lines: Iterable[str]) -> None:  # type: ignore[override]
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        text = "".join(self._buffer).rstrip()
        self._buffer.clear()
        if text:
            _log.error("%s", text)


def _peer(client_address: Any) -> str:
    if isinstance(client_address, tuple) and len(client_address) >= 2:
        return f"{client_address[0]}:{client_address[1]}"
    return str(client_address)
