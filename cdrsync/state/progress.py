"""Where discovery stands, in cdrsync's own store: cursors, ended linkedids waiting for the rest of
their call, and fingerprints of calls seen without an end-of-call event.

Only `cdrsync.finder` writes these, and only through a `Changes` applied inside the caller's
transaction, so the ledger write and the cursor move commit together. Times are UTC epoch floats.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

from sqlalchemy import Column, Connection, String, Table, delete, insert, select

from cdrsync.state.db import EPOCH, metadata

cursors = Table(
    "progress_cursors", metadata,
    Column("name", String(200), primary_key=True),  # "cel_end", "history:...", ...
    Column("value", String(64), nullable=False),
    Column("updated_at", EPOCH, nullable=False),
)

pending = Table(
    "progress_pending", metadata,
    # A linkedid whose LINKEDID_END the cursor has passed, but whose call is not emitted yet:
    # the other linkedids of its call are still open, or the call is settling.
    Column("linkedid", String(80), primary_key=True),
    Column("first_seen", EPOCH, nullable=False),
    Column("kind", String(16), nullable=False),  # "settle" | "open"
)

quiet = Table(
    "progress_quiet", metadata,
    # A call seen through cdr rows only (CDR-only mode, or CEL-mode orphans): the fingerprint of
    # its rows and when it last changed.
    Column("callid", String(80), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("changed_at", EPOCH, nullable=False),
)

_CHUNK = 500


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def read_cursor(conn: Connection, name: str) -> Optional[str]:
    return conn.execute(select(cursors.c.value).where(cursors.c.name == name)).scalar()


def read_cursors(conn: Connection) -> dict[str, tuple[str, float]]:
    """Every cursor: name -> (value, updated_at); for `cdrsync status`."""
    rows = conn.execute(select(cursors.c.name, cursors.c.value, cursors.c.updated_at))
    return {r.name: (r.value, r.updated_at) for r in rows}


def read_pending(conn: Connection) -> dict[str, tuple[float, str]]:
    rows = conn.execute(select(pending.c.linkedid, pending.c.first_seen, pending.c.kind))
    return {r.linkedid: (r.first_seen, r.kind) for r in rows}


def read_quiet(conn: Connection) -> dict[str, tuple[str, float]]:
    rows = conn.execute(select(quiet.c.callid, quiet.c.fingerprint, quiet.c.changed_at))
    return {r.callid: (r.fingerprint, r.changed_at) for r in rows}


@dataclass
class Changes:
    """State updates of one discovery, applied later in the caller's transaction."""

    now: float
    cursors: dict[str, str] = field(default_factory=dict)
    pending_add: dict[str, tuple[float, str]] = field(default_factory=dict)
    pending_drop: set[str] = field(default_factory=set)
    quiet_set: dict[str, tuple[str, float]] = field(default_factory=dict)
    quiet_prune_before: Optional[float] = None

    @property
    def empty(self) -> bool:
        """Whether `apply` would write nothing."""
        return not (self.cursors or self.pending_add or self.pending_drop or self.quiet_set
                    or self.quiet_prune_before is not None)

    def apply(self, conn: Connection) -> None:
        for name, value in self.cursors.items():
            conn.execute(delete(cursors).where(cursors.c.name == name))
            conn.execute(insert(cursors).values(name=name, value=value, updated_at=self.now))
        gone = sorted(self.pending_drop | set(self.pending_add))
        for part in _chunks(gone):
            conn.execute(delete(pending).where(pending.c.linkedid.in_(part)))
        adds = [{"linkedid": k, "first_seen": v[0], "kind": v[1]}
                for k, v in self.pending_add.items() if k not in self.pending_drop]
        if adds:
            conn.execute(insert(pending), adds)
        if self.quiet_prune_before is not None:
            conn.execute(delete(quiet).where(quiet.c.changed_at < self.quiet_prune_before))
        for part in _chunks(sorted(self.quiet_set)):
            conn.execute(delete(quiet).where(quiet.c.callid.in_(part)))
        if self.quiet_set:
            conn.execute(insert(quiet), [{"callid": k, "fingerprint": v[0], "changed_at": v[1]}
                                         for k, v in self.quiet_set.items()])
