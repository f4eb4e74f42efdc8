"""Read a call from CEL: the bridge timeline says who talked to the caller, and when.

A person answered when the caller's channel shared a bridge with a phone (`BRIDGE_ENTER` with the
same `bridge_id`); an `ANSWER` event proves nothing, since IVRs, queues and voicemail answer the
trunk. Local channel pairs (`;1`/`;2`) are followed to the device behind them, holding bridges
(parking, switchboard waiting) are ignored. Intervals are compared by CEL `id`, the true order of
events, because `eventtime` has only whole seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional
from zoneinfo import ZoneInfo

from cdrsync.config import PbxConfig
from cdrsync.grouping import linkedid_key
from cdrsync.interpret.channels import LOCAL, PHONE, TRUNK, ChanInfo, as_caller, classify
from cdrsync.interpret.facts import Facts, Talk
from cdrsync.model import CelEvent
from cdrsync.numbers import is_digits
from cdrsync.pbx.freepbx import (
    IVR_PREFIX,
    NOT_A_NUMBER,
    RING_GROUP_CONTEXT,
    ROUTE_CONTEXTS,
    leaves_ivr,
    mailbox,
)
from cdrsync.pbx.model import PbxModel
from cdrsync.pbx.names import dial_targets
from cdrsync.timeconv import seconds, to_utc, uniqueid_epoch

_MAX_LOCAL_HOPS = 6
_HANGUP_CAUSES = {16: "NO ANSWER", 17: "BUSY", 18: "NO ANSWER", 19: "NO ANSWER", 20: "UNAVAILABLE",
                  21: "REJECTED", 26: "ANSWERED ELSEWHERE", 34: "CONGESTION", 38: "FAILED"}


_ENTERS = ("BRIDGE_ENTER", "BRIDGE_START")  # BRIDGE_START/END: Asterisk < 12
_EXITS = ("BRIDGE_EXIT", "BRIDGE_END")
_SPANNING = frozenset({*_ENTERS, *_EXITS, "HANGUP"})  # the events `_Timeline._add` reads


@dataclass
class _Span:
    bridge: str
    enter: int  # CEL id
    exit: int = 1 << 62
    holding: bool = False
    room: bool = False  # a conference (softmix): others in it may belong to other calls
    peers: set[str] = field(default_factory=set)  # channels CEL named in the room with it


@dataclass
class _Chan:
    uniqueid: str
    info: ChanInfo
    first_id: int
    witness: Optional[float]  # creation epoch in the uniqueid: none of its events is earlier
    context: str = ""
    exten: str = ""
    cid_num: str = ""
    cid_name: str = ""
    spans: list[_Span] = field(default_factory=list)
    last_id: int = 0
    end_id: int = 0  # HANGUP (its CHAN_END follows; the reader skips those)
    hangupcause: Optional[int] = None
    dialstatus: str = ""
    own_call: bool = False  # it started a linkedid of its own: it dialled, nobody rang it


def extra_of(event: CelEvent) -> dict:
    """The JSON `extra`, leniently: FreePBX's varchar(512) may cut it short."""
    try:
        value = json.loads(event.extra) if event.extra else {}
        return value if isinstance(value, dict) else {"extra": value}
    except ValueError:
        return dict(re.findall(r'"(\w+)":"?([^",}]*)', event.extra))


