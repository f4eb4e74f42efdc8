"""Realistic asteriskcdrdb rows (FreePBX 17 / Asterisk 20 `cdr` + `cel`) for any number of calls.

Every call is built from a template of one FreePBX call flow, and each template repeats what the
real rows of ../shared/corpus/asterisk-20.20.1 (see its shapes.md) show for that flow: contexts,
channel names, `lastapp` / `lastdata`, dispositions and billsec rules (billsec counts from the
answer of the *caller's* channel, so an IVR or a queue makes every later row ANSWERED-from-start),
and the CEL sequence CHAN_START .. ANSWER .. BRIDGE_ENTER/EXIT (with the bridge_id JSON) .. HANGUP
(with dialstatus) .. CHAN_END, LINKEDID_END last. Only names, numbers and times vary, drawn from a
seeded `random.Random`, so the same seed gives the same rows.

Each `SynthCall` carries `truth`: what a person would say about the call (in Planfix's words), which
the tests compare with `cdrsync.interpret`.

uniqueids are `<epoch>.<counter>` like Asterisk's: epoch = the UTC second the *channel* was created
(a transferred-to phone gets a later epoch), counter = one counter per generator, as one Asterisk
process keeps one. `insert()` loads rows fast (LOAD DATA LOCAL INFILE on MariaDB) in the order a
PBX would write them: CEL events by time across overlapping calls, CDR rows at their channel's end.

Two PBX generations and four numberings (`generate(..., generation=, numbering=, tech=)`):

- `A20` (the default): Asterisk 20 + PJSIP + FreePBX 17, whose `ext_macro` is written out as
  `Gosub(macro-<name>,s,1(...))` (FreePBX framework `libraries/extensions.class.php`), as the
  corpus PBX does; Asterisk 20.16+ adds STREAM_BEGIN/STREAM_END/DTMF and 18.18+/20.3+
  LOCAL_OPTIMIZE_BEGIN to `cel` (`main/cel.c`, `include/asterisk/cel.h` on branch 20).
- `A13`: Asterisk 13 + chan_sip + FreePBX 13, whose macros run in `Macro()`. The contexts carry
  the same `macro-*` names; `app_macro.c` (branch 13, `_macro_exec`) restores the caller's
  context and exten when a macro ends, also on hangup, so the hang-up events of a channel that was
  inside a macro show the outer context and FreePBX's `h` extension. Asterisk 13's `cel.h` has no
  STREAM_*, DTMF or LOCAL_OPTIMIZE_BEGIN events. chan_sip trunks enter on `from-trunk` (FreePBX's
  SIP trunk default; `from-trunk` includes `from-pstn`). Its conference rooms are MeetMe
  (FreePBX's ASTCONFAPP app_meetme), which mixes outside Asterisk's bridges. The CDR engine is
  the same state machine in 13 and 20 (`main/cdr.c`: one row per Party A/B pair, dst/dcontext
  frozen inside Macro/Gosub by AST_FLAG_SUBROUTINE_EXEC, `lastapp` locked on `Dial`,
  `unanswered=no` dropping unanswered rows without a Party B).
- Numberings: `"3"` (101..., today's and the corpus's), `"4"` (2001...), `"10"` (10-digit
  DID-like extensions, the corpus-public `freepbx-oscar6262-2024` sample's `PJSIP/6871322562-…`
  phones, whose inbound routes are the extension numbers themselves) and `"named"` (devices named
  `client1`..., the `asterisk-kelysaina-cdrcustom-2023` sample, serving 4-digit extensions as
  FreePBX's device-and-user mode maps them: `AMPUSER/<ext>/device` -> `DEVICE/<dev>/dial`).
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo

CDR_COLUMNS = (
    "calldate", "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata",
    "duration", "billsec", "disposition", "amaflags", "accountcode", "uniqueid", "userfield", "did",
    "recordingfile", "cnum", "cnam", "outbound_cnum", "outbound_cnam", "dst_cnam", "linkedid",
    "peeraccount", "sequence")
CEL_COLUMNS = (
    "eventtype", "eventtime", "cid_name", "cid_num", "cid_ani", "cid_rdnis", "cid_dnid", "exten",
    "context", "channame", "appname", "appdata", "amaflags", "accountcode", "uniqueid", "linkedid",
    "peer", "userdeftype", "extra")
# Column widths of sql/asteriskcdrdb.sql: MariaDB's strict mode refuses longer values.
_WIDTH = {"lastdata": 80, "clid": 80, "appdata": 1024, "extra": 512, "recordingfile": 255}

# Weights per flow: an office line on a weekday (most inbound calls reach someone; a sizable share
# of outbound calls is not answered; a few transfers and IVR hang-ups).
DEFAULT_MIX: dict[str, float] = {
    "in_answered": 20, "in_noanswer_vm": 5, "in_noanswer_cancel": 3, "in_busy_vm": 2,
    "rg_answered": 10, "rg_local_answered": 3, "rg_noanswer": 4,
    "queue_answered": 10, "queue_abandon": 4,
    "ivr_hangup": 3, "ivr_option": 6,
    "out_answered": 14, "out_busy": 2, "out_noanswer": 4, "out_congestion": 1,
    "internal_answered": 4, "internal_missed": 2,
    "blind_transfer": 3,
}

OUTBOUND_CNUM, OUTBOUND_CNAM = "5551000", "Lab Company"
DIAL_OPTS = "Ttrb(func-apply-sipheaders^s^1)"
_FIRST = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
          "Karl", "Laura", "Mallory", "Nina", "Oscar", "Peggy", "Quentin", "Rita", "Sybil", "Trent")
_LAST = ("Anders", "Brown", "Clark", "Dunn", "Evans", "Fox", "Green", "Hill", "Irving", "Jones",
         "King", "Lee", "Moore", "Nash", "Olsen", "Price", "Quinn", "Reed", "Stone", "Tate")


@dataclass(frozen=True)
class Truth:
    """What the call was, as an office would tell it (the expected result of interpretation)."""

    flow: str
    direction: str  # "inbound" | "outbound" | "internal"
    status: str  # Planfix word: Success, Missed, Busy, NoAnswer, NotAvailable
    answered: str  # first extension that talked to the caller ("" if none; outbound: "")
    final_ext: str  # last extension that talked ("" if none)
    rung: tuple[str, ...]  # extensions that rang, in order
    talk: int  # seconds the caller talked (to the first answer until the end for transfers)
    did: str
    phone: str  # the outside party's number ("" for internal calls)
    ext: str  # the extension of our side: callee / first rung for inbound, caller for outbound
    linkedid: str
    start: datetime  # naive local
    end: datetime  # naive local
    recorded: bool = False
    group: str = ""  # ring group / queue number, IVR name


@dataclass
class SynthCall:
    cdr: list[dict[str, Any]]
    cel: list[dict[str, Any]]
    truth: Truth
    more: tuple[Truth, ...] = ()  # other calls these rows also hold (an employee in a room)


@dataclass(frozen=True)
class Generation:
    """How one PBX generation writes its rows (the module docstring names the sources)."""

    name: str
    tech: str  # channel technology of phones and trunks: "PJSIP" | "SIP"
    trunk_context: str  # the context the carrier's channels are created in
    macro: bool  # FreePBX 13 Macro(): the outer context comes back when a macro ends
    no_events: frozenset[str] = frozenset()  # CEL event types this Asterisk does not write
    conference: str = "ConfBridge"  # FreePBX's ASTCONFAPP: app_confbridge or app_meetme

    def with_tech(self, tech: str) -> Generation:
        """The same generation with other phones and trunks (FreePBX 13 also runs PJSIP)."""
        return replace(self, tech=tech)

    def device(self, dev: str) -> str:
        """What FreePBX's `DEVICE/<dev>/dial` holds: the device's Dial() target."""
        return f"{self.tech}/{dev}"

    def trunk_dial(self, trunk: str, number: str) -> str:
        """The Dial() target of `macro-dialout-trunk`: `${OUT_<n>}/<number>${OUT_<n>_SUFFIX}`,
        where FreePBX core (`functions.inc.php`, release/13.0 and 17.0) sets `OUT_<n>` to
        `SIP/<trunk>`, or to `PJSIP` with the suffix `@<trunk>` (real rows: oscar6262's
        `PJSIP/667789323@TRUNK200`)."""
        if self.tech == "PJSIP":
            return f"PJSIP/{number}@{trunk}"
        return f"{self.tech}/{trunk}/{number}"


A20 = Generation("A20", "PJSIP", "from-pstn", macro=False)
A13 = Generation("A13", "SIP", "from-trunk", macro=True,
                 no_events=frozenset({"STREAM_BEGIN", "STREAM_END", "DTMF",
                                      "LOCAL_OPTIMIZE_BEGIN"}),
                 conference="MeetMe")
GENERATIONS = {g.name: g for g in (A20, A13)}


@dataclass(frozen=True)
class Numbering:
    """The numbers of one office: extensions and their devices, groups, queues, DIDs, trunk."""

    name: str
    exts: tuple[str, ...]
    devices: tuple[str, ...]  # the device (endpoint) of each extension, same order
    ring_groups: tuple[str, ...]
    queues: tuple[str, ...]
    dids: tuple[str, ...]
    trunk: str
    outbound_cid: tuple[str, str]  # (number, name) the outbound route sends
    did_is_ext: bool = False  # an extension's own inbound route is its number (`dids`: the rest)
    park: str = "70"  # parking lot extension; its slots follow it (71, 72, ...)
    room: str = "900"  # conference room
    ivr: str = "ivr-1"  # the IVR's context (FreePBX ivr module: `ivr-<id>`)


def numbers(name: str) -> Numbering:
    """The numbers of the office of one numbering: "3", "4", "10" or "named"."""
    if name == "3":
        exts = tuple(str(101 + i) for i in range(20))
        return Numbering("3", exts, exts, ("600", "601", "602"), ("400", "401"),
                         ("5551000", "5551001", "5551002", "5551003", "5551004", "5551005"),
                         "carrier", (OUTBOUND_CNUM, OUTBOUND_CNAM))
    if name == "4":
        exts = tuple(str(2001 + i) for i in range(20))
        return Numbering("4", exts, exts, ("6000", "6001", "6002"), ("4000", "4001"),
                         tuple(f"800555{100 + i:04d}" for i in range(6)), "telco",
                         ("8005550100", "Four Digit Ltd"), park="7000", room="9000")
    if name == "10":
        exts = tuple(f"68713225{62 + i}" for i in range(20))
        return Numbering("10", exts, exts, ("777", "2003", "2005"), ("8001", "8002"),
                         tuple(f"687132000{i}" for i in range(1, 7)), "TRUNK200",
                         ("6871320000", "Guasave"), did_is_ext=True, room="8000", ivr="ivr-4")
    if name == "named":
        exts = tuple(str(1234 + 1111 * i % 8000) for i in range(20))
        return Numbering("named", exts, tuple(f"client{i + 1}" for i in range(20)),
                         ("650", "651", "652"), ("450", "451"),
                         tuple(f"777000{i}" for i in range(6)), "provider",
                         ("7770009", "Named Endpoints"), park="700", room="950")
    raise ValueError(f"unknown numbering {name!r}: 3, 4, 10 or named")


NUMBERINGS = ("3", "4", "10", "named")


@dataclass
class _Chan:
    """A channel and its current place in the dialplan, copied into each of its CEL events."""

    name: str
    uniqueid: str
    cid_name: str = ""
    cid_num: str = ""
    cid_ani: str = ""
    cid_dnid: str = ""
    exten: str = ""
    context: str = ""
    appname: str = ""
    appdata: str = ""
    linkedid: str = ""  # set while the channel has a linkedid of its own (not the call's)

    def goto(self, exten: str, context: str, app: str = "", data: str = "") -> None:
        """The channel moves in the dialplan: its next events show this place and application."""
        self.exten, self.context, self.appname, self.appdata = exten, context, app, data


class _Pbx:
    """The counters one Asterisk process keeps: uniqueids, channel name suffixes, CDR sequence."""

    def __init__(self, zone: ZoneInfo, first_uid: int = 0, gen: Generation = A20,
                 unanswered: bool = False) -> None:
        self.zone = zone
        self.gen = gen
        self.unanswered = unanswered  # cdr.conf `unanswered`
        self.uid = itertools.count(first_uid)
        self.chan_no = itertools.count()
        self.local_no = itertools.count()
        self.sequence = itertools.count()

    def local(self, epoch: float) -> datetime:
        return datetime.fromtimestamp(int(epoch), self.zone).replace(tzinfo=None)


class _Call:
    """Rows of one call under construction; times are seconds after the call's start."""

    def __init__(self, pbx: _Pbx, rnd: random.Random, epoch: int) -> None:
        self.pbx = pbx
        self.rnd = rnd
        self.epoch = epoch
        self.linkedid = ""
        self.cel: list[dict[str, Any]] = []
        self.cdr: list[dict[str, Any]] = []
        self.end = 0
        self._when: list[float] = []  # exact time of each CEL event, for `events()`
        self.more: list[Truth] = []  # truths of other calls built into these rows

    def at(self, t: float) -> datetime:
        return self.pbx.local(self.epoch + t)

    def channel(self, t: float, tech: str, cid_name: str = "", cid_num: str = "",
                own: bool = False) -> _Chan:
        """A new channel; `own`: it begins a linkedid of its own (a phone that picks up, that
        dials a conference room), else it joins the call's (Asterisk copies the caller's
        linkedid to the channels it dials)."""
        uid = f"{self.epoch + int(t)}.{next(self.pbx.uid)}"
        if not self.linkedid:
            self.linkedid = uid
        return _Chan(f"{tech}-{next(self.pbx.chan_no) & 0xFFFFFFFF:08x}", uid, cid_name, cid_num,
                     linkedid=uid if own else "")

    def local_pair(self, t: float, ext: str, context: str) -> tuple[_Chan, _Chan]:
        n = next(self.pbx.local_no) & 0xFFFFFFFF
        pair = []
        for half in (1, 2):
            uid = f"{self.epoch + int(t)}.{next(self.pbx.uid)}"
            pair.append(_Chan(f"Local/{ext}@{context}-{n:08x};{half}", uid, exten=ext,
                              context=context))
        if not self.linkedid:  # an originate's first channel is a Local one
            self.linkedid = pair[0].uniqueid
        return pair[0], pair[1]

    def events(self) -> list[dict[str, Any]]:
        """CEL events in the order Asterisk writes them: by time, ties in the order emitted."""
        order = sorted(range(len(self.cel)), key=lambda i: (self._when[i], i))
        return [self.cel[i] for i in order]

    def ev(self, kind: str, t: float, ch: _Chan, peer: str = "", extra: Any = "") -> None:
        """One CEL event, unless this Asterisk does not know its type (the time still passes)."""
        self.end = max(self.end, int(t))
        if kind in self.pbx.gen.no_events:
            return
        self._when.append(t)
        self.cel.append({
            "eventtype": kind, "eventtime": self.at(t), "cid_name": ch.cid_name,
            "cid_num": ch.cid_num, "cid_ani": ch.cid_ani, "cid_rdnis": "", "cid_dnid": ch.cid_dnid,
            "exten": ch.exten, "context": ch.context, "channame": ch.name, "appname": ch.appname,
            "appdata": ch.appdata[:_WIDTH["appdata"]], "amaflags": 3, "accountcode": "",
            "uniqueid": ch.uniqueid, "linkedid": ch.linkedid or self.linkedid, "peer": peer,
            "userdeftype": "",
            "extra": json.dumps(extra, separators=(",", ":")) if isinstance(extra, dict) else extra,
        })

    def start(self, t: float, ch: _Chan, exten: str, context: str) -> None:
        ch.exten, ch.context = exten, context
        self.ev("CHAN_START", t, ch)

    def hangup(self, t: float, ch: _Chan, cause: int, source: str, dialstatus: str) -> None:
        self.ev("HANGUP", t, ch, extra={"hangupcause": cause, "hangupsource": source,
                                        "dialstatus": dialstatus})
        self.ev("CHAN_END", t, ch)

    def bridge(self, t0: float, t1: float, a: _Chan, b: _Chan) -> None:
        """`b` (the dialled side) and `a` (the caller side) share a bridge from t0 to t1."""
        extra = {"bridge_id": str(uuid.UUID(int=self.rnd.getrandbits(128), version=4)),
                 "bridge_technology": "simple_bridge"}
        self.ev("BRIDGE_ENTER", t0, b, extra=extra)
        self.ev("BRIDGE_ENTER", t0, a, peer=b.name, extra=extra)
        self.ev("BRIDGE_EXIT", t1, a, peer=b.name, extra=extra)
        self.ev("BRIDGE_EXIT", t1, b, extra=extra)

    def answer_dialled(self, t: float, ch: _Chan) -> None:
        ch.cid_ani, ch.appname, ch.appdata = ch.cid_num, "AppDial", "(Outgoing Line)"
        self.ev("ANSWER", t, ch)

    def mixmonitor(self, t: float, ch: _Chan, fname: str) -> None:
        saved = (ch.exten, ch.context, ch.appname, ch.appdata)
        day = self.at(t).strftime("%Y/%m/%d")
        ch.exten, ch.context = "recordcheck", "sub-record-check"
        ch.appname, ch.appdata = "MixMonitor", f"{day}/{fname},abi(LOCAL_MIXMON_ID),"
        self.ev("APP_START", t, ch)
        self.ev("APP_END", t, ch)
        ch.exten, ch.context, ch.appname, ch.appdata = saved

    def streams(self, t: float, ch: _Chan, sounds: Iterable[str], step: float = 1.0) -> float:
        for sound in sounds:
            self.ev("STREAM_BEGIN", t, ch, extra={"sound": sound, "format": "slin",
                                                  "language": "en"})
            t += step
            self.ev("STREAM_END", t, ch)
        return t

    def row(self, t: float, **values: Any) -> None:
        """A cdr row starting at t (its `calldate`); missing columns get FreePBX's defaults.

        As Asterisk's `cdr_object_dispatch` does with `unanswered=no` (its default, which
        FreePBX keeps), a row that was not answered and lacks a Party A or B is not written;
        its sequence number is spent all the same."""
        row: dict[str, Any] = dict.fromkeys(CDR_COLUMNS, "")
        row.update(duration=0, billsec=0, amaflags=3, sequence=next(self.pbx.sequence))
        row["calldate"] = self.at(t)
        row["linkedid"] = self.linkedid
        for key, value in values.items():
            row[key] = value[:_WIDTH[key]] if key in _WIDTH else value
        if self.pbx.unanswered or row["disposition"] == "ANSWERED" or (
                row["channel"] and row["dstchannel"]):
            self.cdr.append(row)

    def stamp(self) -> str:
        return self.at(0).strftime("%Y%m%d-%H%M%S")

    def linkedid_end(self, t: float, ch: _Chan) -> None:
        self.ev("LINKEDID_END", t, ch)


