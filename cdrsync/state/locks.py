"""Locks that processes sharing one state store take in the database itself.

A server store is reached from anywhere (another host, another mount namespace: systemd's
PrivateTmp), so a file lock cannot keep two cdrsyncs apart there; the server can:

- PostgreSQL: advisory locks, scoped to the database; the key is a hash of the namespace (the
  schema an instance lives in) and the lock's name.
- MySQL / MariaDB: `GET_LOCK`, scoped to the whole server; the name carries a hash of the
  database (and namespace) and the lock's name, within the 64 characters MySQL allows.

Both belong to a session (or, on PostgreSQL, a transaction): the server drops them when the
connection ends, so a killed process leaves none behind. SQLite's own locking serialises a
transaction there (`exclusive_transaction`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from .db import StoreError

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # what a lock may be called (in messages too)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"lock name {name!r}: lower-case letters, digits, '-' or '_' (32 at most)")
    return name


def pg_key(namespace: str, name: str) -> int:
    """The signed 64-bit advisory-lock key of a lock of one namespace."""
    digest = hashlib.sha256(f"cdrsync\0{namespace}\0{check_name(name)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def mysql_name(database: str, namespace: str, name: str) -> str:
    """The GET_LOCK name: server-wide, so the database is part of it; at most 64 characters."""
    digest = hashlib.sha256(f"{database}\0{namespace}".encode()).hexdigest()[:16]
    return f"cdrsync.{check_name(name)}.{digest}"


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
