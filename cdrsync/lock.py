"""One cdrsync at a time per state store: cron + daemon, or two cron runs, never work at once.

An exclusive `flock` on a file beside the state store (or in the temp dir for a non-file store).
The kernel drops the lock when the process dies, even by SIGKILL, so a crash never leaves a stale
lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Optional

from sqlalchemy.engine import make_url

from .state.db import sqlite_file


class Busy(Exception):
    """Another cdrsync holds the lock."""


def lock_path(state_url: str) -> Path:
    database = sqlite_file(state_url)
    if database is not None:
        return database.with_name(database.name + ".lock")
    url = make_url(state_url)
    digest = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"cdrsync-{digest}.lock"


class RunLock:
    def __init__(self, state_url: str) -> None:
        self.path = lock_path(state_url)
        self._fd: Optional[int] = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(f"another cdrsync is working on this state store (lock {self.path})"
                       ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        os.register_at_fork(after_in_child=self._leave_to_parent)
        return self

    def _leave_to_parent(self) -> None:
        """A forked child (backfill's courier) drops its copy of the descriptor, so the lock
        ends with the process that took it: a new cdrsync may start as soon as a killed one is
        gone, not when its courier is. (Only closed, never unlocked: an flock held through
        another descriptor stays.)"""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
