"""Choosing the state store from the command line and the configuration."""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.config import StorageConfig
from exporter.store import Store
from exporter.store.memory import MemoryStore


def open_store(
    storage_path: str, storage: StorageConfig, clock: Callable[[], float] = time.time
) -> Store:
    """Redis when the configuration names one, else SQLite under `storage_path` ("": memory)."""
    if storage.redis is not None:
        from exporter.store.redis import RedisStore

        store: Store = RedisStore(storage.redis, clock=clock)
        return store
    if not storage_path:
        return MemoryStore(clock)
    from exporter.store.sqlite import SQLiteStore

    return SQLiteStore(storage_path, clock=clock)
