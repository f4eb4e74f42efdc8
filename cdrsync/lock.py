"""The locks that keep cdrsyncs sharing one state store out of each other's way.

A store has three jobs, each done by one process at a time, so that history never waits for
today's calls to be read nor today's calls for history (issue 16 §3):

- `LIVE`: reading the live PBX tables (`sync`, `run`, `retry --quarantined`). Two live readers
  would move one cursor; a cron `sync` next to the daemon says so and exits 0.
- `HISTORY`: reading a backfill range (`backfill`): two backfills exclude each other, a backfill
  and the live sync do not (the ledger's handled linkedids, checked again in the recording
  transaction, keep a call they both meet from being recorded twice).
- `SEND`: draining the outbox (`deliver.Deliverer`): one request in flight per store, one rate.
  Whoever holds it sends for everyone, live calls and missed-call notices first; another
  process only records into the outbox.

`StoreLock(store, name)` is an exclusive lock on a state store (its URL, or its `[state]`
section, whose namespace it honours) under one of those names. This module is the half a process
holds; `cdrsync.state.locks` is the SQL a server store's lock is made of. Where it lives:

- an SQLite file: an `flock` on a file beside it (`state.db.lock` for `LIVE`, the file the single
  run lock of earlier versions used, so an old daemon and a new sync still exclude each other;
  `state.db.NAME.lock` for the others). The file is on this host, so every process that can
  open the store sees the lock.
- PostgreSQL, MySQL / MariaDB: a lock the server holds (`cdrsync.state.locks`) for a
  connection of its own, open as long as the lock is held. A file would not do: the store is
  reached from other hosts, and systemd's PrivateTmp gives each unit a temp dir of its own.
- anything else (in-memory SQLite, other databases): an flock in the temp dir, keyed by the URL.

It ends with the process, SIGKILL included: the kernel drops the flock, the server drops the
session's lock when its socket closes. A forked child (backfill's courier) gives its copy up at
once, so the lock ends with the process that took it, not when its child does: the flock's
descriptor is closed in the child; the lock connection's socket is pointed at /dev/null there,
so nothing the child does can reach the server through it (a driver's close() would send a
quit / terminate message on the shared socket and end the parent's session and its lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import weakref
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from .state import locks
from .state.db import (
    Store,
    StoreError,
    address,
    describe,
    ensure_folder,
    shared,
    sqlite_file,
    user,
)

log = logging.getLogger("cdrsync.lock")


LIVE, HISTORY, SEND = "live", "history", "send"


def send_lock(store: Store) -> Optional[StoreLock]:
    """The `SEND` lock of a store, for a deliverer; None for a store no other process can open
    (an in-memory SQLite database: nothing to exclude)."""
    return StoreLock(store, SEND) if shared(address(store)[0]) else None


class Busy(Exception):
    """Another cdrsync holds the lock."""


def lock_path(state_url: str, name: str = LIVE) -> Path:
    """The flock file of a store that does not lock in its server."""
    suffix = ".lock" if name == LIVE else f".{name}.lock"
    database = sqlite_file(state_url)
    if database is not None:
        return database.with_name(database.name + suffix)
    url = make_url(state_url)
    digest = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"cdrsync-{digest}{suffix}"


class StoreLock:
    """`with StoreLock(cfg.state, LIVE): ...` — raises Busy when another process holds it,
    StoreError when it cannot be taken (a folder this user may not write, a server that does not
    answer). `take()` / `release()` do the same for a lock tried again and again (`SEND`).
    """

    def __init__(self, store: Store, name: str = LIVE) -> None:
        self.url, self.namespace = address(store)
        self.name = locks.check_name(name)
        self.dialect = make_url(self.url).get_backend_name()
        self.on_server = locks.on_server(self.dialect)
        self.path = None if self.on_server else lock_path(self.url, name)
        self._fd: Optional[int] = None
        self._engine: Optional[Engine] = None
        self._conn: Optional[Connection] = None
        self._socket: Optional[int] = None

    @property
    def where(self) -> str:
        """The lock, for messages."""
        if self.path is not None:
            return f"lock {self.path}"
        space = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.dialect} lock {self.name!r}{space}"

    @property
    def held(self) -> bool:
        return self._fd is not None or self._conn is not None

    def __enter__(self) -> StoreLock:
        if self.on_server:
            self._take_on_server()
        else:
            self._take_file()
        _HELD.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def take(self) -> bool:
        """Take the lock if it is free (True), or keep it if it is held already; False when
        another process holds it."""
        if self.held:
            return True
        try:
            self.__enter__()
        except Busy:
            return False
        return True

    def release(self) -> None:
        _HELD.discard(self)
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):  # gone: its session's lock went too
                locks.unlock(self._conn, self.namespace, self.name)
            self._drop_connection()

    def check(self) -> None:
        """Make sure the lock is still held (a daemon calls it before each pass).

        A file lock cannot be lost. A server lock goes with its connection (the server
        restarted, a proxy cut an idle line): it is taken again if it is free; if another
        cdrsync has it meanwhile, StoreError, since two must never work at once.
        """
        if not self.still_held():
            raise StoreError(f"the {self.name} lock was lost with its connection to the store, "
                             "and another cdrsync has taken it: stopping this one")

    def still_held(self) -> bool:
        """Whether the lock taken is still this process's (see `check`); a lost server lock
        that is free is taken again. False: it is lost (or was never taken)."""
        if self._conn is None:
            return self._fd is not None
        try:
            if locks.holds(self._conn, self.namespace, self.name):
                return True
        except SQLAlchemyError:
            pass
        self._drop_connection()
        try:
            self._take_on_server()
        except Busy:
            _HELD.discard(self)
            return False
        log.warning("the %s lock's connection to the state store was lost; lock taken again",
                    self.name)
        return True

    def _take_file(self) -> None:
        assert self.path is not None
        ensure_folder(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"the lock {self.path} cannot be created by user {user()} "
                             f"({exc.strerror}): its folder must be writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(f"another cdrsync is working on this state store ({self.where})"
                       ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _take_on_server(self) -> None:
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            conn = engine.connect()
            try:
                locks.keep_session_open(conn)
                got = locks.try_lock(conn, self.namespace, self.name)
            except BaseException:
                conn.close()
                raise
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"the {self.name} lock cannot be taken: {describe(exc)}") from None
        try:
            if not got:
                raise Busy(f"another cdrsync is working on this state store ({self.where})")
            self._socket = _socket_of(conn.connection.dbapi_connection)
        except (Busy, StoreError):
            conn.close()
            engine.dispose()
            raise
        self._engine, self._conn = engine, conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
        if self._engine is not None:
            self._engine.dispose()
        self._engine = self._conn = self._socket = None

    def _leave_to_parent(self) -> None:
        """In a forked child: give up this process's share of the lock without touching it."""
        if self._fd is not None:  # only closed, never unlocked: the parent's flock stays
            os.close(self._fd)
            self._fd = None
        if self._socket is not None:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, self._socket)
            os.close(null)
            # kept, never closed or collected here: whatever the child's driver objects do
            # at exit goes to /dev/null
            _ORPHANS.append((self._conn, self._engine))
            self._engine = self._conn = self._socket = None


def _socket_of(dbapi_connection: Any) -> int:
    """The socket descriptor of a DB-API connection: psycopg / psycopg2 (`fileno()`), PyMySQL
    (`_sock`)."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if callable(fileno):
        return int(fileno())
    sock = getattr(dbapi_connection, "_sock", None)
    if sock is None:
        raise StoreError(f"a lock cannot be held through the driver "
                         f"{type(dbapi_connection).__module__}: use psycopg or PyMySQL")
    return sock.fileno()


_HELD: weakref.WeakSet[StoreLock] = weakref.WeakSet()
_ORPHANS: list[Any] = []


def _leave_all_to_parent() -> None:
    for lock in list(_HELD):
        lock._leave_to_parent()
    _HELD.clear()


os.register_at_fork(after_in_child=_leave_all_to_parent)
