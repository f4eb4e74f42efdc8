"""The ledger: which calls cdrsync has handled, and the outbox of requests still to deliver.

A call is recorded here together with the exact requests it will send, in the same transaction
as the finder's cursor update, *before* anything is sent; an outbox entry becomes `sent` only
after Planfix answered 200. So a crash loses nothing, and the store, not the PBX database, is
what retries read from. Keys are stable (callid + purpose), which makes recording idempotent:
backfill after sync, or sync after backfill, queues nothing twice.

Times: `created_at`, `next_try`, `last_try`, `sent_at`, `since` are epoch seconds (`db.EPOCH`,
exact floats, so a test can drive them with a fake clock); `start_utc`/`end_utc` are naive UTC
datetimes.

Every function takes a `Connection` inside the caller's transaction; `transaction(engine)` opens
one that turns "read-only database" / "disk full" into a one-line `StoreError` (also on a
`Connection` the caller holds, as the deliverer does for a whole drain).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError

from cdrsync.model import Call
from cdrsync.planfix.messages import MISSED, RESPONSIBLE, Request
from cdrsync.state.db import EPOCH, StoreError, describe, metadata

PENDING, SENT, FAILED, SKIPPED = "pending", "sent", "failed", "skipped"
# The outbox's lanes, lower first: today's calls (and every missed-call notice) never wait
# behind history; history goes with what the rate (and `[planfix] daily_limit`) leaves.
LIVE, HISTORY = 0, 1
LANES = (LIVE, HISTORY)
STATES = (SENT, PENDING, FAILED, SKIPPED)
ORIGINS = ("sync", "backfill")

_TEXT = 64  # width of the short text columns of `calls` (ext, phone)

calls = Table(
    "calls", metadata,
    Column("callid", String(64), primary_key=True),
    Column("direction", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("ext", String(_TEXT), nullable=False, default=""),
    Column("phone", String(_TEXT), nullable=False, default=""),
    Column("start_utc", DateTime, nullable=True),
    Column("end_utc", DateTime, nullable=True),
    Column("origin", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    Column("created_at", EPOCH, nullable=False),
    Index("ix_calls_phone_start", "phone", "start_utc"),
)

# Every linkedid cdrsync handled: of a call recorded in `calls`, or of one it quarantined
# (state/quarantine.py; its callid has no row in `calls`), so that no pass meets either again.
call_linkedids = Table(
    "call_linkedids", metadata,
    Column("linkedid", String(64), primary_key=True),
    Column("callid", String(64), nullable=False, index=True),
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False, unique=True),
    Column("callid", String(64), nullable=False, index=True),
    Column("target", String(16), nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False, default=PENDING),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_try", EPOCH, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", EPOCH, nullable=False),
    Column("last_try", EPOCH, nullable=True),
    Column("sent_at", EPOCH, nullable=True),
    # LIVE or HISTORY (revision 0005; rows queued before it are LIVE)
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    Index("ix_outbox_state_next", "state", "next_try"),
    # `due` walks one lane's pending entries in id order from `after_id`: without this index a
    # database gathers and sorts every pending entry for each batch.
    Index("ix_outbox_state_priority_id", "state", "priority", "id"),
    # the rolling day of `[planfix] daily_limit`: requests sent since a moment, counted
    Index("ix_outbox_sent_at", "sent_at"),
)

# Delivery conditions that outlive one process (so a cron `sync` logs a stall once, not each run).
delivery_flags = Table(
    "delivery_flags", metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Text, nullable=False),
    Column("since", EPOCH, nullable=False),
)


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    key: str
    callid: str
    target: str
    fields: dict[str, str]
    state: str
    attempts: int
    next_try: float
    last_error: Optional[str]
    created_at: float
    # from `due(..., include_held=True)`: the latest earlier undelivered Planfix-API entry of the
    # same call (None: nothing holds this one back), and the call's (direction, status, ext)
    held_by: Optional[int] = None
    call: Optional[tuple[str, str, str]] = None
    call_end: Optional[float] = None  # UTC epoch the call ended (delivery lag counts from it)

    @property
    def kind(self) -> str:
        return self.key.split("|")[1]

    def request(self) -> Request:
        return Request(self.key, self.callid, self.target, dict(self.fields))


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """`begin()` on an engine or a held connection, whose storage failures (read-only file, full
    disk) become `StoreError`."""
    try:
        if isinstance(bind, Connection):
            with bind.begin():
                yield bind
        else:
            with bind.begin() as conn:
                yield conn
    except OperationalError as exc:
        raise store_error(exc) from None


def store_error(exc: OperationalError) -> StoreError:
    return StoreError(f"state store cannot be written: {describe(exc)}")


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def handled_linkedids(conn: Connection, linkedids: Iterable[str]) -> set[str]:
    """The subset of `linkedids` that belong to a call already recorded."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(linkedids))):
        rows = conn.execute(select(call_linkedids.c.linkedid)
                            .where(call_linkedids.c.linkedid.in_(chunk)))
        found.update(r[0] for r in rows)
    return found


