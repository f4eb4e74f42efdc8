"""Every call of the real Asterisk 20.20.1 corpus comes out as its truth file says.

The rows are the PBX's own (mysqldump of `cdr` + `cel`); the truth is what the scripted phones did.
Each call is checked twice: with CEL + CDR, and with the CEL removed (CDR-only mode, as on
Asterisk 13/14 sites without CEL). The PBX clock is UTC; the lab dials NANP numbers, so the
default country is "US".
"""

from __future__ import annotations

import json
from datetime import timezone
from zoneinfo import ZoneInfo

import pytest

from cdrsync.config import PbxConfig
from cdrsync.interpret import interpret
from cdrsync.interpret.legs import read_cdr, read_cdr_labels
from cdrsync.model import CallRows
from cdrsync.source.reader import UNREAD_EVENTS
from tests.corpus import CORPUS, calls_of, corpus_rows

PBX = PbxConfig(default_country="US")
UTC = ZoneInfo("UTC")


def _truths() -> list[dict]:
    out = []
    for path in sorted((CORPUS / "truth").glob("*.json")):
        data = json.loads(path.read_text())
        out += data if isinstance(data, list) else [data]
    return out


TRUTHS = _truths()
_CDR, _CEL = corpus_rows()
CALLS = {c.callid: c for c in calls_of(_CDR, _CEL)}

# CDR-only cannot know these talk times: the IVR answered the trunk before 102 rang, so the
# device row's billsec (12 s) includes the IVR time (truth: 6 s of talk). Notes §3.1.
CDR_ONLY_TALK_UNKNOWN = {"s09_ivr_option1_102"}


def _id(truth: dict) -> str:
    return truth["scenario"] + ("_" + truth["call"] if "call" in truth else "")


def test_every_call_of_the_corpus_has_a_truth():
    assert len(TRUTHS) == 29
    assert {t["linkedid"] for t in TRUTHS} == set(CALLS)


def _check(truth: dict, rows: CallRows, cdr_only: bool) -> None:
    call = interpret(rows, PBX, UTC)
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
    if truth["answered_by"] == "external":  # outbound: the far end talked to the caller
        assert call.answered_by == call.final_ext == call.ext == truth["extension"]
    else:
        assert call.answered_by == (truth["answered_by"] or ""), why
        final = truth.get("final_answered_by") or truth["answered_by"] or ""
        assert call.final_ext == final
    if truth.get("extension") and truth["direction"] == "outbound":
        assert call.ext == truth["extension"]
    if truth.get("extensions_rung") is not None:
        assert set(call.rung) == set(truth["extensions_rung"])
        assert len(call.rung) == len(set(call.rung))
    if not (cdr_only and truth["scenario"] in CDR_ONLY_TALK_UNKNOWN):
        assert abs(call.duration - truth["talk_seconds"]) <= 1, why
    if truth["recording_exists"]:
        names = {p["path"].rsplit("/", 1)[-1] for p in truth["recording_files"]}
        assert names & {c.rsplit("/", 1)[-1] for c in call.recording_candidates}
    assert truth["caller_uniqueid"] in call.uniqueids
    assert call.start is not None and call.start.tzinfo == timezone.utc
    assert call.end is not None and call.end >= call.start
    assert call.queue == (truth.get("queue") or "")
    assert call.ring_group == (truth.get("ringgroup") or "")


@pytest.mark.parametrize("truth", TRUTHS, ids=_id)
def test_call_with_cel_and_cdr(truth):
    _check(truth, CALLS[truth["linkedid"]], cdr_only=False)


@pytest.mark.parametrize("truth", TRUTHS, ids=_id)
def test_call_with_cdr_only(truth):
    rows = CALLS[truth["linkedid"]]
    _check(truth, CallRows(rows.callid, rows.linkedids, cdr=rows.cdr), cdr_only=True)


@pytest.mark.parametrize("pbx", [PBX, PbxConfig(default_country="US", trunk_channels=("^PJSIP/",))])
def test_cdr_labels_read_as_read_cdr_reads_them(pbx):
    """A call read from CEL takes its labels from `read_cdr_labels`: the same as `read_cdr`'s."""
    labels = ("ring_group", "queue", "ivr", "voicemail", "direction_hint")
    for call in CALLS.values():
        full, only = read_cdr(call.cdr, pbx, UTC), read_cdr_labels(call.cdr, pbx)
        assert [getattr(only, n) for n in labels] == [getattr(full, n) for n in labels]
    assert any(getattr(read_cdr_labels(c.cdr, pbx), n) for c in CALLS.values() for n in labels)


def test_events_cdrsync_does_not_read_change_no_call():
    """The reader leaves UNREAD_EVENTS in the table: every call reads the same without them."""
    unread = 0
    for rows in CALLS.values():
        kept = tuple(e for e in rows.cel if e.eventtype not in UNREAD_EVENTS)
        unread += len(rows.cel) - len(kept)
        assert interpret(CallRows(rows.callid, rows.linkedids, rows.cdr, kept), PBX, UTC) == \
            interpret(rows, PBX, UTC)
    assert unread > 100


def test_ivr_hangup_explains_itself():
    call = interpret(CALLS["1795698018.46"], PBX, UTC)
    assert "missed: caller hung up in IVR ivr-1 after 6 s; no phone was bridged" in call.reasons
    assert call.ext == "" and call.rung == ()
    assert call.path == ("IVR ivr-1",)


def test_ivr_hangup_can_count_as_handled():
    call = interpret(CALLS["1795698018.46"], PbxConfig(ivr_hangup_missed=False), UTC)
    assert call.status.value == "Success" and call.ext == "" and call.duration == 0


def test_transfers_give_the_path_and_the_policy_chooses_the_ext():
    attended = CALLS["1795698211.69"]
    assert interpret(attended, PBX, UTC).path == ("101", "attended transfer", "104")
    assert interpret(attended, PBX, UTC).ext == "104"
    first = PbxConfig(default_country="US", ext_policy="first")
    assert interpret(attended, first, UTC).ext == "101"
    blind = interpret(CALLS["1795698163.63"], PBX, UTC)
    assert blind.path == ("101", "blind transfer", "104")


def test_missed_ring_group_goes_to_the_first_member_that_rang():
    call = interpret(CALLS["1795697970.22"], PBX, UTC)
    assert call.ext == "101" and call.rung == ("101", "102", "103")
    assert [leg.answered for leg in call.legs] == [False, False, False]


def test_queue_credits_the_agent_who_was_bridged():
    call = interpret(CALLS["1795697984.26"], PBX, UTC)
    assert call.answered_by == "103"
    assert [(leg.ext, leg.answered) for leg in call.legs] == [
        ("101", False), ("102", False), ("103", True)]