@dataclass
class _Office:
    """The PBX's configuration: extensions with names, ring groups, queues, DIDs."""

    names: dict[str, str]
    ring_groups: dict[str, tuple[str, ...]]
    queues: dict[str, tuple[str, ...]]
    numbering: Numbering
    no_voicemail: frozenset[str] = field(default_factory=frozenset)

    @property
    def dids(self) -> tuple[str, ...]:
        return self.numbering.dids

    def device(self, ext: str) -> str:
        """The device (endpoint) name that serves `ext`."""
        n = self.numbering
        return n.devices[n.exts.index(ext)]


def _office(rnd: random.Random, numbering: Numbering) -> _Office:
    exts = list(numbering.exts)
    names = {e: f"{rnd.choice(_FIRST)} {rnd.choice(_LAST)}" for e in exts}
    groups = {g: tuple(sorted(rnd.sample(exts, rnd.randint(2, 4)))) for g in numbering.ring_groups}
    queues = {q: tuple(sorted(rnd.sample(exts, rnd.randint(2, 4)))) for q in numbering.queues}
    return _Office(names, groups, queues, numbering, no_voicemail=frozenset(exts[-3:]))


class _Flows:
    """One method per call flow; each returns the Truth and fills `c` with the rows."""

    def __init__(self, office: _Office, rnd: random.Random, recording: float,
                 gen: Generation = A20) -> None:
        self.o = office
        self.rnd = rnd
        self.recording = recording
        self.g = gen
        self.trunk = f"{gen.tech}/{office.numbering.trunk}"
        self.out_cnum, self.out_cnam = office.numbering.outbound_cid

    # ---- shared pieces ---------------------------------------------------------------------
    def _caller(self) -> tuple[str, str]:
        area = self.rnd.choice(("212", "310", "415", "646", "718"))
        name = f"{self.rnd.choice(_FIRST)} {self.rnd.choice(_LAST)}"
        return name, f"{area}555{self.rnd.randint(0, 9999):04d}"

    def _talk(self) -> int:
        return max(1, min(3600, int(self.rnd.lognormvariate(4.0, 1.0))))

    def _ring(self, upto: int = 14) -> int:
        return self.rnd.randint(1, upto)

    def _trunk_in(self, c: _Call, did: str, caller: Optional[tuple[str, str]] = None
                  ) -> tuple[_Chan, str, str]:
        """The carrier's channel of an inbound call to `did`, from a random outside caller
        unless `caller` (name, number) says who calls."""
        name, num = caller if caller is not None else self._caller()
        trunk = c.channel(0, self.trunk, name, num)
        c.start(0, trunk, did, self.g.trunk_context)
        trunk.cid_ani, trunk.cid_dnid = num, did
        return trunk, name, num

    def _dev(self, ext: str) -> str:
        """The Dial() target FreePBX builds for an extension's device."""
        return self.g.device(self.o.device(ext))

    def _phone(self, c: _Call, t: float, ext: str) -> _Chan:
        ph = c.channel(t, self._dev(ext), self.o.names[ext], ext)
        c.start(t, ph, "s", "from-internal")
        return ph

    def _voicemail(self, c: _Call, t: float, ch: _Chan, box: str, status: str) -> float:
        """`macro-vm` with the DIALSTATUS `status`: VoiceMail answers `ch` at `t`, plays the
        busy or unavailable greeting (STREAM events where Asterisk writes them), the caller
        leaves a message; returns when VoiceMail ends (corpus s02/s03 events)."""
        busy = status == "BUSY"
        ch.exten, ch.context = f"s-{status}", "macro-vm"
        ch.appname, ch.appdata = "VoiceMail", f"{box}@default,{'b' if busy else 'u'}"
        c.ev("APP_START", t, ch)
        c.ev("ANSWER", t, ch)
        greeting = ["vm-theperson", *(f"digits/{d}" for d in box),
                    "vm-isonphone" if busy else "vm-isunavail", "vm-intro", "beep"]
        t = c.streams(t, ch, greeting)
        t += self.rnd.randint(0, 40)  # the message
        c.ev("APP_END", t, ch)
        return t

    def _conversation(self, c: _Call, ring: float, talk: float, caller: _Chan, callee: _Chan,
                      home: str) -> float:
        """`callee` answers `caller`'s Dial() at `ring`, they talk, the caller hangs up (corpus
        s13 order of events); returns the end."""
        c.answer_dialled(ring, callee)
        c.ev("ANSWER", ring, caller)
        c.bridge(ring, ring + talk, caller, callee)
        self._leave(caller, home)
        end = ring + talk
        self._end(c, end, callee, (16, caller.name, ""), caller, (16, caller.name, "ANSWER"))
        return end

    def _leave(self, ch: _Chan, home: str) -> None:
        """Where a channel that ran FreePBX's macros hangs up: FreePBX 17's Gosub'd
        `macro-hangupcall` (corpus), or, under FreePBX 13's Macro(), the `h` extension of the
        context it was in before the macros (app_macro.c restores it)."""
        if self.g.macro:
            ch.goto("h", home)
        else:
            ch.goto("s", "macro-hangupcall")

    def _record(self, c: _Call, t: float, ch: _Chan, fname: str) -> str:
        if self.rnd.random() >= self.recording:
            return ""
        c.mixmonitor(t, ch, fname)
        return fname

    def _inbound_row(self, c: _Call, trunk: _Chan, name: str, num: str, did: str, **kw: Any
                     ) -> dict[str, Any]:
        return dict(clid=f'"{name}" <{num}>', src=num, channel=trunk.name, uniqueid=trunk.uniqueid,
                    did=did, cnum=num, cnam=name, **kw)

    def _end(self, c: _Call, t: float, first: _Chan, first_args: tuple[int, str, str],
             second: _Chan, second_args: tuple[int, str, str]) -> None:
        c.hangup(t, first, *first_args)
        c.hangup(t, second, *second_args)
        c.linkedid_end(t, second)

    def _truth(self, c: _Call, flow: str, direction: str, status: str, **kw: Any) -> Truth:
        kw.setdefault("answered", "")
        kw.setdefault("final_ext", kw["answered"])
        kw.setdefault("rung", ())
        kw.setdefault("talk", 0)
        kw.setdefault("did", "")
        return Truth(flow=flow, direction=direction, status=status, linkedid=c.linkedid,
                     start=c.at(0), end=c.at(c.end), **kw)

    # ---- inbound to one extension ------------------------------------------------------------
    def _in_direct(self, c: _Call, outcome: str) -> Truth:
        did = self.rnd.choice(self.o.dids)
        ext = self.rnd.choice(list(self.o.names))
        if self.o.numbering.did_is_ext:
            did = ext
        trunk, name, num = self._trunk_in(c, did)
        rec = self._record(c, 0, trunk, f"in-{did}-{num}-{c.stamp()}-{c.linkedid}.wav")
        trunk.exten, trunk.context = "s", "macro-dial-one"
        trunk.appname, trunk.appdata = "Dial", f"{self._dev(ext)},15,{DIAL_OPTS}"
        phone = self._phone(c, 0, ext)
        row = self._inbound_row(c, trunk, name, num, did, dst=ext, dcontext="from-did-direct",
                                dstchannel=phone.name, lastapp="Dial", lastdata=trunk.appdata,
                                recordingfile=rec)
        flow = "in_" + outcome
        if outcome == "answered":
            ring, talk = self._ring(), self._talk()
            c.answer_dialled(ring, phone)
            c.ev("ANSWER", ring, trunk)
            c.bridge(ring, ring + talk, trunk, phone)
            c.row(0, duration=ring + talk, billsec=talk, disposition="ANSWERED", **row)
            self._leave(trunk, "from-did-direct")
            src = phone.name if self.rnd.random() < 0.5 else trunk.name
            pair = [(trunk, (16, src, "ANSWER")), (phone, (16, src, ""))]
            if src == phone.name:
                pair.reverse()
            self._end(c, ring + talk, *pair[0], *pair[1])
            return self._truth(c, flow, "inbound", "Success", answered=ext, rung=(ext,), talk=talk,
                               did=did, phone=num, ext=ext, recorded=bool(rec))
        if outcome == "noanswer_cancel" or ext in self.o.no_voicemail:
            flow = "in_noanswer_cancel"
            ring = self.rnd.randint(3, 40)
            c.hangup(ring, phone, 127, "", "")
            self._leave(trunk, "from-did-direct")
            c.hangup(ring, trunk, 127, trunk.name, "CANCEL")
            c.linkedid_end(ring, trunk)
            c.row(0, duration=ring, billsec=0, disposition="NO ANSWER", **row)
            return self._truth(c, flow, "inbound", "Missed", rung=(ext,), did=did, phone=num,
                               ext=ext, recorded=bool(rec))
        busy = outcome == "busy_vm"
        ring = 0 if busy else 15
        if busy:
            c.hangup(0, phone, 17, phone.name, "")
        else:
            c.hangup(ring, phone, 0, "", "")
        c.row(0, duration=ring, billsec=0, disposition="BUSY" if busy else "NO ANSWER", **row)
        flag = "b" if busy else "u"
        t = self._voicemail(c, ring, trunk, ext, "BUSY" if busy else "NOANSWER")
        self._leave(trunk, "from-did-direct")
        c.hangup(t, trunk, 17 if busy else 16, trunk.name, "BUSY" if busy else "NOANSWER")
        c.linkedid_end(t, trunk)
        vm = dict(row, dstchannel="", lastapp="VoiceMail", lastdata=f"{ext}@default,{flag}")
        c.row(ring, duration=int(t - ring), billsec=int(t - ring), disposition="ANSWERED", **vm)
        return self._truth(c, flow, "inbound", "Missed", rung=(ext,), did=did, phone=num,
                           ext=ext, recorded=bool(rec))

    def in_answered(self, c: _Call) -> Truth:
        return self._in_direct(c, "answered")

    def in_noanswer_vm(self, c: _Call) -> Truth:
        return self._in_direct(c, "noanswer_vm")

    def in_noanswer_cancel(self, c: _Call) -> Truth:
        return self._in_direct(c, "noanswer_cancel")

    def in_busy_vm(self, c: _Call) -> Truth:
        return self._in_direct(c, "busy_vm")

    # ---- ring group (ringall) ---------------------------------------------------------------
    def _ring_group(self, c: _Call, answered: bool, local: bool) -> Truth:
        group = self.rnd.choice(list(self.o.ring_groups))
        members = self.o.ring_groups[group]
        did = self.rnd.choice(self.o.dids)
        trunk, name, num = self._trunk_in(c, did)
        rec = "" if local else self._record(c, 0, trunk,
                                            f"rg-{group}-{num}-{c.stamp()}-{c.linkedid}.wav")
        if local:
            targets = "&".join(f"Local/{m}@from-internal/n" for m in members) + ",20"
        else:
            targets = "&".join(self._dev(m) for m in members) + f",20,{DIAL_OPTS}"
        trunk.goto("s", "macro-dial", "Dial", targets)
        legs = []  # (member, caller-side channel, local ;2 or None, phone)
        if local:
            pairs = [c.local_pair(0, m, "from-internal") for m in members]
            for one, two in pairs:
                c.ev("CHAN_START", 0, one)
                c.ev("CHAN_START", 0, two)
            for m, (one, two) in zip(members, pairs):
                two.cid_name, two.cid_num, two.cid_ani = name, num, num
                one.cid_name, one.cid_num = self.o.names[m], m
                two.exten, two.context, two.appname = "s", "macro-dial-one", "Dial"
                two.appdata = f"{self._dev(m)},15,{DIAL_OPTS}"
                legs.append((m, one, two, self._phone(c, 0, m)))
        else:
            legs = [(m, None, None, self._phone(c, 0, m)) for m in members]
        row = self._inbound_row(c, trunk, name, num, did, dst=group, dcontext="ext-group",
                                lastapp="Dial", lastdata=targets, recordingfile=rec)
        rows: list[tuple[float, dict[str, Any]]] = []
        if answered:
            ring, talk = self._ring(18), self._talk()
            winner = self.rnd.choice(members)
            wleg = next(leg for leg in legs if leg[0] == winner)
            c.answer_dialled(ring, wleg[3])
            for m, one, two, ph in legs:
                if m != winner:
                    if one is not None:
                        c.hangup(ring, one, 26, "", "")
                    c.hangup(ring, ph, 26, "", "")
                    if two is not None:
                        self._leave(two, "from-internal")
                        c.hangup(ring, two, 26, "dialplan/builtin", "CANCEL")
            if local:
                _, one, two, ph = wleg
                c.ev("ANSWER", ring, two)
                c.answer_dialled(ring, one)
            c.ev("ANSWER", ring, trunk)
            end = ring + talk
            if local:
                _, one, two, ph = wleg
                c.bridge(ring, end, two, ph)
                c.bridge(ring, end, trunk, one)
            else:
                c.bridge(ring, end, trunk, wleg[3])
            trunk.appname, trunk.appdata = "", ""
            c.hangup(end, trunk, 16, trunk.name, "ANSWER")
            if local:
                _, one, two, ph = wleg
                c.hangup(end, one, 16, trunk.name, "")
                c.hangup(end, ph, 16, "", "")
                self._leave(two, "from-internal")
                c.hangup(end, two, 16, "dialplan/builtin", "ANSWER")
                c.linkedid_end(end, two)
            else:
                c.hangup(end, wleg[3], 16, trunk.name, "")
                c.linkedid_end(end, wleg[3])
            for m, one, two, ph in legs:
                won = m == winner
                dur, bill = (ring + talk, talk) if won else (ring, 0)
                disp = "ANSWERED" if won else "NO ANSWER"
                if local:
                    rows.append((0, dict(clid=row["clid"], src=num, dst=m, dcontext="from-internal",
                                         channel=two.name, dstchannel=ph.name, lastapp="Dial",
                                         lastdata=two.appdata or f"{self._dev(m)},15,{DIAL_OPTS}",
                                         uniqueid=two.uniqueid, cnum=num, cnam=name,
                                         duration=dur, billsec=bill, disposition=disp)))
                    rows.append((0, dict(row, dstchannel=one.name, duration=dur, billsec=bill,
                                         disposition=disp)))
                else:
                    rows.append((0, dict(row, dstchannel=ph.name, duration=dur, billsec=bill,
                                         disposition=disp)))
            for t, r in rows:
                c.row(t, **r)
            return self._truth(c, "rg_local_answered" if local else "rg_answered", "inbound",
                               "Success", answered=winner, rung=members, talk=talk, did=did,
                               phone=num, ext=winner, recorded=bool(rec), group=group)
        giveup = self.rnd.randint(3, 19)
        for _m, one, two, ph in legs:
            if one is not None:
                c.hangup(giveup, one, 127, "", "")
            c.hangup(giveup, ph, 127, "", "")
            if two is not None:
                self._leave(two, "from-internal")
                c.hangup(giveup, two, 127, "dialplan/builtin", "CANCEL")
        trunk.appname, trunk.appdata = "", ""
        c.hangup(giveup, trunk, 127, trunk.name, "CANCEL")
        c.linkedid_end(giveup, trunk)
        for _m, _one, _two, ph in legs:
            c.row(0, dstchannel=ph.name, duration=giveup, billsec=0, disposition="NO ANSWER",
                  **{k: v for k, v in row.items() if k != "dstchannel"})
        return self._truth(c, "rg_noanswer", "inbound", "Missed", rung=members, did=did,
                           phone=num, ext=members[0], recorded=bool(rec), group=group)

    def rg_answered(self, c: _Call) -> Truth:
        return self._ring_group(c, answered=True, local=False)

    def rg_local_answered(self, c: _Call) -> Truth:
        return self._ring_group(c, answered=True, local=True)

    def rg_noanswer(self, c: _Call) -> Truth:
        return self._ring_group(c, answered=False, local=False)

    # ---- queue with Local/<ext>@from-queue members ---------------------------------------------
    def _queue_enter(self, c: _Call, t: float, trunk: _Chan, queue: str) -> None:
        """The caller, already answered, waits in Queue() on hold music (corpus s06)."""
        trunk.exten, trunk.context = queue, "ext-queues"
        trunk.appname, trunk.appdata = "Queue", f"{queue},t,,,,,,,,"
        c.ev("APP_START", t, trunk)
        c.ev("STREAM_BEGIN", t, trunk, extra={"class": "default"})

    def _queue_ring(self, c: _Call, t: float, queue: str, name: str, num: str
                    ) -> tuple[list[tuple[str, _Chan, _Chan]], dict[str, _Chan]]:
        """Queue() rings every member (ringall) through `Local/<ext>@from-queue`, whose `;2`
        dials the member's device in `macro-dial-one` (corpus s06: Queues.class.php members)."""
        members = self.o.queues[queue]
        legs = []
        for m in members:
            one, two = c.local_pair(t, m, "from-queue")
            c.ev("CHAN_START", t, one)
            c.ev("CHAN_START", t, two)
            one.cid_name, one.cid_num, one.exten = self.o.names[m], m, queue
            one.appname, one.appdata = "AppQueue", "(Outgoing Line)"
            two.cid_name, two.cid_num, two.cid_ani = name, num, num
            two.exten, two.context, two.appname = "s", "macro-dial-one", "Dial"
            two.appdata = f"{self._dev(m)},15,trb(func-apply-sipheaders^s^1)"
            legs.append((m, one, two))
        return legs, {m: self._phone(c, t, m) for m in members}

    def _queue_cancel(self, c: _Call, t: float, one: _Chan, two: _Chan, phone: _Chan,
                      cause: int) -> None:
        """Queue() stops ringing a member: its Local pair and phone hang up."""
        c.hangup(t, one, cause, "", "")
        c.hangup(t, phone, 16 if cause == 0 else cause, "", "")
        self._leave(two, "from-internal")
        c.hangup(t, two, 16 if cause == 0 else cause, "dialplan/builtin", "CANCEL")

    def _queue_rows(self, c: _Call, t: float, until: float, legs: list[tuple[str, _Chan, _Chan]],
                    phones: dict[str, _Chan], qrow: dict[str, Any], winner: str, talk: int
                    ) -> None:
        """The rows of one round of ringing from `t`: per member a Local `;2` -> device row and
        a trunk -> Local `;1` row whose billsec runs from the queue's answer (corpus s06)."""
        for m, one, two in legs:
            won = m == winner
            dur = until - t + (talk if won else 0)
            disp = "ANSWERED" if won else "NO ANSWER"
            c.row(t, clid=qrow["clid"], src=qrow["src"], dst=m, dcontext="from-internal",
                  channel=two.name, dstchannel=phones[m].name, lastapp="Dial",
                  lastdata=f"{self._dev(m)},15,trb(func-apply-sipheaders^s^1)",
                  uniqueid=two.uniqueid, cnum=qrow["cnum"], cnam=qrow["cnam"], duration=dur,
                  billsec=talk if won else 0, disposition=disp)
            c.row(t, dstchannel=one.name, duration=dur, billsec=dur, disposition=disp,
                  **{k: v for k, v in qrow.items() if k != "dstchannel"})

    def _queue_bridged(self, c: _Call, t: float, talk: float, trunk: _Chan,
                       legs: list[tuple[str, _Chan, _Chan]], phones: dict[str, _Chan],
                       winner: str) -> float:
        """`winner` answers at `t` and the caller is bridged with the member's Local `;1` for
        `talk` seconds; returns the end."""
        one, two = self._queue_answer(c, t, trunk, legs, phones, winner)
        end = t + talk
        c.bridge(t, end, two, phones[winner])
        c.bridge(t, end, trunk, one)
        return end

    def _queue_answer(self, c: _Call, t: float, trunk: _Chan,
                      legs: list[tuple[str, _Chan, _Chan]], phones: dict[str, _Chan],
                      winner: str) -> tuple[_Chan, _Chan]:
        """`winner`'s phone answers at `t`: its Local pair answers, the others stop ringing,
        the caller's hold music stops. Returns the winner's Local pair."""
        m, one, two = next(leg for leg in legs if leg[0] == winner)
        c.answer_dialled(t, phones[m])
        c.ev("ANSWER", t, two)
        c.ev("ANSWER", t, one)
        for lm, lone, ltwo in legs:
            if lm != winner:
                self._queue_cancel(c, t, lone, ltwo, phones[lm], 26)
        c.ev("STREAM_END", t, trunk)
        return one, two

    def _queue(self, c: _Call, answered: bool) -> Truth:
        queue = self.rnd.choice(list(self.o.queues))
        members = self.o.queues[queue]
        did = self.rnd.choice(self.o.dids)
        trunk, name, num = self._trunk_in(c, did)
        trunk.exten, trunk.context, trunk.appname = queue, "ext-queues", "Answer"
        c.ev("ANSWER", 0, trunk)
        rec = self._record(c, 0, trunk, f"q-{queue}-{num}-{c.stamp()}-{c.linkedid}.wav")
        self._queue_enter(c, 0, trunk, queue)
        legs, phones = self._queue_ring(c, 0, queue, name, num)
        qrow = self._inbound_row(c, trunk, name, num, did, dst=queue, dcontext="ext-queues",
                                 lastapp="Queue", lastdata=trunk.appdata, recordingfile=rec)
        if answered:
            ring, talk = self._ring(20), self._talk()
            winner = self.rnd.choice(members)
            end = self._queue_bridged(c, ring, talk, trunk, legs, phones, winner)
            m, one, two = next(leg for leg in legs if leg[0] == winner)
            c.hangup(end, one, 16, trunk.name, "")
            c.ev("APP_END", end, trunk)
            trunk.appname, trunk.appdata = "", ""
            c.hangup(end, trunk, 16, trunk.name, "ANSWER")
            c.hangup(end, phones[m], 16, "", "")
            self._leave(two, "from-internal")
            c.hangup(end, two, 16, "dialplan/builtin", "ANSWER")
            c.linkedid_end(end, two)
            self._queue_rows(c, 0, ring, legs, phones, qrow, winner, talk)
            return self._truth(c, "queue_answered", "inbound", "Success", answered=winner,
                               rung=members, talk=talk, did=did, phone=num, ext=winner,
                               recorded=bool(rec), group=queue)
        giveup = self.rnd.randint(5, 60)
        c.ev("STREAM_END", giveup, trunk)
        for m, one, two in legs:
            self._queue_cancel(c, giveup, one, two, phones[m], 0)
        c.ev("APP_END", giveup, trunk)
        trunk.appname, trunk.appdata = "", ""
        c.hangup(giveup, trunk, 0, trunk.name, "CANCEL")
        c.linkedid_end(giveup, trunk)
        self._queue_rows(c, 0, giveup, legs, phones, qrow, "", 0)
        return self._truth(c, "queue_abandon", "inbound", "Missed", rung=members, did=did,
                           phone=num, ext=members[0], recorded=bool(rec), group=queue)

    def queue_answered(self, c: _Call) -> Truth:
        return self._queue(c, answered=True)

    def queue_abandon(self, c: _Call) -> Truth:
        return self._queue(c, answered=False)

    # ---- IVR ----------------------------------------------------------------------------------
    def _ivr(self, c: _Call, press: bool) -> Truth:
        did = self.rnd.choice(self.o.dids)
        trunk, name, num = self._trunk_in(c, did)
        ivr = self.o.numbering.ivr
        trunk.exten, trunk.context, trunk.appname = "s", ivr, "Answer"
        c.ev("ANSWER", 0, trunk)
        trunk.appname, trunk.appdata = "BackGround", "dir-welcome&vm-press&digits/1"
        if not press:
            t = c.streams(1, trunk, ("dir-welcome", "vm-press", "digits/1"))
            t += self.rnd.randint(0, 9)
            trunk.exten, trunk.appname, trunk.appdata = "h", "", ""
            c.hangup(t, trunk, 16, trunk.name, "")
            c.linkedid_end(t, trunk)
            c.row(0, clid=f'"{name}" <{num}>', src=num, dst="s", dcontext=ivr,
                  channel=trunk.name, lastapp="WaitExten", lastdata="10,", duration=int(t),
                  billsec=int(t), disposition="ANSWERED", uniqueid=trunk.uniqueid, did=did)
            return self._truth(c, "ivr_hangup", "inbound", "Missed", did=did, phone=num, ext="",
                               group=ivr)
        ext = self.rnd.choice(list(self.o.names))
        c.ev("STREAM_BEGIN", 1, trunk, extra={"sound": "dir-welcome", "format": "slin",
                                              "language": "en"})
        t = 1 + self.rnd.randint(1, 6)
        c.ev("DTMF", t, trunk, extra={"digit": "1", "duration_ms": 160})
        c.ev("STREAM_END", t, trunk)
        rec = self._record(c, t, trunk, f"exten-{ext}-{num}-{c.stamp()}-{c.linkedid}.wav")
        trunk.exten, trunk.context = "s", "macro-dial-one"
        trunk.appname, trunk.appdata = "Dial", f"{self._dev(ext)},15,{DIAL_OPTS}"
        phone = self._phone(c, t, ext)
        ring, talk = self._ring(), self._talk()
        c.answer_dialled(t + ring, phone)
        c.bridge(t + ring, t + ring + talk, trunk, phone)
        end = t + ring + talk
        self._end(c, end, phone, (16, trunk.name, ""), trunk, (16, trunk.name, "ANSWER"))
        c.row(0, dst=ext, dcontext="from-did-direct", dstchannel=phone.name, lastapp="Dial",
              lastdata=trunk.appdata, duration=int(end), billsec=int(end), disposition="ANSWERED",
              recordingfile=rec, **self._inbound_row(c, trunk, name, num, did))
        return self._truth(c, "ivr_option", "inbound", "Success", answered=ext, rung=(ext,),
                           talk=talk, did=did, phone=num, ext=ext, recorded=bool(rec),
                           group=ivr)

    def ivr_hangup(self, c: _Call) -> Truth:
        return self._ivr(c, press=False)

    def ivr_option(self, c: _Call) -> Truth:
        return self._ivr(c, press=True)

    # ---- outbound -----------------------------------------------------------------------------
    def _outbound(self, c: _Call, outcome: str, prefix: str = "") -> Truth:
        """An extension calls out (corpus s10-s12b). With `prefix`, the user dials it before the
        number and the route strips it: the phone's exten and cid_dnid, the row's dst and the
        recording name keep it (the route's `${EXTEN}`), the trunk is dialled without it
        (core `functions.inc.php`: `dialout-trunk,<trunk>,${EXTEN:<len>}`)."""
        ext = self.rnd.choice(list(self.o.names))
        number = self._caller()[1]
        dialled = prefix + number
        phone = c.channel(0, self._dev(ext), self.o.names[ext], ext)
        c.start(0, phone, dialled, "from-internal")
        phone.cid_ani, phone.cid_dnid = ext, dialled
        rec = self._record(c, 0, phone, f"out-{dialled}-{ext}-{c.stamp()}-{c.linkedid}.wav")
        trunk = c.channel(0, self.trunk)
        c.start(0, trunk, "s", self.g.trunk_context)
        phone.cid_name, phone.cid_num = self.out_cnam, self.out_cnum
        phone.exten, phone.context, phone.appname = "s", "macro-dialout-trunk", "Dial"
        phone.appdata = (f"{self.g.trunk_dial(self.o.numbering.trunk, number)},300,"
                         "Ttb(func-apply-sipheaders^s^1)")
        trunk.cid_num, trunk.exten = "s", "s"
        trunk.appname, trunk.appdata = "AppDial", "(Outgoing Line)"
        row = dict(clid=f'"{self.out_cnam}" <{self.out_cnum}>', src=self.out_cnum, dst=dialled,
                   dcontext="from-internal", channel=phone.name, dstchannel=trunk.name,
                   lastapp="Dial", lastdata=phone.appdata, uniqueid=phone.uniqueid,
                   recordingfile=rec, cnum=ext, cnam=self.o.names[ext],
                   outbound_cnum=self.out_cnum, outbound_cnam=self.out_cnam)
        flow = "out_" + outcome
        common = dict(did="", phone=number, ext=ext, recorded=bool(rec))
        if outcome == "answered":
            ring, talk = self._ring(20), self._talk()
            c.ev("ANSWER", ring, trunk)
            c.ev("ANSWER", ring, phone)
            trunk.exten = ""
            c.bridge(ring, ring + talk, phone, trunk)
            end = ring + talk
            self._leave(phone, "from-internal")
            src = phone.name if self.rnd.random() < 0.5 else trunk.name
            self._end(c, end, trunk, (16, src, ""), phone, (16, src, "ANSWER"))
            c.row(0, duration=end, billsec=talk, disposition="ANSWERED", **row)
            return self._truth(c, flow, "outbound", "Success", talk=talk, **common)
        if outcome == "busy":
            c.hangup(0, trunk, 17, trunk.name, "")
            self._leave(phone, "from-internal")
            c.hangup(0, phone, 17, phone.name, "BUSY")
            c.linkedid_end(0, phone)
            c.row(0, duration=0, billsec=0, disposition="BUSY", **row)
            return self._truth(c, flow, "outbound", "Busy", **common)
        if outcome == "noanswer":
            ring = self.rnd.randint(3, 45)
            c.hangup(ring, trunk, 127, "", "")
            self._leave(phone, "from-internal")
            c.hangup(ring, phone, 127, phone.name, "CANCEL")
            c.linkedid_end(ring, phone)
            c.row(0, duration=ring, billsec=0, disposition="NO ANSWER", **row)
            return self._truth(c, flow, "outbound", "NoAnswer", **common)
        c.hangup(0, trunk, 34, trunk.name, "")
        phone.exten, phone.context, phone.appname = "s", "macro-outisbusy", "Playback"
        phone.appdata = "all-circuits-busy-now&please-try-call-later,noanswer"
        t = c.streams(0, phone, ("all-circuits-busy-now", "please-try-call-later"), 1.5)
        phone.appname, phone.appdata = "", ""
        c.hangup(t, phone, 34, phone.name, "CONGESTION")
        c.linkedid_end(t, phone)
        c.row(0, duration=0, billsec=0, disposition="FAILED", **row)
        return self._truth(c, flow, "outbound", "NotAvailable", **common)

    def out_answered(self, c: _Call) -> Truth:
        return self._outbound(c, "answered")

    def out_busy(self, c: _Call) -> Truth:
        return self._outbound(c, "busy")

    def out_noanswer(self, c: _Call) -> Truth:
        return self._outbound(c, "noanswer")

    def out_congestion(self, c: _Call) -> Truth:
        return self._outbound(c, "congestion")

    # ---- internal -----------------------------------------------------------------------------
    def _internal(self, c: _Call, answered: bool) -> Truth:
        caller, callee = self.rnd.sample(list(self.o.names), 2)
        me = c.channel(0, self._dev(caller), self.o.names[caller], caller)
        c.start(0, me, callee, "from-internal")
        me.cid_ani, me.cid_dnid = caller, callee
        rec = self._record(c, 0, me, f"exten-{callee}-{caller}-{c.stamp()}-{c.linkedid}.wav")
        me.exten, me.context, me.appname = "s", "macro-dial-one", "Dial"
        me.appdata = f"{self._dev(callee)},15,{DIAL_OPTS}"
        other = self._phone(c, 0, callee)
        row = dict(clid=f'"{self.o.names[caller]}" <{caller}>', src=caller, dst=callee,
                   dcontext="from-internal", channel=me.name, dstchannel=other.name,
                   lastapp="Dial", lastdata=me.appdata, uniqueid=me.uniqueid, recordingfile=rec,
                   cnum=caller, cnam=self.o.names[caller])
        if answered:
            ring, talk = self._ring(), self._talk()
            end = self._conversation(c, ring, talk, me, other, "from-internal")
            c.row(0, duration=end, billsec=talk, disposition="ANSWERED", **row)
            return self._truth(c, "internal_answered", "internal", "Success", answered=callee,
                               rung=(callee,), talk=talk, phone="", ext=callee,
                               recorded=bool(rec))
        ring = self.rnd.randint(2, 14)
        c.hangup(ring, other, 127, "", "")
        self._leave(me, "from-internal")
        c.hangup(ring, me, 127, me.name, "CANCEL")
        c.linkedid_end(ring, me)
        c.row(0, duration=ring, billsec=0, disposition="NO ANSWER", **row)
        return self._truth(c, "internal_missed", "internal", "Missed", rung=(callee,), phone="",
                           ext=callee, recorded=bool(rec))

    def internal_answered(self, c: _Call) -> Truth:
        return self._internal(c, answered=True)

    def internal_missed(self, c: _Call) -> Truth:
        return self._internal(c, answered=False)

    # ---- blind transfer (SIP REFER / features.conf blindxfer) ---------------------------------
    def blind_transfer(self, c: _Call) -> Truth:
        did = self.rnd.choice(self.o.dids)
        first, second = self.rnd.sample(list(self.o.names), 2)
        if self.o.numbering.did_is_ext:
            did = first
        trunk, name, num = self._trunk_in(c, did)
        rec = self._record(c, 0, trunk, f"in-{did}-{num}-{c.stamp()}-{c.linkedid}.wav")
        trunk.exten, trunk.context = "s", "macro-dial-one"
        trunk.appname, trunk.appdata = "Dial", f"{self._dev(first)},15,{DIAL_OPTS}"
        a = self._phone(c, 0, first)
        ring1, talk1 = self._ring(), self._talk()
        c.answer_dialled(ring1, a)
        c.ev("ANSWER", ring1, trunk)
        t = ring1 + talk1
        bridge_id = str(uuid.UUID(int=self.rnd.getrandbits(128), version=4))
        extra = {"bridge_id": bridge_id, "bridge_technology": "simple_bridge"}
        a.exten = ""
        c.ev("BRIDGE_ENTER", ring1, a, extra=extra)
        c.ev("BRIDGE_ENTER", ring1, trunk, peer=a.name, extra=extra)
        c.ev("BLINDTRANSFER", t, a, extra={
            "extension": second, "context": "from-internal-xfer", "bridge_id": bridge_id,
            "transferee_channel_name": trunk.name, "transferee_channel_uniqueid": trunk.uniqueid})
        trunk.exten, trunk.context = second, "from-internal-xfer"
        c.ev("BRIDGE_EXIT", t, trunk, extra=extra)
        c.ev("BRIDGE_EXIT", t, a, extra=extra)
        c.hangup(t, a, 16, "", "")
        trunk.exten, trunk.context = "s", "macro-dial-one"
        trunk.appdata = f"{self._dev(second)},15,{DIAL_OPTS}"
        b = self._phone(c, t, second)
        ring2, talk2 = self._ring(), self._talk()
        c.answer_dialled(t + ring2, b)
        b.exten = ""
        end = t + ring2 + talk2
        c.bridge(t + ring2, end, trunk, b)
        self._leave(trunk, "from-internal-xfer")
        self._end(c, end, b, (16, trunk.name, ""), trunk, (16, trunk.name, "ANSWER"))
        base = self._inbound_row(c, trunk, name, num, did, dst=first, dcontext="from-did-direct",
                                 lastapp="Dial", recordingfile=rec)
        c.row(0, dstchannel=a.name, lastdata=f"{self._dev(first)},15,{DIAL_OPTS}", duration=t,
              billsec=talk1, disposition="ANSWERED", **base)
        c.row(t, dstchannel=b.name, lastdata=f"{self._dev(second)},15,{DIAL_OPTS}",
              duration=ring2 + talk2, billsec=ring2 + talk2, disposition="ANSWERED", **base)
        return self._truth(c, "blind_transfer", "inbound", "Success", answered=first,
                           final_ext=second, rung=(first, second), talk=talk1 + ring2 + talk2,
                           did=did, phone=num, ext=second, recorded=bool(rec))


