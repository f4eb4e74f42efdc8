"""The domain of cdrsync: raw rows as the PBX wrote them, and calls as a person would tell them.

Rows (`CdrRow`, `CelEvent`) are plain values decoded from the PBX database: every text column is a
`str` (never None, never bytes), every count an `int`, every time a *naive local* `datetime` of the
PBX (or None when the database held a NULL or a zero date). They are named tuples, not frozen
dataclasses: backfill builds one per row of the tables, and a tuple is made from the driver's row
in one C step (a frozen dataclass took 7 times as long, with a `__dict__` of its own that tripled
the memory of a batch). Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Optional


class CdrRow(NamedTuple):
    """One row of `asteriskcdrdb.cdr`: one path between Party A and Party B of a call."""

    calldate: Optional[datetime]
    clid: str = ""
    src: str = ""
    dst: str = ""
    dcontext: str = ""
    channel: str = ""
    dstchannel: str = ""
    lastapp: str = ""
    lastdata: str = ""
    duration: int = 0
    billsec: int = 0
    disposition: str = ""
    uniqueid: str = ""
    linkedid: str = ""
    sequence: int = 0
    did: str = ""
    recordingfile: str = ""
    cnum: str = ""
    cnam: str = ""
    outbound_cnum: str = ""
    userfield: str = ""

    @property
    def key(self) -> tuple[str, int, str]:
        """Identity of a row: FreePBX's `cdr` has no primary key, `(uniqueid, sequence)` is one."""
        stamp = self.calldate.isoformat() if self.calldate else ""
        return (self.uniqueid, self.sequence, stamp + "|" + self.channel + "|" + self.dstchannel)


class CelEvent(NamedTuple):
    """One row of `asteriskcdrdb.cel`. `id` (auto-increment) is the true order of events."""

    id: int
    eventtype: str
    eventtime: Optional[datetime]
    uniqueid: str = ""
    linkedid: str = ""
    channame: str = ""
    context: str = ""
    exten: str = ""
    cid_name: str = ""
    cid_num: str = ""
    appname: str = ""
    appdata: str = ""
    peer: str = ""
    userdeftype: str = ""
    extra: str = ""


class ClosedBy(str, enum.Enum):
    """Why cdrsync decided the call was over."""

    LINKEDID_END = "linkedid_end"  # CEL said so for every linkedid of the call
    TIMEOUT = "timeout"  # CEL never said so (restart, reload): closed after [schedule] orphan_after
    QUIET = "quiet"  # CDR-only: no new row for [schedule] settle seconds
    HISTORY = "history"  # backfill: the rows are old enough to be complete


@dataclass(frozen=True)
class CallRows:
    """Everything the PBX wrote about one call: the input of interpretation.

    `callid` is the smallest linkedid of the group, compared as (epoch, counter) and never as a
    string, so it does not depend on the order in which rows were read.
    """

    callid: str
    linkedids: frozenset[str]
    cdr: tuple[CdrRow, ...] = ()
    cel: tuple[CelEvent, ...] = ()
    closed_by: ClosedBy = ClosedBy.LINKEDID_END


class Direction(str, enum.Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Status(str, enum.Enum):
    """Planfix's words for how a call ended (`status` of `COMPLETED`)."""

    SUCCESS = "Success"
    MISSED = "Missed"
    CANCELLED = "Cancelled"
    BUSY = "Busy"
    NO_ANSWER = "NoAnswer"
    NOT_AVAILABLE = "NotAvailable"
    NOT_ALLOWED = "NotAllowed"


@dataclass(frozen=True)
class Leg:
    """One party the call reached: an extension that rang, or the outside line it went out on."""

    ext: str  # extension number, or the dialled outside number for a trunk leg
    channel: str
    answered: bool  # bridged with the caller (a person talked), not merely ANSWER'ed
    talk_seconds: int = 0
    outcome: str = ""  # ANSWERED / NO ANSWER / BUSY / FAILED / ... as the PBX said
    via: str = ""  # "ring group 600", "queue 400", "transfer", "IVR ivr-1", ...


@dataclass
class Call:
    """A finished call as an office would describe it; the output of interpretation.

    `ext` is the extension Planfix should attach the call to (by default the one who talked last;
    for a missed call the first that rang), `duration` the caller's talk time in seconds.
    """

    callid: str
    direction: Direction
    status: Status
    start: Optional[datetime]  # aware, UTC; None when the rows carried no usable time
    end: Optional[datetime]
    phone: str  # outside party normalised for contact matching ("" for internal)
    phone_raw: str  # as the PBX wrote it
    ext: str
    duration: int
    did: str = ""
    diversion: str = ""  # DID for inbound, outbound caller id / trunk number for outbound
    caller_name: str = ""
    answered_by: str = ""  # the first extension that talked
    final_ext: str = ""  # the last extension that talked
    rung: tuple[str, ...] = ()  # every extension that rang, in order, without repeats
    legs: tuple[Leg, ...] = ()
    path: tuple[str, ...] = ()  # e.g. ("IVR ivr-1", "101", "transfer", "104")
    recording_candidates: tuple[str, ...] = ()  # recordingfile / MixMonitor paths, in order
    uniqueids: tuple[str, ...] = ()  # every channel of the call (for recording file search)
    queue: str = ""
    ring_group: str = ""
    closed_by: ClosedBy = ClosedBy.LINKEDID_END
    reasons: list[str] = field(default_factory=list)  # one line per rule that decided something

    @property
    def answered(self) -> bool:
        return bool(self.answered_by)
