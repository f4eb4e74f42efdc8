"""Calls cdrsync could not process: kept, with the step that failed and why, until a retry.

A call whose rows no step can handle (interpretation, recording lookup, request building, missed-
call recipients) must cost that call only: it is recorded here with its linkedids, in the same
transaction that moves the finder's cursor past it, so it is neither lost (the admin sees it in
`status`, `show` says why) nor met again by every pass: its linkedids go into the ledger's
`call_linkedids`, which is what the finder asks (`ledger.handled_linkedids`), under a callid that
`calls` does not hold. `cdrsync retry --quarantined` marks calls to be processed again;
the next pass (or the retry command itself, when nothing else is working) re-reads their rows
and either records them normally or keeps them with the new reason. `cdrsync skip` drops one.

States: `held` (waiting for an admin), `retry` (to be processed again at the next pass),
`dropped` (skipped by the admin; still handled, never listed as waiting). Times are epoch
seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from cdrsync.state.db import EPOCH, metadata
from cdrsync.state.ledger import call_linkedids, handled_linkedids

HELD, RETRY, DROPPED = "held", "retry", "dropped"
WAITING = (HELD, RETRY)  # what `status` counts: calls an admin still has to look at

quarantine = Table(
    "quarantine", metadata,
    Column("callid", String(64), primary_key=True),
    Column("step", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("origin", String(16), nullable=False),  # "sync" | "backfill": how it is retried
    Column("notify_missed", Boolean, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("first_at", EPOCH, nullable=False),
    Column("last_at", EPOCH, nullable=False),
)



@dataclass(frozen=True)
class Held:
    """A call that could not be processed: which one, at which step, and why (one line)."""

    callid: str
    linkedids: frozenset[str]
    step: str
    reason: str


@dataclass(frozen=True)
class Entry:
    callid: str
    linkedids: tuple[str, ...]
    step: str
    reason: str
    origin: str
    notify_missed: bool
    state: str
    attempts: int
    first_at: float
    last_at: float

    def as_dict(self) -> dict[str, Any]:
        return {name: (list(value) if isinstance(value, tuple) else value)
                for name, value in self.__dict__.items()}


def hold(conn: Connection, calls: Iterable[Held], origin: str, notify_missed: bool,
         now: float) -> list[str]:
    """Quarantine calls (in the caller's transaction); a call already quarantined keeps its
    entry. Returns the callids that were new."""
    wanted = {held.callid: held for held in calls}
    if not wanted:
        return []
    known = {r[0] for r in conn.execute(select(quarantine.c.callid)
                                        .where(quarantine.c.callid.in_(sorted(wanted))))}
    new = [wanted[callid] for callid in wanted if callid not in known]
    if not new:
        return []
    conn.execute(insert(quarantine), [
        {"callid": h.callid, "step": h.step, "reason": h.reason, "origin": origin,
         "notify_missed": notify_missed, "state": HELD, "attempts": 1, "first_at": now,
         "last_at": now} for h in new])
    taken = handled_linkedids(conn, {lid for h in new for lid in h.linkedids | {h.callid}})
    rows = [{"linkedid": lid, "callid": h.callid} for h in new
            for lid in sorted(h.linkedids | {h.callid}) if lid not in taken]
    if rows:
        conn.execute(insert(call_linkedids), rows)
    return [h.callid for h in new]


def entries(conn: Connection, states: Iterable[str] = WAITING, callid: Optional[str] = None
            ) -> list[Entry]:
    """Quarantined calls in these states, oldest first (`callid`: that call, or the call one of
    its linkedids belongs to)."""
    query = select(quarantine).where(quarantine.c.state.in_(tuple(states)))
    if callid is not None:
        owner = (select(call_linkedids.c.callid)
                 .where(call_linkedids.c.linkedid == callid).scalar_subquery())
        query = query.where((quarantine.c.callid == callid) | (quarantine.c.callid == owner))
    query = query.order_by(quarantine.c.first_at, quarantine.c.callid)
    rows = list(conn.execute(query).mappings())
    linked: dict[str, list[str]] = {}
    if rows:
        for lid, owner_id in conn.execute(
                select(call_linkedids.c.linkedid, call_linkedids.c.callid)
                .where(call_linkedids.c.callid.in_([r["callid"] for r in rows]))
                .order_by(call_linkedids.c.linkedid)):
            linked.setdefault(owner_id, []).append(lid)
    return [Entry(r["callid"], tuple(linked.get(r["callid"], ())), r["step"], r["reason"],
                  r["origin"], bool(r["notify_missed"]), r["state"], r["attempts"],
                  r["first_at"], r["last_at"]) for r in rows]


def count(conn: Connection) -> int:
    """Calls waiting in quarantine (held or marked for a retry)."""
    return conn.execute(select(func.count()).select_from(quarantine)
                        .where(quarantine.c.state.in_(WAITING))).scalar_one()


def mark(conn: Connection, callids: Optional[Iterable[str]], state: str) -> list[str]:
    """Set the state of waiting calls (`callids`, or None: all of them); returns their callids."""
    query = select(quarantine.c.callid).where(quarantine.c.state.in_(WAITING))
    if callids is not None:
        query = query.where(quarantine.c.callid.in_(sorted(set(callids))))
    found = [r[0] for r in conn.execute(query)]
    if found:
        conn.execute(update(quarantine).where(quarantine.c.callid.in_(found)).values(state=state))
    return found


def kept(conn: Connection, callid: str, step: str, reason: str, now: float) -> None:
    """A retry failed again: the call stays quarantined with the new step and reason."""
    conn.execute(update(quarantine).where(quarantine.c.callid == callid).values(
        step=step, reason=reason, state=HELD, attempts=quarantine.c.attempts + 1, last_at=now))


def release(conn: Connection, callid: str) -> None:
    """A retried call is about to be recorded normally (in the same transaction): it leaves the
    quarantine, and its linkedids go to the call as the ledger records it, whatever its callid
    is now."""
    conn.execute(delete(call_linkedids).where(call_linkedids.c.callid == callid))
    conn.execute(delete(quarantine).where(quarantine.c.callid == callid))


def summary(entry: Entry) -> str:
    """One line about a quarantined call, for `status` and `show`."""
    tries = f", {entry.attempts} attempts" if entry.attempts > 1 else ""
    retry = ", retry at the next pass" if entry.state == RETRY else ""
    return f"{entry.callid} ({entry.step}{tries}{retry}): {entry.reason}"