def _naive_utc(moment: Optional[datetime]) -> Optional[datetime]:
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def call_summary(call: Call) -> dict[str, Any]:
    """The call as cdrsync rebuilt it, kept for `show`, `status` and the delivery log."""
    return {
        "direction": call.direction.value,
        "status": call.status.value,
        "ext": call.ext,
        "phone": call.phone,
        "phone_raw": call.phone_raw,
        "did": call.did,
        "duration": call.duration,
        "start": call.start.isoformat() if call.start else None,
        "end": call.end.isoformat() if call.end else None,
        "answered_by": call.answered_by,
        "final_ext": call.final_ext,
        "rung": list(call.rung),
        "path": list(call.path),
        "queue": call.queue,
        "ring_group": call.ring_group,
        "closed_by": call.closed_by.value,
        "reasons": list(call.reasons),
    }


def record_call(conn: Connection, call: Call, linkedids: Iterable[str],
                requests: Iterable[Request], origin: str, now: Optional[float] = None) -> bool:
    """Record one handled call (see `record_calls`); returns whether the call was new."""
    return bool(record_calls(conn, [(call, linkedids, requests)], origin, now))


def record_calls(conn: Connection,
                 items: Iterable[tuple[Call, Iterable[str], Iterable[Request]]],
                 origin: str, now: Optional[float] = None) -> list[str]:
    """Record handled calls, their linkedids and the requests they will send, in a few
    statements for the whole batch (a backfill records hundreds at a time).

    Idempotent: a call recorded before, or one with a linkedid another call handled (the live
    sync and a backfill running at once may both meet it), keeps the first record and queues
    nothing new; returns the callids that were new. Two recorders racing past this check
    collide on the linkedid's key and one transaction fails (`pipeline` records again then).

    Its requests go to the LIVE lane for the live sync, and for any call with a missed-call
    notice (the notice waits for the call's COMPLETED, so both go first); else to HISTORY.
    """
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}")
    now = time.time() if now is None else now
    batch = {call.callid: (call, set(linkedids) | {call.callid}, list(requests))
             for call, linkedids, requests in items}
    try:
        known: set[str] = set()
        for chunk in _chunks(sorted(batch)):
            known.update(r[0] for r in conn.execute(
                select(calls.c.callid).where(calls.c.callid.in_(chunk))))
        owner = {lid: callid for callid, (_c, ids, _r) in batch.items() for lid in ids}
        taken = owners(conn, owner)
        elsewhere = {callid for callid, (_c, ids, _r) in batch.items()
                     if callid not in known and any(taken.get(lid, callid) != callid
                                                    for lid in ids)}
        new = [callid for callid in batch if callid not in known | elsewhere]
        if new:
            conn.execute(insert(calls), [_call_row(batch[callid][0], origin, now)
                                         for callid in new])
        # a call recorded before learns the linkedids it was not known with yet
        fresh = sorted(lid for lid in owner if lid not in taken and owner[lid] not in elsewhere)
        if fresh:
            conn.execute(insert(call_linkedids), [{"linkedid": lid, "callid": owner[lid]}
                                                  for lid in fresh])
        lanes: dict[int, list[Request]] = {LIVE: [], HISTORY: []}
        for callid in new:
            requests = batch[callid][2]
            lanes[lane(origin, requests)] += requests
        for priority, requests in lanes.items():
            add_requests(conn, requests, now, priority)
    except OperationalError as exc:
        raise store_error(exc) from None
    return new


