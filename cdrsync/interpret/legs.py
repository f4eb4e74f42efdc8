"""Read a call from CDR rows alone (Asterisk 13/14 with CEL off; Asterisk 1.8 without linkedid).

A person answered when an ANSWERED row on the caller's side names a device in `dstchannel`
(following Local `;1` -> `;2` pairs); an ANSWERED row with an empty or Local `dstchannel` is an
IVR, voicemail or queue answering the trunk. Talk time is taken from the answered device rows
(answer = calldate + duration - billsec). Caveat, documented in the tests: a device row of a call
that an IVR answered first carries the IVR time in its billsec, and hold periods between transfer
legs are only counted when a later leg closes them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Optional
from zoneinfo import ZoneInfo

from cdrsync.config import PbxConfig
from cdrsync.grouping import linkedid_key
from cdrsync.interpret.channels import (
    LOCAL,
    ORIGINATED,
    PHONE,
    TRUNK,
    ChanInfo,
    as_caller,
    classify,
)
from cdrsync.interpret.facts import Facts, Talk
from cdrsync.model import CdrRow
from cdrsync.pbx.freepbx import (
    EXTENSION_CONTEXTS,
    IVR_PREFIX,
    NOT_A_NUMBER,
    PARK_APPS,
    QUEUE_CONTEXT,
    RING_GROUP_CONTEXT,
    ROOM_APPS,
    leaves_ivr,
    mailbox,
)
from cdrsync.pbx.model import PbxModel
from cdrsync.pbx.names import dial_targets, reaches
from cdrsync.timeconv import seconds, to_utc, uniqueid_epoch


def _order(row: CdrRow) -> tuple:
    return (row.calldate is None, row.calldate or datetime.min, linkedid_key(row.uniqueid),
            row.sequence)


def root_row(rows: Sequence[CdrRow]) -> CdrRow:
    """The caller's row: the oldest channel that started the linkedid, else the oldest row."""
    def key(row: CdrRow) -> tuple:
        return (linkedid_key(row.uniqueid), row.sequence)
    first = [r for r in rows if not r.linkedid or r.uniqueid == r.linkedid]
    return min(first or rows, key=key)


def _caller_side(rows: Sequence[CdrRow], root: str, pbx: PbxConfig,
                 model: Optional[PbxModel]) -> dict[str, str]:
    """Channels speaking for the caller: the root and every Local `;2` it dialled, with the
    extension each Local chain stands for."""
    side = {root: ""}
    grew = True
    while grew:
        grew = False
        for row in rows:
            if row.channel in side and row.dstchannel.endswith(";1"):
                other = row.dstchannel[:-1] + "2"
                if other not in side:
                    side[other] = side[row.channel] or classify(row.dstchannel, pbx, model).ext
                    grew = True
    return side


def read_cdr(rows: Sequence[CdrRow], pbx: PbxConfig, zone: ZoneInfo,
             model: Optional[PbxModel] = None) -> Facts:
    """Facts of a call from its CDR rows only."""
    ordered, root, side, facts = _begin(rows, pbx, model)
    facts.uniqueids = sorted({r.uniqueid for r in rows if r.uniqueid},
                             key=linkedid_key)
    starts, ends = [], []
    for row in ordered:
        start = to_utc(row.calldate, zone, uniqueid_epoch(row.uniqueid))
        if start is not None:
            starts.append(start)
            ends.append(_plus(start, row.duration))
    facts.start = min(starts) if starts else None
    facts.end = max(ends) if ends else None
    caller_end = None
    outside = _outside_party(ordered, side, facts, pbx, model)
    zero: list[Talk] = []  # answered within the second: billsec 0
    for row in ordered:
        _read_row(row, side, pbx, zone, facts, model, zero)
        if row.channel in outside:
            _read_outside_row(row, pbx, zone, facts, model)
        if row.channel == root.channel and row.calldate:
            end = to_utc(row.calldate, zone, uniqueid_epoch(row.uniqueid))
            end = _plus(end, row.duration) if end else None
            caller_end = max(caller_end, end) if caller_end and end else end or caller_end
    if not facts.talks:
        facts.talks += zero[:1]
    if facts.root.rule.endswith(ORIGINATED):
        facts.talks = _after_optimisation(facts.talks)
    _waits(ordered, side, zone, facts)
    facts.caller_seconds = seconds(facts.start, caller_end)
    return facts


def _after_optimisation(talks: list[Talk]) -> list[Talk]:
    """An originated call: the Local leg that rang the phone first was up (the phone answered)
    while it dialled the trunk, so its row's billsec is the trunk's ringing; once the far end
    answers the Local leg optimises away and the phone's own row to the same trunk channel
    holds the talk. Only the last talk with each trunk channel is kept."""
    last = {t.channel: i for i, t in enumerate(talks)}
    return [t for i, t in enumerate(talks) if last[t.channel] == i]


