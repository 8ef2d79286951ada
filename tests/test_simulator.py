"""The Cloud VoD simulator, driven over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from exporter.signing import signed_headers
from exporter.simulator import (
    Fault,
    Rendition,
    SimTask,
    SimulatorServer,
    demo_tasks,
    documented_example,
    generate_tasks,
)

PATH = "/vod/videoManage/videoConcatQuery"
KEY_ID = "demo-access-key"
SECRET = "demo-secret"
JSON_CT = "application/json; charset=utf-8"
FORM_CT = "application/x-www-form-urlencoded"
EXAMPLE = "0251168101641000f4cf4da800000000"
REPO = Path(__file__).resolve().parent.parent


class Clock:
    """A settable clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def host_of(server: SimulatorServer | str) -> str:
    url = server if isinstance(server, str) else server.url
    return url.removeprefix("http://")


def query(
    server: SimulatorServer | str,
    trans_no: str | None,
    *,
    method: str = "POST",
    form: bool = False,
    body: bytes | None = None,
    key_id: str = KEY_ID,
    secret: str = SECRET,
    timestamp: int | None = None,
    timeout: float = 5.0,
    tamper: Callable[[dict[str, str]], None] | None = None,
) -> requests.Response:
    """One signed request to the query path."""
    content_type = FORM_CT if form else JSON_CT
    query_string = ""
    if method == "GET":
        query_string = "" if trans_no is None else f"transNo={trans_no}"
        payload = b""
    elif body is not None:
        payload = body
    elif form:
        payload = b"" if trans_no is None else f"transNo={trans_no}".encode()
    else:
        payload = json.dumps({} if trans_no is None else {"transNo": trans_no}).encode()
    headers = signed_headers(
        access_key_id=key_id,
        secret=secret,
        timestamp=int(time.time()) if timestamp is None else timestamp,
        method=method,
        path=PATH,
        host=host_of(server),
        content_type=content_type,
        body=payload,
        query=query_string,
    )
    if tamper is not None:
        tamper(headers)
    base = server if isinstance(server, str) else server.url
    url = base + PATH + (f"?{query_string}" if query_string else "")
    return requests.request(method, url, data=payload, headers=headers, timeout=timeout)


@pytest.fixture
def clock() -> Clock:
    return Clock(1_700_000_000.0)


@pytest.fixture
def server(clock: Clock) -> Iterator[SimulatorServer]:
    tasks = [
        documented_example(clock.now),
        SimTask(
            "ok-later", "t1", clock.now, 60.0, "successful", renditions=[Rendition(1, -1, 1, 1, 5)]
        ),
        SimTask("fail-later", "t2", clock.now, 30.0, "failed"),
        SimTask("never", "t3", clock.now, 0.0, "processing"),
        SimTask("gone", "t4", clock.now, 0.0, "missing"),
    ]
    with SimulatorServer(tasks, clock=clock) as sim:
        yield sim


# --- tasks -----------------------------------------------------------------------------------


def test_documented_example_answer_field_by_field(server: SimulatorServer) -> None:
    r = query(server, EXAMPLE)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == JSON_CT
    doc = r.json()
    assert doc["code"] == 200
    assert doc["message"] == "操作成功"
    data = doc["data"]
    assert data["taskId"] == "025d0ca201641000acce255700000000"
    assert data["transNo"] == EXAMPLE
    assert data["status"] == 2
    info = data["videoInfo"]
    assert info["videoDuration"] == "7202"
    assert info["videoSize"] == "1223912405"
    assert info["transcodeState"] == "5"
    assert info["videoState"] == "0"
    assert info["uploadTime"] == "1529048009"
    assert info["updateTime"] == "1529048100"
    assert info["videoSourceCode"] == 5
    assert info["encrypt"] == 0
    assert info["videoResolutions"] == [
        {"clarity": 1, "serverType": -1, "width": 1280, "height": 720, "fileSize": 1223912405}
    ]
    for name in ("videoId", "videoName", "videoDescription", "videoClassification", "imageUrl"):
        assert isinstance(info[name], str)
    for name in ("publishDomain", "playerName", "playerId"):
        assert isinstance(info[name], str)