class _Timeline:
    def __init__(self, events: Sequence[CelEvent], pbx: PbxConfig, zone: ZoneInfo,
                 model: Optional[PbxModel]):
        self.pbx = pbx
        self.model = model
        self.chans: dict[str, _Chan] = {}
        self.by_name: dict[str, str] = {}
        self.times: dict[int, Optional[datetime]] = {}
        self.members: dict[str, list[tuple[str, _Span]]] = {}
        self._extras: dict[str, dict] = {}
        # consecutive events mostly share their second and channel: their UTC time is the last
        # one's (to_utc is a pure function of the two), without asking again
        stamp, witness, utc = None, None, None
        chans, times = self.chans, self.times
        for event in events:
            chan = chans.get(event.uniqueid)
            if chan is None:
                chan = self._new_chan(event)
            chan.last_id = event.id
            if event.eventtime != stamp or chan.witness != witness:
                stamp, witness = event.eventtime, chan.witness
                utc = to_utc(stamp, zone, witness)
            times[event.id] = utc
            if event.eventtype in _SPANNING:  # CHAN_START, ANSWER, APP_START: nothing for it
                self._add(event, chan)
        last = max(self.times, default=0)
        for chan in self.chans.values():  # no BRIDGE_EXIT: until the channel ended, else the call
            for span in chan.spans:
                span.exit = min(span.exit, chan.end_id or last)

    def _new_chan(self, event: CelEvent) -> _Chan:
        """The channel of the first event seen with its uniqueid."""
        info = classify(event.channame, self.pbx, self.model)
        chan = _Chan(event.uniqueid, info, event.id, uniqueid_epoch(event.uniqueid),
                     event.context, event.exten, event.cid_num, event.cid_name,
                     own_call=event.eventtype == "CHAN_START" and event.uniqueid == event.linkedid)
        self.chans[event.uniqueid] = chan
        self.by_name[event.channame] = event.uniqueid
        return chan

    def _extra(self, event: CelEvent) -> dict:
        """`extra_of`, read once per text: a bridge's events carry the same (not to be changed)."""
        found = self._extras.get(event.extra)
        if found is None:
            found = self._extras[event.extra] = extra_of(event)
        return found

    def _add(self, event: CelEvent, chan: _Chan) -> None:
        """A bridge entered or left, or the channel's HANGUP (the kinds in `_SPANNING`)."""
        kind = event.eventtype
        if kind in _ENTERS:
            extra = self._extra(event)
            bridge = str(extra.get("bridge_id") or "legacy:" + "|".join(
                sorted((event.channame, event.peer))))
            holding = extra.get("bridge_technology") == "holding_bridge"
            span = _Span(bridge, event.id, holding=holding,
                         room=extra.get("bridge_technology") == "softmix")
            chan.spans.append(span)
            self.members.setdefault(bridge, []).append((chan.uniqueid, span))
            if span.room and event.peer:
                span.peers.update(p for p in event.peer.split(",") if p)
            peer = self.chans.get(self.by_name.get(event.peer, ""))
            if kind == "BRIDGE_START" and peer is not None:  # Asterisk < 12 logs one side only
                peer_span = _Span(bridge, event.id)
                peer.spans.append(peer_span)
                self.members[bridge].append((peer.uniqueid, peer_span))
        elif kind in _EXITS:
            bridge = str(self._extra(event).get("bridge_id") or "")
            legacy_peer = self.by_name.get(event.peer, "") if kind == "BRIDGE_END" else ""
            for uid in {chan.uniqueid, legacy_peer}:
                for span in reversed(self.chans[uid].spans if uid in self.chans else []):
                    if span.exit > event.id and (not bridge or span.bridge == bridge):
                        span.exit = event.id
                        if span.room and event.peer and uid == chan.uniqueid:
                            span.peers.update(p for p in event.peer.split(",") if p)
                        break
        elif kind == "HANGUP":
            chan.end_id = event.id
            extra = self._extra(event)
            cause = str(extra.get("hangupcause", ""))
            chan.hangupcause = int(cause) if is_digits(cause) else chan.hangupcause
            chan.dialstatus = str(extra.get("dialstatus") or chan.dialstatus)

    def pair(self, uid: str) -> Optional[str]:
        info = self.chans[uid].info
        if info.kind != LOCAL or not info.base:
            return None
        for other, chan in self.chans.items():
            if other != uid and chan.info.base == info.base:
                return other
        return None

    def parties(self, uid: str, lo: int, hi: int, seen: frozenset[str], via: str,
                depth: int = 0) -> list[tuple[str, int, int, str]]:
        """(endpoint uniqueid, from id, to id, extension of the Local chain) bridged with `uid`."""
        found: list[tuple[str, int, int, str]] = []
        for span in self.chans[uid].spans:
            a, b = max(lo, span.enter), min(hi, span.exit)
            if span.holding or a >= b:
                continue
            for other, other_span in self.members[span.bridge]:
                a2, b2 = max(a, other_span.enter), min(b, other_span.exit)
                if other == uid or other in seen or other_span.holding or a2 >= b2:
                    continue
                info = self.chans[other].info
                if info.kind != LOCAL:
                    found.append((other, a2, b2, via))
                    continue
                pair = self.pair(other)
                if pair is not None and depth < _MAX_LOCAL_HOPS:
                    found += self.parties(pair, a2, b2, seen | {uid, other}, via or info.ext,
                                          depth + 1)
        return found


def _root(events: Sequence[CelEvent]) -> str:
    """The caller's channel: the one whose uniqueid is the linkedid (every channel of a call
    inherits the caller's linkedid). Its CHAN_START may be lost (a CEL reload mid-call), so any
    of its events will do; failing that, the oldest channel by uniqueid (never as strings)."""
    starts = [e for e in events if e.eventtype == "CHAN_START"]
    for event in (*starts, *events):
        if event.uniqueid == event.linkedid:
            return event.uniqueid
    return min((e.uniqueid for e in (starts or events)), key=linkedid_key)


def _entry_context(events: Sequence[CelEvent], root_uid: str) -> str:
    """Where the caller's channel entered the dialplan: its CHAN_START context, or "" when that
    event was lost — a later event's context (a macro, a queue) says nothing about direction."""
    return next((e.context for e in events
                 if e.eventtype == "CHAN_START" and e.uniqueid == root_uid), "")


