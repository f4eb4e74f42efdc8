"""Every call of both real Asterisk 20.20.1 PBXes of ../shared/corpus comes out as its truth says.

Round A (`asterisk-20.20.1/`, phones 101-105, trunk `carrier`) and round B (`asterisk-20.20.1-b/`,
phones 201-205, trunk `voipbiz`, hunt group, pickups, a forward to an outside number, an outbound
call transferred by its caller). The rows are the PBXes' own (mysqldump of `cdr` + `cel`); the
truth is what the scripted phones did. Each call is checked

- with CEL + CDR and CDR-only (round B: its own CDR-only dump, an empty `cel`; round A: the CEL
  left out), as Asterisk 13/14 sites without CEL write it;
- with the PBX model learned from all rows of the dump, as the running product has it, and with
  no model (learned from the call's own rows alone).

The PBX clocks are UTC; the labs dial NANP numbers, so the default country is "US".

Where the corpus README leaves a choice ("Expected mapping where a choice exists"): an answered
inbound call goes to who talked last (the transfer target, the picker); a missed one to the first
extension that rang (the mailbox that took it where none rang); b20 (forwarded by 202 to an
outside number) to 202, the extension whose forward it was; b23 to 205, who talked last, 16 s.
"""

from __future__ import annotations

import json
from datetime import timezone
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cdrsync.config import PbxConfig
from cdrsync.interpret import interpret
from cdrsync.model import CallRows
from cdrsync.pbx import PbxModel, learn
from cdrsync.source.reader import UNREAD_EVENTS
from tests.corpus import CORPUS, CORPUS_B, calls_of, load_sql

PBX = PbxConfig(default_country="US")
UTC = ZoneInfo("UTC")
ROUNDS = {"A": CORPUS, "B": CORPUS_B}

# CDR-only cannot know these talk times: the IVR answered the trunk before the phone rang, so the
# device row's billsec includes the IVR time (s09: 12 s for 6 s of talk; b09: 14 s for 9 s).
CDR_ONLY_TALK_UNKNOWN = {"s09_ivr_option1_102", "b09_ivr2_option2_204"}
# the forwarded call of round B: answered on an outside phone, credited to 202 (see above)
FORWARDED_BY = {"b20_cfu_202_to_outside": "202"}


def _truths(folder: Path) -> list[dict]:
    out = []
    for path in sorted((folder / "truth").glob("*.json")):
        data = json.loads(path.read_text())
        out += data if isinstance(data, list) else [data]
    return out


@cache
def _dump(round_: str, cdr_only: bool) -> tuple[dict[str, CallRows], PbxModel]:
    """The calls of a round and the model learned from all its rows, in one mode."""
    folder = ROUNDS[round_]
    only = folder / "asteriskcdrdb-cdr-only.sql"
    if cdr_only and only.is_file():
        cdr, cel = load_sql(only)
        assert not cel
    else:
        cdr, cel = load_sql(folder / "asteriskcdrdb-cdr-cel.sql")
        cel = [] if cdr_only else cel
    calls = {c.callid: c for c in calls_of(cdr, cel)}
    return calls, learn(cdr, cel, pbx=PBX)


CASES = [(r, t) for r in ROUNDS for t in _truths(ROUNDS[r])]


def _id(case) -> str:
    round_, truth = case
    return truth["scenario"] + ("_" + truth["call"] if "call" in truth else "")


def test_every_call_of_both_pbxes_has_a_truth():
    assert len(_truths(CORPUS)) == 29 and len(_truths(CORPUS_B)) == 34
    for round_ in ROUNDS:
        for cdr_only in (False, True):
            calls, _ = _dump(round_, cdr_only)
            assert {t["linkedid"] for t in _truths(ROUNDS[round_])} == set(calls)


