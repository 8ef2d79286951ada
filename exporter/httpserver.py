"""The threaded HTTP(S) server that serves the exporter's WSGI app.

One thread per connection; the TLS handshake happens in that thread, never in the accept loop,
so a client that connects and never handshakes cannot stall anyone else. Every connection has
an idle timeout. Connections close after each answer (HTTP/1.0 style). Access lines go to the
`exporter.http` logger at debug level; handshake failures and client disconnects are logged at
debug without tracebacks.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import re
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer
from wsgiref.types import WSGIEnvironment

from exporter import __version__
from exporter.webconfig import WebConfig, WSGIApp, protect

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

__all__ = ["HTTPServer", "parse_listen_address"]

_log = logging.getLogger("exporter.http")

_SOFTWARE = f"cloudvod-concat-exporter/{__version__}"
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAX_REQUEST_LINE = 65536
_POLL_INTERVAL = 0.25  # how quickly shutdown() stops the accept loop


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


class HTTPServer:
    """Serves a WSGI app over HTTP or HTTPS as the web config says, one thread per connection.

    The web config's basic auth and headers are applied here (via `protect`), so the app does
    not need to be wrapped by the caller (wrapping it anyway is harmless).
    """

    def __init__(
        self,
        app: WSGIApp,
        listen_address: str,
        web: WebConfig = WebConfig(),  # noqa: B008 - frozen, immutable
        *,
        connection_timeout: float = 30.0,
    ) -> None:
        """Validate the listen address; nothing is bound until start()."""
        self._host, self._requested_port = parse_listen_address(listen_address)
        self._listen_address = listen_address
        self._app = protect(app, web)
        self._web = web
        self._connection_timeout = connection_timeout
        self._lock = threading.Lock()
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopped = threading.Event()

    def start(self) -> HTTPServer:
        """Bind the listening socket and serve in a daemon thread; returns self."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this HTTPServer was shut down; create a new one")
            if self._server is not None:
                return self
            self._server = self._bind()
            self._thread = threading.Thread(
                target=self._run, name=f"http-server {self._listen_address}", daemon=True
            )
            self._thread.start()
        _log.debug(
            "listening on %s, bound port %d (%s)",
            self._listen_address,
            self.port,
            "TLS" if self._web.tls else "plain HTTP",
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
        """Stop accepting and close the listening socket; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            server, thread = self._server, self._thread
        if server is not None:
            if thread is not None and thread.is_alive():
                server.shutdown()
            server.server_close()
        self._stopped.set()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self._bound().server_address[1])

    @property
    def url(self) -> str:
        """The base URL in loopback form when bound to all interfaces, e.g. http://127.0.0.1:9877."""
        server = self._bound()
        host = str(server.server_address[0])
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "127.0.0.1" if server.dualstack else "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        scheme = "https" if server.ssl_context else "http"
        return f"{scheme}://{host}:{server.server_address[1]}"

    def __enter__(self) -> HTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def _bound(self) -> _ThreadingWSGIServer:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return self._server

    def _bind(self) -> _ThreadingWSGIServer:
        host, port = self._host, self._requested_port
        dualstack = False
        if host in ("", "::") and socket.has_dualstack_ipv6():
            family, address, dualstack = socket.AF_INET6, ("::", port), True
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
        server = _ThreadingWSGIServer(
            address,
            family,
            dualstack=dualstack,
            ssl_context=self._web.ssl_context(),
            web=self._web,
            connection_timeout=self._connection_timeout,
        )
        server.set_app(self._app)
        return server

    def _run(self) -> None:
        try:
            self._bound().serve_forever(poll_interval=_POLL_INTERVAL)
        finally:
            self._stopped.set()


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive clients must not delay shutdown
    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of concurrent scrapes

    def __init__(
        self,
        address: tuple[str, int],
        family: int,
        *,
        dualstack: bool,
        ssl_context: ssl.SSLContext | None,
        web: WebConfig,
        connection_timeout: float,
    ) -> None:
        self.address_family = family
        self.dualstack = dualstack
        self.ssl_context = ssl_context
        self.web = web
        self.connection_timeout = connection_timeout
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.dualstack:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Not HTTPServer.server_bind: its getfqdn() can block on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host) or "localhost"
        self.server_port = int(port)
        self.setup_environ()

    def finish_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        """Runs in the connection's own thread: set the timeout, handshake, then handle."""
        assert isinstance(request, socket.socket)
        request.settimeout(self.connection_timeout)
        if self.ssl_context is None:
            _Handler(request, client_address, self)
            return
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError as exc:  # ssl.SSLError, timeouts and resets are all OSErrors
            _log.debug("TLS handshake with %s failed: %s", _peer(client_address), exc)
            return  # wrap_socket closed the connection
        try:
            tls = self.web.tls
            if tls is not None and not tls.client_allowed(conn.getpeercert()):
                _log.debug(
                    "client certificate from %s has none of client_allowed_sans",
                    _peer(client_address),
                )
                return
            _Handler(conn, client_address, self)
        finally:
            self.shutdown_request(conn)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        """Log instead of printing a traceback to stderr; broken connections only at debug."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            _log.debug("connection from %s ended: %s", _peer(client_address), exc)
        else:
            _log.error("error serving %s", _peer(client_address), exc_info=True)


class _Handler(WSGIRequestHandler):
    server: _ThreadingWSGIServer
    server_version = _SOFTWARE
    sys_version = ""

    def handle(self) -> None:
        """Serve one request (WSGIRequestHandler.handle with quiet logging and TLS environ)."""
        self.raw_requestline = self.rfile.readline(_MAX_REQUEST_LINE + 1)
        if not self.raw_requestline:
            return  # connected, sent nothing, closed
        if len(self.raw_requestline) > _MAX_REQUEST_LINE:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _ServerHandler(
            cast("IO[bytes]", self.rfile),
            cast("IO[bytes]", self.wfile),
            self.get_stderr(),
            self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self
        app = self.server.get_app()
        assert app is not None
        handler.run(app)

    def get_environ(self) -> WSGIEnvironment:
        environ = super().get_environ()
        if self.server.ssl_context is not None:
            environ["HTTPS"] = "on"  # makes wsgi.url_scheme "https"
        return environ

    def get_stderr(self) -> _LogStream:
        return _LogStream()

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)


class _ServerHandler(ServerHandler):
    server_software = _SOFTWARE
    request_handler: _Handler
    environ: WSGIEnvironment

    def log_exception(self, exc_info: OptExcInfo) -> None:
        if isinstance(exc_info[1], OSError):
            _log.debug("connection broke while answering: %s", exc_info[1])
        else:
            _log.error(
                "unhandled exception answering %s %s",
                self.environ.get("REQUEST_METHOD"),
                self.environ.get("PATH_INFO"),
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
