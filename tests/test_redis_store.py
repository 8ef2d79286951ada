"""Every method of the Redis store against a real redis-server, healthy and degraded."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest

from exporter import state as task_state
from exporter.answers import TaskAnswer
from exporter.config import RedisConfig, StorageConfig
from exporter.protocol import TaskStatus
from exporter.state import TaskState
from exporter.store import Pause, Send
from exporter.store.backends import open_store
from exporter.store.redis import CHUNK, RedisStore, safe_url, scrub_url
from tests.fakes import FakeClock
from tests.redis_server import RedisServer, redis_server, start_redis  # noqa: F401

PERIOD = 300.0
HEARTBEAT = 60.0  # in clock seconds: the tests move the clock by hand


class Monotonic(FakeClock):
    """The breaker's clock: the tests decide when a retry is due."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_700_000_000.0)


@pytest.fixture
def mono() -> Monotonic:
    return Monotonic(start=0.0)


@pytest.fixture
def make_store(
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
    mono: Monotonic,
) -> Iterator[Callable[..., RedisStore]]:
    """RedisStores (replicas) on the test's Redis and clock, without background threads."""
    made: list[RedisStore] = []

    def make(name: str = "a", *, config: RedisConfig | None = None, **kwargs: object) -> RedisStore:
        kwargs.setdefault("heartbeat", HEARTBEAT)
        kwargs.setdefault("skew", 0.0)
        store = RedisStore(
            config or redis_server.config(),
            clock=clock,
            monotonic=mono,
            replica_id=name,
            background=False,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def answered(clock: FakeClock, status: TaskStatus = TaskStatus.SUCCESSFUL) -> TaskState:
    """A state just answered with this status."""
    answer = TaskAnswer(trans_no="t", task_id="id-t", status=status)
    return TaskState(answer=answer, answered_at=clock(), checked_at=clock(), query_ok=True)


def send(n: int | str, clock: FakeClock, *, probe: bool = False, length: float = 3.0) -> Send:
    return Send(f"s{n}", clock(), clock() + length, probe)


def reconnect(store: RedisStore, mono: Monotonic) -> bool:
    """Let the breaker try again and beat once."""
    mono.advance(10.0)
    return store.heartbeat()


# -- healthy: the shared answer cache -------------------------------------------------------------


def test_open_store_picks_redis_from_the_configuration(redis_server: RedisServer) -> None:  # noqa: F811
    store = open_store("", StorageConfig(redis=redis_server.config()))
    try:
        assert isinstance(store, RedisStore)
        assert (store.backend, store.up(), store.replicas()) == ("redis", True, 1)
    finally:
        store.close()


def test_a_state_one_replica_puts_is_what_the_others_get_load_and_see_change(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a, b = make_store("a"), make_store("b")
    assert b.changes() == {}
    state = answered(clock)
    a.put("t1", state)
    assert b.get("t1") == state
    assert make_store("c").load() == {"t1": state}
    assert b.changes() == {"t1": state}
    assert b.changes() == {}, "each change is reported once"
    assert a.changes() == {}, "a replica is not told about its own writes"
    assert b.get("nope") is None


def test_an_older_state_never_overwrites_a_newer_one(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a, b = make_store("a"), make_store("b")
    old = answered(clock)
    clock.advance(10)
    new = answered(clock, TaskStatus.FAILED)
    a.put("t1", new)
    b.put("t1", old)
    assert a.get("t1") == new
    # A throttled query keeps checked_at and changes query_ok: the same time is written.
    throttled = TaskState(new.answer, new.answered_at, new.checked_at, False, 0, "throttled")
    b.put("t1", throttled)
    assert a.get("t1") == throttled


def test_load_reads_every_state_in_chunks(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a = make_store("a")
    n = 2 * CHUNK + 17
    for i in range(n):
        a.put(f"t{i}", answered(clock))
    b = make_store("b")
    before = b.round_trips
    loaded = b.load()
    assert len(loaded) == n
    assert b.round_trips - before >= 3, "HSCAN in several steps, not one huge reply"
    assert b.changes() == {}, "what load() returned is not reported again as a change"


def test_retain_forgets_removed_tasks_for_every_replica(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a, b = make_store("a"), make_store("b")
    for t in ("t1", "t2", "t3"):
        a.put(t, answered(clock))
    b.retain(["t2"])
    assert set(a.load()) == {"t2"}
    assert set(make_store("c").load()) == {"t2"}


def test_an_unreadable_state_in_redis_is_skipped(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
) -> None:
    a = make_store("a")
    a.put("good", answered(clock))
    redis_server.command("HSET", "cloudvod-concat:states", "bad", "{not json")
    assert set(make_store("b").load()) == {"good"}


# -- healthy: one claim per task -------------------------------------------------------------------


def test_one_claim_per_task_across_replicas_and_only_its_owner_releases_it(
    make_store: Callable[..., RedisStore],
) -> None:
    a, b = make_store("a"), make_store("b")
    assert a.claim("t1", 30)
    assert not b.claim("t1", 30)
    b.release("t1")  # not b's claim: nothing happens
    assert not b.claim("t1", 30)
    assert b.claim("t2", 30), "claims are per task"
    a.release("t1")
    assert b.claim("t1", 30)


def test_a_claim_expires_after_its_ttl(make_store: Callable[..., RedisStore]) -> None:
    a, b = make_store("a"), make_store("b")
    assert a.claim("t1", 0.2)  # a dies holding it
    assert not b.claim("t1", 0.2)
    deadline = time.monotonic() + 3
    while not b.claim("t1", 5) and time.monotonic() < deadline:
        time.sleep(0.05)  # Redis expires keys by its own clock: nothing to inject
    assert not a.claim("t1", 5), "b holds it now"


def test_a_claim_brings_the_state_along_for_the_get_after_it(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a, b = make_store("a"), make_store("b")
    state = answered(clock)
    a.put("t1", state)
    assert b.claim("t1", 5)
    trips = b.round_trips
    assert b.get("t1") == state
    assert b.round_trips == trips, "the claim's reply carried the state"
    assert b.get("t1") == state
    assert b.round_trips == trips + 1


# -- healthy: one window ---------------------------------------------------------------------------


def test_replicas_share_one_window_exactly(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a, b, c = make_store("a"), make_store("b"), make_store("c")
    stores = [a, b, c]
    admitted = [stores[i % 3].admit(send(i, clock), 10, PERIOD, 2) for i in range(15)]
    assert admitted == [True] * 10 + [False] * 5
    assert all(s.window(clock(), PERIOD) == (10, 0) for s in stores)
    # each send counts until `end + period`; finish() shortens that for all replicas
    for i in range(10):
        stores[i % 3].finish(f"s{i}", clock() + (1.0 if i < 4 else 2.0))
    clock.advance(PERIOD + 1.0)
    for s in stores:
        s.heartbeat()  # as their heartbeat threads do: all three are alive
    assert a.window(clock(), PERIOD) == (6, 0)
    assert b.admit(send("x", clock), 10, PERIOD, 2)
    assert c.window(clock(), PERIOD) == (7, 0)
    clock.advance(1.0)
    assert a.window(clock(), PERIOD) == (1, 0)


def test_a_send_that_outlived_its_deadline_counts_until_its_late_answer(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
    mono: Monotonic,
) -> None:
    a, b = make_store("a", config=redis_server.config(timeout=0.2)), make_store("b")
    assert a.admit(send(1, clock), 10, PERIOD, 2)
    assert a.admit(send(2, clock), 10, PERIOD, 2)
    a.finish("s1", clock() + 10.0)  # admitted for 3 s, answered after 10
    redis_server.freeze()
    try:
        a.finish("s2", clock() + 10.0)  # Redis is told when it is back
    finally:
        redis_server.thaw()
    assert reconnect(a, mono) and a.up()
    clock.advance(PERIOD + 5.0)
    assert b.window(clock(), PERIOD) == (2, 0)
    assert a.window(clock(), PERIOD) == (2, 0)
    clock.advance(6.0)
    assert b.window(clock(), PERIOD) == (0, 0)


def test_sends_are_kept_for_a_longer_period_and_for_callers_a_little_behind(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a, b = make_store("a"), make_store("b")
    assert a.admit(send(1, clock), 10, PERIOD, 2)
    clock.advance(PERIOD + 100)
    assert a.admit(send(2, clock), 10, PERIOD, 2)  # s1 no longer counts for this period
    assert b.window(clock(), 2 * PERIOD) == (2, 0), "a reload to a longer period counts it"
    long = 4000.0  # longer than the retention hour
    start = clock()
    assert a.admit(send(3, clock), 10, long, 2)
    clock.advance(long + 5.0)
    assert b.admit(send(4, clock), 10, long, 2)  # s3 (end start + 3) no longer counts here
    assert a.window(start + long + 1.0, long)[0] >= 2, "a caller 4 s behind still counts s3"


def test_probes_have_their_own_limit_inside_the_window(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a, b = make_store("a"), make_store("b")
    assert a.admit(send(1, clock, probe=True), 10, PERIOD, 2)
    assert b.admit(send(2, clock, probe=True), 10, PERIOD, 2)
    assert not a.admit(send(3, clock, probe=True), 10, PERIOD, 2)
    assert b.admit(send(4, clock), 10, PERIOD, 2), "a watched task still gets in"
    assert a.window(clock(), PERIOD) == (3, 2)


def test_clock_skew_margin_counts_each_send_longer(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a = make_store("a", skew=0.5)
    assert a.admit(send(1, clock, length=1.0), 1, PERIOD, 1)
    clock.advance(PERIOD + 1.2)  # past end + period, but within the skew margin
    assert a.window(clock(), PERIOD) == (1, 0)
    assert not a.admit(send(2, clock), 1, PERIOD, 1)
    clock.advance(0.4)
    assert a.admit(send(3, clock), 1, PERIOD, 1)


def test_the_throttling_pause_is_shared(
    make_store: Callable[..., RedisStore], clock: FakeClock, mono: Monotonic
) -> None:
    a, b = make_store("a"), make_store("b")
    assert b.pause() == Pause()
    pause = Pause(clock() + 10, clock(), 10.0)
    a.set_pause(pause)
    mono.advance(2.0)  # past b's one-second cache of the pause
    assert b.pause() == pause


# -- replicas seen alive ---------------------------------------------------------------------------


def test_replicas_counts_those_that_heartbeat(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a, b, c = make_store("a"), make_store("b"), make_store("c")
    assert a.heartbeat() and a.replicas() == 3
    c.close()  # a clean exit leaves at once
    a.heartbeat()
    assert a.replicas() == 2
    clock.advance(3 * HEARTBEAT + 1)  # b stops beating (killed)
    a.heartbeat()
    assert a.replicas() == 1
    assert b.replicas() == 2, "b last saw two"


def test_a_silent_replicas_share_stays_reserved_while_its_sends_may_count(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    """It may be cut off from Redis and spending its share locally for one period."""
    a, b = make_store("a"), make_store("b")
    clock.advance(3 * HEARTBEAT + 1)  # b falls silent
    a.heartbeat()
    admitted = sum(a.admit(send(i, clock), 10, PERIOD, 2) for i in range(10))
    assert admitted == 5
    clock.advance(PERIOD + 10)  # what b sent until a period after it was seen still counts
    admitted = sum(a.admit(send(f"n{i}", clock), 10, PERIOD, 2) for i in range(10))
    assert admitted == 5
    clock.advance(PERIOD + 10)  # past two periods and a deadline: b's share is free again
    admitted = sum(a.admit(send(f"m{i}", clock), 10, PERIOD, 2) for i in range(10))
    assert admitted == 10
    assert b.up()


def test_a_replica_cut_off_for_longer_than_a_period_stops_as_the_others_stop_waiting(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
) -> None:
    a, b = make_store("a"), make_store("b", config=redis_server.config(timeout=0.2))
    b.heartbeat()
    redis_server.freeze()
    try:
        b.get("t1")  # b finds Redis unreachable; its breaker stays open (its clock is held)
    finally:
        redis_server.thaw()
    assert a.up() and not b.up()
    clock.advance(3 * HEARTBEAT + PERIOD + 10)  # b silent for longer than a period
    a.heartbeat()
    got_a = sum(a.admit(send(f"a{i}", clock), 10, PERIOD, 2) for i in range(10))
    got_b = sum(b.admit(send(f"b{i}", clock), 10, PERIOD, 2) for i in range(10))
    assert (got_a, got_b) == (5, 0), "a keeps b's share free; b sends nothing any more"


# -- degraded mode ---------------------------------------------------------------------------------


def test_while_redis_is_down_calls_return_at_once_from_the_mirror(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = make_store("a")
    state = answered(clock)
    a.put("t1", state)
    redis_server.kill()
    with caplog.at_level(logging.WARNING):
        assert a.get("t1") == state  # this call finds out
    assert not a.up()
    assert "Redis unreachable" in caplog.text
    trips = a.round_trips
    started = time.monotonic()
    assert a.get("t1") == state
    assert a.load() == {"t1": state}
    assert a.changes() == {}
    assert a.claim("t2", 5) and not a.claim("t2", 5), "claims are local while down"
    a.release("t2")
    a.put("t3", state)
    a.set_pause(Pause(clock() + 5, clock(), 5.0))
    assert a.pause().until == clock() + 5
    a.finish("zz", clock())
    a.retain(["t1", "t3"])
    a.window(clock(), PERIOD)
    assert a.heartbeat() is False, "the breaker holds retries back"
    assert time.monotonic() - started < 0.1
    assert a.round_trips == trips, "no call waited for Redis while the breaker was open"


def test_a_slow_redis_costs_at_most_one_timeout(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
    mono: Monotonic,
) -> None:
    a = make_store("a", config=redis_server.config(timeout=0.3))
    a.put("t1", answered(clock))
    redis_server.freeze()
    try:
        started = time.monotonic()
        assert a.get("t1") is not None
        first = time.monotonic() - started
        assert 0.25 < first < 1.0
        started = time.monotonic()
        for _ in range(20):
            a.get("t1")
            a.admit(send(clock(), clock), 300, PERIOD, 15)
        assert time.monotonic() - started < 0.1
        assert not a.up()
    finally:
        redis_server.thaw()
    assert reconnect(a, mono) and a.up()


def test_degraded_admission_keeps_the_replicas_within_the_budget_together(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
) -> None:
    a, b = make_store("a"), make_store("b")
    for i in range(4):
        assert (a if i % 2 else b).admit(send(i, clock), 20, PERIOD, 4)
    a.heartbeat()
    b.heartbeat()  # both know the 4 sends and that they are two
    redis_server.kill()
    clock.advance(1)
    got_a = sum(a.admit(send(f"a{i}", clock), 20, PERIOD, 4) for i in range(20))
    got_b = sum(b.admit(send(f"b{i}", clock), 20, PERIOD, 4) for i in range(20))
    # (20 - 4 known - 8 the other may send unseen: its pacing bucket of 2 and 180 s at 1/30 s)
    # / 2 replicas
    assert (got_a, got_b) == (4, 4)
    assert a.window(clock(), PERIOD)[0] >= 18, "nothing left for a"
    # a period after its last contact with Redis a stops: the others no longer keep its share
    clock.advance(PERIOD + 10)
    assert sum(a.admit(send(f"a{i}", clock), 20, PERIOD, 4) for i in range(20, 40)) == 0
    assert a.window(clock(), PERIOD)[0] == 20


def test_a_replica_cut_off_alone_leaves_room_for_what_the_others_send_meanwhile(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
) -> None:
    """For three heartbeats the others count it alive and keep no share free for it."""
    a, b = make_store("a"), make_store("b", config=redis_server.config(timeout=0.2))
    assert sum(a.admit(send(i, clock), 10, PERIOD, 2) for i in range(5)) == 5
    b.heartbeat()  # b knows the 5 sends
    redis_server.freeze()
    try:
        b.get("t1")  # b alone loses Redis
    finally:
        redis_server.thaw()
    got_b = sum(b.admit(send(f"b{i}", clock), 10, PERIOD, 2) for i in range(10))
    got_a = 0
    for step in (1.0, 59.0, 60.0, 59.0):  # a paced at its share, 1 a minute, b still alive
        clock.advance(step)
        got_a += a.admit(send(f"a{step}-{clock()}", clock), 10, PERIOD, 2)
    assert got_a == 4
    assert 5 + got_a + got_b <= 10, (got_a, got_b)


def test_degraded_admission_counts_what_others_sent_since_the_last_snapshot(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
) -> None:
    a, b = make_store("a"), make_store("b")
    a.heartbeat()
    b.heartbeat()
    clock.advance(0.5)
    mb = sum(b.admit(send(f"r{i}", clock), 20, PERIOD, 4) for i in range(2))  # b's bucket: 2
    redis_server.kill()
    clock.advance(0.5)
    got_a = sum(a.admit(send(f"a{i}", clock), 20, PERIOD, 4) for i in range(20))
    got_b = sum(b.admit(send(f"b{i}", clock), 20, PERIOD, 4) for i in range(20))
    assert mb == 2 and got_a > 0 and got_b > 0
    assert mb + got_a + got_b <= 20, (mb, got_a, got_b)


def test_a_replica_that_never_reached_redis_sends_nothing(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
) -> None:
    """It may be a restart during the outage, whose earlier sends still count, and no other
    replica holds a share for it: it sends nothing until it reaches Redis."""
    before = make_store("before")
    assert sum(before.admit(send(i, clock), 10, PERIOD, 2) for i in range(10)) == 10
    redis_server.kill()
    before.close()  # the exporter restarts while Redis is down
    a = make_store("a")
    assert not a.up()
    assert a.replicas() == 1
    assert sum(a.admit(send(f"a{i}", clock), 10, PERIOD, 2) for i in range(10)) == 0
    assert a.window(clock(), PERIOD) == (10, 0), "all of the budget may be spent"
    clock.advance(10 * PERIOD)  # however long the outage lasts
    assert sum(a.admit(send(f"b{i}", clock), 10, PERIOD, 2) for i in range(10)) == 0
    assert a.load() == {} and a.get("t") is None and a.changes() == {}


def test_a_send_queued_while_the_catch_up_finishes_is_pushed_too(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
    mono: Monotonic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = make_store("a", config=redis_server.config(timeout=0.2)), make_store("b")
    redis_server.freeze()
    try:
        a.get("t1")  # the breaker opens
    finally:
        redis_server.thaw()
    local = a._admit_local

    def heartbeat_in_between(*args: object) -> bool:
        assert reconnect(a, mono) and a.up()  # the heartbeat thread catches up (nothing to do)
        return local(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(a, "_admit_local", heartbeat_in_between)
    assert a.admit(send(1, clock), 10, PERIOD, 2)  # failed fast, then queued locally
    monkeypatch.undo()
    a.heartbeat()
    assert a.up()
    assert b.window(clock(), PERIOD) == (1, 0), "the send reached the shared window"


def test_when_redis_is_back_the_replica_catches_up(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
    mono: Monotonic,
) -> None:
    a, b = make_store("a"), make_store("b")
    a.put("t1", answered(clock))
    a.put("t2", answered(clock))
    a.heartbeat()
    redis_server.freeze()  # unreachable for a only: b does not call in the meantime
    clock.advance(10)
    newer_on_a = answered(clock, TaskStatus.FAILED)
    a.put("t1", newer_on_a)
    a.put("t2", answered(clock, TaskStatus.PROCESSING))
    assert not a.up()
    assert a.admit(send("down", clock), 10, PERIOD, 2)
    redis_server.thaw()
    clock.advance(10)
    newest_on_b = answered(clock, TaskStatus.SUCCESSFUL)
    b.put("t2", newest_on_b)  # b answered t2 after a did
    assert reconnect(a, mono) and a.up()
    assert b.get("t1") == newer_on_a, "written back"
    assert b.get("t2") == newest_on_b, "the newer checked_at wins"
    assert b.window(clock(), PERIOD) == (1, 0), "the send made while down counts for all"
    assert b.changes() == {"t1": newer_on_a}


def test_redis_losing_its_data_is_rebuilt_from_the_replicas(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,  # noqa: F811
    clock: FakeClock,
    mono: Monotonic,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = make_store("a"), make_store("b")
    a.put("t1", answered(clock))
    b.put("t2", answered(clock))
    for i in range(6):
        assert (a if i % 2 else b).admit(send(i, clock), 10, PERIOD, 2)
    assert set(a.changes()) == {"t2"}  # as at each round start
    a.heartbeat()
    b.heartbeat()
    redis_server.kill()
    redis_server.start()  # empty
    with caplog.at_level(logging.WARNING):
        assert not a.admit(send("x", clock), 10, PERIOD, 2) or not a.up()
    # a found out; until it rebuilt, it admits within its share only
    assert reconnect(a, mono) and a.up()
    assert "lost the shared state" in caplog.text
    assert set(make_store("c").load()) == {"t1", "t2"}, "a's mirror holds b's answer too"
    assert b.changes() == {} and not b.up(), "b notices the new epoch"
    assert reconnect(b, mono) and b.up()
    total = b.window(clock(), PERIOD)[0]
    assert total >= 6, "the window was re-filled"
    more = sum(b.admit(send(f"b{i}", clock), 10, PERIOD, 2) for i in range(10))
    assert total + more == 10, "never over the budget after the restart"


# -- the password ---------------------------------------------------------------------------------


PASSWORD = "r3dis-Pa55-never-shown"


def test_password_from_the_url_or_the_password_file_and_never_in_errors(
    start_redis: Callable[..., RedisServer],  # noqa: F811
    make_store: Callable[..., RedisStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_redis(password=PASSWORD)
    in_url = make_store(
        "u", config=RedisConfig(url=f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0")
    )
    from_file = make_store("f", config=server.config())
    assert in_url.up() and from_file.up()
    with caplog.at_level(logging.DEBUG):
        wrong = make_store(
            "w", config=RedisConfig(url=f"redis://:{PASSWORD}x@127.0.0.1:{server.port}/0")
        )
        no_password = make_store("n", config=server.config(password=None))
        gone = RedisConfig(url=f"redis://user:{PASSWORD}@127.0.0.1:1/0", timeout=0.2)
        unreachable = make_store("g", config=gone)
    for store in (wrong, no_password, unreachable):
        assert not store.up()
        assert store.last_error
        assert PASSWORD not in store.last_error
    assert "Redis unreachable" in caplog.text
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(server.config()) and PASSWORD not in repr(gone)


def test_state_codec_round_trips_through_redis(
    make_store: Callable[..., RedisStore], clock: FakeClock
) -> None:
    a = make_store("a")
    state = answered(clock, TaskStatus.PROCESSING)
    a.put("t1", state)
    assert task_state.dumps(make_store("b").get("t1") or TaskState()) == task_state.dumps(state)


def test_rediss_with_a_private_ca_in_the_url(
    start_redis: Callable[..., RedisServer],  # noqa: F811
    make_store: Callable[..., RedisStore],
    clock: FakeClock,
) -> None:
    server = start_redis(password=PASSWORD, tls=True)
    a = make_store("a", config=server.config())
    assert a.up(), a.last_error
    a.put("t1", answered(clock))
    assert make_store("b", config=server.config()).get("t1") == answered(clock)
    plain = server.config(url=server.url.replace("rediss://", "redis://").split("?")[0])
    assert not make_store("p", config=plain).up(), "TLS is required by this server"


def test_error_texts_are_scrubbed_of_the_password_in_every_spelling() -> None:
    config = RedisConfig(url="rediss://user:p%40ss%2Fword@redis.example:6380/2", password="filepw")
    text = (
        "Error connecting to rediss://user:p%40ss%2Fword@redis.example:6380/2: "
        "AUTH p@ss/word failed; AUTH filepw failed; redis://other:Zq-other-pw@host/0"
    )
    scrubbed = scrub_url(text, config)
    for secret in ("p%40ss%2Fword", "p@ss/word", "filepw", "Zq-other-pw"):
        assert secret not in scrubbed
    assert "redis.example:6380" in scrubbed, "the host stays: it is what the operator needs"
    assert safe_url(config) == "rediss://redis.example:6380/2"