def lane(origin: str, requests: Iterable[Request]) -> int:
    """The outbox lane of a call's requests (see `record_calls`)."""
    if origin == "sync" or any(r.target in (MISSED, RESPONSIBLE) for r in requests):
        return LIVE
    return HISTORY


def owners(conn: Connection, linkedids: Iterable[str]) -> dict[str, str]:
    """linkedid -> the callid that handled it (recorded or quarantined), for those handled."""
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(set(linkedids))):
        found.update((r[0], r[1]) for r in conn.execute(
            select(call_linkedids.c.linkedid, call_linkedids.c.callid)
            .where(call_linkedids.c.linkedid.in_(chunk))))
    return found


def _call_row(call: Call, origin: str, now: float) -> dict[str, Any]:
    """The `calls` row. `phone` is the number Planfix matches contacts by (E.164, or "" for a
    caller id that is no number: two anonymous callers are not one caller for the callback
    window); the raw caller id, which may be any length, stays in `summary`. `ext` is cut to its
    column, which PostgreSQL and MySQL enforce: a junk value must not stop the whole batch."""
    return {"callid": call.callid, "direction": call.direction.value,
            "status": call.status.value, "ext": call.ext[:_TEXT], "phone": call.phone[:_TEXT],
            "start_utc": _naive_utc(call.start), "end_utc": _naive_utc(call.end),
            "origin": origin, "summary": json.dumps(call_summary(call), ensure_ascii=False),
            "created_at": now}


def add_requests(conn: Connection, requests: Iterable[Request], now: Optional[float] = None,
                 priority: Optional[int] = None) -> int:
    """Queue requests whose key is not queued yet in lane `priority`; returns how many. Without
    one (a late `record`, ...) a request joins its call's lane, LIVE for a call with none: a
    backfilled call's late link must not jump ahead of its own COMPLETED's lane."""
    now = time.time() if now is None else now
    wanted = list(requests)
    if not wanted:
        return 0
    try:
        existing: set[str] = set()
        for chunk in _chunks([r.key for r in wanted]):
            existing.update(r[0] for r in conn.execute(
                select(outbox.c.key).where(outbox.c.key.in_(chunk))))
        lanes: dict[str, int] = {}
        if priority is None:
            for chunk in _chunks(sorted({r.callid for r in wanted})):
                lanes.update((r[0], r[1]) for r in conn.execute(
                    select(outbox.c.callid, func.max(outbox.c.priority))
                    .where(outbox.c.callid.in_(chunk)).group_by(outbox.c.callid)))
        rows = []
        for r in wanted:
            if r.key in existing:
                continue
            existing.add(r.key)
            rows.append({"key": r.key, "callid": r.callid, "target": r.target,
                         "body": json.dumps(r.fields, ensure_ascii=False, sort_keys=True),
                         "state": PENDING, "attempts": 0, "created_at": now,
                         "priority": priority if priority is not None
                         else lanes.get(r.callid, LIVE),
                         "next_try": r.not_before if r.not_before is not None else now})
        if rows:
            conn.execute(insert(outbox), rows)
    except OperationalError as exc:
        raise store_error(exc) from None
    return len(rows)