FLOWS: tuple[str, ...] = tuple(DEFAULT_MIX)


def generate(n_calls: int, start: datetime, seed: int = 1, mix: Optional[dict[str, float]] = None,
             cel: bool = True, zone: str = "UTC", mean_gap: float = 30.0,
             recording: float = 0.7, first_uid: int = 0, generation: str = "A20",
             tech: Optional[str] = None, numbering: str = "3",
             flows: Optional[type[_Flows]] = None,
             script: Optional[Iterable[str]] = None,
             unanswered: bool = False) -> Iterator[SynthCall]:
    """`n_calls` calls starting at `start` (naive local time of `zone`), Poisson arrivals.

    `mean_gap` is the mean time between call starts in seconds: with the default 30 s and talks of
    about a minute, calls overlap. `cel=False` gives the same calls without CEL (a CDR-only PBX).
    `recording` is the share of calls that a FreePBX recording policy records. `first_uid` is
    where the uniqueid counter starts: sets of calls generated separately for one database need
    distinct ranges, as a real Asterisk never reuses a counter value. `generation` ("A20" |
    "A13"), `tech` ("PJSIP" | "SIP"; default: the generation's own) and `numbering` ("3", "4",
    "10", "named") choose the PBX; `flows` a subclass of `_Flows` with more flows to mix in;
    `script` names the flows of the calls in order (then `n_calls` and `mix` are not used).
    `unanswered` is cdr.conf's: True writes the unanswered rows without a Party B too.
    """
    order = list(script) if script is not None else None
    mix = dict.fromkeys(order, 1.0) if order else (mix or DEFAULT_MIX)
    builder = flows or _Flows
    unknown = {name for name in mix if not _is_flow(builder, name)}
    if unknown:
        raise ValueError(f"unknown flows in mix: {sorted(unknown)}")
    tz = ZoneInfo(zone)
    rnd = random.Random(seed)
    gen = GENERATIONS[generation]
    gen = gen.with_tech(tech) if tech else gen
    pbx = _Pbx(tz, first_uid, gen, unanswered)
    office = _office(random.Random(seed * 7919 + 1), numbers(numbering))
    made = builder(office, rnd, recording, gen)
    names = list(mix)
    weights = list(itertools.accumulate(mix[n] for n in names))
    clock = start.replace(tzinfo=tz).timestamp()
    for i in range(len(order) if order is not None else n_calls):
        clock += rnd.expovariate(1.0 / mean_gap) if mean_gap > 0 else 0
        flow = order[i] if order is not None else rnd.choices(names, cum_weights=weights)[0]
        call = _Call(pbx, rnd, int(clock))
        truth = getattr(made, flow)(call)
        yield SynthCall(cdr=call.cdr, cel=call.events() if cel else [], truth=truth,
                        more=tuple(call.more))


