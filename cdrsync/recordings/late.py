"""Calls whose recording was missing or unfinished when their COMPLETED went out.

The pipeline looks for their file again each pass until `until` (now + `[recordings] late_window`)
and, once found, queues `cmd=record` and forgets the call: so the link is sent at most once. Only
what `find_recording` needs is kept, so the PBX database need not be read again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import BigInteger, Column, String, Table, Text, delete, insert, select
from sqlalchemy.engine import Connection

from ..model import Call
from ..state.db import metadata

late_recordings = Table(
    "late_recordings",
    metadata,
    Column("callid", String(64), primary_key=True),
    Column("candidates", Text, nullable=False),  # JSON list of recording_candidates
    Column("uniqueids", Text, nullable=False),  # JSON list
    Column("start", BigInteger, nullable=True),  # epoch s of the call start: date folders
    Column("until", BigInteger, nullable=False),  # epoch s after which we give up
)


@dataclass(frozen=True)
class LateCall:
    """The part of a `Call` the resolver reads (see resolve.Recorded)."""

    callid: str
    recording_candidates: tuple[str, ...]
    uniqueids: tuple[str, ...]
    start: Optional[datetime]


@dataclass(frozen=True)
class Due:
    call: LateCall
    until: int
    expired: bool  # past its window: look one last time, then forget


def remember(conn: Connection, call: Call, until: float) -> None:
    """Keep looking for the call's file until `until`; remembering again keeps the first window."""
    exists = conn.execute(select(late_recordings.c.callid)
                          .where(late_recordings.c.callid == call.callid)).first()
    if exists:
        return
    conn.execute(insert(late_recordings).values(
        callid=call.callid,
        candidates=json.dumps(list(call.recording_candidates), ensure_ascii=False),
        uniqueids=json.dumps(list(call.uniqueids)),
        start=int(call.start.timestamp()) if call.start else None,
        until=int(until),
    ))


def due(conn: Connection, now: float) -> list[Due]:
    """Every call still awaited, oldest window first; `expired` marks those past their window."""
    rows = conn.execute(select(late_recordings).order_by(late_recordings.c.until,
                                                         late_recordings.c.callid))
    return [
        Due(
            call=LateCall(
                callid=row.callid,
                recording_candidates=tuple(json.loads(row.candidates)),
                uniqueids=tuple(json.loads(row.uniqueids)),
                start=datetime.fromtimestamp(row.start, timezone.utc)
                if row.start is not None else None,
            ),
            until=row.until,
            expired=row.until < now,
        )
        for row in rows
    ]


def forget(conn: Connection, callid: str) -> None:
    conn.execute(delete(late_recordings).where(late_recordings.c.callid == callid))
