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
from typing import Optional

from cdrsync.model import CallRows, CdrRow, CelEvent, ClosedBy

# `[system-]<epoch>.<counter>`; the system name may itself contain dashes.
_LINKEDID = re.compile(r"^(?:.*-)?(\d+)\.(\d+)$")
# `"<something>_uniqueid":"<value>"` pairs; lenient because FreePBX's extra varchar(512) may cut
# the JSON anywhere (a cut value has no closing quote and is ignored).
_EXTRA_UNIQUEID = re.compile(r'"[A-Za-z0-9_]*uniqueid"\s*:\s*"([^"\\]+)"')
TRANSFER_EVENTS = frozenset({"ATTENDEDTRANSFER", "BLINDTRANSFER", "PICKUP", "LOCAL_OPTIMIZE"})


def linkedid_key(linkedid: str) -> tuple[int, int, int, str]:
    """Sort key of a linkedid/uniqueid: numerically by (epoch, counter), never as a string
    (`...858.10` comes after `...858.9`); ids that are not `[system-]epoch.n` (ARI UUIDs) after
    all others, by string."""
    m = _LINKEDID.match(linkedid.strip())
    if m:
        return (0, int(m.group(1)), int(m.group(2)), linkedid)
    return (1, 0, 0, linkedid)


def linkedid_epoch(linkedid: str) -> Optional[int]:
    """UTC epoch second at which the channel named by a uniqueid/linkedid was created."""
    m = _LINKEDID.match(linkedid.strip())
    return int(m.group(1)) if m else None


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
        for item in self._parent:
            out[self.find(item)].add(item)
        return list(out.values())


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

    for row in cdr_rows:
        see(row.uniqueid, row.linkedid)
    for event in cel_events:
        see(event.uniqueid, event.linkedid)
        named.extend((event.linkedid, u) for u in transfer_uniqueids(event))
    for linkedid, uniqueid in named:
        if uniqueid in owners:
            sets.union(linkedid, owners[uniqueid])
    return sets


def group_calls(
    cdr_rows: Iterable[CdrRow],
    cel_events: Iterable[CelEvent],
    closed_by: ClosedBy = ClosedBy.LINKEDID_END,
) -> list[CallRows]:
    """Group rows into calls. The result does not depend on the input order: calls are sorted
    by callid (the smallest linkedid by `linkedid_key`), cdr rows by (calldate, sequence),
    cel events by id; exact duplicates (overlapping reads) are dropped."""
    cdr_list = list(dict.fromkeys(cdr_rows))
    cel_list = list({e.id: e for e in cel_events}.values())
    sets = link_linkedids(cdr_list, cel_list)
    cdr_by: dict[str, list[CdrRow]] = defaultdict(list)
    cel_by: dict[str, list[CelEvent]] = defaultdict(list)
    for row in cdr_list:
        cdr_by[sets.find(row.linkedid)].append(row)
    for event in cel_list:
        cel_by[sets.find(event.linkedid)].append(event)
    calls = []
    for members in sets.groups():
        root = sets.find(next(iter(members)))
        rows = sorted(cdr_by[root], key=_cdr_order)
        events = sorted(cel_by[root], key=lambda e: e.id)
        calls.append(CallRows(
            callid=min(members, key=linkedid_key),
            linkedids=frozenset(members),
            cdr=tuple(rows),
            cel=tuple(events),
            closed_by=closed_by,
        ))
    calls.sort(key=lambda c: linkedid_key(c.callid))
    return calls


def _cdr_order(row: CdrRow) -> tuple:
    stamp = row.calldate.isoformat() if row.calldate else ""
    return (stamp, row.sequence, linkedid_key(row.uniqueid), row.key, repr(row))