def test_worked_signing_example_is_accepted_with_host_as_sent() -> None:
    # cloudvod-api.md's worked example: the Host header differs from the address connected to.
    secret = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
    body = b'{"transNo":"0123456789"}'
    with SimulatorServer(credentials={"AK": secret}, wall_clock=lambda: 1564645579.0) as sim:
        headers = signed_headers(
            access_key_id="AK",
            secret=secret,
            timestamp=1564645579,
            method="POST",
            path=PATH,
            host="api.cloudv.haplat.net",
            content_type=JSON_CT,
            body=body,
        )
        assert headers["Authorization"].endswith(
            "Signature=f046e2f918abdda7aa779bcca1901d789ec0beb4a6bcb3794d111a01cda397f0"
        )
        r = requests.post(sim.url + PATH, data=body, headers=headers, timeout=5)
    assert r.status_code == 200
    assert r.json() == {"code": 1603, "message": "transNo does not exist", "data": None}


def test_status_timeline_follows_the_clock(server: SimulatorServer, clock: Clock) -> None:
    def status(trans_no: str) -> int:
        data = query(server, trans_no).json()["data"]
        assert ("videoInfo" in data) == (data["status"] == 2)
        return int(data["status"])

    assert (status("ok-later"), status("fail-later"), status("never")) == (1, 1, 1)
    clock.now += 30
    assert (status("ok-later"), status("fail-later"), status("never")) == (1, 3, 1)
    clock.now += 30
    assert (status("ok-later"), status("fail-later"), status("never")) == (2, 3, 1)
    clock.now += 1e6
    assert status("never") == 1


def test_processing_as_1560(clock: Clock) -> None:
    task = SimTask("slow", "t", clock.now, 10.0, "successful")
    with SimulatorServer([task], clock=clock, processing_as_1560=True) as sim:
        assert query(sim, "slow").json() == {
            "code": 1560,
            "message": "the video is being processed",
            "data": None,
        }
        clock.now += 10
        assert query(sim, "slow").json()["data"]["status"] == 2


@pytest.mark.parametrize(
    ("trans_no", "code"),
    [
        (None, 1601),
        ("", 1601),
        ("x" * 33, 1602),
        ("bad/char", 1602),
        ("héllo", 1602),
        ("unknown", 1603),
        ("gone", 1603),
    ],
)
def test_business_error_codes(server: SimulatorServer, trans_no: str | None, code: int) -> None:
    r = query(server, trans_no)
    assert r.status_code == 200
    doc = r.json()
    assert doc["code"] == code
    assert doc["data"] is None
    assert isinstance(doc["message"], str)
    assert doc["message"]


def test_non_string_trans_no_is_illegal(server: SimulatorServer) -> None:
    assert query(server, None, body=b'{"transNo": ["a"]}').json()["code"] == 1602


def test_get_and_form_bodies(server: SimulatorServer) -> None:
    for r in (query(server, EXAMPLE, method="GET"), query(server, EXAMPLE, form=True)):
        assert r.status_code == 200
        assert r.json()["data"]["transNo"] == EXAMPLE
    assert query(server, None, method="GET").json()["code"] == 1601
    assert query(server, "", form=True).json()["code"] == 1601


def test_other_paths_and_methods_are_404(server: SimulatorServer) -> None:
    for method, path in [("GET", "/"), ("POST", "/vod/videoManage/videoConcat"), ("PUT", PATH)]:
        r = requests.request(method, server.url + path, timeout=5)
        assert r.status_code == 404
        assert r.json()["code"] == 404
        assert r.headers["X-WS-RequestId"]
    assert server.stats().requests == 0


def test_request_id_on_every_answer(server: SimulatorServer) -> None:
    answers = [query(server, EXAMPLE), query(server, "nope"), query(server, EXAMPLE, secret="x")]
    ids = [r.headers["X-WS-RequestId"] for r in answers]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == 3


def test_datetime_time_format(clock: Clock) -> None:
    task = documented_example(clock.now)
    task.time_format = "datetime"
    assert task.data_at(clock.now)["videoInfo"]["uploadTime"] == "2018-06-15 15:33:29"
    with SimulatorServer([task], clock=clock) as sim:
        info = query(sim, EXAMPLE).json()["data"]["videoInfo"]
    assert info["uploadTime"] == "2018-06-15 15:33:29"
    assert info["updateTime"] == "2018-06-15 15:35:00"


