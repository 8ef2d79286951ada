"""The shared store: replicas for one account keep one budget, one answer cache and one claim
per task in Redis (or Valkey), and keep serving from a local mirror while it is unreachable.

Layout under `key_prefix` (Redis 6 commands and Lua only):

- `states` (hash trans_no -> state JSON), `checked` (hash trans_no -> checked_at) and `writers`
  (hash trans_no -> replica id); every write takes the next number of `seq`, and `changes` (a
  sorted set of trans_no by that number) tells each replica what the others wrote since it last
  looked.
- `sends` and `probes`: the sliding window, sorted sets of send ids by the time the send stops
  counting before `period` is added (`Send.end`). Admission is one Lua script: count what still
  counts, insert when there is room. Times are the replicas' own clocks (`send.sent`), not Redis
  TIME, so injected clocks work and a send is judged by the clock that made it; replicas' clocks
  must agree within `skew` (NTP does far better), and every send counts `skew` longer for that.
- `claim:<trans_no>`: SET NX PX with the replica id; released by compare-and-delete.
- `replicas`: a sorted set of replica ids by last heartbeat; alive = seen within three heartbeats.
- `pause` (the throttling pause, JSON) and `epoch` (a random id written once: when it changes or
  vanishes, Redis lost its data and the replicas rebuild it).

Degraded mode: any error or a call slower than `timeout` opens a circuit breaker. Until a
background heartbeat reaches Redis again (every `retry` seconds) no call waits for Redis: states
are served and written from the local mirror, claims are local, and a send is admitted by the
local window under the rule `known + N x mine < requests`, where `known` bounds what counts in
the shared window (its snapshot at the last heartbeat, this replica's own sends admitted through
Redis, what the last admission's reply counted beyond those, and for each other replica a full
pacing bucket plus its rate for the three heartbeats it still counts this replica alive: what it
may send unseen), `mine` the sends this replica made since, and N the replicas it last saw alive.
So the degraded replicas together stay within the budget, each spending at most its share. Two
horizons keep that exact:
- a replica cut off from Redis stops sending DEGRADED_PERIODS (one period) after its last
  contact (heartbeat or admission), and the replicas still connected keep the share of a replica
  they no longer see free until what it sent by then no longer counts (one period more and a
  deadline);
- a replica that has never reached Redis sends nothing (the others hold no share for a replica
  they never saw, and it may be a restart during the outage whose earlier sends still count);
  it serves what it has and starts sending at its first contact.
When Redis answers again the replica pushes the sends it made meanwhile into the shared window
(and the new ends of sends finished meanwhile) and writes back the states it got meanwhile (the
newer `checked_at` wins). If Redis lost its data (a restart without persistence), every replica
re-puts the states of its mirror and re-fills the window from its last snapshot of it and its own
sends before it is back up.

Sends are kept until RETENTION (an hour, or the period if longer) after their end, and a margin
for callers whose clock reads a little earlier, so a reload to a longer period still counts them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from exporter import redaction
from exporter import state as task_state
from exporter.budget import PACING_HORIZON
from exporter.config import RedisConfig
from exporter.state import TaskState
from exporter.store import Pause, Send
from exporter.store.memory import MemoryStore

log = logging.getLogger(__name__)

HEARTBEAT = 2.5  # seconds between heartbeats (alive: seen within three of them)
RETRY = 2.5  # seconds between attempts to reach Redis while it is down
CLOCK_SKEW = 0.5  # how far replica clocks may disagree: each send counts this much longer
RETENTION = 3600.0  # sends are kept this long past their end (a reload may lengthen the period)
FORGET_MARGIN = 60.0  # a caller's `now` may lag another admission's by this much
# A replica cut off from Redis stops sending this many periods after its last contact, and the
# replicas still connected keep its share free for as long as what it sent until then may count.
DEGRADED_PERIODS = 1.0
PAUSE_CACHE = 1.0  # seconds a read of the shared pause is reused (throttling is rare)
CHUNK = 500  # states per HSCAN step or per write-back script call

_NONE = -1e300  # checked_at of a state never asked (older than any real time)
_T = TypeVar("_T")

# -- Lua (Redis 6: plain commands, no cjson, bounds computed by the caller) ----------------------

_PUT = """
-- KEYS: states checked writers seq changes; ARGV: me, strict, then (trans_no, json, checked)...
local n = 0
for i = 3, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[2], ARGV[i])
  local new = tonumber(ARGV[i + 2])
  local skip = false
  if cur then
    cur = tonumber(cur)
    skip = cur > new or (ARGV[2] == '1' and cur >= new)
  end
  if not skip then
    local seq = redis.call('INCR', KEYS[4])
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[1])
    redis.call('ZADD', KEYS[5], seq, ARGV[i])
    n = n + 1
  end
