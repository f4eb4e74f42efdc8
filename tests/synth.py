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
from dataclasses import dataclass, field
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

    def goto(self, exten: str, context: str, app: str = "", data: str = "") -> None:
        """The channel moves in the dialplan: its next events show this place and application."""
        self.exten, self.context, self.appname, self.appdata = exten, context, app, data


class _Pbx:
    """The counters one Asterisk process keeps: uniqueids, channel name suffixes, CDR sequence."""

    def __init__(self, zone: ZoneInfo, first_uid: int = 0) -> None:
        self.zone = zone
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

    def at(self, t: float) -> datetime:
        return self.pbx.local(self.epoch + t)

    def channel(self, t: float, tech: str, cid_name: str = "", cid_num: str = "") -> _Chan:
        uid = f"{self.epoch + int(t)}.{next(self.pbx.uid)}"
        if not self.linkedid:
            self.linkedid = uid
        return _Chan(f"{tech}-{next(self.pbx.chan_no) & 0xFFFFFFFF:08x}", uid, cid_name, cid_num)

    def local_pair(self, t: float, ext: str, context: str) -> tuple[_Chan, _Chan]:
        n = next(self.pbx.local_no) & 0xFFFFFFFF
        pair = []
        for half in (1, 2):
            uid = f"{self.epoch + int(t)}.{next(self.pbx.uid)}"
            pair.append(_Chan(f"Local/{ext}@{context}-{n:08x};{half}", uid, exten=ext,
                              context=context))
        return pair[0], pair[1]

    def events(self) -> list[dict[str, Any]]:
        """CEL events in the order Asterisk writes them: by time, ties in the order emitted."""
        order = sorted(range(len(self.cel)), key=lambda i: (self._when[i], i))
        return [self.cel[i] for i in order]

    def ev(self, kind: str, t: float, ch: _Chan, peer: str = "", extra: Any = "") -> None:
        self.end = max(self.end, int(t))
        self._when.append(t)
        self.cel.append({
            "eventtype": kind, "eventtime": self.at(t), "cid_name": ch.cid_name,
            "cid_num": ch.cid_num, "cid_ani": ch.cid_ani, "cid_rdnis": "", "cid_dnid": ch.cid_dnid,
            "exten": ch.exten, "context": ch.context, "channame": ch.name, "appname": ch.appname,
            "appdata": ch.appdata[:_WIDTH["appdata"]], "amaflags": 3, "accountcode": "",
            "uniqueid": ch.uniqueid, "linkedid": self.linkedid, "peer": peer, "userdeftype": "",
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
        """A cdr row starting at t (its `calldate`); missing columns get FreePBX's defaults."""
        row: dict[str, Any] = dict.fromkeys(CDR_COLUMNS, "")
        row.update(duration=0, billsec=0, amaflags=3, sequence=next(self.pbx.sequence))
        row["calldate"] = self.at(t)
        row["linkedid"] = self.linkedid
        for key, value in values.items():
            row[key] = value[:_WIDTH[key]] if key in _WIDTH else value
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
    dids: tuple[str, ...] = ("5551000", "5551001", "5551002", "5551003", "5551004", "5551005")
    no_voicemail: frozenset[str] = field(default_factory=frozenset)


def _office(rnd: random.Random, n_ext: int = 20) -> _Office:
    exts = [str(101 + i) for i in range(n_ext)]
    names = {e: f"{rnd.choice(_FIRST)} {rnd.choice(_LAST)}" for e in exts}
    groups = {str(600 + i): tuple(sorted(rnd.sample(exts, rnd.randint(2, 4)))) for i in range(3)}
    queues = {str(400 + i): tuple(sorted(rnd.sample(exts, rnd.randint(2, 4)))) for i in range(2)}
    return _Office(names, groups, queues, no_voicemail=frozenset(exts[-3:]))


class _Flows:
    """One method per call flow; each returns the Truth and fills `c` with the rows."""

    def __init__(self, office: _Office, rnd: random.Random, recording: float) -> None:
        self.o = office
        self.rnd = rnd
        self.recording = recording

    # ---- shared pieces ---------------------------------------------------------------------
    def _caller(self) -> tuple[str, str]:
        area = self.rnd.choice(("212", "310", "415", "646", "718"))
        name = f"{self.rnd.choice(_FIRST)} {self.rnd.choice(_LAST)}"
        return name, f"{area}555{self.rnd.randint(0, 9999):04d}"

    def _talk(self) -> int:
        return max(1, min(3600, int(self.rnd.lognormvariate(4.0, 1.0))))

    def _ring(self, upto: int = 14) -> int:
        return self.rnd.randint(1, upto)

    def _trunk_in(self, c: _Call, did: str) -> tuple[_Chan, str, str]:
        name, num = self._caller()
        trunk = c.channel(0, "PJSIP/carrier", name, num)
        c.start(0, trunk, did, "from-pstn")
        trunk.cid_ani, trunk.cid_dnid = num, did
        return trunk, name, num

    def _phone(self, c: _Call, t: float, ext: str) -> _Chan:
        ph = c.channel(t, f"PJSIP/{ext}", self.o.names[ext], ext)
        c.start(t, ph, "s", "from-internal")
        return ph

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
        trunk, name, num = self._trunk_in(c, did)
        rec = self._record(c, 0, trunk, f"in-{did}-{num}-{c.stamp()}-{c.linkedid}.wav")
        trunk.exten, trunk.context = "s", "macro-dial-one"
        trunk.appname, trunk.appdata = "Dial", f"PJSIP/{ext},15,{DIAL_OPTS}"
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
            trunk.goto("s", "macro-hangupcall")
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
            trunk.goto("s", "macro-hangupcall")
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
        trunk.exten, trunk.context = ("s-BUSY" if busy else "s-NOANSWER"), "macro-vm"
        trunk.appname, trunk.appdata = "VoiceMail", f"{ext}@default,{flag}"
        c.ev("APP_START", ring, trunk)
        c.ev("ANSWER", ring, trunk)
        greeting = ["vm-theperson", *(f"digits/{d}" for d in ext),
                    "vm-isonphone" if busy else "vm-isunavail", "vm-intro", "beep"]
        t = c.streams(ring, trunk, greeting)
        t += self.rnd.randint(0, 40)  # the message
        c.ev("APP_END", t, trunk)
        trunk.goto("s", "macro-hangupcall")
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
            targets = "&".join(f"PJSIP/{m}" for m in members) + f",20,{DIAL_OPTS}"
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
                two.appdata = f"PJSIP/{m},15,{DIAL_OPTS}"
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
                        two.goto("s", "macro-hangupcall")
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
                two.goto("s", "macro-hangupcall")
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
                                         lastdata=two.appdata or f"PJSIP/{m},15,{DIAL_OPTS}",
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
                two.goto("s", "macro-hangupcall")
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
    def _queue(self, c: _Call, answered: bool) -> Truth:
        queue = self.rnd.choice(list(self.o.queues))
        members = self.o.queues[queue]
        did = self.rnd.choice(self.o.dids)
        trunk, name, num = self._trunk_in(c, did)
        trunk.exten, trunk.context, trunk.appname = queue, "ext-queues", "Answer"
        c.ev("ANSWER", 0, trunk)
        rec = self._record(c, 0, trunk, f"q-{queue}-{num}-{c.stamp()}-{c.linkedid}.wav")
        trunk.appname, trunk.appdata = "Queue", f"{queue},t,,,,,,,,"
        c.ev("APP_START", 0, trunk)
        c.ev("STREAM_BEGIN", 0, trunk, extra={"class": "default"})
        legs = []
        for m in members:
            one, two = c.local_pair(0, m, "from-queue")
            c.ev("CHAN_START", 0, one)
            c.ev("CHAN_START", 0, two)
            one.cid_name, one.cid_num, one.exten = self.o.names[m], m, queue
            one.appname, one.appdata = "AppQueue", "(Outgoing Line)"
            two.cid_name, two.cid_num, two.cid_ani = name, num, num
            two.exten, two.context, two.appname = "s", "macro-dial-one", "Dial"
            two.appdata = f"PJSIP/{m},15,trb(func-apply-sipheaders^s^1)"
            legs.append((m, one, two))
        phones = {m: self._phone(c, 0, m) for m in members}
        qrow = self._inbound_row(c, trunk, name, num, did, dst=queue, dcontext="ext-queues",
                                 lastapp="Queue", lastdata=trunk.appdata, recordingfile=rec)

        def cancel(t: float, m: str, one: _Chan, two: _Chan, cause: int) -> None:
            c.hangup(t, one, cause, "", "")
            c.hangup(t, phones[m], 16 if cause == 0 else cause, "", "")
            two.goto("s", "macro-hangupcall")
            c.hangup(t, two, 16 if cause == 0 else cause, "dialplan/builtin", "CANCEL")

        def rows(until: float, winner: str, talk: int) -> None:
            for m, one, two in legs:
                won = m == winner
                dur = until + (talk if won else 0)
                disp = "ANSWERED" if won else "NO ANSWER"
                c.row(0, clid=qrow["clid"], src=num, dst=m, dcontext="from-internal",
                      channel=two.name, dstchannel=phones[m].name, lastapp="Dial",
                      lastdata=f"PJSIP/{m},15,trb(func-apply-sipheaders^s^1)",
                      uniqueid=two.uniqueid, cnum=num, cnam=name, duration=dur,
                      billsec=talk if won else 0, disposition=disp)
                c.row(0, dstchannel=one.name, duration=dur, billsec=dur, disposition=disp,
                      **{k: v for k, v in qrow.items() if k != "dstchannel"})

        if answered:
            ring, talk = self._ring(20), self._talk()
            winner = self.rnd.choice(members)
            m, one, two = next(leg for leg in legs if leg[0] == winner)
            c.answer_dialled(ring, phones[m])
            c.ev("ANSWER", ring, two)
            c.ev("ANSWER", ring, one)
            for lm, lone, ltwo in legs:
                if lm != winner:
                    cancel(ring, lm, lone, ltwo, 26)
            c.ev("STREAM_END", ring, trunk)
            end = ring + talk
            c.bridge(ring, end, two, phones[m])
            c.bridge(ring, end, trunk, one)
            c.hangup(end, one, 16, trunk.name, "")
            c.ev("APP_END", end, trunk)
            trunk.appname, trunk.appdata = "", ""
            c.hangup(end, trunk, 16, trunk.name, "ANSWER")
            c.hangup(end, phones[m], 16, "", "")
            two.goto("s", "macro-hangupcall")
            c.hangup(end, two, 16, "dialplan/builtin", "ANSWER")
            c.linkedid_end(end, two)
            rows(ring, winner, talk)
            return self._truth(c, "queue_answered", "inbound", "Success", answered=winner,
                               rung=members, talk=talk, did=did, phone=num, ext=winner,
                               recorded=bool(rec), group=queue)
        giveup = self.rnd.randint(5, 60)
        c.ev("STREAM_END", giveup, trunk)
        for m, one, two in legs:
            cancel(giveup, m, one, two, 0)
        c.ev("APP_END", giveup, trunk)
        trunk.appname, trunk.appdata = "", ""
        c.hangup(giveup, trunk, 0, trunk.name, "CANCEL")
        c.linkedid_end(giveup, trunk)
        rows(giveup, "", 0)
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
        trunk.exten, trunk.context, trunk.appname = "s", "ivr-1", "Answer"
        c.ev("ANSWER", 0, trunk)
        trunk.appname, trunk.appdata = "BackGround", "dir-welcome&vm-press&digits/1"
        if not press:
            t = c.streams(1, trunk, ("dir-welcome", "vm-press", "digits/1"))
            t += self.rnd.randint(0, 9)
            trunk.exten, trunk.appname, trunk.appdata = "h", "", ""
            c.hangup(t, trunk, 16, trunk.name, "")
            c.linkedid_end(t, trunk)
            c.row(0, clid=f'"{name}" <{num}>', src=num, dst="s", dcontext="ivr-1",
                  channel=trunk.name, lastapp="WaitExten", lastdata="10,", duration=int(t),
                  billsec=int(t), disposition="ANSWERED", uniqueid=trunk.uniqueid, did=did)
            return self._truth(c, "ivr_hangup", "inbound", "Missed", did=did, phone=num, ext="",
                               group="ivr-1")
        ext = self.rnd.choice(list(self.o.names))
        c.ev("STREAM_BEGIN", 1, trunk, extra={"sound": "dir-welcome", "format": "slin",
                                              "language": "en"})
        t = 1 + self.rnd.randint(1, 6)
        c.ev("DTMF", t, trunk, extra={"digit": "1", "duration_ms": 160})
        c.ev("STREAM_END", t, trunk)
        rec = self._record(c, t, trunk, f"exten-{ext}-{num}-{c.stamp()}-{c.linkedid}.wav")
        trunk.exten, trunk.context = "s", "macro-dial-one"
        trunk.appname, trunk.appdata = "Dial", f"PJSIP/{ext},15,{DIAL_OPTS}"
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
                           group="ivr-1")

    def ivr_hangup(self, c: _Call) -> Truth:
        return self._ivr(c, press=False)

    def ivr_option(self, c: _Call) -> Truth:
        return self._ivr(c, press=True)

    # ---- outbound -----------------------------------------------------------------------------
    def _outbound(self, c: _Call, outcome: str) -> Truth:
        ext = self.rnd.choice(list(self.o.names))
        number = self._caller()[1]
        phone = c.channel(0, f"PJSIP/{ext}", self.o.names[ext], ext)
        c.start(0, phone, number, "from-internal")
        phone.cid_ani, phone.cid_dnid = ext, number
        rec = self._record(c, 0, phone, f"out-{number}-{ext}-{c.stamp()}-{c.linkedid}.wav")
        trunk = c.channel(0, "PJSIP/carrier")
        c.start(0, trunk, "s", "from-pstn")
        phone.cid_name, phone.cid_num = OUTBOUND_CNAM, OUTBOUND_CNUM
        phone.exten, phone.context, phone.appname = "s", "macro-dialout-trunk", "Dial"
        phone.appdata = f"PJSIP/{number}@carrier,300,Ttb(func-apply-sipheaders^s^1)"
        trunk.cid_num, trunk.exten = "s", "s"
        trunk.appname, trunk.appdata = "AppDial", "(Outgoing Line)"
        row = dict(clid=f'"{OUTBOUND_CNAM}" <{OUTBOUND_CNUM}>', src=OUTBOUND_CNUM, dst=number,
                   dcontext="from-internal", channel=phone.name, dstchannel=trunk.name,
                   lastapp="Dial", lastdata=phone.appdata, uniqueid=phone.uniqueid,
                   recordingfile=rec, cnum=ext, cnam=self.o.names[ext],
                   outbound_cnum=OUTBOUND_CNUM, outbound_cnam=OUTBOUND_CNAM)
        flow = "out_" + outcome
        common = dict(did="", phone=number, ext=ext, recorded=bool(rec))
        if outcome == "answered":
            ring, talk = self._ring(20), self._talk()
            c.ev("ANSWER", ring, trunk)
            c.ev("ANSWER", ring, phone)
            trunk.exten = ""
            c.bridge(ring, ring + talk, phone, trunk)
            end = ring + talk
            phone.goto("s", "macro-hangupcall")
            src = phone.name if self.rnd.random() < 0.5 else trunk.name
            self._end(c, end, trunk, (16, src, ""), phone, (16, src, "ANSWER"))
            c.row(0, duration=end, billsec=talk, disposition="ANSWERED", **row)
            return self._truth(c, flow, "outbound", "Success", talk=talk, **common)
        if outcome == "busy":
            c.hangup(0, trunk, 17, trunk.name, "")
            phone.goto("s", "macro-hangupcall")
            c.hangup(0, phone, 17, phone.name, "BUSY")
            c.linkedid_end(0, phone)
            c.row(0, duration=0, billsec=0, disposition="BUSY", **row)
            return self._truth(c, flow, "outbound", "Busy", **common)
        if outcome == "noanswer":
            ring = self.rnd.randint(3, 45)
            c.hangup(ring, trunk, 127, "", "")
            phone.goto("s", "macro-hangupcall")
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
        me = c.channel(0, f"PJSIP/{caller}", self.o.names[caller], caller)
        c.start(0, me, callee, "from-internal")
        me.cid_ani, me.cid_dnid = caller, callee
        rec = self._record(c, 0, me, f"exten-{callee}-{caller}-{c.stamp()}-{c.linkedid}.wav")
        me.exten, me.context, me.appname = "s", "macro-dial-one", "Dial"
        me.appdata = f"PJSIP/{callee},15,{DIAL_OPTS}"
        other = self._phone(c, 0, callee)
        row = dict(clid=f'"{self.o.names[caller]}" <{caller}>', src=caller, dst=callee,
                   dcontext="from-internal", channel=me.name, dstchannel=other.name,
                   lastapp="Dial", lastdata=me.appdata, uniqueid=me.uniqueid, recordingfile=rec,
                   cnum=caller, cnam=self.o.names[caller])
        if answered:
            ring, talk = self._ring(), self._talk()
            c.answer_dialled(ring, other)
            c.ev("ANSWER", ring, me)
            c.bridge(ring, ring + talk, me, other)
            end = ring + talk
            me.goto("s", "macro-hangupcall")
            self._end(c, end, other, (16, me.name, ""), me, (16, me.name, "ANSWER"))
            c.row(0, duration=end, billsec=talk, disposition="ANSWERED", **row)
            return self._truth(c, "internal_answered", "internal", "Success", answered=callee,
                               rung=(callee,), talk=talk, phone="", ext=callee,
                               recorded=bool(rec))
        ring = self.rnd.randint(2, 14)
        c.hangup(ring, other, 127, "", "")
        me.goto("s", "macro-hangupcall")
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
        trunk, name, num = self._trunk_in(c, did)
        rec = self._record(c, 0, trunk, f"in-{did}-{num}-{c.stamp()}-{c.linkedid}.wav")
        trunk.exten, trunk.context = "s", "macro-dial-one"
        trunk.appname, trunk.appdata = "Dial", f"PJSIP/{first},15,{DIAL_OPTS}"
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
        trunk.appdata = f"PJSIP/{second},15,{DIAL_OPTS}"
        b = self._phone(c, t, second)
        ring2, talk2 = self._ring(), self._talk()
        c.answer_dialled(t + ring2, b)
        b.exten = ""
        end = t + ring2 + talk2
        c.bridge(t + ring2, end, trunk, b)
        trunk.goto("s", "macro-hangupcall")
        self._end(c, end, b, (16, trunk.name, ""), trunk, (16, trunk.name, "ANSWER"))
        base = self._inbound_row(c, trunk, name, num, did, dst=first, dcontext="from-did-direct",
                                 lastapp="Dial", recordingfile=rec)
        c.row(0, dstchannel=a.name, lastdata=f"PJSIP/{first},15,{DIAL_OPTS}", duration=t,
              billsec=talk1, disposition="ANSWERED", **base)
        c.row(t, dstchannel=b.name, lastdata=f"PJSIP/{second},15,{DIAL_OPTS}",
              duration=ring2 + talk2, billsec=ring2 + talk2, disposition="ANSWERED", **base)
        return self._truth(c, "blind_transfer", "inbound", "Success", answered=first,
                           final_ext=second, rung=(first, second), talk=talk1 + ring2 + talk2,
                           did=did, phone=num, ext=second, recorded=bool(rec))


FLOWS: tuple[str, ...] = tuple(DEFAULT_MIX)


def generate(n_calls: int, start: datetime, seed: int = 1, mix: Optional[dict[str, float]] = None,
             cel: bool = True, zone: str = "UTC", mean_gap: float = 30.0,
             recording: float = 0.7, first_uid: int = 0) -> Iterator[SynthCall]:
    """`n_calls` calls starting at `start` (naive local time of `zone`), Poisson arrivals.

    `mean_gap` is the mean time between call starts in seconds: with the default 30 s and talks of
    about a minute, calls overlap. `cel=False` gives the same calls without CEL (a CDR-only PBX).
    `recording` is the share of calls that a FreePBX recording policy records. `first_uid` is
    where the uniqueid counter starts: sets of calls generated separately for one database need
    distinct ranges, as a real Asterisk never reuses a counter value.
    """
    mix = mix or DEFAULT_MIX
    unknown = set(mix) - set(FLOWS)
    if unknown:
        raise ValueError(f"unknown flows in mix: {sorted(unknown)}")
    tz = ZoneInfo(zone)
    rnd = random.Random(seed)
    pbx = _Pbx(tz, first_uid)
    flows = _Flows(_office(random.Random(seed * 7919 + 1)), rnd, recording)
    names = list(mix)
    weights = list(itertools.accumulate(mix[n] for n in names))
    clock = start.replace(tzinfo=tz).timestamp()
    for _ in range(n_calls):
        clock += rnd.expovariate(1.0 / mean_gap) if mean_gap > 0 else 0
        flow = rnd.choices(names, cum_weights=weights)[0]
        call = _Call(pbx, rnd, int(clock))
        truth = getattr(flows, flow)(call)
        yield SynthCall(cdr=call.cdr, cel=call.events() if cel else [], truth=truth)


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