def _waits(rows: Sequence[CdrRow], side: dict[str, str], zone: ZoneInfo, facts: Facts) -> None:
    """Gaps between two talks in which the caller's rows show it parked (Park) or back in a
    queue (Queue): `Facts.held`, no talk time."""
    spans = sorted((t.start, t.end) for t in facts.talks if t.start and t.end)
    for (_, gap_start), (gap_end, _) in zip(spans, spans[1:]):
        if gap_end <= gap_start:
            continue
        for row in rows:
            when = to_utc(row.calldate, zone, uniqueid_epoch(row.uniqueid))
            if (row.channel in side and row.lastapp.lower() in ("park", "queue")
                    and when is not None and gap_start <= when <= gap_end):
                facts.held.append((gap_start, gap_end))
                break


def _outside_party(rows: Sequence[CdrRow], side: dict[str, str], facts: Facts,
                   pbx: PbxConfig, model: Optional[PbxModel]) -> set[str]:
    """The trunk channels a phone's call reached: after a blind transfer by the caller the
    outside party's own row (channel = the trunk, src `s`) dials the transfer target."""
    if facts.root.kind != PHONE:
        return set()
    return {r.dstchannel for r in rows if r.channel in side and r.dstchannel
            and classify(r.dstchannel, pbx, model).kind == TRUNK}


def _read_outside_row(row: CdrRow, pbx: PbxConfig, zone: ZoneInfo, facts: Facts,
                      model: Optional[PbxModel]) -> None:
    dst = classify(row.dstchannel, pbx, model) if row.dstchannel else None
    if dst is None or dst.kind != PHONE:
        return
    if dst.ext not in facts.rung:
        facts.rung.append(dst.ext)
        facts.rung_channels[dst.ext] = dst.name
    facts.outcomes[dst.ext] = _better(facts.outcomes.get(dst.ext, ""), row.disposition)
    if row.disposition == "ANSWERED":
        start, end = _answered(row, zone)
        facts.talks.append(Talk(dst.ext, dst.name, start, end, outside=True))


def _answered(row: CdrRow, zone: ZoneInfo) -> tuple[Optional[datetime], Optional[datetime]]:
    """When Party B answered and hung up: answer = calldate + duration - billsec."""
    start = to_utc(row.calldate, zone, uniqueid_epoch(row.uniqueid))
    if start is not None:
        start = _plus(start, row.duration - row.billsec)
    return start, (_plus(start, row.billsec) if start else None)


def _picked_up(row: CdrRow, dst: ChanInfo) -> bool:
    """The device in `dstchannel` is not one the Dial dialled: it picked the call up (directed
    or group pickup), it never rang (round B b19: Dial(PJSIP/201), dstchannel PJSIP/203)."""
    if row.lastapp.lower() in PARK_APPS:
        return True  # the phone dialled the parking space and took the call from the lot
    if row.lastapp.lower() != "dial" or not dst.device:
        return False
    targets = dial_targets(row.lastdata)
    return bool(targets) and not any(reaches(t, dst.device) for t in targets)


def read_cdr_labels(rows: Sequence[CdrRow], pbx: PbxConfig,
                    model: Optional[PbxModel] = None) -> Facts:
    """Only what the dialplan wrote into the CDR rows: ring group, queue, IVR, voicemail and
    CRM_DIRECTION, as `read_cdr` reads them. A call read from CEL takes these from its CDR rows
    and needs nothing else of them, so the times and legs are not worked out for nothing."""
    ordered, _, side, facts = _begin(rows, pbx, model)
    for row in ordered:
        _read_labels(row, side, facts)
    return facts


def _begin(rows: Sequence[CdrRow], pbx: PbxConfig, model: Optional[PbxModel]
           ) -> tuple[list[CdrRow], CdrRow, dict[str, str], Facts]:
    """The rows in order, the caller's row, the caller's side and the Facts to fill."""
    ordered = sorted(rows, key=_order)
    root = root_row(ordered)
    info = as_caller(classify(root.channel, pbx, model))
    facts = Facts("cdr", info, root.uniqueid, dialled=root.dst,
                  caller_num=root.src or root.cnum, caller_name=_clid_name(root.clid) or root.cnam)
    side = _caller_side(ordered, root.channel, pbx, model)
    if info.rule.endswith(ORIGINATED):  # the phone it rang speaks for the caller after that
        for row in ordered:
            chan = classify(row.channel, pbx, model)
            if row.channel not in side and chan.kind == PHONE and chan.ext == info.ext:
                side[row.channel] = ""
    return ordered, root, side, facts


def _plus(when: datetime, secs: int) -> datetime:
    """`when` + `secs`, ignoring absurd counts (junk rows) that would leave the calendar."""
    try:
        return when + timedelta(seconds=max(0, secs))
    except OverflowError:
        return when


def _clid_name(clid: str) -> str:
    found = re.match(r'^\s*"?([^"<]*)"?\s*<', clid)
    return found.group(1).strip() if found else ""