def _user_direction(event: CelEvent) -> str:
    text = event.extra + " " + event.appdata
    found = re.search(r"\b(INBOUND|OUTBOUND|INTERNAL)\b", text, re.IGNORECASE)
    return found.group(1).lower() if found else ""


def read_cel(events: Sequence[CelEvent], pbx: PbxConfig, zone: ZoneInfo,
             model: Optional[PbxModel] = None) -> Facts:
    """Facts of a call from its CEL events (ordered by id)."""
    events = [e for e in events if e.eventtype != "LINKEDID_END"]
    line = _Timeline(events, pbx, zone, model)
    root_uid = _root(events)
    root = line.chans[root_uid]
    root.info = as_caller(root.info)
    facts = Facts("cel", root.info, root_uid, entry_context=_entry_context(events, root_uid),
                  dialled=root.exten,
                  caller_num=root.cid_num, caller_name=root.cid_name)
    facts.uniqueids = list(line.chans)
    times = [t for t in line.times.values() if t is not None]
    facts.start = line.times.get(root.first_id) or (min(times) if times else None)
    facts.end = max(times) if times else None
    facts.caller_seconds = seconds(facts.start, line.times.get(root.last_id))
    facts.dialstatus = root.dialstatus
    anchor = _read_talks(line, root_uid, facts)
    _read_legs(line, root_uid, facts)
    dialled_out: list[str] = []
    for event in events:
        _read_event(event, root_uid, facts)
        if event.uniqueid == root_uid:
            _read_route(event, facts, dialled_out)
    if facts.root.kind == PHONE and facts.trunk_seen:
        # the number the trunk was dialled with (a route's prefix stripped) is the outside party
        if dialled_out:
            facts.trunk_numbers[:0] = [n for n in dialled_out if n not in facts.trunk_numbers]
        elif not facts.trunk_numbers and facts.dialled:
            facts.trunk_numbers.append(facts.dialled)
    _read_held(line, events, anchor, facts)
    return facts


def _read_route(event: CelEvent, facts: Facts, dialled_out: list[str]) -> None:
    """The caller's own events: what it dialled (past FreePBX's `s`), whether an outbound
    route ran (`outrt-*`, `macro-dialout-trunk`), and the numbers its Dial sent to a trunk."""
    if facts.dialled in ("", "s") and event.exten not in ("", "s", "h") and \
            not event.context.startswith(("macro-", "sub-")):
        facts.dialled = event.exten
    if event.context.startswith(ROUTE_CONTEXTS):
        facts.route_ran = facts.route_ran or f"the caller entered {event.context}"
    elif (event.eventtype == "APP_START" and event.appname.lower() == "mixmonitor"
          and event.appdata.split(",", 1)[0].rsplit("/", 1)[-1].startswith("out-")):
        # sub-record-check names a recording out-<number>-<ext>-... only in an outbound route
        facts.route_ran = facts.route_ran or "the route's recording (out-...) began"
    if event.appname.lower() == "dial":
        for target in dial_targets(event.appdata):
            if target.number and target.number not in dialled_out:
                dialled_out.append(target.number)


def _read_held(line: _Timeline, events: Sequence[CelEvent], anchor: str, facts: Facts) -> None:
    """When the outside party waited without a person: in a holding bridge (parked, a
    switchboard's hold), from PARK_START to PARK_END, back in a queue (APP_START Queue) until
    the next person took it. Talk time leaves these out."""
    chan = line.chans[anchor]
    for span in chan.spans:
        if span.holding:
            facts.held.append((line.times.get(span.enter), line.times.get(span.exit)))
    parked = None
    starts = sorted(t.start for t in facts.talks if t.start is not None)
    for event in events:
        if event.uniqueid != anchor:
            continue
        when = line.times.get(event.id)
        if event.eventtype == "PARK_START":
            parked = when
            _park_label(line, event, facts)
        elif event.eventtype == "PARK_END" and parked is not None:
            facts.held.append((parked, when))
            parked = None
        elif (event.eventtype == "APP_START" and event.appname.lower() == "queue"
              and when is not None and starts and starts[0] < when):
            later = [t for t in starts if t > when]
            facts.held.append((when, later[0] if later else facts.end))


def _park_label(line: _Timeline, event: CelEvent, facts: Facts) -> None:
    """`park 71` in the path: the space the retriever dialled (a phone whose channel started on
    a number after the call was parked), else the lot. A blind transfer to the parking
    extension is that park."""
    lot = str(extra_of(event).get("parking_lot") or "default")
    space = next((c.exten for c in line.chans.values() if c.first_id > event.id
                  and c.info.kind == PHONE and is_digits(c.exten)), "")  # rung phones start on s
    label = f"park {space or lot}"
    if "blind transfer" in facts.transfers:
        facts.transfers[facts.transfers.index("blind transfer")] = label
    else:
        facts.transfers.append(label)