def test_generate_tasks_is_deterministic_and_valid() -> None:
    now = 1_700_000_000.0
    a = generate_tasks(200, seed=7, now=now)
    assert a == generate_tasks(200, seed=7, now=now)
    assert a != generate_tasks(200, seed=8, now=now)
    assert [t.trans_no for t in a[:2]] == ["sim000000", "sim000001"]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,32}", t.trans_no) for t in a)
    assert all(1 <= len(t.renditions) <= 5 for t in a)
    assert {len(t.renditions) for t in a} == {1, 2, 3, 4, 5}
    assert any(not t.video_name.isascii() for t in a)
    statuses = [t.status_at(now) for t in a]
    assert {1, 2, 3} <= set(statuses)
    assert all(t.status_at(now + 600.0) in (2, 3) for t in a)
    with pytest.raises(ValueError):
        generate_tasks(3, now=now, prefix="x" * 30)


def test_demo_tasks_cover_what_a_newcomer_should_see() -> None:
    now = 1_700_000_000.0
    tasks = demo_tasks(now)
    assert 15 <= len(tasks) <= 25
    assert len({t.trans_no for t in tasks}) == len(tasks)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,32}", t.trans_no) for t in tasks)
    assert tasks[0].trans_no == EXAMPLE
    flips = [t for t in tasks if t.status_at(now) == 1 and t.status_at(now + 50) in (2, 3)]
    assert {t.status_at(now + 50) for t in flips} == {2, 3}
    assert all(t.status_at(now + 9) == 1 for t in flips)
    assert any(t.outcome == "processing" for t in tasks)
    assert [t.outcome for t in tasks].count("missing") == 1
    names = [t.video_name for t in tasks]
    assert any('"' in n and "\\" in n and not n.isascii() for n in names)
    clarities = {r.clarity for t in tasks for r in t.renditions}
    assert {-99, 7} <= clarities
    assert any(t.time_format == "datetime" for t in tasks)
    assert any(t.encrypt == 1 for t in tasks)


# --- authentication ----------------------------------------------------------------------------


def _assert_auth_failure(r: requests.Response) -> None:
    assert r.status_code == 401
    doc = r.json()
    assert doc["code"] == 401
    assert doc["data"] is None
    assert doc["message"].startswith("authentication failed: ")
    assert SECRET not in r.text


def test_wrong_secret(server: SimulatorServer) -> None:
    _assert_auth_failure(query(server, EXAMPLE, secret="wrong"))
    assert server.stats().auth_failures == 1


def test_bad_signature_and_malformed_headers(server: SimulatorServer) -> None:
    def flip(headers: dict[str, str]) -> None:
        last = headers["Authorization"][-1]
        headers["Authorization"] = headers["Authorization"][:-1] + ("1" if last == "0" else "0")

    def drop(headers: dict[str, str]) -> None:
        del headers["Authorization"]

    def other_host(headers: dict[str, str]) -> None:
        headers["Host"] = "api.cloudv.haplat.net"

    def content_type(headers: dict[str, str]) -> None:
        headers["Content-Type"] = "application/json"

    for tamper in (flip, drop, other_host, content_type):
        _assert_auth_failure(query(server, EXAMPLE, tamper=tamper))
    _assert_auth_failure(query(server, EXAMPLE, key_id="unknown-key"))
    assert server.stats().auth_failures == 5
    assert server.stats().answered_ok == 0


def test_body_must_match_the_signature(server: SimulatorServer) -> None:
    payload = json.dumps({"transNo": EXAMPLE}).encode()
    headers = signed_headers(
        access_key_id=KEY_ID,
        secret=SECRET,
        timestamp=int(time.time()),
        method="POST",
        path=PATH,
        host=host_of(server),
        content_type=JSON_CT,
        body=payload,
    )
    r = requests.post(server.url + PATH, data=payload + b" ", headers=headers, timeout=5)
    _assert_auth_failure(r)


def test_timestamp_skew_and_format() -> None:
    wall = Clock(1_700_000_000.0)
    with SimulatorServer([documented_example(0)], wall_clock=wall) as sim:
        assert query(sim, EXAMPLE, timestamp=1_700_000_300).json()["code"] == 200
        assert query(sim, EXAMPLE, timestamp=1_699_999_700).json()["code"] == 200
        _assert_auth_failure(query(sim, EXAMPLE, timestamp=1_700_000_301))
        _assert_auth_failure(query(sim, EXAMPLE, timestamp=1_699_999_699))

        def fractional(headers: dict[str, str]) -> None:
            headers["X-WS-Timestamp"] += ".5"

        _assert_auth_failure(query(sim, EXAMPLE, timestamp=1_700_000_000, tamper=fractional))


# --- rate limit ------------------------------------------------------------------------------


