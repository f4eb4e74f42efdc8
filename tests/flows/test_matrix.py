"""Every flow x generation x numbering x mode: the call cdrsync tells, against the truth.

For each PBX (generation A13 = Asterisk 13 + chan_sip + FreePBX 13 Macro(), A20 = Asterisk 20 +
PJSIP + FreePBX 17 Gosub; numbering 3-digit, 4-digit, 10-digit DID-like, named endpoints; CEL +
CDR or CDR only) one call of every flow is generated (`tests/flows/shapes.py` says where each
shape comes from), the model is learned from all rows of that PBX and each call is interpreted
(`tests/flows/pbx.py`). A case compares what the call must be in Planfix's terms: direction,
status, ext, talk seconds (±1), the extensions that rang, whether a COMPLETED is sent and with
which `phone` (E.164, or "" where nothing may be sent), who gets a missed-call notice, and, for
the flows where the call moves between people, who talked first and last.

Some flows cannot be told from CDR alone; `CDR_ONLY` says which part and why, and those parts
are not compared in CDR-only mode (or the case does not exist, when the PBX writes no row).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from functools import cache
from typing import Any, Optional
from zoneinfo import ZoneInfo

import pytest

from cdrsync.config import PbxConfig
from tests import synth
from tests.flows.pbx import planfix_view, tell
from tests.flows.shapes import SCRIPT, Flows

ZONE = ZoneInfo("UTC")
PBX = PbxConfig(default_country="US")  # the synthetic outside numbers are NANP numbers
START = datetime(2026, 5, 4, 9, 0)
GENERATIONS = ("A13", "A20")
MODES = ("cel", "cdr")
# A PBX whose cdr.conf logs unanswered calls (`unanswered=yes`, as the g9telecom sample's does)
# writes rows the default drops; the flows that then become visible in CDR alone:
UNANSWERED = frozenset({"out_trunk_down"})

FLOWS = tuple(f for name in SCRIPT
              for f in (("conf_employee", "conf_caller") if name == "conference" else (name,)))
# Flows where the call moves from one person to another: who talked first and last is checked.
TALKERS = frozenset({"blind_transfer", "out_blind_transfer", "attended_transfer",
                     "pickup_directed", "pickup_group", "park", "queue_transfer_back"})
# Flows whose expected call is defined only in part (the rest is a matter of taste).
ONLY: dict[str, tuple[str, ...]] = {
    "conf_employee": ("direction", "sent", "phone", "notified"),  # internal, never sent
}
# Fields left out of a flow in both modes, and why.
_FIRST_RUNG = "whether the phone an originate rings first counts as rung is a matter of taste"
LOOSE: dict[str, dict[str, str]] = {
    "originate_local": {"rung": _FIRST_RUNG},
    "originate_phone": {"rung": _FIRST_RUNG},
}
# What CDR alone cannot tell, per flow: {field: why}; "*": the PBX writes no cdr row at all.
_ROOM = ("who was in the room is written only in the extension's rows (it is the older "
         "channel, so Party A of the pair row, under its own linkedid)")
CDR_ONLY: dict[str, dict[str, str]] = {
    "ivr_option": {"duration": "billsec counts from the IVR's Answer(): the rows hold no "
                               "better figure for the time with the extension"},
    "originate_phone": {"duration": "billsec counts from the phone's answer, the far end's "
                                    "ringing included"},
    "conf_caller": dict.fromkeys(("status", "ext", "duration", "answered_by", "final_ext",
                                  "notified"), _ROOM),
    "out_trunk_down": {"*": "the only cdr row is FAILED without a Party B, which Asterisk's "
                            "default unanswered=no drops"},
    "out_notallowed": {"*": "bad-number disables the CDR (CDR_PROP(disable))"},
}
# What an Asterisk 13 + FreePBX 13 PBX's rows cannot tell, with CEL too.
_MEETME = ("MeetMe mixes outside Asterisk's bridges: neither the caller's CEL nor its cdr rows "
           "name the extension in the room (app_meetme.c, branch 13)")
A13_LIMITS: dict[str, dict[str, str]] = {"conf_caller": dict.fromkeys(CDR_ONLY["conf_caller"],
                                                                      _MEETME)}
# The path's end where issue 13 names it: `... -> park 71 -> 102`.
PATH_TAIL = {"park": lambda t, n: (f"park {int(n.park) + 1}", t.final_ext)}


@cache
def _pbx(generation: str, numbering: str, mode: str, pbx: PbxConfig = PBX,
         learned: str = "all") -> tuple[dict, dict]:
    """(truth by flow, call by callid) of one synthetic PBX: one call of every flow."""
    calls = list(synth.generate(0, START, seed=13, cel=mode == "cel", mean_gap=900,
                                generation=generation, numbering=numbering, flows=Flows,
                                script=SCRIPT, unanswered=mode == "cdr+unanswered"))
    truths = {t.flow: t for c in calls for t in (c.truth, *c.more)}
    assert set(truths) == set(FLOWS), "every flow asked for was built"
    return truths, tell(calls, pbx, ZONE, learned)


def _e164(number: str) -> str:
    """The E.164 form of a synthetic outside number, by US dialling rules (NANP numbers and
    011-prefixed international ones); "" for anything that is not a number to call."""
    if re.fullmatch(r"[2-9]\d{2}[2-9]\d{6}", number):
        return "+1" + number
    if re.fullmatch(r"011[1-9]\d{6,14}", number):
        return "+" + number[3:]
    return ""


def expected(t: synth.Truth, numbering: str) -> dict[str, Any]:
    sent = t.direction != "internal"
    missed = t.direction == "inbound" and t.status == "Missed"
    want = dict(direction=t.direction, status=t.status, ext=t.ext, duration=t.talk,
                rung=tuple(t.rung), sent=sent, phone=_e164(t.phone) if sent else "",
                notified=(tuple(t.rung) or ((t.ext,) if t.ext else ())) if missed else ())
    if t.flow in TALKERS:
        want.update(answered_by=t.answered, final_ext=t.final_ext)
    if t.flow in PATH_TAIL:
        want["path_tail"] = PATH_TAIL[t.flow](t, synth.numbers(numbering))
    if t.flow in ONLY:
        want = {k: want[k] for k in ONLY[t.flow]}
    return {k: v for k, v in want.items() if k not in LOOSE.get(t.flow, {})}


def observed(call, want: dict[str, Any]) -> dict[str, Any]:
    sent, phone, notified = planfix_view(call, PBX)
    got = dict(direction=call.direction.value, status=call.status.value, ext=call.ext,
               duration=call.duration, rung=tuple(call.rung), sent=sent, phone=phone,
               notified=notified, answered_by=call.answered_by, final_ext=call.final_ext,
               path_tail=tuple(call.path[-2:]))
    if "duration" in want and abs(got["duration"] - want["duration"]) <= 1:  # whole seconds
        got["duration"] = want["duration"]
    return {k: got[k] for k in want}


def unknowable(flow: str, generation: str, mode: str) -> dict[str, str]:
    """The fields of `flow` that this PBX's rows cannot tell, and why."""
    limits = dict(A13_LIMITS.get(flow, {})) if generation == "A13" else {}
    if mode.startswith("cdr"):
        limits.update(CDR_ONLY.get(flow, {}))
        limits.pop("*", None)
    return limits


