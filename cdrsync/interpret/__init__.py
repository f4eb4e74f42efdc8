"""Rows in, call out: `interpret(CallRows, PbxConfig, ZoneInfo) -> Call`, pure (no I/O, no clock).

CEL, when the call has events, is read for the bridge timeline (`bridges`); CDR-only calls are
read from their rows (`legs`). Decisions where the issue left a choice:

- `ext`: the last extension that talked (`[pbx] ext_policy = "first"`: the first). Unanswered
  inbound/internal: the first extension that rang (the one the call was meant for; a ring group's
  or queue's other members are in `rung`), or "" when nothing rang (IVR hang-up, unrouted DID).
  Internal calls to an extension that could not ring: the dialled extension.
  Outbound: the calling extension. An inbound call answered on an outside number (follow-me,
  forward) is answered by the extension whose Local chain dialled it, else by that number.
- Outbound `answered_by` / `final_ext`: the extensions that talked to the outside party (the
  caller, then whoever the call was transferred to).
- Internal calls: `ext` = the callee, `phone` = "" (no outside party), `phone_raw` = the calling
  extension, `did` / `diversion` = "".
- `duration`: the caller's talk time, from the first bridge with a person to the end of the last
  one (hold during a transfer included); 0 when nobody talked.
"""

from __future__ import annotations

import re
from dataclasses import replace
from operator import attrgetter
from typing import Optional
from zoneinfo import ZoneInfo

from cdrsync.config import PbxConfig
from cdrsync.grouping import linkedid_key
from cdrsync.interpret.bridges import read_cel
from cdrsync.interpret.channels import PHONE, classify, number_kind
from cdrsync.interpret.direction import decide_direction, first_value
from cdrsync.interpret.facts import Facts
from cdrsync.interpret.legs import read_cdr, read_cdr_labels
from cdrsync.interpret.status import decide_status
from cdrsync.interpret.transfers import build_path, route_label, talkers
from cdrsync.model import Call, CallRows, Direction, Leg
from cdrsync.numbers import normalise
from cdrsync.pbx import PbxModel, learn
from cdrsync.timeconv import seconds

__all__ = ["interpret"]

_NUMBER = re.compile(r"\+?[0-9\s\-().]*[0-9][0-9\s\-().]*")


def read_facts(rows: CallRows, pbx: PbxConfig, zone: ZoneInfo, model: PbxModel) -> Facts:
    """Facts from CEL when the call has events, else from CDR; CDR fills what CEL lacks."""
    has_events = any(e.eventtype != "LINKEDID_END" for e in rows.cel)
    if not has_events and not rows.cdr:
        raise ValueError(f"call {rows.callid}: no cdr rows and no cel events")
    if not has_events:
        return read_cdr(rows.cdr, pbx, zone, model)
    facts = read_cel(sorted(rows.cel, key=attrgetter("id")), pbx, zone, model)
    if rows.cdr:
        extra = read_cdr_labels(rows.cdr, pbx, model)
        for name in ("ring_group", "queue", "voicemail", "direction_hint", "routed_to",
                     "route_ran"):
            setattr(facts, name, getattr(facts, name) or getattr(extra, name))
        if not facts.ivr:  # an IVR and whether the caller left it are one fact
            facts.ivr, facts.after_ivr = extra.ivr, extra.after_ivr
    return facts


def _credit_forwards(facts: Facts, pbx: PbxConfig, model: PbxModel) -> Optional[str]:
    """An inbound call answered on an outside phone with no follow-me leg naming its
    extension (call forward: `Local/3125550188@from-internal`) is the call of the extension the
    route sent it to (cdr dst 202 in from-did-direct), never of the outside number."""
    owner = facts.routed_to
    if facts.root.kind == PHONE or not owner or number_kind(owner, pbx, model) != PHONE:
        return None
    numbers = set(facts.trunk_numbers) | {""}
    moved = False
    for i, talk in enumerate(facts.talks):
        if talk.outside and talk.party in numbers:
            facts.talks[i] = replace(talk, party=owner)
            moved = True
    return f"ext {owner}: answered on an outside phone the call was forwarded to" if moved \
        else None


def interpret(rows: CallRows, pbx: PbxConfig, zone: ZoneInfo,
              model: Optional[PbxModel] = None) -> Call:
    """The call the rows tell, knowing the PBX as `model` does (None: learned from these rows
    alone, so a single call comes out as well as its own rows allow)."""
    if model is None:
        model = learn(rows.cdr, rows.cel, pbx=pbx)
    facts = read_facts(rows, pbx, zone, model)
    direction, why_direction = decide_direction(facts, rows, pbx, model)
    forwarded = _credit_forwards(facts, pbx, model) if direction == Direction.INBOUND else None
    status, why_status = decide_status(facts, direction, pbx)
    reasons = [why_direction, why_status] + ([forwarded] if forwarded else [])
    talked = talkers(facts)
    answered_by, final_ext = (talked[0], talked[-1]) if talked else ("", "")
    duration = _talk_seconds(facts)
    if facts.talks:
        reasons.append(f"talk {duration} s: first bridge with a person to the end of the last, "
                       "less time parked, in a holding bridge or back in a queue")
    ext, why_ext = _ext(facts, direction, pbx, model, answered_by, final_ext)
    reasons.append(why_ext)
    reasons += [f"{kind}: the call moved on to another extension" for kind in facts.transfers]
    reasons += _who(facts, pbx, model)
    phone_raw = _outside_party(facts, direction)
    did = first_value(rows, "did") if direction == Direction.INBOUND else ""
    if direction == Direction.INBOUND and not did and facts.dialled not in ("", "s"):
        did = facts.dialled
    diversion = did if direction == Direction.INBOUND else (
        first_value(rows, "outbound_cnum") if direction == Direction.OUTBOUND else "")
    return Call(
        callid=rows.callid, direction=direction, status=status, start=facts.start, end=facts.end,
        phone=_phone(phone_raw, direction, pbx),
        phone_raw=phone_raw, ext=ext, duration=duration, did=did, diversion=diversion,
        caller_name=facts.caller_name if facts.caller_name != facts.caller_num else "",
        answered_by=answered_by, final_ext=final_ext, rung=tuple(facts.rung),
        legs=_legs(facts, direction), path=build_path(facts),
        recording_candidates=_recordings(rows, facts), uniqueids=_uniqueids(rows, facts),
        queue=facts.queue, ring_group=facts.ring_group, closed_by=rows.closed_by,
        reasons=reasons,
    )


