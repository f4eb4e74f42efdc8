"""Who hears about a missed inbound call, and when a notice would only annoy.

Recipients (`[missed] notify`): "rang" tells every extension that rang; "targets" tells the list
configured for the call's DID (or, failing that, its queue). Each falls back to the other, then to
the call's `ext`, so a missed call is never told to nobody when someone could be told.

Callback window (`[missed] callback_window` minutes, off by default): the notice is held back in
the outbox until the window has passed (`Request.not_before`); the deliverer then asks
`superseded()` and drops the notice if the same outside number got through or was called back
within the window. A notice is therefore late by the window: that is the price of not annoying.
"""

from __future__ import annotations

import re
from typing import Optional

from sqlalchemy import Connection, select

from cdrsync.config import MissedConfig
from cdrsync.model import Call, Direction, Status
from cdrsync.state.ledger import calls
from cdrsync.timeconv import shifted


def recipients(call: Call, cfg: MissedConfig) -> tuple[str, ...]:
    """The extensions to notify about `call`, in order, without repeats."""
    listed = _targets(call, cfg)
    chosen = (listed or call.rung) if cfg.notify == "targets" else (call.rung or listed)
    if not chosen and call.ext:
        chosen = (call.ext,)
    return tuple(dict.fromkeys(ext for ext in chosen if ext))


def _targets(call: Call, cfg: MissedConfig) -> tuple[str, ...]:
    for wanted in (call.did, call.queue):
        if not wanted:
            continue
        for key, exts in cfg.targets.items():
            if key == wanted or _digits(key) == _digits(wanted) != "":
                return exts
    return ()


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def superseded(conn: Connection, callid: str, window_minutes: int) -> Optional[str]:
    """Why the missed-call notice of `callid` is no longer worth sending, or None.

    True when a later call with the same outside number was answered (the caller got through) or
    placed by the office and answered (called back) within `window_minutes` after the missed call.
    """
    missed = conn.execute(select(calls).where(calls.c.callid == callid)).mappings().first()
    if missed is None or not missed["phone"] or missed["start_utc"] is None:
        return None
    window_end = shifted(missed["end_utc"] or missed["start_utc"], window_minutes * 60)
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