def _cases():
    for flow in FLOWS:
        for generation in GENERATIONS:
            for numbering in synth.NUMBERINGS:
                for mode in MODES + (("cdr+unanswered",) if flow in UNANSWERED else ()):
                    if mode == "cdr" and "*" in CDR_ONLY.get(flow, {}):
                        continue
                    yield pytest.param(flow, generation, numbering, mode,
                                       id=f"{flow}-{generation}-{numbering}-{mode}")


def _told(flow: str, generation: str, numbering: str, mode: str, pbx: PbxConfig = PBX,
          learned: str = "all") -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(the call of `flow` as told, what it must be, what it is) on one synthetic PBX."""
    truths, told = _pbx(generation, numbering, mode, pbx, learned)
    truth = truths[flow]
    call: Optional[Any] = told.get(truth.linkedid)
    assert call is not None, f"no call {truth.linkedid}: {sorted(told)}"
    want = expected(truth, numbering)
    for field in unknowable(flow, generation, mode):
        want.pop(field, None)
    return call, want, observed(call, want)


@pytest.mark.parametrize("flow, generation, numbering, mode", _cases())
def test_flow(flow, generation, numbering, mode):
    call, want, got = _told(flow, generation, numbering, mode)
    assert got == want, "\n".join(
        [f"{k}: want {want[k]!r}, got {got[k]!r}" for k in want if got[k] != want[k]]
        + [f"rule: {r}" for r in call.reasons])


# `[pbx] extension_pattern` set to the shape of the office's extensions, which its ring groups,
# queues, rooms and lots share (600 beside 101, 6000 beside 2001; the DID-like office's pattern
# names its DIDs and short numbers, so its groups 777 / 2003 too): a number learned as a group's
# stays a group's, so every flow is told as without the pattern.
PATTERNS = {"3": r"^\d{3}$", "4": r"^\d{4}$", "10": r"^(68713225\d\d|\d{3,4})$",
            "named": r"^\d{3,4}$"}


@pytest.mark.parametrize("flow, generation, numbering, mode", [
    c for c in _cases() if c.values[3] in MODES])
def test_flow_with_an_extension_pattern(flow, generation, numbering, mode):
    pbx = replace(PBX, extension_pattern=PATTERNS[numbering])
    call, want, got = _told(flow, generation, numbering, mode, pbx)
    assert got == want, [(k, want[k], got[k]) for k in want if got[k] != want[k]] + call.reasons


# A thin model: learned from the call's own rows only (the first call on a new PBX, a backfill of
# one call: `interpret(rows, pbx, zone)`) or from nothing (an empty model, `PbxModel()`). Where
# names have an extension's shape (3 and 4 digits) every flow must still be told right; with
# 10-digit and named endpoints a call may come out wrong, but then `cdrsync show` must say that
# something was guessed. THIN_LIMITS: the flows that are wrong without saying so, and why.
GUESSABLE = ("3", "4")
_GROUP_IN_GROUP = ("a group dialled as another group's member (Local/<B>@from-internal) enters "
                   "no ext-group in its own rows: only other calls teach that <B> is a group")
THIN_LIMITS: dict[tuple[str, str], dict[str, str]] = {
    ("call", "rg_via_local_group"): {"cel": _GROUP_IN_GROUP, "cdr": _GROUP_IN_GROUP},
    ("none", "rg_via_local_group"): {"cel": _GROUP_IN_GROUP, "cdr": _GROUP_IN_GROUP},
    ("call", "conf_caller"): {"cel": "the employee in the room joined by a call of its own: its "
                                     "phone is in that call's rows, not the caller's"},
    ("none", "originate_local"): {"cel": "an originate's Local leg rings client1 first: with "
                                         "nothing learned its trunk leg reads as the talk"},
}


def _thin_cases():
    for learned in ("call", "none"):
        for flow in FLOWS:
            for generation in GENERATIONS:
                for numbering in synth.NUMBERINGS:
                    for mode in MODES:
                        if mode == "cdr" and "*" in CDR_ONLY.get(flow, {}):
                            continue
                        yield pytest.param(learned, flow, generation, numbering, mode,
                                           id=f"{learned}-{flow}-{generation}-{numbering}-{mode}")


@pytest.mark.parametrize("learned, flow, generation, numbering, mode", _thin_cases())
def test_flow_with_a_thin_model(learned, flow, generation, numbering, mode):
    call, want, got = _told(flow, generation, numbering, mode, PBX, learned)
    wrong = {k: (want[k], got[k]) for k in want if got[k] != want[k]}
    if mode in THIN_LIMITS.get((learned, flow), {}):
        return  # told as well as these rows allow: see THIN_LIMITS
    if numbering in GUESSABLE:
        assert not wrong, (wrong, call.reasons)
    else:
        assert not wrong or any("guessed" in r for r in call.reasons), (wrong, call.reasons)


def test_a_thin_model_says_what_it_guessed():
    """Named endpoints, nothing learned: the phone is guessed a trunk from its name and the
    reason says so (what `cdrsync show` prints); learned from all rows, nothing is guessed."""
    truths, told = _pbx("A20", "named", "cel", PBX, "none")
    call = told[truths["out_answered"].linkedid]
    assert any(r.startswith("PJSIP/client") and r.endswith("guessed from its name")
               for r in call.reasons), call.reasons
    truths, told = _pbx("A20", "named", "cel")
    assert not any("guessed" in r for r in told[truths["out_answered"].linkedid].reasons)


def test_every_pbx_tells_each_of_its_calls_once():
    """Grouping keeps the calls of one PBX apart: as many calls as truths, none merged."""
    for generation in GENERATIONS:
        for numbering in synth.NUMBERINGS:
            truths, told = _pbx(generation, numbering, "cel")
            assert set(told) == {t.linkedid for t in truths.values()}, (generation, numbering)