def test_rate_limit_sliding_window(server: SimulatorServer) -> None:
    limit_clock = Clock(100.0)
    with SimulatorServer(
        [documented_example(0)], rate_limit=(5, 60.0), limit_clock=limit_clock
    ) as sim:
        for _ in range(3):
            assert query(sim, EXAMPLE).status_code == 200
        limit_clock.now += 30
        for _ in range(2):
            assert query(sim, EXAMPLE).status_code == 200
        r = query(sim, EXAMPLE)
        assert r.status_code == 429
        assert r.json() == {"code": 429, "message": "request rate limit exceeded", "data": None}
        assert r.headers["X-WS-RequestId"]
        # Bad signatures are not counted toward the window.
        _assert_auth_failure(query(sim, EXAMPLE, secret="wrong"))
        stats = sim.stats()
        assert (stats.requests, stats.answered_ok, stats.throttled) == (7, 5, 1)
        assert stats.max_in_window == 5
        # 60 s after the first three, only they leave the window: three more fit, not four.
        limit_clock.now += 30
        for _ in range(3):
            assert query(sim, EXAMPLE).status_code == 200
        assert query(sim, EXAMPLE).status_code == 429
        assert sim.stats().max_in_window == 5
        assert sim.stats().throttled == 2


def test_rate_limit_is_per_access_key() -> None:
    credentials = {"a": "sa", "b": "sb"}
    with SimulatorServer(
        [documented_example(0)], credentials=credentials, rate_limit=(2, 60.0)
    ) as sim:
        for key in ("a", "a", "b", "b"):
            assert query(sim, EXAMPLE, key_id=key, secret=credentials[key]).status_code == 200
        assert query(sim, EXAMPLE, key_id="a", secret="sa").status_code == 429
        assert sim.stats().max_in_window == 2


def test_unlimited_still_measures_the_window() -> None:
    with SimulatorServer([documented_example(0)], rate_limit=None) as sim:
        for _ in range(8):
            assert query(sim, EXAMPLE).status_code == 200
        assert sim.stats().max_in_window == 8
        assert sim.stats().throttled == 0


# --- faults ----------------------------------------------------------------------------------


def test_fault_delay_causes_client_timeout(server: SimulatorServer) -> None:
    server.set_fault(EXAMPLE, Fault("delay", seconds=0.5, times=1))
    start = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        query(server, EXAMPLE, timeout=0.15)
    # Other requests are not held up by the delayed one.
    assert query(server, "never").json()["data"]["status"] == 1
    assert time.monotonic() - start < 0.45
    assert query(server, EXAMPLE).json()["code"] == 200  # times=1: cleared


def test_fault_reset(server: SimulatorServer) -> None:
    server.set_fault(EXAMPLE, Fault("reset"))
    with pytest.raises(requests.exceptions.ConnectionError):
        query(server, EXAMPLE)
    assert query(server, "never").status_code == 200


def test_fault_http_status(server: SimulatorServer) -> None:
    server.set_fault(EXAMPLE, Fault("http_status", status=503, times=1))
    r = query(server, EXAMPLE)
    assert r.status_code == 503
    assert r.json()["code"] == 503
    server.set_fault(
        EXAMPLE,
        Fault("http_status", status=502, body=b"<h1>Bad Gateway</h1>", content_type="text/html"),
    )
    r = query(server, EXAMPLE)
    assert (r.status_code, r.headers["Content-Type"], r.text) == (
        502,
        "text/html",
        "<h1>Bad Gateway</h1>",
    )


def test_fault_body(server: SimulatorServer) -> None:
    server.set_fault("*", Fault("body", body=b"<html>maintenance</html>", content_type="text/html"))
    r = query(server, "never")
    assert (r.status_code, r.text, r.headers["Content-Type"]) == (
        200,
        "<html>maintenance</html>",
        "text/html",
    )
    server.set_fault("*", Fault("body", body=b'{"code": 200, "data": '))
    with pytest.raises(ValueError):
        query(server, "never").json()
    assert server.stats().answered_ok == 0