end
return n
"""

_CHANGES = """
-- KEYS: changes states writers epoch; ARGV: last seq, me, epoch
local ep = redis.call('GET', KEYS[4]) or ''
if ep ~= ARGV[3] then return {ep} end
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES')
local out = {ep, ARGV[1]}
local top = tonumber(ARGV[1])
for i = 1, #rows, 2 do
  local seq = tonumber(rows[i + 1])
  if seq > top then top = seq end
  if redis.call('HGET', KEYS[3], rows[i]) ~= ARGV[2] then
    local st = redis.call('HGET', KEYS[2], rows[i])
    if st then
      out[#out + 1] = rows[i]
      out[#out + 1] = st
    end
  end
end
out[2] = string.format('%d', top)
return out
"""

_ADMIT = """
-- KEYS: sends probes replicas epoch
-- ARGV: id end probe requests probe_limit epoch horizon forget alive_after silent_after sent me
if (redis.call('GET', KEYS[4]) or '') ~= ARGV[6] then return {-1, 0, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[8])
local requests = tonumber(ARGV[4])
local counted = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[7], '+inf')
local used = counted
-- A replica that stopped heartbeating may be cut off from Redis and spending its share
-- locally (for at most one period after it was last seen): keep that share free for as long
-- as those sends may count.
redis.call('ZADD', KEYS[3], ARGV[11], ARGV[12])
local alive = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[9], '+inf')
local silent = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[10], ARGV[9])
if silent > 0 then
  used = used + silent * math.floor(requests / (alive + silent))
end
if used >= requests then return {0, alive, counted} end
if ARGV[3] == '1' then
  if redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[7], '+inf') >= tonumber(ARGV[5]) then
    return {0, alive, counted}
  end
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return {1, alive, counted + 1}
"""

_FINISH = """
-- KEYS: sends probes; ARGV: id end. A send's answer came (or it outlived its deadline).
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if cur and tonumber(ARGV[2]) ~= tonumber(cur) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  if redis.call('ZSCORE', KEYS[2], ARGV[1]) then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
end
return 1
"""

_MERGE = """
-- KEYS: sends probes; ARGV: own, then (id, end, probe)...: sends Redis could not count.
-- own = '1': this replica's sends, whose end it knows best; '0': others', only if missing.
for i = 2, #ARGV, 3 do
  if ARGV[1] == '1' or not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    if ARGV[i + 2] == '1' then redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i]) end
  end
end
return 1
"""

_HEARTBEAT = """
-- KEYS: epoch replicas sends probes; ARGV: me now new_epoch alive_after forget_before horizon
local ep = redis.call('GET', KEYS[1])
if not ep then
  redis.call('SET', KEYS[1], ARGV[3])
  ep = ARGV[3]
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
local alive = redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[4], '+inf')
local sends = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[6], '+inf', 'WITHSCORES')
local probes = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[6], '+inf')
return {ep, alive, sends, probes}
"""

_CLAIM = """
-- KEYS: claim states; ARGV: me ttl_ms trans_no. The state comes along: the caller reads it next.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local st = redis.call('HGET', KEYS[2], ARGV[3])
if st then return {1, st} end
return {1}
"""

_RELEASE = """
-- KEYS: claim; ARGV: me
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_SET_PAUSE = """
-- KEYS: pause; ARGV: until started step only_if_later
if ARGV[4] == '1' then
  local cur = redis.call('HGET', KEYS[1], 'until')
  if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('HSET', KEYS[1], 'until', ARGV[1], 'started', ARGV[2], 'step', ARGV[3])
return 1
"""

_DROP = """
-- KEYS: states checked writers changes; ARGV: trans_no...
for i = 1, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
  redis.call('ZREM', KEYS[4], ARGV[i])
end
return #ARGV
"""


class _Down(Exception):
    """Redis is not to be asked now (the breaker is open), or it just failed."""


class _DataLost(Exception):
    """The epoch changed: Redis lost what the replicas wrote."""


@dataclass
class _OwnSend:
    """A send this replica made, and whether the shared window in Redis has it."""

    send: Send
    in_redis: bool
    dirty: bool = False  # in Redis, but its end changed while Redis could not be told


