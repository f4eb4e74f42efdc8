"""The store side of missed-call notices: what the ledger says about a caller.

`superseded()` is the callback window's question (policy in `cdrsync.missed`): did the caller get
through, or get called back, after the missed call?
"""

from __future__ import annotations

from datetime import timedelta
from typing import Optional

from sqlalchemy import Connection, select

from cdrsync.model import Direction, Status
from cdrsync.state.ledger import calls


def superseded(conn: Connection, callid: str, window_minutes: int) -> Optional[str]:
    """Why the missed-call notice of `callid` is no longer worth sending, or None.

    True when a later call with the same outside number was answered (the caller got through) or
    placed by the office and answered (called back) within `window_minutes` after the missed call.
    """
    missed = conn.execute(select(calls).where(calls.c.callid == callid)).mappings().first()
    if missed is None or not missed["phone"] or missed["start_utc"] is None:
        return None
    window_end = (missed["end_utc"] or missed["start_utc"]) + timedelta(minutes=window_minutes)
    later = conn.execute(
        select(calls.c.callid, calls.c.direction, calls.c.start_utc)
        .where(calls.c.phone == missed["phone"], calls.c.callid != callid,
               calls.c.status == Status.SUCCESS.value,
               calls.c.start_utc > missed["start_utc"], calls.c.start_utc <= window_end)
        .order_by(calls.c.start_utc)
    ).first()
    if later is None:
        return None
    how = "was called back" if later.direction == Direction.OUTBOUND.value else "got through"
    return f"caller {how} within {window_minutes} min (call {later.callid})"
