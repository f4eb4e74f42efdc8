"""The store side of missed-call notices: what the ledger says about a caller.

`superseded()` is the callback window's question (policy in `cdrsync.missed`): did the caller get
through, or get called back, after the missed call?

With `[missed] notify = "responsible"` a missed call's `RESPONSIBLE` request becomes its
`callMissedNotify`s here (`replace_lookup`), from Planfix's answer (`told`) or from the answer it
gave about the same caller within `[missed] responsible_ttl` (`remembered`, `responsible_cache`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Optional

from sqlalchemy import Column, Connection, String, Table, Text, delete, insert, select
from sqlalchemy.exc import OperationalError

from cdrsync.model import Direction, Status
from cdrsync.planfix import messages
from cdrsync.planfix.messages import Request
from cdrsync.state.db import EPOCH, metadata
from cdrsync.state.ledger import add_requests, calls, store_error
from cdrsync.timeconv import shifted


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


# Planfix's answers to callInfoRespNum, per caller and extension asked about: the answer depends
# on both ("no persons responsible" also means "the one called is the responsible").
responsible_cache = Table(
    "responsible_cache", metadata,
    Column("phone", String(64), primary_key=True),
    Column("ext", String(64), primary_key=True),
    Column("numbers", Text, nullable=False),  # JSON list of extensions; [] = nobody responsible
    Column("asked_at", EPOCH, nullable=False),
)


@dataclass(frozen=True)
class Recipients:
    """Who is told of a missed call under `notify = "responsible"`, and why (for the log)."""

    extensions: tuple[str, ...]
    why: str
    answer: Optional[tuple[str, ...]] = None  # Planfix's answer, to remember; None: it gave none
    remembered: bool = False  # the answer came from `responsible_cache`


def told(request: Request, numbers: Optional[tuple[str, ...]], detail: str) -> Recipients:
    """Recipients from Planfix's answer to `request` (see `PlanfixClient.responsible`): those
    it names, else the request's fallback (the extensions that rang). Pure."""
    if numbers:
        return Recipients(numbers, f"Planfix names {', '.join(numbers)} responsible", numbers)
    if numbers is not None:
        return Recipients(messages.fallback(request), "Planfix names nobody responsible", ())
    return Recipients(messages.fallback(request),
                      f"Planfix did not say who is responsible ({detail})")


def remembered(conn: Connection, request: Request, now: float, ttl: float
               ) -> Optional[Recipients]:
    """Recipients from an answer about the same caller and extension younger than `ttl`."""
    if ttl <= 0:
        return None
    found = conn.execute(
        select(responsible_cache.c.numbers)
        .where(responsible_cache.c.phone == request.fields["extNum"],
               responsible_cache.c.ext == request.fields["intNum"],
               responsible_cache.c.asked_at > now - ttl)).scalar()
    if found is None:
        return None
    return replace(told(request, tuple(json.loads(found)), ""), answer=None, remembered=True)


def replace_lookup(conn: Connection, request: Request, recipients: Recipients, now: float,
                   ttl: float) -> int:
    """Queue the `callMissedNotify`s a `RESPONSIBLE` request became, and remember Planfix's
    answer; the caller marks the request done in the same transaction, so a crash either asks
    again (a read) or finds the notices queued. Returns how many were queued."""
    if recipients.answer is not None and ttl > 0:
        cache = responsible_cache.c
        phone, ext = request.fields["extNum"], request.fields["intNum"]
        try:  # expired answers go as new ones come: the table holds one `ttl` of callers
            conn.execute(delete(responsible_cache).where(
                (cache.asked_at <= now - ttl) | ((cache.phone == phone) & (cache.ext == ext))))
            conn.execute(insert(responsible_cache).values(
                phone=phone, ext=ext, numbers=json.dumps(list(recipients.answer)), asked_at=now))
        except OperationalError as exc:
            raise store_error(exc) from None
    return add_requests(conn, messages.notices(request.callid, request.fields["extNum"],
                                               recipients.extensions), now)