def _anchor(line: _Timeline, root_uid: str) -> str:
    """The outside party's channel: the caller's own, or for a phone's call the first trunk
    bridged (so a transferred outbound call follows the trunk to the next phone)."""
    if line.chans[root_uid].info.kind != PHONE:
        return root_uid
    trunks = [u for u, c in line.chans.items() if c.info.kind == TRUNK and c.spans]
    return trunks[0] if trunks else root_uid


def _read_talks(line: _Timeline, root_uid: str, facts: Facts) -> str:
    """The talks of the outside party; returns its channel."""
    anchor = _anchor(line, root_uid)
    found = line.parties(anchor, 0, 1 << 62, frozenset(), "")
    for uid, a, b, via in sorted(found, key=lambda f: f[1]):
        info = line.chans[uid].info
        if info.kind == PHONE:
            facts.talks.append(Talk(info.ext, info.name, line.times.get(a), line.times.get(b),
                                    outside=anchor != root_uid))
        elif info.kind == TRUNK and anchor == root_uid:
            facts.talks.append(Talk(via or info.number, info.name, line.times.get(a),
                                    line.times.get(b), outside=True))
    _room_talks(line, anchor, facts)
    return anchor


def _room_talks(line: _Timeline, anchor: str, facts: Facts) -> None:
    """A conference room (ConfBridge / MeetMe: a softmix bridge) where the caller met a phone
    that joined by a call of its own: that phone's channel is not among the call's, but CEL
    names it in the caller's BRIDGE_ENTER / BRIDGE_EXIT `peer`. The caller's time in the room
    is the talk."""
    talked = {t.channel for t in facts.talks}
    for span in line.chans[anchor].spans:
        for name in sorted(span.peers):
            if name in line.by_name or name in talked:
                continue  # a channel of this call: the bridge timeline has it already
            info = classify(name, line.pbx, line.model)
            if info.kind == PHONE:
                facts.talks.append(Talk(info.ext, name, line.times.get(span.enter),
                                        line.times.get(span.exit),
                                        outside=line.chans[anchor].info.kind == TRUNK))
                talked.add(name)
                break


def _read_legs(line: _Timeline, root_uid: str, facts: Facts) -> None:
    talked = {t.party for t in facts.talks}
    for uid, chan in line.chans.items():
        info = chan.info
        if uid == root_uid:
            continue
        if info.kind == TRUNK:
            facts.trunk_seen = True
        if info.number and info.number not in facts.trunk_numbers:
            facts.trunk_numbers.append(info.number)
        if info.ext and info.kind in (PHONE, LOCAL) and info.ext not in facts.rung and not (
                chan.own_call and info.kind == PHONE):  # a picker dialled **201 itself
            facts.rung.append(info.ext)
            facts.rung_channels[info.ext] = info.name
        if info.kind == PHONE and info.ext not in facts.outcomes:
            cause = _HANGUP_CAUSES.get(chan.hangupcause or 0, "NO ANSWER")
            facts.outcomes[info.ext] = "ANSWERED" if info.ext in talked else cause


def _read_event(event: CelEvent, root_uid: str, facts: Facts) -> None:
    kind = event.eventtype
    if event.uniqueid == root_uid and event.context.startswith(IVR_PREFIX):
        facts.ivr, facts.after_ivr = event.context, ""
    elif event.uniqueid == root_uid and facts.ivr and not facts.after_ivr and leaves_ivr(
            event.context, event.exten):
        facts.after_ivr = event.context
    if event.context == RING_GROUP_CONTEXT and event.exten not in NOT_A_NUMBER:
        facts.ring_group = facts.ring_group or event.exten
    if kind == "APP_START":
        _read_app(event, facts)
    elif kind == "BLINDTRANSFER":
        facts.transfers.append("blind transfer")
    elif kind == "ATTENDEDTRANSFER":
        facts.transfers.append("attended transfer")
    elif kind == "USER_DEFINED" and event.userdeftype.upper() == "CRM_DIRECTION":
        facts.direction_hint = _user_direction(event) or facts.direction_hint


def _read_app(event: CelEvent, facts: Facts) -> None:
    """An APP_START of the voicemail, queue or recording the caller went through."""
    app, first_arg = event.appname.lower(), event.appdata.split(",", 1)[0].strip()
    if app == "voicemail":
        facts.voicemail = mailbox(event.appdata)
    elif app == "queue":
        facts.queue = facts.queue or first_arg
    elif app == "mixmonitor" and first_arg:
        facts.mixmonitor_files.append(first_arg)