# What `due` selects, in the order `_entry` unpacks it.
_DUE_COLUMNS = (outbox.c.id, outbox.c.key, outbox.c.callid, outbox.c.target, outbox.c.body,
                outbox.c.state, outbox.c.attempts, outbox.c.next_try, outbox.c.last_error,
                outbox.c.created_at)


def _entry(row: Any) -> OutboxEntry:
    """An entry from a row of `due`: `_DUE_COLUMNS`, held_by, then the call's direction, status,
    ext and end. Unpacked by position: reading a row's fields by name costs as much again, for
    every request delivered."""
    (id_, key, callid, target, body, state, attempts, next_try, last_error, created_at,
     held_by, direction, status, ext, end) = row
    return OutboxEntry(id=id_, key=key, callid=callid, target=target, fields=json.loads(body),
                       state=state, attempts=attempts, next_try=next_try, last_error=last_error,
                       created_at=created_at, held_by=held_by,
                       call=None if direction is None else (direction, status, ext),
                       call_end=end.replace(tzinfo=timezone.utc).timestamp() if end else None)


def due(conn: Connection, now: float, limit: int = 100, after_id: int = 0,
        include_held: bool = False, priority: Optional[int] = None) -> list[OutboxEntry]:
    """Pending entries whose time has come, oldest first, from `after_id` on: of one lane
    (`priority`, walked by `ix_outbox_state_priority_id`), or of both, LIVE before HISTORY.

    Within a call the order of queuing is kept: an entry waits while an earlier Planfix-API entry
    of the same call is undelivered (pending or failed), so `COMPLETED` precedes its `record` and
    `Cancelled`; a missed-call notice never holds anything back. Such entries are left out, or,
    with `include_held`, returned with `held_by` set to the latest entry they wait for — so the
    deliverer can send a whole batch in one read: a held entry goes once its `held_by` went.
    """
    if priority is None:
        found = due(conn, now, limit, after_id, include_held, LIVE)
        if len(found) < limit:
            found += due(conn, now, limit - len(found), after_id, include_held, HISTORY)
        return found
    earlier = outbox.alias("earlier")
    held_by = (select(func.max(earlier.c.id))
               .where(earlier.c.callid == outbox.c.callid, earlier.c.id < outbox.c.id,
                      earlier.c.target == "api", earlier.c.state.in_((PENDING, FAILED)))
               .scalar_subquery())
    query = (select(*_DUE_COLUMNS, held_by.label("held_by"), calls.c.direction, calls.c.status,
                    calls.c.ext, calls.c.end_utc)
             .select_from(outbox.outerjoin(calls, calls.c.callid == outbox.c.callid))
             .where(outbox.c.state == PENDING, outbox.c.priority == priority,
                    outbox.c.next_try <= now, outbox.c.id > after_id)
             .order_by(outbox.c.id).limit(limit))
    if not include_held:
        query = query.where(held_by.is_(None))
    return [_entry(r) for r in conn.execute(query)]


def any_due(conn: Connection, now: float, priority: int, after_id: int = 0) -> bool:
    """Whether an entry of lane `priority` past `after_id` is due: one probe of the lane index,
    asked before each history request so that a live call recorded meanwhile goes next."""
    return conn.execute(select(outbox.c.id).where(
        outbox.c.state == PENDING, outbox.c.priority == priority, outbox.c.id > after_id,
        outbox.c.next_try <= now).limit(1)).first() is not None


def sent_since(conn: Connection, since: float) -> int:
    """Requests Planfix answered since `since` (a range of `ix_outbox_sent_at`)."""
    return conn.execute(select(func.count()).select_from(outbox)
                        .where(outbox.c.sent_at >= since)).scalar_one()


def nth_sent_since(conn: Connection, since: float, n: int) -> Optional[float]:
    """When the `n`-th (from 0) request answered since `since` was: the moment the rolling
    window's count drops by n + 1 is a window length after it."""
    return conn.execute(select(outbox.c.sent_at).where(outbox.c.sent_at >= since)
                        .order_by(outbox.c.sent_at).offset(n).limit(1)).scalar()


