"""Resource bounds: answer size, watched-task count, idle connections, concurrent scrapers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.client import CloudVodClient
from exporter.config import ConfigError, load_config, parse_config
from exporter.errors import ApiInvalidResponse, ApiTimeout
from exporter.httpserver import HTTPServer
from exporter.scheduler import RoundReport
from exporter.service import Exporter
from exporter.simulator import Fault, SimulatorServer
from exporter.webapp import make_app
from tests.helpers import ACCESS_KEY_ID, SECRET, make_config, sim_task

Start = Callable[..., SimulatorServer]
Make = Callable[..., Exporter]

MIB = 1_048_576


def rss_bytes() -> int:
    """This process's resident set size now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# --- the answer size -----------------------------------------------------------------------------


def test_a_50_mb_answer_is_refused_without_reading_it(start_simulator: Start) -> None:
    sim = start_simulator([sim_task("big")])
    sim.set_fault("big", Fault(kind="body", body=b'{"code":200,"data":{' + b" " * 50 * MIB))
    client = CloudVodClient(sim.url, ACCESS_KEY_ID, SECRET, timeout=5.0, max_response_bytes=MIB)
    before = rss_bytes()
    started = time.monotonic()
    exchange = client.exchange("big")
    elapsed = time.monotonic() - started
    assert isinstance(exchange.error, ApiInvalidResponse)
    assert exchange.error.code == "invalid_response"
    assert "limit" in str(exchange.error)
    assert elapsed < 1.0
    assert len(exchange.response_body) == 0
    assert rss_bytes() - before < 20 * MIB
    client.close()


@pytest.mark.parametrize("size", [4096, 4097], ids=["at-the-limit", "one-byte-over"])
def test_the_limit_is_exact(start_simulator: Start, size: int) -> None:
    sim = start_simulator([sim_task("t")])
    answer = b'{"code":200,"data":{"transNo":"t","status":2}}'
    sim.set_fault("t", Fault(kind="body", body=answer + b" " * (size - len(answer))))
    client = CloudVodClient(sim.url, ACCESS_KEY_ID, SECRET, timeout=2.0, max_response_bytes=4096)
    exchange = client.exchange("t")
    client.close()
    if size <= 4096:
        assert exchange.error is None and exchange.answer is not None
    else:
        assert isinstance(exchange.error, ApiInvalidResponse)


class EndlessAnswer:
    """A raw HTTP server whose 200 answer never ends: a flood, or a drip of one byte at a time.

    `framing` is how the body is delimited: by closing the connection, by a Content-Length, or
    in chunks.
    """

    def __init__(self, framing: str, *, drip: float = 0.0) -> None:
        self._framing = framing
        self._drip = drip
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.sent = 0
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            framing = {
                "close": b"Connection: close",
                "length": b"Content-Length: 100000",  # within the limit
                "chunked": b"Transfer-Encoding: chunked",
            }[self._framing]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + framing)
            conn.sendall(b"\r\n\r\n")
            piece = b" " if self._drip else b'{"code":200,"data":{' + b" " * 65_516
            if self._framing == "chunked":
                piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            give_up = time.monotonic() + 20
            with contextlib.suppress(OSError):
                while self.sent < 400 * MIB and time.monotonic() < give_up:
                    conn.sendall(piece)
                    self.sent += len(piece)
                    if self._drip:
                        time.sleep(self._drip)
        self.stopped.set()

    def close(self) -> None:
        self._listener.close()


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_an_endless_answer_without_length_is_cut_at_the_limit(framing: str) -> None:
    server = EndlessAnswer(framing)
    client = CloudVodClient(server.url, ACCESS_KEY_ID, SECRET, timeout=5.0, max_response_bytes=MIB)
    try:
        started = time.monotonic()
        exchange = client.exchange("t")
        assert time.monotonic() - started < 2.0
        assert isinstance(exchange.error, ApiInvalidResponse), exchange.error
        assert "limit" in str(exchange.error)
        # The client hung up: the server stopped sending long before its 400 MiB.
        assert server.stopped.wait(5.0)
        assert server.sent < 64 * MIB
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("framing", ["close", "length", "chunked"])
def test_a_trickled_answer_times_out_at_the_timeout(framing: str) -> None:
    # A byte every 0.1s never lets a single receive time out; the whole read must still stop.
    server = EndlessAnswer(framing, drip=0.1)
    client = CloudVodClient(server.url, ACCESS_KEY_ID, SECRET, timeout=0.5)
    try:
        started = time.monotonic()
        exchange = client.exchange("t")
        elapsed = time.monotonic() - started
        assert isinstance(exchange.error, ApiTimeout), exchange.error
        assert elapsed < 1.5
        assert server.stopped.wait(5.0)
    finally:
        client.close()
        server.close()


# --- the number of watched tasks -----------------------------------------------------------------


def _data(tasks: list[str], **top: Any) -> dict[str, Any]:
    api = {"access_key_id": ACCESS_KEY_ID, "access_key_secret": SECRET}
    return {"api": api, "tasks": tasks, **top}