def _read_labels(row: CdrRow, side: dict[str, str], facts: Facts) -> None:
    """CRM_DIRECTION from any row; IVR, ring group, queue and voicemail from the caller's side."""
    if row.userfield and re.fullmatch(r"(?i)(CRM_DIRECTION=)?(INBOUND|OUTBOUND|INTERNAL)",
                                      row.userfield.strip()):
        facts.direction_hint = row.userfield.strip().rsplit("=", 1)[-1].lower()
    if row.channel not in side:
        return
    app, first_arg = row.lastapp.lower(), row.lastdata.split(",", 1)[0].strip()
    if row.dcontext.startswith(IVR_PREFIX):
        facts.ivr, facts.after_ivr = row.dcontext, ""
    elif facts.ivr and not facts.after_ivr and leaves_ivr(row.dcontext, row.dst):
        facts.after_ivr = row.dcontext
    if row.dcontext == RING_GROUP_CONTEXT and row.dst not in NOT_A_NUMBER:
        facts.ring_group = facts.ring_group or row.dst
    if app == "queue":
        facts.queue = facts.queue or first_arg
    elif row.dcontext == QUEUE_CONTEXT and row.dst not in NOT_A_NUMBER:
        facts.queue = facts.queue or row.dst
    if app == "voicemail":
        facts.voicemail = mailbox(row.lastdata)
    if row.dcontext in EXTENSION_CONTEXTS and row.dst not in NOT_A_NUMBER:
        facts.routed_to = facts.routed_to or row.dst
    if row.outbound_cnum and not row.did:
        facts.route_ran = facts.route_ran or f"cdr.outbound_cnum = {row.outbound_cnum}"


def _read_row(row: CdrRow, side: dict[str, str], pbx: PbxConfig, zone: ZoneInfo,
              facts: Facts, model: Optional[PbxModel], zero: list[Talk]) -> None:
    _read_labels(row, side, facts)
    if row.channel not in side:
        return
    if row.disposition:
        facts.dialstatus = row.disposition
    dst = classify(row.dstchannel, pbx, model) if row.dstchannel else None
    if dst is None:
        return
    via = side[row.channel]
    app = row.lastapp.lower()
    if app in PARK_APPS and row.lastdata and not any(t.startswith("park ")
                                                    for t in facts.transfers):
        lot, _, space = row.lastdata.replace(",", ":").partition(":")
        facts.transfers.append(f"park {space or lot}")
    if dst.kind == TRUNK and app in ROOM_APPS:
        return  # the pair row of a conference room: someone else's call in the same room
    if dst.kind == TRUNK:
        facts.trunk_seen = True
        facts.trunk_disposition = _better(facts.trunk_disposition, row.disposition)
        # the number the trunk was dialled with (PJSIP/2125550188@voipms): a route's prefix
        # (9 + number) is stripped there, while dst keeps what the phone dialled
        sent = next((t.number for t in dial_targets(row.lastdata)
                     if t.number and reaches(t, dst.device)), "")
        number = "" if via or facts.root.kind == TRUNK else (sent or row.dst)
        if number and number not in facts.trunk_numbers:
            facts.trunk_numbers.append(number)
    if dst.kind == LOCAL and dst.number and dst.number not in facts.trunk_numbers:
        facts.trunk_numbers.append(dst.number)
    if dst.ext and dst.kind in (PHONE, LOCAL) and dst.ext not in facts.rung and not (
            dst.kind == PHONE and _picked_up(row, dst)):
        facts.rung.append(dst.ext)
        facts.rung_channels[dst.ext] = dst.name
    if dst.kind == PHONE:
        facts.outcomes[dst.ext] = _better(facts.outcomes.get(dst.ext, ""), row.disposition)
    if row.disposition == "ANSWERED" and dst.kind == PHONE and row.billsec == 0:
        # answered within the second, or the rung phone's row of a pickup: a talk only when
        # nothing else talked (a 0 s success rather than a missed call)
        start, _ = _answered(row, zone)
        zero.append(Talk(dst.ext, dst.name, start, start))
    if row.disposition == "ANSWERED" and dst.kind in (PHONE, TRUNK) and row.billsec > 0:
        start, end = _answered(row, zone)
        if dst.kind == PHONE:
            facts.talks.append(Talk(dst.ext, dst.name, start, end))
        elif facts.root.kind == PHONE:  # a phone's call answered beyond the trunk
            facts.talks.append(Talk(facts.root.ext, dst.name, start, end, outside=True))
        else:  # the caller forwarded to an outside number (follow-me, ring group member)
            facts.talks.append(Talk(via or row.dst, dst.name, start, end, outside=True))

_RANK = {"ANSWERED": 5, "BUSY": 4, "NO ANSWER": 3, "CANCEL": 3, "CONGESTION": 2, "FAILED": 1}


def _better(old: str, new: str) -> str:
    """The most telling of two dispositions of one leg (ANSWERED beats BUSY beats NO ANSWER)."""
    return new if _RANK.get(new, 0) > _RANK.get(old, 0) else old