def test_fault_truncated(server: SimulatorServer) -> None:
    server.set_fault(EXAMPLE, Fault("truncated"))
    with pytest.raises(
        (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
    ):
        query(server, EXAMPLE)
    assert server.stats().answered_ok == 0


def test_fault_code(server: SimulatorServer) -> None:
    server.set_fault(EXAMPLE, Fault("code", code=1301, message="user has no permission"))
    r = query(server, EXAMPLE)
    assert r.status_code == 200
    assert r.json() == {"code": 1301, "message": "user has no permission", "data": None}


def test_fault_throttle_is_not_counted_as_throttled(server: SimulatorServer) -> None:
    server.set_fault("*", Fault("throttle", times=2))
    assert [query(server, EXAMPLE).status_code for _ in range(3)] == [429, 429, 200]
    assert server.stats().throttled == 0


def test_fault_auth(server: SimulatorServer) -> None:
    server.set_fault(EXAMPLE, Fault("auth"))
    _assert_auth_failure(query(server, EXAMPLE))
    assert query(server, "never").status_code == 200


def test_fault_data_merges_and_removes(server: SimulatorServer) -> None:
    patch = {"status": "2", "videoInfo": {"videoSize": 1223912405, "videoName": None}, "x": 1}
    server.set_fault(EXAMPLE, Fault("data", data=patch, times=1))
    data = query(server, EXAMPLE).json()["data"]
    assert data["status"] == "2"
    assert data["x"] == 1
    assert data["videoInfo"]["videoSize"] == 1223912405
    assert "videoName" not in data["videoInfo"]
    assert data["videoInfo"]["videoDuration"] == "7202"
    assert query(server, EXAMPLE).json()["data"]["videoInfo"]["videoSize"] == "1223912405"


def test_faults_apply_after_signature_check(server: SimulatorServer) -> None:
    server.set_fault("*", Fault("code", code=1000))
    _assert_auth_failure(query(server, EXAMPLE, secret="wrong"))
    server.clear_faults()
    assert query(server, EXAMPLE).json()["code"] == 200


def test_specific_fault_wins_over_wildcard(server: SimulatorServer) -> None:
    server.set_fault("*", Fault("code", code=1000))
    server.set_fault(EXAMPLE, Fault("code", code=1301))
    assert query(server, EXAMPLE).json()["code"] == 1301
    assert query(server, "never").json()["code"] == 1000


def test_client_disconnect_is_quiet(
    server: SimulatorServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.set_fault("*", Fault("delay", seconds=0.2))
    payload = json.dumps({"transNo": EXAMPLE}).encode()
    headers = signed_headers(
        access_key_id=KEY_ID,
        secret=SECRET,
        timestamp=int(time.time()),
        method="POST",
        path=PATH,
        host=host_of(server),
        content_type=JSON_CT,
        body=payload,
    )
    request = f"POST {PATH} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request += f"Content-Length: {len(payload)}\r\n\r\n"
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(request.encode() + payload)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(0.5)
    assert capfd.readouterr().err == ""


# --- concurrency, lifecycle, control endpoints --------------------------------------------------


def test_latency_is_per_request_thread(clock: Clock) -> None:
    with SimulatorServer([documented_example(clock.now)], clock=clock, latency=0.2) as sim:
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: query(sim, EXAMPLE).json()["code"], range(8)))
        elapsed = time.monotonic() - start
    assert codes == [200] * 8
    assert 0.2 <= elapsed < 1.2


def test_keepalive_requests_are_not_stalled(server: SimulatorServer) -> None:
    # Headers and body leave in separate writes; without TCP_NODELAY each answer waits ~40 ms.
    payload = json.dumps({"transNo": EXAMPLE}).encode()
    headers = signed_headers(
        access_key_id=KEY_ID,
        secret=SECRET,
        timestamp=int(time.time()),
        method="POST",
        path=PATH,
        host=host_of(server),
        content_type=JSON_CT,
        body=payload,
    )
    with requests.Session() as session:
        start = time.monotonic()
        for _ in range(50):
            assert session.post(server.url + PATH, data=payload, headers=headers, timeout=5).ok
        assert time.monotonic() - start < 1.0


def test_concurrent_requests_are_all_counted(server: SimulatorServer) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: query(server, "never" if i % 2 else EXAMPLE), range(64)))
    stats = server.stats()
    assert stats.requests == stats.answered_ok == 64
    assert stats.per_trans_no == {"never": 32, EXAMPLE: 32}
    server.reset_stats()
    assert server.stats().requests == 0