def test_more_tasks_than_max_tasks_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_data(["a", "b", "c"], max_tasks=2), base_dir=tmp_path)
    [problem] = info.value.problems
    assert problem.startswith("max_tasks: ")
    assert "3 tasks" in problem and "2" in problem
    assert len(parse_config(_data(["a", "b"], max_tasks=2), base_dir=tmp_path).tasks) == 2


def test_max_tasks_counts_the_merged_task_files(tmp_path: Path) -> None:
    (tmp_path / "more.yaml").write_text("- b\n- c\n- a\n")  # a is merged, b and c are new
    (tmp_path / "config.yaml").write_text(
        f"api: {{access_key_id: {ACCESS_KEY_ID}, access_key_secret: {SECRET}}}\n"
        "tasks: [a]\ntask_files: [more.yaml]\nmax_tasks: 2\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "config.yaml")
    assert any(p.startswith("max_tasks: ") and "3 tasks" in p for p in info.value.problems)


def test_the_default_max_tasks_is_10000(tmp_path: Path) -> None:
    names = [f"t{i}" for i in range(10_001)]
    assert len(parse_config(_data(names[:10_000]), base_dir=tmp_path).tasks) == 10_000
    with pytest.raises(ConfigError) as info:
        parse_config(_data(names), base_dir=tmp_path)
    assert [p.split(":")[0] for p in info.value.problems] == ["max_tasks"]


def test_a_reload_over_max_tasks_keeps_the_old_configuration(
    start_simulator: Start, tmp_path: Path
) -> None:
    sim = start_simulator([sim_task("a")])
    path = tmp_path / "config.yaml"
    api = f"endpoint: {sim.url}, access_key_id: {ACCESS_KEY_ID}, access_key_secret: {SECRET}"
    head = f"api: {{{api}}}\n"
    path.write_text(head + "max_tasks: 2\ntasks: [a, b]\n")
    exporter = Exporter(load_config(path), loader=lambda: load_config(path))
    try:
        path.write_text(head + "max_tasks: 2\ntasks: [a, b, c]\n")
        problems = exporter.reload()
        assert [p.split(":")[0] for p in problems] == ["max_tasks"]
        assert [t.trans_no for t in exporter.config.tasks] == ["a", "b"]
        assert not exporter.reload_status.ok
    finally:
        exporter.close()


# --- connections and concurrent scrapers ---------------------------------------------------------


@contextlib.contextmanager
def serving(exporter: Exporter) -> Iterator[HTTPServer]:
    server = HTTPServer(make_app(exporter), "127.0.0.1:0").start()
    try:
        yield server
    finally:
        server.shutdown()


@contextlib.contextmanager
def idle_sockets(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that never finish a request: half silent, half mid-request-line."""
    sockets = []
    try:
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_fifty_idle_connections_do_not_block_a_scrape(
    start_simulator: Start, make_exporter: Make
) -> None:
    sim = start_simulator([sim_task(f"t{i}") for i in range(5)])
    exporter = make_exporter(make_config(sim.url, [f"t{i}" for i in range(5)], timeout=0.5))
    with serving(exporter) as server, idle_sockets(server.port, 50):
        started = time.monotonic()
        response = requests.get(
            server.url + "/metrics",
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"},
            timeout=5,
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert "cloudvod_concat_watched_tasks 5.0" in response.text
        assert elapsed < 3.0
        assert requests.get(server.url + "/-/healthy", timeout=5).status_code == 200


def test_twenty_concurrent_scrapers_share_refresh_rounds(
    start_simulator: Start, make_exporter: Make
) -> None:
    finished = [f"done-{i}" for i in range(3)]
    running = [f"running-{i}" for i in range(3)]
    sim = start_simulator(
        [sim_task(t) for t in finished] + [sim_task(t, "processing") for t in running],
        latency=0.05,
    )
    exporter = make_exporter(make_config(sim.url, finished + running, timeout=0.5))
    reports: list[RoundReport] = []
    lock = threading.Lock()
    refresh = exporter.refresh

    def recording_refresh(scrape_timeout: str | None = None) -> RoundReport:
        report = refresh(scrape_timeout)
        with lock:
            reports.append(report)
        return report

    exporter.refresh = recording_refresh  # type: ignore[method-assign]
    statuses: list[int] = []
    stop = time.monotonic() + 5.0

    def scraper() -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                response = session.get(
                    url + "/metrics",
                    headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"},
                    timeout=10,
                )
                with lock:
                    statuses.append(response.status_code)

    with serving(exporter) as server:
        url = server.url
        threads = [threading.Thread(target=scraper) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert not any(thread.is_alive() for thread in threads)

    assert len(statuses) >= 40
    assert set(statuses) == {200}
    stats = sim.stats()
    assert any(report.joined for report in reports)  # scrapes did arrive together
    # Rounds that sent something (a scrape that started a round, or lost the race to start one).
    started = [report for report in reports if not report.joined and report.sent > 0]
    assert stats.requests <= sum(report.sent for report in started)
    for trans_no in finished:
        assert stats.per_trans_no[trans_no] == 1  # final: asked once, in the first round
    for trans_no in running:
        assert 1 <= stats.per_trans_no[trans_no] <= len(started)
    assert stats.throttled == 0
