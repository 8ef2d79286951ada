"""The embedded store: a SQLite file (WAL) under --storage.path, written as things happen.

The process works from memory (`MemoryStore`) and writes every change through to the file, so a
restart or a crash finds each task's last answer, the recent sends and a throttling pause in
force. A file that cannot be read is moved aside and the exporter starts empty; a file that cannot
be written is a warning and `up() == False`, and the writes are retried with the next change.
One process owns a storage folder at a time (a lock file): replicas share state through Redis.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from exporter import state as task_state
from exporter.state import TaskState
from exporter.store import Pause, Send
from exporter.store.memory import RETENTION, MemoryStore

log = logging.getLogger(__name__)

FILE_NAME = "state.db"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (trans_no TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sends (
    id TEXT PRIMARY KEY, sent REAL NOT NULL, end REAL NOT NULL, probe INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


class StoreLockedError(Exception):
    """Another process uses the same storage folder."""


class SQLiteStore(MemoryStore):
    """A `MemoryStore` whose every change is also written to `<folder>/state.db`."""

    backend = "sqlite"

    def __init__(self, folder: str | os.PathLike[str], clock: Callable[[], float] = time.time):
        super().__init__(clock)
        self.folder = Path(folder)
        self.path = self.folder / FILE_NAME
        self._db_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None
        self._ok = True
        # What could not be written yet: retried with the next change.
        self._pending_states: dict[str, TaskState | None] = {}
        self._pending_sends: dict[str, Send] = {}
        self._pending_pause: Pause | None = None
        self._open()

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._take_lock()
        except OSError as exc:
            self._degrade(f"cannot use the storage folder: {exc}")
            return
        try:
            self._db = self._connect()
            states, sends, pause = self._read_all()
        except (sqlite3.DatabaseError, ValueError) as exc:
            self._close_db()
            self._move_aside(exc)
            try:
                self._db = self._connect()
                states, sends, pause = {}, [], Pause()
            except sqlite3.Error as exc2:
                self._close_db()
                self._degrade(f"cannot create {self.path}: {exc2}")
                return
        self._restore(states, sends, pause)
        log.info(
            "state store opened",
            extra={"path": str(self.path), "tasks": len(states), "sends": len(sends)},
        )

    def _take_lock(self) -> None:
        handle = open(self.folder / "lock", "ab")  # noqa: SIM115 -- held for the store's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreLockedError(
                f"another exporter uses the storage folder {self.folder} "
                "(one process per folder; replicas share state through storage.redis)"
            ) from None
        self._lock_file = handle

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=2)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        check = db.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            db.close()
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            db.close()
            raise sqlite3.DatabaseError(f"unknown schema version {version}")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        return db

    def _read_all(self) -> tuple[dict[str, TaskState], list[Send], Pause]:
        assert self._db is not None
        states: dict[str, TaskState] = {}
        bad = 0
        for trans_no, text in self._db.execute("SELECT trans_no, state FROM tasks"):
            try:
                states[str(trans_no)] = task_state.loads(text)
            except ValueError:
                bad += 1
        if bad:
            log.warning("ignoring unreadable task states in the store", extra={"count": bad})
        sends = [
            Send(str(i), float(s), float(e), bool(p))
            for i, s, e, p in self._db.execute("SELECT id, sent, end, probe FROM sends")
        ]
        row = self._db.execute("SELECT value FROM meta WHERE key = 'pause'").fetchone()
        return states, sends, _pause(row[0] if row is not None else None)

    def _move_aside(self, exc: BaseException) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                with contextlib.suppress(OSError):
                    src.rename(f"{self.path}.corrupt-{stamp}{suffix}")
        log.warning(
            "state file unreadable; moved aside, starting empty",
            extra={
                "path": str(self.path),
                "err": str(exc),
                "moved_to": f"{self.path}.corrupt-{stamp}",
            },
        )

    def _degrade(self, reason: str) -> None:
        self._ok = False
        log.warning("state store unavailable; keeping state in memory only", extra={"err": reason})

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    # -- the store ---------------------------------------------------------------------------

    def up(self) -> bool:
        """Whether the file took the latest write."""
        return self._ok

    def close(self) -> None:
        """Write what is pending, close the file and release the folder."""
        self._flush()
        with self._db_lock:
            self._close_db()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _saved_state(self, trans_no: str, state: TaskState) -> None:
        with self._db_lock:
            self._pending_states[trans_no] = state
        self._flush()

    def _dropped_states(self, trans_nos: list[str]) -> None:
        with self._db_lock:
            for trans_no in trans_nos:
                self._pending_states[trans_no] = None
        self._flush()

    def _saved_send(self, send: Send) -> None:
        with self._db_lock:
            self._pending_sends[send.id] = send
        self._flush()

    def _saved_pause(self, pause: Pause) -> None:
        with self._db_lock:
            self._pending_pause = pause
        self._flush()

    def _flush(self) -> None:
        with self._db_lock:
            if self._db is None:
                return
            try:
                with self._transaction() as db:
                    self._write(db)
            except sqlite3.Error as exc:
                if self._ok:
                    log.warning(
                        "cannot write the state store; retrying with the next change",
                        extra={"path": str(self.path), "err": str(exc)},
                    )
                self._ok = False
                return
            if not self._ok:
                log.info("state store writable again", extra={"path": str(self.path)})
            self._ok = True
            self._pending_states.clear()
            self._pending_sends.clear()
            self._pending_pause = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        assert self._db is not None
        self._db.execute("BEGIN")
        try:
            yield self._db
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _write(self, db: sqlite3.Connection) -> None:
        for trans_no, new in self._pending_states.items():
            if new is None:
                db.execute("DELETE FROM tasks WHERE trans_no = ?", (trans_no,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO tasks (trans_no, state) VALUES (?, ?)",
                    (trans_no, task_state.dumps(new)),
                )
        if self._pending_sends:
            db.executemany(
                "INSERT OR REPLACE INTO sends (id, sent, end, probe) VALUES (?, ?, ?, ?)",
                [(s.id, s.sent, s.end, int(s.probe)) for s in self._pending_sends.values()],
            )
            horizon = self._clock() - max(RETENTION, self._period)
            db.execute("DELETE FROM sends WHERE end <= ?", (horizon,))
        if self._pending_pause is not None:
            p = self._pending_pause
            value = json.dumps({"until": p.until, "started": p.started, "step": p.step})
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('pause', ?)", (value,))


def _pause(text: object) -> Pause:
    """The stored pause; a damaged one is no pause (the window still holds the sends)."""
    if text is None:
        return Pause()
    try:
        data = json.loads(str(text))
        return Pause(float(data["until"]), float(data["started"]), float(data["step"]))
    except (ValueError, TypeError, KeyError):
        log.warning("ignoring an unreadable throttling pause in the store")
        return Pause()