def pending_in_lane(conn: Connection, priority: int) -> int:
    """Entries waiting in one lane (for the backfill's ETA)."""
    return conn.execute(select(func.count()).select_from(outbox).where(
        outbox.c.state == PENDING, outbox.c.priority == priority)).scalar_one()


def _set(conn: Connection, where: Any, **values: Any) -> int:
    try:
        return conn.execute(update(outbox).where(where).values(**values)).rowcount
    except OperationalError as exc:
        raise store_error(exc) from None


_at = bindparam("at")
# Built once: it runs for every request delivered, and building it costs more than running it.
_MARK_SENT = (update(outbox).where(outbox.c.id == bindparam("entry_id"))
              .values(state=SENT, sent_at=_at, last_try=_at, attempts=outbox.c.attempts + 1))
# The same UPDATE in the words of SQLite's driver (qmark parameters), for `exec_driver_sql`.
_MARK_SENT_SQLITE = (f"UPDATE outbox SET state = '{SENT}', sent_at = ?, last_try = ?, "
                     "attempts = attempts + 1 WHERE id = ?")


def mark_sent(conn: Connection, entry_id: int, now: float) -> None:
    """Record Planfix's 200 for one entry (the caller commits).

    It runs once per request delivered, so on SQLite (the default store) it goes through
    `exec_driver_sql`, without SQLAlchemy's statement-cache lookup and parameter processing:
    a third of a mark's CPU, the commit included. Other databases run `_MARK_SENT`.
    """
    try:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(_MARK_SENT_SQLITE, (now, now, entry_id))
        else:
            conn.execute(_MARK_SENT, {"entry_id": entry_id, "at": now})
    except OperationalError as exc:
        raise store_error(exc) from None


def mark_retry(conn: Connection, entry_id: int, attempts: int, next_try: float, error: str,
               now: float) -> None:
    _set(conn, outbox.c.id == entry_id, attempts=attempts, next_try=next_try, last_error=error,
         last_try=now)


def mark_failed(conn: Connection, entry_id: int, error: str, now: float) -> None:
    """Park an entry Planfix refused (400): kept, with Planfix's answer, until retry or skip."""
    _set(conn, outbox.c.id == entry_id, state=FAILED, last_error=error, last_try=now,
         attempts=outbox.c.attempts + 1)


def prune(conn: Connection, before: float) -> int:
    """Forget the bodies of requests delivered (or skipped) before `before`; returns how many.

    The calls and their linkedids stay: they are what keeps a call from being sent twice, and
    they are small. The bodies are most of the store (a day of a busy PBX is megabytes), and a
    delivered request is only ever looked at again by `show`."""
    try:
        done = conn.execute(delete(outbox).where(
            outbox.c.state.in_((SENT, SKIPPED)),
            func.coalesce(outbox.c.sent_at, outbox.c.last_try, outbox.c.created_at) < before))
    except OperationalError as exc:
        raise store_error(exc) from None
    return done.rowcount or 0


def mark_skipped(conn: Connection, entry_id: int, reason: str, now: float) -> None:
    _set(conn, outbox.c.id == entry_id, state=SKIPPED, last_error=reason, last_try=now)


def retry(conn: Connection, callid: Optional[str] = None, now: Optional[float] = None) -> int:
    """Make undelivered entries due now: those of `callid`, or (None) every failed one."""
    now = time.time() if now is None else now
    if callid is None:
        where = outbox.c.state == FAILED
    else:
        where = (outbox.c.callid == callid) & outbox.c.state.in_((FAILED, PENDING))
    return _set(conn, where, state=PENDING, attempts=0, next_try=now)


def skip(conn: Connection, callid: str, now: Optional[float] = None) -> int:
    """Drop the undelivered entries of `callid` for good (they stay visible as skipped)."""
    now = time.time() if now is None else now
    return _set(conn, (outbox.c.callid == callid) & outbox.c.state.in_((FAILED, PENDING)),
                state=SKIPPED, last_try=now)


