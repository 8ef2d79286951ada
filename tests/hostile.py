"""Hostile peers for the attack tests: a trickling upstream, a slowloris, process gauges."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

# The answer every trans_no that is not trickled gets: a valid "still processing" answer.
PROCESSING = b'{"code":1560,"message":"the video is being processed","data":null}'
# The attack of issue 12: a status line, the start of a header, then one byte at a time.
HEADER_TRICKLE = b"HTTP/1.1 200 OK\r\nX: "


class TricklingUpstream:
    """A raw HTTP/1.1 server on loopback posing as the Cloud VoD API.

    Requests for a trans_no in `slow` (or every request, with slow=None) get `prefix` and then
    one byte every `interval` seconds, for as long as the client stays (at most `give_up`
    seconds); the others get PROCESSING at once. Connections are kept alive. With `tls`, the
    connection is TLS; with `trickle_handshake`, even the TLS ServerHello trickles.
    """

    def __init__(
        self,
        prefix: bytes = HEADER_TRICKLE,
        *,
        slow: set[str] | None = None,
        interval: float = 1.0,
        give_up: float = 120.0,
        tls: ssl.SSLContext | None = None,
        trickle_handshake: bool = False,
    ) -> None:
        self._prefix = prefix
        self._slow = slow
        self._interval = interval
        self._give_up = give_up
        self._tls = tls
        self._trickle_handshake = trickle_handshake
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self.requests: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self.trickles_ended = 0  # trickles that stopped because the client went away
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="trickling-upstream", daemon=True).start()

    def count(self, trans_no: str) -> int:
        """Requests received for this trans_no so far."""
        with self._lock:
            return self.requests[trans_no]

    def close(self) -> None:
        """Stop accepting and end every trickle."""
        self._stop.set()
        self._listener.close()

    def __enter__(self) -> TricklingUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        conn: socket.socket = raw
        try:
            if self._trickle_handshake:
                # A TLS handshake record announcing 16 KiB, delivered a byte at a time.
                self._trickle(conn, b"\x16\x03\x03\x40\x00")
                return
            if self._tls is not None:
                conn = self._tls.wrap_socket(raw, server_side=True)
            buffer = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                body, buffer = buffer[:length], buffer[length:]
                trans_no = str(json.loads(body or b"{}").get("transNo", ""))
                with self._lock:
                    self.requests[trans_no] += 1
                if self._slow is None or trans_no in self._slow:
                    self._trickle(conn, self._prefix)
                    return
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
                    + f"Content-Length: {len(PROCESSING)}\r\n\r\n".encode()
                    + PROCESSING
                )
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _trickle(self, conn: socket.socket, prefix: bytes) -> None:
        give_up = time.monotonic() + self._give_up
        try:
            conn.sendall(prefix)
            while not self._stop.wait(self._interval) and time.monotonic() < give_up:
                conn.sendall(b"a")
        except OSError:
            with self._lock:
                self.trickles_ended += 1


class Slowloris:
    """`count` connections that send a request one header byte at a time, from one thread.

    Each socket sends a byte every `interval` seconds; a socket the server closes is replaced
    by a new one (at most `reconnects_per_second`), so the attack keeps `count` open. Stops after
    `seconds` or at stop(). Everything on loopback.
    """

    def __init__(
        self,
        port: int,
        count: int,
        *,
        interval: float = 1.0,
        seconds: float = 30.0,
        reconnects_per_second: float = 500.0,
    ) -> None:
        self._port = port
        self._count = count
        self._interval = interval
        self._until = time.monotonic() + seconds
        self._reconnect_gap = 1.0 / reconnects_per_second
        self._stop = threading.Event()
        self.opened = 0
        self.closed_by_server = 0
        self.max_open = 0
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def start(self) -> Slowloris:
        """Open the sockets (in the background) and start trickling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every socket."""
        self._stop.set()
        self._thread.join(10)

    def __enter__(self) -> Slowloris:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _connect(self, selector: selectors.BaseSelector) -> socket.socket | None:
        sock = socket.socket()
        sock.setblocking(False)
        err = sock.connect_ex(("127.0.0.1", self._port))
        if err not in (0, 115):  # EINPROGRESS
            sock.close()
            return None
        selector.register(sock, selectors.EVENT_READ)
        self.opened += 1
        return sock

    def _run(self) -> None:
        request = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60000
        selector = selectors.DefaultSelector()
        sockets: dict[socket.socket, int] = {}  # socket -> bytes sent
        next_reconnect = 0.0
        step = self._interval / 10
        try:
            while not self._stop.is_set() and time.monotonic() < self._until:
                now = time.monotonic()
                while len(sockets) < self._count and now >= next_reconnect:
                    sock = self._connect(selector)
                    if sock is None:
                        break
                    sockets[sock] = 0
                    if self.opened > self._count:
                        next_reconnect = now + self._reconnect_gap
                self.max_open = max(self.max_open, len(sockets))
                # A tenth of the sockets send their next byte each tenth of the interval.
                for i, sock in enumerate(list(sockets)):
                    if i % 10 != int(now / step) % 10:
                        continue
                    sent = sockets[sock]
                    try:
                        sockets[sock] += sock.send(request[sent : sent + 1])
                    except OSError:  # not connected yet, or closed by the server
                        continue
                for key, _ in selector.select(step):
                    sock = key.fileobj  # type: ignore[assignment]
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self.closed_by_server += 1
                        selector.unregister(sock)
                        sock.close()
                        del sockets[sock]
        finally:
            for sock in sockets:
                sock.close()
            selector.close()


def process_status(pid: int | str = "self") -> dict[str, int]:
    """Threads, resident memory (bytes) and open descriptors of a process (Linux /proc)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "Threads":
            out["threads"] = int(value)
        elif key == "VmRSS":
            out["rss"] = int(value.split()[0]) * 1024
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


@contextlib.contextmanager
def nofile_limit(soft: int) -> Iterator[int]:
    """Raise (or lower) this process's soft RLIMIT_NOFILE for a while; yields the limit set."""
    import resource

    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    try:
        yield new
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))