def _is_flow(builder: type[_Flows], name: str) -> bool:
    """A public method of the builder is a flow (the shared pieces start with `_`)."""
    return not name.startswith("_") and callable(getattr(builder, name, None))


def one(flow: str, start: datetime, seed: int = 1, **kw: Any) -> SynthCall:
    """A single call of one flow (for table-driven tests)."""
    return next(generate(1, start, seed=seed, mix={flow: 1.0}, **kw))


# ---- landing order --------------------------------------------------------------------------
def landing_order(calls: Iterable[SynthCall]) -> Iterator[tuple[str, dict[str, Any]]]:
    """("cel"|"cdr", row) in the order a PBX writes them when calls overlap.

    CEL events are written as they happen; a CDR row when its channel hangs up (calldate +
    duration). Calls arrive in start order, so a heap of the calls in progress is enough.
    """
    heap: list[tuple[datetime, int, int, str, dict[str, Any]]] = []
    order = itertools.count()
    it = iter(calls)
    pending: Optional[SynthCall] = next(it, None)

    def push(call: SynthCall) -> None:
        n = next(order)
        for i, ev in enumerate(call.cel):
            heapq.heappush(heap, (ev["eventtime"], n, i, "cel", ev))
        for i, row in enumerate(call.cdr):
            written = row["calldate"] + timedelta(seconds=max(0, int(row["duration"])))
            heapq.heappush(heap, (written, n, 10_000 + i, "cdr", row))

    while pending is not None or heap:
        while pending is not None and (not heap or pending.truth.start <= heap[0][0]):
            push(pending)
            pending = next(it, None)
        _, _, _, table, row = heapq.heappop(heap)
        yield table, row


