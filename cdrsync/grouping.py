"""Which rows make one call: a union-find over linkedids.

Asterisk gives every channel of a call the same `linkedid`, except where it does not: pickups and
phone-side attended transfers start new linkedids, and bridging moves a channel from one linkedid
to another. So a call is the union of the linkedids that share a channel (`uniqueid`) or that a
transfer / pickup / local-optimize event names in its `extra` JSON. Pure; no I/O.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Callable, Optional

from cdrsync.linkedids import linkedid_epoch, linkedid_key
from cdrsync.model import CallRows, CdrRow, CelEvent, ClosedBy

# `"<something>_uniqueid":"<value>"` pairs; lenient because FreePBX's extra varchar(512) may cut
# the JSON anywhere (a cut value has no closing quote and is ignored).
_EXTRA_UNIQUEID = re.compile(r'"[A-Za-z0-9_]*uniqueid"\s*:\s*"([^"\\]+)"')
TRANSFER_EVENTS = frozenset({"ATTENDEDTRANSFER", "BLINDTRANSFER", "PICKUP", "LOCAL_OPTIMIZE"})


def transfer_uniqueids(event: CelEvent) -> set[str]:
    """Uniqueids of other channels a transfer / pickup / local-optimize event ties to this one."""
    if event.eventtype not in TRANSFER_EVENTS or not event.extra:
        return set()
    return {u for u in _EXTRA_UNIQUEID.findall(event.extra) if u != event.uniqueid}


class DisjointSet:
    """Union-find with path halving and union by size."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._size: dict[str, int] = {}

    def add(self, item: str) -> None:
        if item not in self._parent:
            self._parent[item] = item
            self._size[item] = 1

    def find(self, item: str) -> str:
        self.add(item)
        parent = self._parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self._size[ra] < self._size[rb]:
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._size[ra] += self._size[rb]

    def groups(self) -> list[set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for item, root in self.roots().items():
            out[root].add(item)
        return list(out.values())

    def roots(self) -> dict[str, str]:
        """Every item's representative: one `find` each, for callers that look many up."""
        return {item: self.find(item) for item in list(self._parent)}


def link_linkedids(cdr_rows: Iterable[CdrRow], cel_events: Iterable[CelEvent]) -> DisjointSet:
    """The union-find of every linkedid in the rows, joined by shared channels and by the
    uniqueids named in transfer events (when a row of that uniqueid is among the input)."""
    sets = DisjointSet()
    owners: dict[str, str] = {}  # uniqueid -> a linkedid it was seen with
    named: list[tuple[str, str]] = []  # (linkedid, uniqueid named in extra)

    def see(uniqueid: str, linkedid: str) -> None:
        sets.add(linkedid)
        if not uniqueid:
            return
        other = owners.setdefault(uniqueid, linkedid)
        if other != linkedid:
            sets.union(other, linkedid)

    cdr_list = list(cdr_rows)
    for row in cdr_list:
        see(row.uniqueid, row.linkedid)
    for a, b in local_pairs(cdr_list):
        sets.union(a, b)
    for event in cel_events:
        see(event.uniqueid, event.linkedid)
        if event.eventtype in TRANSFER_EVENTS:
            named.extend((event.linkedid, u) for u in transfer_uniqueids(event))
    for linkedid, uniqueid in named:
        if uniqueid in owners:
            sets.union(linkedid, owners[uniqueid])
    return sets


def local_pairs(cdr_rows: Iterable[CdrRow], slack: float = 2.0) -> list[tuple[str, str]]:
    """Linkedid pairs joined by the two halves of a Local channel, for PBXes whose `cdr` has no
    linkedid column (Asterisk 1.8: rows.py then uses each row's own uniqueid).

    A queue member or a ring group's outside number is dialled as `Local/...;1`; its `;2` half
    writes rows of its own under another uniqueid. Where linkedid exists Asterisk gives both halves
    the caller's linkedid; without it, the `;2` rows (linkedid == uniqueid) are joined to the row
    that dialled `;1` at the same time. Local names are reused, hence the time check."""
    ones: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    twos: list[CdrRow] = []
    for row in cdr_rows:
        if row.calldate is None:
            continue
        for channel in (row.channel, row.dstchannel):
            if channel.startswith("Local/") and channel.endswith(";1"):
                start = row.calldate.timestamp()
                ones[channel[:-2]].append((start, start + max(row.duration, 0), row.linkedid))
        if (row.channel.startswith("Local/") and row.channel.endswith(";2")
                and row.linkedid == row.uniqueid):
            twos.append(row)
    pairs = []
    for row in twos:
        at = row.calldate.timestamp()  # type: ignore[union-attr] - filtered above
        near = [(abs(at - start), linkedid)
                for start, end, linkedid in ones.get(row.channel[:-2], ())
                if start - slack <= at <= end + slack and linkedid != row.linkedid]
        if near:
            pairs.append((min(near)[1], row.linkedid))
    return pairs


def group_calls(
    cdr_rows: Iterable[CdrRow],
    cel_events: Iterable[CelEvent],
    closed_by: ClosedBy = ClosedBy.LINKEDID_END,
) -> list[CallRows]:
    """Group rows into calls. The result does not depend on the input order: calls are sorted
    by callid (the smallest linkedid by `linkedid_key`), cdr rows by (calldate, sequence),
    cel events by id; exact duplicates (overlapping reads) are dropped."""
    cdr_list = list(cdr_rows)  # exact duplicates: dropped by `_sorted_cdr`
    cel_list = list({e.id: e for e in cel_events}.values())
    sets = link_linkedids(cdr_list, cel_list)
    cdr_by: dict[str, list[CdrRow]] = defaultdict(list)
    cel_by: dict[str, list[CelEvent]] = defaultdict(list)
    root_of = sets.roots()
    for row in cdr_list:
        cdr_by[root_of[row.linkedid]].append(row)
    for event in cel_list:
        cel_by[root_of[event.linkedid]].append(event)
    calls = []
    for members in sets.groups():
        root = root_of[next(iter(members))]
        rows = _sorted_cdr(cdr_by[root])
        events = sorted(cel_by[root], key=attrgetter("id"))
        calls.append(CallRows(
            callid=min(members, key=linkedid_key),
            linkedids=frozenset(members),
            cdr=tuple(rows),
            cel=tuple(events),
            closed_by=closed_by,
        ))
    calls.sort(key=lambda c: linkedid_key(c.callid))
    return calls


def _sorted_cdr(rows: list[CdrRow]) -> list[CdrRow]:
    """The distinct rows (a row read twice is kept once) by (calldate, sequence, uniqueid,
    `key`), then by their repr: rows alike in all of those differ in some other column.

    Equal rows have equal sort keys, so only when keys collide are rows compared whole (a
    row's hash is one of all its columns) and the costly repr worked out."""
    keys = [_cdr_order(row) for row in rows]
    if len(set(keys)) < len(keys):
        rows = list(dict.fromkeys(rows))
        keys = [_cdr_order(row) + (repr(row),) for row in rows]
    return [row for _, row in sorted(zip(keys, rows), key=itemgetter(0))]


def _cdr_order(row: CdrRow) -> tuple:
    stamp = row.calldate.isoformat() if row.calldate else ""
    return (stamp, row.sequence, linkedid_key(row.uniqueid), row.key)


class OpenCall:
    """A call being assembled from cel events read in id order (see `CallAssembler`)."""

    __slots__ = ("linkedids", "uniqueids", "named", "events", "open", "ends", "first_time",
                 "last_time", "min_epoch", "dated", "completed_at")

    def __init__(self) -> None:
        self.linkedids: set[str] = set()
        self.uniqueids: set[str] = set()  # channels seen in its events
        self.named: set[str] = set()  # channels named by its transfer events, not seen yet
        self.events: list[CelEvent] = []
        self.open: set[str] = set()  # linkedids without a LINKEDID_END yet
        self.ends: list[int] = []  # cel ids of its LINKEDID_END events
        self.first_time: Optional[datetime] = None  # eventtime of its first event read
        self.last_time: Optional[datetime] = None
        # smallest creation epoch of its linkedids / uniqueids; None when one is not
        # `[system-]epoch.n`, so that nothing can be said about when the call began
        self.min_epoch: Optional[int] = None
        self.dated = True  # False once an id without an epoch was seen
        self.completed_at: Optional[datetime] = None  # stream time when `open` became empty

    @property
    def complete(self) -> bool:
        return not self.open and bool(self.ends)

    def _see(self, item: str) -> None:
        epoch = linkedid_epoch(item)
        if epoch is None:
            self.dated = False
        elif self.min_epoch is None or epoch < self.min_epoch:
            self.min_epoch = epoch


class CallAssembler:
    """Incremental `group_calls` for cel events fed in id order, with the same links (shared
    channel, uniqueid named by a transfer / pickup event), that can forget a call once it is
    handed out: it is how backfill streams `cel` by id range in flat memory instead of looking
    every call up by linkedid. Pure; no I/O. Events with an empty linkedid are ignored."""

    def __init__(self) -> None:
        self._by_linkedid: dict[str, OpenCall] = {}
        self._by_uniqueid: dict[str, OpenCall] = {}
        self._calls: dict[int, OpenCall] = {}  # id(call) -> call, every call held
        self.now: Optional[datetime] = None  # the latest eventtime read (the stream's clock)

    def __len__(self) -> int:
        return len(self._calls)

    def calls(self) -> list[OpenCall]:
        return list(self._calls.values())

    def add(self, event: CelEvent) -> None:
        lid = event.linkedid
        if not lid:
            return
        when = event.eventtime
        if when is not None and (self.now is None or when > self.now):
            self.now = when
        call = self._by_linkedid.get(lid)
        if call is None:
            call = self._new_linkedid(lid)
        uid = event.uniqueid
        # most events are of a channel the call already holds: nothing to link
        if uid and not (uid in call.uniqueids and self._by_uniqueid.get(uid) is call):
            call = self._link(call, uid, seen=True)
        if event.eventtype in TRANSFER_EVENTS:
            for uid in transfer_uniqueids(event):
                call = self._link(call, uid, seen=False)
        call.events.append(event)
        if when is not None:  # `_pick` written out: this runs for every event of a backfill
            if call.first_time is None or when < call.first_time:
                call.first_time = when
            if call.last_time is None or when > call.last_time:
                call.last_time = when
        if event.eventtype == "LINKEDID_END":
            call.ends.append(event.id)
            call.open.discard(lid)
            if not call.open:
                call.completed_at = self.now

    def _link(self, call: OpenCall, uid: str, seen: bool) -> OpenCall:
        other = self._by_uniqueid.get(uid)
        if other is None:
            self._by_uniqueid[uid] = call
            call._see(uid)
        elif other is not call:
            call = self._merge(call, other)
        if seen:
            call.uniqueids.add(uid)
            call.named.discard(uid)
        elif uid not in call.uniqueids:
            call.named.add(uid)
        return call

    def _new_linkedid(self, lid: str) -> OpenCall:
        call = OpenCall()
        call.linkedids.add(lid)
        call.open.add(lid)
        call._see(lid)
        self._by_linkedid[lid] = call
        self._calls[id(call)] = call
        return call

    def _merge(self, a: OpenCall, b: OpenCall) -> OpenCall:
        """Union by size: the smaller call's ids are moved to the bigger one."""
        if len(a.events) + len(a.uniqueids) < len(b.events) + len(b.uniqueids):
            a, b = b, a
        for lid in b.linkedids:
            self._by_linkedid[lid] = a
        for uid in b.uniqueids | b.named:
            self._by_uniqueid[uid] = a
        a.linkedids |= b.linkedids
        a.uniqueids |= b.uniqueids
        a.named = (a.named | b.named) - a.uniqueids
        a.events += b.events
        a.open |= b.open
        a.ends += b.ends
        a.dated = a.dated and b.dated
        if b.min_epoch is not None and (a.min_epoch is None or b.min_epoch < a.min_epoch):
            a.min_epoch = b.min_epoch
        a.first_time = _pick(min, a.first_time, b.first_time)
        a.last_time = _pick(max, a.last_time, b.last_time)
        a.completed_at = self.now if a.complete else None
        del self._calls[id(b)]
        return a

    def take_complete(self, completed_before: Optional[datetime]) -> list[OpenCall]:
        """Forget and return the calls whose every linkedid has ended, at stream time <
        `completed_before` (None: all of them)."""
        out = [c for c in self._calls.values() if c.complete and (
            completed_before is None or c.completed_at is None
            or c.completed_at < completed_before)]
        for call in out:
            self.forget(call)
        return out

    def forget(self, call: OpenCall) -> None:
        for lid in call.linkedids:
            self._by_linkedid.pop(lid, None)
        for uid in call.uniqueids | call.named:
            if self._by_uniqueid.get(uid) is call:
                del self._by_uniqueid[uid]
        self._calls.pop(id(call), None)


def assembled_calls(call: OpenCall, cdr_rows: Iterable[CdrRow],
                    closed_by: ClosedBy = ClosedBy.LINKEDID_END) -> list[CallRows]:
    """`group_calls(cdr_rows, call.events, closed_by)` for a call the assembler completed, with
    cdr rows that share a linkedid or channel with it, without grouping it all over again.

    The assembler joined its linkedids by the links `group_calls` follows, except through a
    channel that transfer events named but no event of the call showed (two calls naming the
    same unseen channel are one call for the assembler only): with such a channel left in
    `named` it is grouped again. Otherwise the union is
    the assembler's, plus the linkedids of the cdr rows, which all join it (by their linkedid
    or their channel); the rows are ordered as `group_calls` orders them."""
    if call.named:
        return group_calls(cdr_rows, call.events, closed_by)
    rows = _sorted_cdr(list(cdr_rows))
    members = call.linkedids.union(row.linkedid for row in rows)
    return [CallRows(
        callid=min(members, key=linkedid_key),
        linkedids=frozenset(members),
        cdr=tuple(rows),
        cel=tuple(sorted(call.events, key=attrgetter("id"))),
        closed_by=closed_by,
    )]


def _pick(choose: Callable[..., datetime], a: Optional[datetime], b: Optional[datetime]
          ) -> Optional[datetime]:
    """min / max of two times, either of which may be unknown."""
    if a is None or b is None:
        return a if b is None else b
    return choose(a, b)
