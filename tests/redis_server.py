"""A real redis-server on a free loopback port for the tests, always stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.config import RedisConfig
from tests.helpers import require_tool
from tests.processes import free_port


class RedisServer:
    """One redis-server without persistence: a restart loses every key, as the tests want."""

    def __init__(
        self, binary: str, folder: Path, *, password: str | None = None, tls: bool = False
    ) -> None:
        self.binary = binary
        self.folder = folder
        self.password = password
        self.ca_file: Path | None = None  # with tls: the CA that signed the server's certificate
        if tls:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost")
            self.ca_file = folder / "ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_file))
            cert.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
            cert.private_key_pem.write_to_path(str(folder / "server.key"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "redis.log"

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT/0, or rediss://…?ssl_ca_certs=CA with TLS (no password)."""
        if self.ca_file is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_file}"
        return f"redis://127.0.0.1:{self.port}/0"

    def config(self, **kwargs: Any) -> RedisConfig:
        """A RedisConfig for this server (the password, if any, as from a password_file)."""
        kwargs.setdefault("password", self.password)
        kwargs.setdefault("timeout", 0.5)
        return RedisConfig(url=kwargs.pop("url", self.url), **kwargs)

    def start(self) -> RedisServer:
        """Start (again, on the same port) and wait until it answers PING."""
        port = ["--port", str(self.port)]
        if self.ca_file is not None:
            port = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            port += ["--tls-cert-file", str(self.folder / "server.pem")]
            port += ["--tls-key-file", str(self.folder / "server.key")]
            port += ["--tls-ca-cert-file", str(self.ca_file)]
        argv = [
            self.binary,
            *port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--logfile",
            str(self.log),
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log.read_text(errors='replace')}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer within 10 s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                conn = raw
                if self.ca_file is not None:
                    context = ssl.create_default_context(cafile=str(self.ca_file))
                    conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
                # A server with requirepass answers -NOAUTH: that is an answer too.
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def command(self, *args: str) -> Any:
        """One command sent outside the exporter, e.g. HSET or INFO."""
        import redis

        client = redis.Redis.from_url(self.url, password=self.password)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: gone at once, data lost."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the port accepts connections but nothing answers (a slow Redis)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after freeze()."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM by PID (SIGKILL if it lingers); idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers on free loopback ports; all stopped after the test."""
    binary = require_tool("redis-server", "apt-get install redis-server, or run `make tools`")
    started: list[RedisServer] = []

    def start(password: str | None = None, *, tls: bool = False) -> RedisServer:
        folder = tmp_path / f"redis-{len(started)}"
        folder.mkdir()
        server = RedisServer(binary, folder, password=password, tls=tls).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(start_redis: Callable[..., RedisServer]) -> RedisServer:
    """One running redis-server."""
    return start_redis()