def undelivered(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(outbox)
                        .where(outbox.c.state.in_((PENDING, FAILED)))).scalar_one()


def stats(conn: Connection, now: Optional[float] = None) -> dict[str, Any]:
    """Delivery at a glance, for `status` and metrics."""
    now = time.time() if now is None else now
    counts = dict.fromkeys(STATES, 0)
    for state, n in conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state)):
        counts[state] = n
    oldest = conn.execute(
        select(outbox.c.callid, outbox.c.created_at)
        .where(outbox.c.state.in_((PENDING, FAILED)))
        .order_by(outbox.c.created_at, outbox.c.id).limit(1)).first()
    last = conn.execute(
        select(outbox.c.callid, outbox.c.last_error, outbox.c.last_try)
        .where(outbox.c.last_error.is_not(None), outbox.c.state.in_((PENDING, FAILED)))
        .order_by(outbox.c.last_try.desc()).limit(1)).first()
    raised = {name: {"value": value, "since": since}
              for name, (value, since) in flags(conn).items()}
    return {
        **counts,
        "calls": conn.execute(select(func.count()).select_from(calls)).scalar_one(),
        "oldest_undelivered": None if oldest is None else {
            "callid": oldest.callid, "created_at": oldest.created_at,
            "age": max(0.0, now - oldest.created_at)},
        "last_error": None if last is None else {
            "callid": last.callid, "error": last.last_error, "at": last.last_try},
        "stalled": raised.get("stalled"),
        "unauthorized": raised.get("unauthorized"),
        "budget": raised.get("budget"),  # history waits for `[planfix] daily_limit`
    }


def summary(conn: Connection, callid: str) -> Optional[dict[str, Any]]:
    """Everything the ledger knows about one call (for `show`), or None."""
    row = conn.execute(select(calls).where(calls.c.callid == callid)).mappings().first()
    if row is None:
        return None
    linked = [r[0] for r in conn.execute(select(call_linkedids.c.linkedid)
                                         .where(call_linkedids.c.callid == callid)
                                         .order_by(call_linkedids.c.linkedid))]
    entries = conn.execute(select(outbox).where(outbox.c.callid == callid).order_by(outbox.c.id))
    return {
        "callid": callid,
        "origin": row["origin"],
        "recorded_at": row["created_at"],
        "call": json.loads(row["summary"]),
        "linkedids": linked,
        "requests": [{"key": e.key, "target": e.target, "state": e.state,
                      "attempts": e.attempts, "last_error": e.last_error, "sent_at": e.sent_at,
                      "body": json.loads(e.body)} for e in entries],
    }


def flags(conn: Connection) -> dict[str, tuple[str, float]]:
    """Every delivery condition raised: name -> (value, since)."""
    return {name: (value, since) for name, value, since in conn.execute(select(delivery_flags))}


def get_flag(conn: Connection, name: str) -> Optional[tuple[str, float]]:
    row = conn.execute(select(delivery_flags.c.value, delivery_flags.c.since)
                       .where(delivery_flags.c.name == name)).first()
    return None if row is None else (row.value, row.since)


def set_flag(conn: Connection, name: str, value: str, now: float) -> None:
    """Raise a delivery condition; `since` is kept when it was already raised."""
    try:
        if get_flag(conn, name) is None:
            conn.execute(insert(delivery_flags).values(name=name, value=value, since=now))
        else:
            conn.execute(update(delivery_flags).where(delivery_flags.c.name == name)
                         .values(value=value))
    except OperationalError as exc:
        raise store_error(exc) from None


def clear_flag(conn: Connection, name: str) -> Optional[tuple[str, float]]:
    """Lower a condition; returns what it was (None if it was not raised)."""
    was = get_flag(conn, name)
    if was is not None:
        try:
            conn.execute(delivery_flags.delete().where(delivery_flags.c.name == name))
        except OperationalError as exc:
            raise store_error(exc) from None
    return was
