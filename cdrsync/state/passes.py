"""A short history of passes, for `cdrsync status` and the metrics: when, what, how it ended."""

from __future__ import annotations

from typing import Optional

from sqlalchemy import Column, Integer, String, Table, delete, insert, select
from sqlalchemy.engine import Connection

from .db import EPOCH, metadata

KEEP = 200  # passes remembered; older ones are pruned

passes = Table(
    "passes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # sync | backfill
    Column("started", EPOCH, nullable=False),
    Column("finished", EPOCH, nullable=False),
    Column("found", Integer, nullable=False, default=0),
    Column("sent", Integer, nullable=False, default=0),
    Column("error", String(500), nullable=False, default=""),
)


def remember(conn: Connection, kind: str, started: float, finished: float, found: int, sent: int,
             error: str = "") -> None:
    conn.execute(insert(passes).values(kind=kind, started=started, finished=finished, found=found,
                                       sent=sent, error=error[:500]))
    newest = conn.execute(select(passes.c.id).order_by(passes.c.id.desc()).offset(KEEP).limit(1))
    cut = newest.scalar()
    if cut is not None:
        conn.execute(delete(passes).where(passes.c.id <= cut))


def last(conn: Connection, ok_only: bool = False) -> Optional[dict]:
    query = select(passes).order_by(passes.c.id.desc()).limit(1)
    if ok_only:
        query = query.where(passes.c.error == "")
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None