def scrub_url(text: str, config: RedisConfig) -> str:
    """`text` without the password (from the URL or the password file) or the URL's userinfo."""
    for secret in _secrets(config):
        text = text.replace(secret, "<secret>")
    return re.sub(r"(rediss?://)[^@/\s]*@", r"\1<secret>@", text)


def _secrets(config: RedisConfig) -> list[str]:
    found = [config.password or ""]
    with contextlib.suppress(ValueError):
        password = urlsplit(config.url).password or ""
        found += [password, unquote(password)]
    return sorted({s for s in found if s}, key=len, reverse=True)


def safe_url(config: RedisConfig) -> str:
    """The URL as logs may show it: scheme, host, port and database, never the password."""
    try:
        parts = urlsplit(config.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or '?'}{port}{parts.path}"
    except ValueError:
        return "<redis url>"


class RedisStore:
    """A store shared by replicas through Redis, with a local mirror for when it is down."""

    backend = "redis"

    def __init__(
        self,
        config: RedisConfig,
        *,
        clock: Callable[[], float] = time.time,
        replica_id: str | None = None,
        heartbeat: float = HEARTBEAT,
        retry: float = RETRY,
        skew: float = CLOCK_SKEW,
        background: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.replica_id = replica_id or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        self._clock = clock
        self._monotonic = monotonic
        self._heartbeat = heartbeat
        self._retry = retry
        self._skew = skew
        for secret in _secrets(config):
            redaction.register_secret(secret)
        self._redis = _connect(config)
        p = config.key_prefix
        self._k_states, self._k_checked = f"{p}states", f"{p}checked"
        self._k_writers, self._k_pause = f"{p}writers", f"{p}pause"
        self._k_seq, self._k_changes, self._k_epoch = f"{p}seq", f"{p}changes", f"{p}epoch"
        self._k_sends, self._k_probes, self._k_replicas = f"{p}sends", f"{p}probes", f"{p}replicas"
        script = self._redis.register_script
        self._put_script, self._changes_script = script(_PUT), script(_CHANGES)
        self._admit_script, self._finish_script = script(_ADMIT), script(_FINISH)
        self._merge_script, self._heartbeat_script = script(_MERGE), script(_HEARTBEAT)
        self._claim_script, self._release_script = script(_CLAIM), script(_RELEASE)
        self._pause_script, self._drop_script = script(_SET_PAUSE), script(_DROP)

        self._lock = threading.Lock()  # guards the fields below
        self._mirror = MemoryStore(clock)  # states, and the claims taken while Redis is down
        self._own: dict[str, _OwnSend] = {}
        self._snapshot: dict[str, tuple[float, bool]] = {}  # the shared window at the last beat
        self._pending_states: set[str] = set()  # put while Redis was down: to write back
        self._pending_pause: Pause | None = None
        self._pending_keep: frozenset[str] | None = None
        self._pause = Pause()
        self._pause_read = -math.inf  # monotonic time of the last read of the shared pause
        self._period = 0.0  # the longest period asked about
        self._epoch: str | None = None
        self._seq = 0  # the last change this replica has seen
        self._seen = 0  # replicas alive at the last heartbeat (0: never reached Redis)
        self._started = clock()
        self._contact: float | None = None  # clock of the last heartbeat or admission reply
        self._used = (0, -math.inf)  # sends counting in Redis at the last admission, and when
        self._deadline = 0.0  # the longest a send was admitted for (timeout + slack)
        self._requests = 0  # the budget of the last admission
        self._up = False
        self._warned = False  # "unreachable" was logged and "reachable again" was not
        self._retry_at = -math.inf  # monotonic: when the breaker lets a heartbeat try again
        self._beat_at = -math.inf  # clock: when the last heartbeat reached Redis
        self._reason = ""
        self._prefetch = threading.local()  # the state a claim brought along, for the next get
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._trips = 0
        self._trips_lock = threading.Lock()

        self.heartbeat()
        if background:
            self._thread = threading.Thread(
                target=self._run, name="cloudvod-redis-heartbeat", daemon=True
            )
            self._thread.start()

    # -- health ----------------------------------------------------------------------------

    def up(self) -> bool:
        """Whether Redis answered its latest operation (False while the breaker is open)."""
        return self._up

    def replicas(self) -> int:
        """Replicas alive at the last heartbeat (the last count seen while Redis is down)."""
        return max(1, self._seen)

    @property
    def round_trips(self) -> int:
        """Calls that went to Redis so far (what the benchmark counts)."""
        return self._trips

    @property
    def last_error(self) -> str:
        """Why Redis was last unreachable (never holds the password)."""
        return self._reason

    def heartbeat(self) -> bool:
        """Tell Redis this replica is alive; reconnect, rebuild and catch up if it was down.

        While the breaker is open this tries at most once every `retry` seconds.
        """
        if not self._up and self._monotonic() < self._retry_at:
            return False
        now = self._clock()
        with self._lock:
            period = self._period
        try:
            reply = self._call(
                self._heartbeat_script,
                [self._k_epoch, self._k_replicas, self._k_sends, self._k_probes],
                [
                    self.replica_id,
                    repr(now),
                    uuid.uuid4().hex,
                    repr(now - 3 * self._heartbeat),
                    repr(now - 3 * self._heartbeat - self._reserved(period)),
                    repr(now - period - self._skew),
                ],
                force=True,
            )
            epoch = _text(reply[0])
            probes = {_text(i) for i in reply[3]}
            snapshot = {_text(i): (float(e), _text(i) in probes) for i, e in _pairs(reply[2])}
            with self._lock:
                self._snapshot.update(snapshot)
                self._seen = int(reply[1])
                self._beat_at = now
                self._contact = max(self._contact or -math.inf, now)
                known = self._epoch
            if known is not None and epoch != known:
                log.warning(
                    "Redis lost the shared state; this replica writes back what it knows",
                    extra={"redis": safe_url(self.config)},
                )
                self._rebuild()
            with self._lock:
                if known is None:
                    self._seq = 0
                self._epoch = epoch
            if not self._up:
                self._catch_up()
        except _Down:
            return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(min(self._retry, self._heartbeat))
            self._wake.clear()
            if self._stop.is_set():
                return
            if not self._up or self._clock() - self._beat_at >= self._heartbeat:
                self.heartbeat()

    def _call(self, script: Any, keys: list[str], args: list[Any], *, force: bool = False) -> Any:
        """Run one script (unless the breaker is open); on any failure open it, raise _Down."""
        return self._do(lambda: script(keys=keys, args=args), force=force)

    def _do(self, fn: Callable[[], _T], *, force: bool = False) -> _T:
        """One round trip to Redis under the breaker."""
        if not force and not self._up:
            raise _Down
        with self._trips_lock:
            self._trips += 1
        try:
            return fn()
        except Exception as exc:  # whatever redis-py raises, a store never does
            self._trip(exc)
            raise _Down from None

    def _trip(self, exc: BaseException) -> None:
        reason = scrub_url(f"{type(exc).__name__}: {exc}", self.config)[:300]
        with self._lock:
            self._up = False
            self._retry_at = self._monotonic() + self._retry
            self._reason = reason
            warn, self._warned = not self._warned, True
        if warn:
            log.warning(
                "Redis unreachable; serving local state, spending this replica's share",
                extra={"redis": safe_url(self.config), "err": reason},
            )
        self._wake.set()

    def _requeue(self) -> bool:
        """Something was queued for the catch-up: run it again if it already finished (lock
        held; the caller wakes the heartbeat when this returns True)."""
        if not self._up:
            return False
        self._up = False
        self._retry_at = -math.inf
        return True

    def _reserved(self, period: float) -> float:
        """How long after a replica was last seen its local sends may still count."""
        longest = max(period, RETENTION)
        return (DEGRADED_PERIODS + 1) * longest + self._deadline + self._skew + FORGET_MARGIN

    # -- catching up -----------------------------------------------------------------------

    def _catch_up(self) -> None:
        """Push what this replica did while Redis was down; then it is up again."""
        while True:
            with self._lock:
                states = {t: s for t in self._pending_states if (s := self._mirror.get(t))}
                self._pending_states.clear()
                sends = [(o, o.send) for o in self._own.values() if not o.in_redis or o.dirty]
                pause, self._pending_pause = self._pending_pause, None
                keep, self._pending_keep = self._pending_keep, None
                if not states and not sends and pause is None and keep is None:
                    self._up = True
                    warned, self._warned = self._warned, False
                    break
            try:
                self._push_states(states, strict=True)
                self._push_sends([s for _, s in sends], own=True)
                if pause is not None:
                    self._push_pause(pause, only_if_later=True)
                if keep is not None:
                    self._drop_unwanted(keep, force=True)
            except _Down:
                with self._lock:
                    self._pending_states.update(states)
                    self._pending_pause = self._pending_pause or pause
                    self._pending_keep = self._pending_keep or keep
                raise
            with self._lock:
                for own, pushed in sends:
                    own.in_redis = True
                    own.dirty = own.dirty and own.send is not pushed
        if warned:
            log.info("Redis reachable again", extra={"redis": safe_url(self.config)})

    def _rebuild(self) -> None:
        """Redis lost its data: re-fill the window, and queue every state for write-back."""
        with self._lock:
            self._up = False
            sends = [
                Send(i, 0.0, end, probe)
                for i, (end, probe) in self._snapshot.items()
                if i not in self._own
            ]
            for own in self._own.values():
                own.in_redis = False  # pushed again by the catch-up
            self._pending_states.update(self._mirror.load())
            if self._pause.until > self._clock() and self._pending_pause is None:
                self._pending_pause = self._pause
        self._push_sends(sends, own=False)

    def _push_states(self, states: dict[str, TaskState], *, strict: bool) -> None:
        items = list(states.items())
        for start in range(0, len(items), CHUNK):
            args: list[Any] = [self.replica_id, "1" if strict else "0"]
            for trans_no, st in items[start : start + CHUNK]:
                args += [trans_no, task_state.dumps(st), _checked(st)]
            self._call(self._put_script, self._state_keys(), args, force=True)

    def _push_sends(self, sends: list[Send], *, own: bool) -> None:
        with self._lock:
            horizon = self._clock() - max(self._period, RETENTION) - self._skew
        live = [s for s in sends if s.end > horizon]
        for start in range(0, len(live), CHUNK):
            args: list[Any] = ["1" if own else "0"]
            for s in live[start : start + CHUNK]:
                args += [s.id, repr(s.end), "1" if s.probe else "0"]
            self._call(self._merge_script, [self._k_sends, self._k_probes], args, force=True)

    def _push_pause(self, pause: Pause, *, only_if_later: bool, force: bool = True) -> None:
        self._call(
            self._pause_script,
            [self._k_pause],
            [
                _num(pause.until),
                _num(pause.started),
                _num(pause.step),
                "1" if only_if_later else "0",
            ],
            force=force,
        )

    def _state_keys(self) -> list[str]:
        return [self._k_states, self._k_checked, self._k_writers, self._k_seq, self._k_changes]

    # -- task states -------------------------------------------------------------------------

    def load(self) -> dict[str, TaskState]:
        """Every state in Redis (read in chunks), or the mirror's while Redis is down."""
        try:
            seq = self._do(lambda: self._redis.get(self._k_seq))
            rows = self._scan()
        except _Down:
            return self._mirror.load()
        states: dict[str, TaskState] = {}
        for trans_no, text in rows:
            with contextlib.suppress(ValueError):
                states[trans_no] = task_state.loads(text)
        with self._lock:
            self._seq = max(self._seq, int(seq or 0))
            for trans_no, st in states.items():
                self._mirror_newer(trans_no, st)
        return states

    def _scan(self, *, force: bool = False) -> list[tuple[str, bytes]]:
        """Every (trans_no, state text) in Redis, HSCAN by HSCAN."""
        cursor = 0
        out: list[tuple[str, bytes]] = []
        while True:
            step: Any = functools.partial(self._redis.hscan, self._k_states, cursor, count=CHUNK)
            cursor, chunk = self._do(step, force=force)
            out += [(_text(k), v) for k, v in chunk.items()]
            if not cursor:
                return out

    def changes(self) -> dict[str, TaskState]:
        """States other replicas wrote since the last call (none while Redis is down)."""
        if self._up and self._clock() - self._beat_at >= self._heartbeat:
            self.heartbeat()
        with self._lock:
            seq, epoch = self._seq, self._epoch or ""
        try:
            reply = self._call(
                self._changes_script,
                [self._k_changes, self._k_states, self._k_writers, self._k_epoch],
                [str(seq), self.replica_id, epoch],
            )
        except _Down:
            return {}
        if _text(reply[0]) != epoch:
            self._trip(_DataLost("the shared state vanished (Redis restarted without its data?)"))
            return {}
        out: dict[str, TaskState] = {}
        for trans_no, text in _pairs(reply[2:]):
            with contextlib.suppress(ValueError):
                out[_text(trans_no)] = task_state.loads(text)
        with self._lock:
            self._seq = max(self._seq, int(reply[1]))
            for trans_no, st in out.items():
                self._mirror_newer(trans_no, st)
        return out

    def get(self, trans_no: str) -> TaskState | None:
        """One task's state from Redis (or the one its claim just brought along)."""
        prefetched = getattr(self._prefetch, "value", None)
        self._prefetch.value = None
        if prefetched is not None and prefetched[0] == trans_no:
            return prefetched[1]  # type: ignore[no-any-return]
        try:
            text = self._do(lambda: self._redis.hget(self._k_states, trans_no))
        except _Down:
            return self._mirror.get(trans_no)
        return self._adopt_text(trans_no, text)

    def _adopt_text(self, trans_no: str, text: Any) -> TaskState | None:
        """The state Redis sent (kept in the mirror), or the mirror's when it sent none."""
        if text is None:
            return self._mirror.get(trans_no)
        try:
            st = task_state.loads(text)
        except ValueError:
            return self._mirror.get(trans_no)
        with self._lock:
            self._mirror_newer(trans_no, st)
        return st

    def put(self, trans_no: str, state: TaskState) -> None:
        """Write a state to Redis and the mirror (written back later while Redis is down)."""
        self._mirror.put(trans_no, state)
        try:
            self._call(
                self._put_script,
                self._state_keys(),
                [self.replica_id, "0", trans_no, task_state.dumps(state), _checked(state)],
            )
        except _Down:
            with self._lock:
                self._pending_states.add(trans_no)
                wake = self._requeue()
            if wake:
                self._wake.set()

    def retain(self, keep: Collection[str]) -> None:
        """Forget tasks not in `keep`, here and in Redis.

        Replicas sharing a Redis share one configuration, so a task one of them stops watching
        is dropped for all (a replica that still watches it, during a rollout, writes it again
        with its next answer). Exporters with different task lists need different key_prefixes.
        """
        wanted = frozenset(keep)
        self._mirror.retain(wanted)
        with self._lock:
            self._pending_states &= wanted
        try:
            self._drop_unwanted(wanted)
        except _Down:
            with self._lock:
                self._pending_keep = wanted
                wake = self._requeue()
            if wake:
                self._wake.set()

    def _drop_unwanted(self, wanted: frozenset[str], *, force: bool = False) -> None:
        gone = [t for t, _ in self._scan(force=force) if t not in wanted]
        keys = [self._k_states, self._k_checked, self._k_writers, self._k_changes]
        for start in range(0, len(gone), CHUNK):
            self._call(self._drop_script, keys, gone[start : start + CHUNK], force=force)

    def _mirror_newer(self, trans_no: str, new: TaskState) -> None:
        """Keep `new` in the mirror unless the mirror holds a newer state."""
        old = self._mirror.get(trans_no)
        if old is None or float(_checked(new)) >= float(_checked(old)):
            self._mirror.put(trans_no, new)

    # -- claims ------------------------------------------------------------------------------

    def claim(self, trans_no: str, ttl: float) -> bool:
        """The one claim on this task across replicas (a local one while Redis is down)."""
        self._prefetch.value = None
        try:
            reply = self._call(
                self._claim_script,
                [f"{self.config.key_prefix}claim:{trans_no}", self._k_states],
                [self.replica_id, str(max(1, math.ceil(ttl * 1000))), trans_no],
            )
        except _Down:
            return self._mirror.claim(trans_no, ttl)
        if not int(reply[0]):
            return False
        st = self._adopt_text(trans_no, reply[1] if len(reply) > 1 else None)
        self._prefetch.value = (trans_no, st)
        return True

    def release(self, trans_no: str) -> None:
        """Give this replica's claim back (never another replica's)."""
        self._prefetch.value = None
        self._mirror.release(trans_no)
        with contextlib.suppress(_Down):
            self._call(
                self._release_script,
                [f"{self.config.key_prefix}claim:{trans_no}"],
                [self.replica_id],
            )

    # -- the window --------------------------------------------------------------------------

    def admit(self, send: Send, requests: int, period: float, probe_limit: int) -> bool:
        """Admit atomically in the shared window; while Redis is down, within this replica's
        share."""
        now = send.sent
        with self._lock:
            self._period = max(self._period, period)
            self._deadline = max(self._deadline, send.end - send.sent)
            self._requests = requests
            epoch = self._epoch or ""
            self._forget(now)
            longest = max(self._period, RETENTION)
        try:
            reply = self._call(
                self._admit_script,
                [self._k_sends, self._k_probes, self._k_replicas, self._k_epoch],
                [
                    send.id,
                    repr(send.end),
                    "1" if send.probe else "0",
                    requests,
                    probe_limit,
                    epoch,
                    repr(now - period - self._skew),
                    repr(now - longest - self._skew - FORGET_MARGIN),
                    repr(now - 3 * self._heartbeat),
                    repr(now - (DEGRADED_PERIODS + 1) * period - self._deadline - self._skew),
                    repr(now),
                    self.replica_id,
                ],
            )
        except _Down:
            return self._admit_local(send, requests, period, probe_limit)
        result, alive, used = int(reply[0]), int(reply[1]), int(reply[2])
        if result < 0:
            self._trip(_DataLost("the shared window vanished (Redis restarted without its data?)"))
            return self._admit_local(send, requests, period, probe_limit)
        with self._lock:
            self._seen = max(1, alive)
            self._contact = max(self._contact or -math.inf, now)
            self._used = (used, now)
            if result:
                self._own[send.id] = _OwnSend(send, in_redis=True)
        return bool(result)

    def _admit_local(self, send: Send, requests: int, period: float, probe_limit: int) -> bool:
        """Redis is down: `known + N x (mine + 1) <= requests`, for sends and for probes."""
        with self._lock:
            if self._silenced(send.sent, period):
                return False
            known, mine = self._local_counts(send.sent, period, requests)
            n = max(1, self._seen)  # never reached Redis: silenced anyway
            if known[0] + n * (mine[0] + 1) > requests + 1e-9:
                return False
            if send.probe and known[1] + n * (mine[1] + 1) > probe_limit + 1e-9:
                return False
            self._own[send.id] = _OwnSend(send, in_redis=False)
            wake = self._requeue()
        if wake:
            self._wake.set()
        return True

    def _silenced(self, now: float, period: float) -> bool:
        """Whether this replica, cut off from Redis, may send nothing at `now` (lock held).

        One that never reached Redis sends nothing: no replica holds a share for a replica it
        never saw, and it may be a restart during the outage whose earlier sends still count.
        One that did reach Redis stops DEGRADED_PERIODS after its last contact: the others keep
        its share free for as long as what it sent until then may count (see _ADMIT).
        """
        if self._contact is None:
            return True
        return now >= self._contact + DEGRADED_PERIODS * period

    def _local_counts(
        self, now: float, period: float, requests: int
    ) -> tuple[tuple[float, float], tuple[int, int]]:
        """((sends, probes) that may count in the shared window, (sends, probes) of this
        replica's own that it has not seen yet), lock held.

        The shared window known: its snapshot at the last heartbeat, this replica's own sends
        admitted through Redis, the sends the last admission's reply counted beyond those (made
        by others since that heartbeat), and for each other replica a full pacing bucket plus
        its rate for three heartbeats (what it may admit through Redis, unseen, while it still
        counts this replica alive).
        """
        horizon = now - period - self._skew
        known = {i: v for i, v in self._snapshot.items() if v[0] > horizon}
        sends = probes = 0
        for own in self._own.values():
            s = own.send
            if own.in_redis:
                if s.end > horizon:
                    known[s.id] = (s.end, s.probe)
                else:
                    known.pop(s.id, None)
            elif s.end > horizon:
                sends += 1
                probes += s.probe
        seen = float(len(known))
        used, used_at = self._used
        if used_at > self._beat_at and used_at + self._deadline > horizon:
            then = used_at - period - self._skew  # what counted at the last admission
            unseen = used - sum(1 for end, _ in known.values() if end > then)
            seen += max(0, unseen)  # sent after the last heartbeat: they count until at most
            # the last admission + deadline + period
        extra = 0.0
        # The others count this replica alive, so keep no share free for it, until three
        # heartbeats after its last contact: until then they may send through Redis unseen
        # (after that, what they send through Redis leaves this replica its share).
        unseen_until = (self._contact or -math.inf) + 3 * self._heartbeat + self._skew
        if requests and unseen_until + self._deadline > horizon:
            n = max(1, self._seen)
            share = requests / period / n
            bucket = min(requests, max(1, math.ceil(share * PACING_HORIZON)))
            extra = (n - 1) * (bucket + share * (3 * self._heartbeat + self._skew))
        probes_known = float(sum(p for _, p in known.values()))
        return (seen + extra, probes_known + extra), (sends, probes)

    def _forget(self, now: float) -> None:
        """Drop local sends older than any period asked about may count (lock held)."""
        horizon = now - max(self._period, RETENTION) - self._skew - FORGET_MARGIN
        for send_id in [i for i, o in self._own.items() if o.send.end <= horizon]:
            del self._own[send_id]
        for send_id in [i for i, (end, _) in self._snapshot.items() if end <= horizon]:
            del self._snapshot[send_id]

    def finish(self, send_id: str, end: float) -> None:
        """A send counts until its answer came (sooner or later than its deadline) + period."""
        with self._lock:
            own = self._own.get(send_id)
            if own is not None and end != own.send.end:
                s = own.send
                own.send = Send(s.id, s.sent, end, s.probe)
            seen = self._snapshot.get(send_id)
            if seen is not None:
                self._snapshot[send_id] = (end, seen[1])
        try:
            self._call(self._finish_script, [self._k_sends, self._k_probes], [send_id, repr(end)])
        except _Down:
            with self._lock:
                wake = False
                if own is not None and own.in_redis:
                    own.dirty = True  # the catch-up tells Redis the new end
                    wake = self._requeue()
            if wake:
                self._wake.set()

    def window(self, now: float, period: float) -> tuple[int, int]:
        """(sends, probes) counting in the shared window.

        While Redis is down: `requests` minus what this replica's share still allows is what
        it may not send, so these are the known sends plus N times its own since (the whole
        budget while it may send nothing).
        """
        horizon = f"({now - period - self._skew!r}"

        def count() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zcount(self._k_sends, horizon, "+inf")
            pipe.zcount(self._k_probes, horizon, "+inf")
            return pipe.execute()

        try:
            sends, probes = self._do(count)
            return int(sends), int(probes)
        except _Down:
            pass
        with self._lock:
            requests = self._requests
            known, mine = self._local_counts(now, period, requests)
            n = max(1, self._seen)  # never reached Redis: silenced anyway
            used = math.ceil(known[0] + n * mine[0] - 1e-9)
            used_probes = math.ceil(known[1] + n * mine[1] - 1e-9)
            if requests and self._silenced(now, period):
                used = max(used, requests)
        return used, used_probes

    # -- the throttling pause ----------------------------------------------------------------

    def pause(self) -> Pause:
        """The shared pause (read again at most once a second), the local one while down."""
        if self._up and self._monotonic() - self._pause_read >= PAUSE_CACHE:
            try:
                row = self._do(lambda: self._redis.hmget(self._k_pause, "until", "started", "step"))
            except _Down:
                return self._pause
            with self._lock:
                self._pause_read = self._monotonic()
                if row[0] is not None:
                    with contextlib.suppress(TypeError, ValueError):
                        self._pause = Pause(*(_float(v) for v in row))
        return self._pause

    def set_pause(self, pause: Pause) -> None:
        """Record a pause for every replica (written later while Redis is down)."""
        with self._lock:
            self._pause = pause
            self._pause_read = self._monotonic()
        try:
            self._push_pause(pause, only_if_later=False, force=False)
        except _Down:
            with self._lock:
                self._pending_pause = pause
                wake = self._requeue()
            if wake:
                self._wake.set()

    # -- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the heartbeat, leave the set of replicas and close the connections."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self._retry + self.config.timeout + 1.0)
        with contextlib.suppress(_Down):
            self._do(lambda: self._redis.zrem(self._k_replicas, self.replica_id))
        with contextlib.suppress(Exception):
            self._redis.close()


def _connect(config: RedisConfig) -> redis.Redis:
    """A client that waits at most `timeout` per call and never retries by itself."""
    kwargs: dict[str, Any] = {
        "socket_timeout": config.timeout,
        "socket_connect_timeout": config.timeout,
        "retry": Retry(NoBackoff(), 0),  # the breaker decides when to try again
        "health_check_interval": 0,
    }
    if config.password and not urlsplit(config.url).password:
        kwargs["password"] = config.password
    return redis.Redis.from_url(config.url, **kwargs)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Any) -> Iterator[tuple[Any, Any]]:
    items = list(flat)
    return zip(items[0::2], items[1::2], strict=True)


def _checked(state: TaskState) -> str:
    return repr(_NONE if state.checked_at is None else float(state.checked_at))


def _num(value: float) -> str:
    """A float as Lua's tonumber reads it (infinities as huge finite numbers)."""
    return repr(min(max(value, _NONE), -_NONE))


def _float(value: Any) -> float:
    number = float(value)
    if number <= _NONE:
        return -math.inf
    return math.inf if number >= -_NONE else number