def _stem(path: str) -> str:
    """A recording's name without folder and format: the mp3 a script made of the wav counts."""
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _check(truth: dict, rows: CallRows, cdr_only: bool, model) -> None:
    call = interpret(rows, PBX, UTC, model)
    scenario = truth["scenario"]
    why = "\n".join(call.reasons)
    assert call.callid == truth["linkedid"]
    assert call.direction.value == truth["direction"], why
    assert call.status.value == truth["status"], why
    if truth["direction"] == "internal":
        assert call.phone == ""
    else:
        assert call.phone_raw == truth["external_number"]
        assert call.phone == "+1" + truth["external_number"]
    assert call.did == (truth.get("did") or "")
    final = truth.get("final_answered_by") or truth.get("final_extension")
    if truth["answered_by"] == "external" and truth["direction"] == "outbound":
        # the far end talked to the caller, then (b23) to the extension it was transferred to
        assert call.answered_by == truth["extension"], why
        assert call.final_ext == call.ext == (final or truth["extension"]), why
    elif truth["answered_by"] == "external":  # inbound, answered on an outside phone
        assert call.ext == FORWARDED_BY[scenario], why
    else:
        assert call.answered_by == (truth["answered_by"] or ""), why
        assert call.final_ext == (final or truth["answered_by"] or ""), why
    if truth["direction"] == "inbound" and truth["status"] == "Success" and \
            truth["answered_by"] != "external":
        assert call.ext == (final or truth["answered_by"]), why  # who talked last
    if truth["status"] == "Missed":
        rung = truth.get("extensions_rung") or []
        assert call.ext == (rung[0] if rung else truth.get("voicemail_box") or ""), why
    if truth.get("voicemail_box") and truth["status"] == "Missed":
        assert call.path[-1] == f"voicemail {truth['voicemail_box']}", why
    if truth.get("extensions_rung") is not None:
        assert set(call.rung) == set(truth["extensions_rung"]), why
        assert len(call.rung) == len(set(call.rung))
    if not (cdr_only and scenario in CDR_ONLY_TALK_UNKNOWN):
        assert abs(call.duration - truth["talk_seconds"]) <= 1, why
    if truth["recording_exists"]:
        stems = {_stem(p["path"]) for p in truth["recording_files"]}
        assert stems & {_stem(c) for c in call.recording_candidates}
    assert truth["caller_uniqueid"] in call.uniqueids
    assert call.start is not None and call.start.tzinfo == timezone.utc
    if "start_local" in truth:  # the PBX clock is UTC
        assert call.start.strftime("%Y-%m-%d %H:%M:%S") == truth["start_local"]
    assert call.end is not None and call.end >= call.start
    assert call.queue == (truth.get("queue") or "")
    assert call.ring_group == (truth.get("ringgroup") or "")


@pytest.mark.parametrize("cdr_only", [False, True], ids=["cel and cdr", "cdr only"])
@pytest.mark.parametrize("learned", [True, False], ids=["pbx model", "own rows"])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_call(case, learned, cdr_only):
    round_, truth = case
    calls, model = _dump(round_, cdr_only)
    _check(truth, calls[truth["linkedid"]], cdr_only, model if learned else None)


def test_events_cdrsync_does_not_read_change_no_call():
    """The reader leaves UNREAD_EVENTS in the table: every call reads the same without them."""
    unread = 0
    for round_ in ROUNDS:
        calls, model = _dump(round_, False)
        for rows in calls.values():
            kept = tuple(e for e in rows.cel if e.eventtype not in UNREAD_EVENTS)
            unread += len(rows.cel) - len(kept)
            assert interpret(CallRows(rows.callid, rows.linkedids, rows.cdr, kept), PBX, UTC,
                             model) == interpret(rows, PBX, UTC, model)
    assert unread > 200


def _a(callid: str, pbx: PbxConfig = PBX):
    calls, model = _dump("A", False)
    return interpret(calls[callid], pbx, UTC, model)


def test_ivr_hangup_explains_itself():
    call = _a("1795698018.46")
    assert "missed: caller hung up in IVR ivr-1 after 6 s; no phone was bridged" in call.reasons
    assert call.ext == "" and call.rung == ()
    assert call.path == ("IVR ivr-1",)


def test_ivr_hangup_can_count_as_handled():
    call = _a("1795698018.46", PbxConfig(ivr_hangup_missed=False))
    assert call.status.value == "Success" and call.ext == "" and call.duration == 0


def test_transfers_give_the_path_and_the_policy_chooses_the_ext():
    attended = _a("1795698211.69")
    assert attended.path == ("101", "attended transfer", "104")
    assert attended.ext == "104"
    assert _a("1795698211.69", PbxConfig(default_country="US", ext_policy="first")).ext == "101"
    assert _a("1795698163.63").path == ("101", "blind transfer", "104")


def test_missed_ring_group_goes_to_the_first_member_that_rang():
    call = _a("1795697970.22")
    assert call.ext == "101" and call.rung == ("101", "102", "103")
    assert [leg.answered for leg in call.legs] == [False, False, False]


def test_queue_credits_the_agent_who_was_bridged():
    call = _a("1795697984.26")
    assert call.answered_by == "103"
    assert [(leg.ext, leg.answered) for leg in call.legs] == [
        ("101", False), ("102", False), ("103", True)]


@pytest.mark.parametrize("cdr_only", [False, True], ids=["cel", "cdr only"])
def test_a_pickup_credits_the_picker_who_never_rang(cdr_only):
    """b19: 201 rings, 203 dials **201. The picker's own linkedid (CEL) or a dstchannel the
    Dial string never named (CDR: Dial(PJSIP/201) answered on PJSIP/203) says it picked up."""
    calls, model = _dump("B", cdr_only)
    call = interpret(calls["1795699908.79"], PBX, UTC, model)
    assert (call.ext, call.rung) == ("203", ("201",)) and abs(call.duration - 7) <= 1
    assert [(leg.ext, leg.answered) for leg in call.legs] == [("201", False)]