def _who(facts: Facts, pbx: PbxConfig, model: PbxModel) -> list[str]:
    """The rule that made the caller's channel and each channel that talked or rang what it is
    (learned, set in [pbx], or guessed): one line per device."""
    names = [facts.root.name, *(t.channel for t in facts.talks), *facts.rung_channels.values()]
    out: dict[str, str] = {}
    for name in names:
        info = facts.root if name == facts.root.name else classify(name, pbx, model)
        if info.rule and (info.device or info.name) not in out:
            out[info.device or info.name] = info.rule
    return list(out.values())


def _talk_seconds(facts: Facts) -> int:
    """From the first talk to the end of the last, less the time the outside party waited
    without a person (`Facts.held`: parked, in a holding bridge, back in a queue). A transfer's
    ringing counts, as the caller is being handed over; hold music inside a bridge counts too,
    since the rows cannot see it."""
    spans = [(t.start, t.end) for t in facts.talks if t.start is not None and t.end is not None]
    if not spans:
        return 0
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    total = seconds(first, last)
    held = sorted((max(a, first), min(b, last)) for a, b in facts.held
                  if a is not None and b is not None and a < last and b > first)
    covered_to = first
    for start, end in held:  # the union of held spans, counted once
        start = max(start, covered_to)
        if end > start:
            total -= seconds(start, end)
            covered_to = end
    return max(total, 0)


def _ext(facts: Facts, direction: Direction, pbx: PbxConfig, model: PbxModel, first: str,
         last: str) -> tuple[str, str]:
    policy = pbx.ext_policy
    if direction == Direction.OUTBOUND:
        caller = facts.root.ext or facts.caller_num
        if first:
            chosen = last if policy == "last" else first
            return chosen, f"ext {chosen}: the {policy} extension that talked to the outside party"
        return caller, f"ext {caller}: the calling extension"
    if first:
        chosen = last if policy == "last" else first
        return chosen, f"ext {chosen}: the {policy} extension that talked"
    if facts.rung:
        return facts.rung[0], f"ext {facts.rung[0]}: the first extension that rang"
    if facts.voicemail:
        return facts.voicemail, f"ext {facts.voicemail}: the mailbox that took the call " \
                                "(no extension rang)"
    if facts.routed_to and number_kind(facts.routed_to, pbx, model) == PHONE:
        return facts.routed_to, (f"ext {facts.routed_to}: the extension the call was sent to "
                                 "(it could not ring)")
    if direction == Direction.INTERNAL and number_kind(facts.dialled, pbx, model) == PHONE:
        return facts.dialled, f"ext {facts.dialled}: the extension dialled (it never rang)"
    return "", "ext none: no extension rang"


def _phone(raw: str, direction: Direction, pbx: PbxConfig) -> str:
    """The outside party for Planfix: a number, normalised, or "" - an internal call has none,
    and a caller id that is no number (`anonymous`, `client1`, `s`, empty) names nobody a CRM
    could match (Planfix gets an empty phone; `data_phone_raw` keeps what the PBX wrote)."""
    if direction == Direction.INTERNAL or not _NUMBER.fullmatch(raw.strip()):
        return ""
    number = normalise(raw, pbx.default_country)
    # not a public number phonenumbers knows (a short code, a dotted string): its digits alone
    return number if number.startswith("+") else re.sub(r"[^0-9]", "", number)


def _outside_party(facts: Facts, direction: Direction) -> str:
    if direction == Direction.OUTBOUND:
        return facts.trunk_numbers[0] if facts.trunk_numbers else facts.dialled
    if direction == Direction.INTERNAL:
        return facts.root.ext or facts.caller_num
    return facts.caller_num


def _legs(facts: Facts, direction: Direction) -> tuple[Leg, ...]:
    via = route_label(facts)
    legs = []
    for ext in facts.rung:
        talks = [t for t in facts.talks if t.party == ext]
        legs.append(Leg(ext, facts.rung_channels.get(ext, ""), bool(talks),
                        sum(seconds(t.start, t.end) for t in talks),
                        facts.outcomes.get(ext, "ANSWERED" if talks else ""), via))
    if direction == Direction.OUTBOUND and facts.trunk_numbers:
        outside = [t for t in facts.talks if t.outside]
        legs.append(Leg(facts.trunk_numbers[0], outside[0].channel if outside else "",
                        bool(outside), sum(seconds(t.start, t.end) for t in outside),
                        facts.trunk_disposition or facts.dialstatus, "trunk"))
    return tuple(legs)


def _recordings(rows: CallRows, facts: Facts) -> tuple[str, ...]:
    found = [r.recordingfile for r in rows.cdr if r.recordingfile] + facts.mixmonitor_files
    return tuple(dict.fromkeys(found))


def _uniqueids(rows: CallRows, facts: Facts) -> tuple[str, ...]:
    ids = set(facts.uniqueids) | {r.uniqueid for r in rows.cdr if r.uniqueid}
    return tuple(sorted(ids, key=linkedid_key))