def test_stop_is_idempotent_and_closes_keepalive_connections(clock: Clock) -> None:
    sim = SimulatorServer([documented_example(clock.now)], clock=clock).start()
    session = requests.Session()
    url = sim.url
    payload = json.dumps({"transNo": EXAMPLE}).encode()
    headers = signed_headers(
        access_key_id=KEY_ID,
        secret=SECRET,
        timestamp=int(time.time()),
        method="POST",
        path=PATH,
        host=host_of(sim),
        content_type=JSON_CT,
        body=payload,
    )
    assert session.post(url + PATH, data=payload, headers=headers, timeout=5).status_code == 200
    sim.set_fault("*", Fault("delay", seconds=30))
    outcome: list[BaseException | requests.Response] = []

    def wait_for_delayed_answer() -> None:
        try:
            outcome.append(query(sim, EXAMPLE, timeout=10))
        except requests.exceptions.RequestException as exc:
            outcome.append(exc)

    stuck = threading.Thread(target=wait_for_delayed_answer)
    stuck.start()
    time.sleep(0.1)
    start = time.monotonic()
    sim.stop()
    sim.stop()
    stuck.join(5)
    assert not stuck.is_alive()
    assert isinstance(outcome[0], requests.exceptions.ConnectionError)
    assert time.monotonic() - start < 3
    with pytest.raises(requests.exceptions.ConnectionError):
        session.post(url + PATH, data=payload, headers=headers, timeout=2)
    session.close()


def test_control_endpoints(server: SimulatorServer, clock: Clock) -> None:
    base = server.url + "/_sim"
    truth = requests.get(base + "/tasks", timeout=5).json()
    by_trans_no = {t["transNo"]: t for t in truth["tasks"]}
    assert by_trans_no[EXAMPLE]["status"] == 2
    assert by_trans_no[EXAMPLE]["data"] == query(server, EXAMPLE).json()["data"]
    assert by_trans_no["gone"]["status"] is None
    assert by_trans_no["gone"]["data"] is None

    fault = {"kind": "body", "body": "nicht JSON ü", "content_type": "text/plain; charset=utf-8"}
    r = requests.post(base + "/faults", json={"trans_no": EXAMPLE, "fault": fault}, timeout=5)
    assert r.status_code == 200
    assert query(server, EXAMPLE).content == "nicht JSON ü".encode()
    assert requests.delete(base + "/faults", timeout=5).status_code == 200
    assert query(server, EXAMPLE).json()["code"] == 200
    bad = {"trans_no": "*", "fault": {"kind": "explode"}}
    assert requests.post(base + "/faults", json=bad, timeout=5).status_code == 400

    stats = requests.get(base + "/stats", timeout=5).json()
    assert stats == {
        "requests": 3,
        "answered_ok": 2,
        "throttled": 0,
        "auth_failures": 0,
        "per_trans_no": {EXAMPLE: 3},
        "max_in_window": 3,
    }
    assert requests.post(base + "/reset-stats", timeout=5).status_code == 200
    assert server.stats().requests == 0

    r = requests.post(base + "/tasks", json={"count": 5, "seed": 3, "prefix": "load"}, timeout=5)
    assert r.json() == {"added": 5}
    assert query(server, "load000004").json()["data"]["transNo"] == "load000004"
    assert requests.post(base + "/tasks", json={"seed": 3}, timeout=5).status_code == 400
    assert requests.get(base + "/nope", timeout=5).status_code == 404


def test_simulate_command_serves_until_sigterm(tmp_path: Path) -> None:
    pytest.importorskip("exporter.config")
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLOUDVOD_ACCESS_KEY_SECRET": "env-secret"}
    cmd = [
        sys.executable,
        "-m",
        "exporter.simulator",
        "--listen=127.0.0.1:0",
        "--tasks=10",
        "--latency=10ms",
        "--rate-limit=100/1m",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"simulator listening on (http://127\.0\.0\.1:(\d+)) \(10 tasks\)\n", line
        )
        assert match, line
        url = match.group(1)
        r = query(url, "sim000003", secret="env-secret")
        assert r.json()["data"]["transNo"] == "sim000003"
        assert query(url, "sim000003").status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulate_command_rejects_bad_flags() -> None:
    pytest.importorskip("exporter.config")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for flag in ("--rate-limit=lots", "--listen=nowhere", "--latency=soon"):
        proc = subprocess.run(
            [sys.executable, "-m", "exporter.simulator", flag],
            capture_output=True,
            text=True,
            env=env,
            timeout=10,
            check=False,
        )
        assert proc.returncode == 2, (flag, proc.stderr)
        assert proc.stderr.startswith("simulate: ")
        assert "Traceback" not in proc.stderr
