"""Locks that processes sharing one state store take in the database itself.

A server store is reached from anywhere (another host, another mount namespace: systemd's
PrivateTmp), so a file lock cannot keep two cdrsyncs apart there; the server can:

- PostgreSQL: advisory locks, scoped to the database; the key is a hash of the namespace (the
  schema an instance lives in) and the lock's name.
- MySQL / MariaDB: `GET_LOCK`, scoped to the whole server; the name carries a hash of the
  database (and namespace) and the lock's name, within the 64 characters MySQL allows.

Both belong to a session: the server drops them when the connection ends, so a killed process
leaves none behind. SQLite needs none of this: its file lives on this host (cdrsync.lock uses a
flock beside it), and its own locking serialises a transaction (`exclusive_transaction`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from .errors import StoreError

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # what a lock may be called (in messages too)
SERVER_DIALECTS = ("postgresql", "mysql", "mariadb")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"lock name {name!r}: lower-case letters, digits, '-' or '_' (32 at most)")
    return name


def on_server(dialect_name: str) -> bool:
    """Whether stores of this kind lock in the database (else: a file beside the store)."""
    return dialect_name in SERVER_DIALECTS


def pg_key(namespace: str, name: str) -> int:
    """The signed 64-bit advisory-lock key of a lock of one namespace."""
    digest = hashlib.sha256(f"cdrsync\0{namespace}\0{check_name(name)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def mysql_name(database: str, namespace: str, name: str) -> str:
    """The GET_LOCK name: server-wide, so the database is part of it; at most 64 characters."""
    digest = hashlib.sha256(f"{database}\0{namespace}".encode()).hexdigest()[:16]
    return f"cdrsync.{check_name(name)}.{digest}"


def try_lock(conn: Connection, namespace: str, name: str) -> bool:
    """Take the session lock `name` on `conn` if nobody holds it; never waits."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                           {"k": pg_key(namespace, name)}).scalar()
    else:
        got = conn.execute(text("SELECT GET_LOCK(:n, 0)"),
                           {"n": mysql_name(conn.engine.url.database or "", namespace, name)}
                           ).scalar()
    conn.commit()  # the lock is the session's: it outlives this transaction
    return bool(got)


def holds(conn: Connection, namespace: str, name: str) -> bool:
    """Whether `conn`'s session still holds the lock (raises if the connection is gone)."""
    if conn.dialect.name == "postgresql":
        key = pg_key(namespace, name)
        # pg_locks shows a bigint key as two halves: classid (high 32 bits), objid (low 32)
        held = conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid = :hi AND objid = :lo AND objsubid = 1"),
            {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).scalar()
    else:
        held = conn.execute(text("SELECT IS_USED_LOCK(:n) = CONNECTION_ID()"),
                            {"n": mysql_name(conn.engine.url.database or "", namespace, name)}
                            ).scalar()
    conn.commit()
    return bool(held)


def unlock(conn: Connection, namespace: str, name: str) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": pg_key(namespace, name)})
    else:
        conn.execute(text("SELECT RELEASE_LOCK(:n)"),
                     {"n": mysql_name(conn.engine.url.database or "", namespace, name)})
    conn.commit()


def keep_session_open(conn: Connection) -> None:
    """Lift the server's idle timeout for a connection that holds a lock for days doing nothing
    (MySQL's wait_timeout is 8 hours by default: the lock would quietly go with the session)."""
    if conn.dialect.name == "postgresql":
        if (conn.dialect.server_version_info or (0,)) >= (14,):
            conn.execute(text("SET idle_session_timeout = 0"))
    else:
        conn.execute(text("SET SESSION wait_timeout = 31536000"))  # a year, MySQL's maximum
    conn.commit()


@contextmanager
def exclusive_transaction(conn: Connection, namespace: str, name: str, wait: float
                          ) -> Iterator[None]:
    """A transaction on `conn` that no other process runs at the same time (per namespace and
    name), committed at the end: how the schema is created or upgraded by one process while
    others starting at the same moment wait for it, then find it done.

    PostgreSQL: a transaction-level advisory lock; MySQL: GET_LOCK around the transaction (its
    DDL commits by itself anyway); SQLite: BEGIN EXCLUSIVE (others wait in busy_timeout). Other
    databases: a plain transaction. Waiting longer than `wait` seconds raises StoreError.
    """
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        lock = mysql_name(conn.engine.url.database or "", namespace, name)
        got = conn.execute(text("SELECT GET_LOCK(:n, :w)"), {"n": lock, "w": wait}).scalar()
        conn.commit()
        if not got:
            raise StoreError(f"another cdrsync held the state store's {name} lock for {wait:g} s")
        try:
            with conn.begin():
                yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": lock})
            conn.commit()
        return
    with conn.begin():
        if dialect == "sqlite":
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
        elif dialect == "postgresql":
            conn.execute(text(f"SET LOCAL lock_timeout = {int(wait * 1000)}"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": pg_key(namespace, name)})
        yield
