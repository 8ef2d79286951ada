"""Reloads the configuration when a file matched by `task_files` appears, changes or goes."""

from __future__ import annotations

import logging
import threading

from exporter.service import Exporter

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


class TaskFileWatcher:
    """Polls the files the task_files globs match and reloads when any of them changed."""

    def __init__(self, exporter: Exporter, interval: float = 5.0) -> None:
        self._exporter = exporter
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="task-file-watcher", daemon=True)
        self._seen = self.fingerprint()

    def fingerprint(self) -> Fingerprint:
        """Path, modification time and size of every file the task_files globs match now."""
        out = []
        for path in self._exporter.config.task_file_paths():
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def start(self) -> TaskFileWatcher:
        """Watch in a daemon thread."""
        self._thread.start()
        return self

    def check(self) -> bool:
        """Reload if the task files changed since the last check; True when a reload ran."""
        current = self.fingerprint()
        if current == self._seen:
            return False
        log.info("task files changed; reloading")
        # Remember what was seen before the reload read the files: a change landing while it
        # reads triggers one more reload instead of being taken as already loaded.
        self._seen = current
        self._exporter.reload()
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:
                log.exception("task file watcher failed")

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