# ---- loading into a database ----------------------------------------------------------------
def _tsv(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    if any(ch in text for ch in "\\\t\n"):
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return text


def insert(engine: Any, calls: Iterable[SynthCall], batch: int = 50_000,
           progress: Optional[Callable[[int], None]] = None) -> tuple[int, int]:
    """Load the calls' rows into `cdr` / `cel` in landing order; returns (cdr rows, cel rows).

    MariaDB/MySQL: LOAD DATA LOCAL INFILE from a temporary TSV per `batch` rows (about 10x faster
    than multi-row INSERTs); needs `local_infile` on the server, which the admin engine's
    connection enables. Other back-ends: executemany INSERTs. `cel.id` is assigned by the database.
    """
    mysql = engine.dialect.name in ("mysql", "mariadb")
    counts = {"cdr": 0, "cel": 0}
    buffers: dict[str, list[dict[str, Any]]] = {"cdr": [], "cel": []}
    ncalls = 0

    def flush(table: str) -> None:
        rows = buffers[table]
        if not rows:
            return
        cols = CDR_COLUMNS if table == "cdr" else CEL_COLUMNS
        if mysql:
            _load_data(engine, table, cols, rows)
        else:
            from sqlalchemy import text

            sql = text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                       f"({', '.join(':' + c for c in cols)})")
            with engine.begin() as conn:
                conn.execute(sql, rows)
        counts[table] += len(rows)
        buffers[table] = []

    def counted(it: Iterable[SynthCall]) -> Iterator[SynthCall]:
        nonlocal ncalls
        for call in it:
            ncalls += 1
            if progress and ncalls % 10_000 == 0:
                progress(ncalls)
            yield call

    for table, row in landing_order(counted(calls)):
        buffers[table].append(row)
        if len(buffers[table]) >= batch:
            flush(table)
    flush("cel")
    flush("cdr")
    return counts["cdr"], counts["cel"]


def _load_data(engine: Any, table: str, cols: list[str], rows: list[dict[str, Any]]) -> None:
    import pymysql

    fd, path = tempfile.mkstemp(prefix=f"synth-{table}-", suffix=".tsv")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write("\t".join(_tsv(row[c]) for c in cols))
                fh.write("\n")
        url = engine.url
        # A connection of its own: LOAD DATA LOCAL needs local_infile at the handshake.
        conn = pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306,
                               user=url.username, password=url.password or "",
                               database=url.database, charset="utf8mb4", local_infile=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4 "
                            "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' "
                            f"LINES TERMINATED BY '\\n' ({', '.join(cols)})", (path,))
            conn.commit()
        finally:
            conn.close()
    finally:
        os.unlink(path)


def utc_epoch(uniqueid: str) -> int:
    """The epoch part of an Asterisk uniqueid (`[system-]<epoch>.<n>`)."""
    return int(uniqueid.rsplit("-", 1)[-1].split(".")[0])
