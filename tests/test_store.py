"""The state stores: what survives a restart, a corrupt or unwritable file, a second process."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from exporter import state
from exporter.answers import TaskAnswer
from exporter.errors import ApiTimeout
from exporter.protocol import TaskStatus
from exporter.store import Pause, Send
from exporter.store.memory import MemoryStore
from exporter.store.sqlite import SQLiteStore, StoreLockedError
from tests.fakes import FakeClock

DONE = state.answered(state.NEVER_ASKED, TaskAnswer("a", "id-a", TaskStatus.SUCCESSFUL), 1e6)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MemoryStore:
    clock = FakeClock()
    made = MemoryStore(clock) if request.param == "memory" else SQLiteStore(tmp_path, clock=clock)
    yield made  # type: ignore[misc]
    made.close()


def test_every_backend_keeps_states_claims_and_the_window(store: MemoryStore) -> None:
    store.put("a", DONE)
    store.put("b", state.failed(state.NEVER_ASKED, ApiTimeout("x"), 1e6))
    assert store.get("a") == DONE and set(store.load()) == {"a", "b"}
    store.retain(["a"])
    assert set(store.load()) == {"a"}
    assert store.claim("a", 10.0) and not store.claim("a", 10.0)
    store.release("a")
    assert store.claim("a", 10.0)
    assert store.admit(Send("1", 100.0, 110.0), 2, 60.0, 1)
    assert store.admit(Send("2", 100.0, 110.0, probe=True), 2, 60.0, 1)
    assert not store.admit(Send("3", 101.0, 111.0), 2, 60.0, 1)
    assert store.window(101.0, 60.0) == (2, 1)
    store.finish("1", 100.5)
    assert store.window(160.6, 60.0) == (1, 1)  # the first counted until its answer + period
    store.set_pause(Pause(200.0, 190.0, 10.0))
    assert store.pause() == Pause(200.0, 190.0, 10.0)
    assert store.up() and store.replicas() == 1 and store.changes() == {}


def test_a_restart_finds_states_sends_and_the_pause(tmp_path: Path) -> None:
    clock = FakeClock()
    first = SQLiteStore(tmp_path, clock=clock)
    first.put("a", DONE)
    first.admit(Send("s1", clock(), clock() + 11.0), 300, 300.0, 15)
    first.set_pause(Pause(clock() + 20.0, clock(), 20.0))
    first.close()
    again = SQLiteStore(tmp_path, clock=clock)
    assert again.load() == {"a": DONE}
    assert again.window(clock(), 300.0) == (1, 0)
    assert again.pause().until == clock() + 20.0
    again.close()


def test_a_killed_process_loses_nothing_written(tmp_path: Path) -> None:
    clock = FakeClock()
    first = SQLiteStore(tmp_path, clock=clock)
    first.put("a", DONE)
    assert first._lock_file is not None
    first._lock_file.close()  # what kill -9 leaves: no close(), the lock gone with the process
    again = SQLiteStore(tmp_path, clock=clock)
    assert again.load() == {"a": DONE}
    again.close()


def test_one_process_per_storage_folder(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path)
    with pytest.raises(StoreLockedError, match="another exporter uses the storage folder"):
        SQLiteStore(tmp_path)
    first.close()
    SQLiteStore(tmp_path).close()


@pytest.mark.parametrize(
    "damage", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4000]
)
def test_a_corrupt_file_is_moved_aside_and_the_store_starts_empty(
    tmp_path: Path, damage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state.db").write_bytes(damage)
    with caplog.at_level(logging.WARNING):
        store = SQLiteStore(tmp_path)
    assert store.load() == {} and store.up()
    moved = list(tmp_path.glob("state.db.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == damage
    assert "state file unreadable; moved aside" in caplog.text
    store.put("a", DONE)
    store.close()
    assert SQLiteStore(tmp_path).load() == {"a": DONE}


def test_unreadable_rows_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path)
    store.put("a", DONE)
    store.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("INSERT INTO tasks VALUES ('b', '{broken')")
    with caplog.at_level(logging.WARNING):
        again = SQLiteStore(tmp_path)
    assert again.load() == {"a": DONE}
    assert "ignoring unreadable task states" in caplog.text
    again.close()


def test_a_full_disk_is_a_warning_and_the_writes_catch_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path)
    assert store._db is not None
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
    big = {
        f"t{i:04d}": state.answered(
            state.NEVER_ASKED, TaskAnswer(f"t{i:04d}", "x" * 500, TaskStatus.SUCCESSFUL), 1e6
        )
        for i in range(200)
    }
    with caplog.at_level(logging.WARNING):
        for trans_no, value in big.items():
            store.put(trans_no, value)
    assert not store.up()
    assert "cannot write the state store" in caplog.text
    assert store.load() == big  # the process keeps serving from memory
    store._db.execute("PRAGMA max_page_count = 1073741823")  # space again
    store.put("last", DONE)
    assert store.up()
    store.close()
    assert SQLiteStore(tmp_path).load() == {**big, "last": DONE}


def test_a_storage_path_that_cannot_be_a_folder_degrades_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = SQLiteStore(blocker / "data")
    assert not store.up()
    store.put("a", DONE)  # no crash: memory only
    assert store.load() == {"a": DONE}
    store.close()


def test_the_window_counts_exactly_with_many_sends_in_it(store: MemoryStore) -> None:
    """5,000 sends in one period (a budget that does not bind), some answered late: each counts
    until its own end plus the period, whatever order the ends come in."""
    for i in range(5_000):
        assert store.admit(Send(str(i), 1000.0 + i * 0.01, 1000.0 + i * 0.01 + 5), 10**6, 300.0, 10)
    for i in range(0, 5_000, 2):
        store.finish(str(i), 1000.0 + i * 0.01)  # answered at once
    store.finish("1", 1400.0)  # answered long after its deadline: counts longer
    assert store.window(1100.0, 300.0) == (5_000, 0)
    # At 1302.5: the 126 even sends answered by 1002.5 are gone; the odd ones (ending 5 s
    # after their send) all still count.
    assert store.window(1302.5, 300.0)[0] == 5_000 - 126
    assert store.window(1306.0, 300.0)[0] == 5_000 - 301 - 49  # "1" answered late stays
    assert store.window(1699.0, 300.0) == (1, 0)  # the late one alone
