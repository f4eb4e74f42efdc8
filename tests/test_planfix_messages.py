"""Call -> Planfix requests: exactly the documented fields, no token, stable keys (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

from cdrsync.model import ClosedBy, Direction, Status
from cdrsync.planfix.messages import (
    API,
    MISSED,
    RESPONSIBLE,
    as_dry_run,
    completed_requests,
    fallback,
    lookup_body,
    missed_requests,
    notices,
    record_request,
)
from tests.planfix_stub import make_call, stub_config

MISSED_URL = {"missed_url": "https://example.planfix.ru/freepbx"}


def test_completed_inbound_carries_every_documented_field_and_no_token():
    cfg = stub_config()
    [req] = completed_requests(make_call(), cfg, record_link="https://pbx/r/abc", recorded=True)
    assert req.key == "1700000000.1|completed"
    assert req.target == API
    assert req.fields == {
        "cmd": "event", "event": "COMPLETED", "type": "in", "phone": "+74951234567",
        "diversion": "+74957654321", "ext": "101", "callid": "1700000000.1", "duration": "61",
        "is_recorded": "1", "status": "Success", "record_link": "https://pbx/r/abc",
        "data_call_start": "2024-07-01T12:30:05+03:00", "data_did": "74957654321",
        "data_phone_raw": "84951234567", "data_path": "ring group 600 → 101",
        "data_rung": "101,102", "data_ring_group": "600",
    }
    assert "planfix_token" not in as_dry_run(req)
    assert cfg.planfix.token not in repr(req)


def test_call_start_carries_the_pbx_zone_offset_of_that_date():
    cfg = stub_config(source={"timezone": "Europe/Berlin"})
    summer = make_call(start=datetime(2024, 7, 1, 10, 0, tzinfo=timezone.utc))
    winter = make_call(start=datetime(2024, 1, 15, 10, 0, tzinfo=timezone.utc))
    def start(call):
        return completed_requests(call, cfg)[0].fields["data_call_start"]

    assert start(summer) == "2024-07-01T12:00:00+02:00"
    assert start(winter) == "2024-01-15T11:00:00+01:00"


def test_empty_and_unknown_values_are_left_out():
    call = make_call(start=None, did="", phone_raw="", path=(), rung=(), ring_group="")
    fields = completed_requests(call, stub_config())[0].fields
    assert not [k for k in fields if k.startswith("data_")]
    assert fields["is_recorded"] == "0" and "record_link" not in fields


def test_outbound_no_answer_and_closed_by_timeout():
    call = make_call(direction=Direction.OUTBOUND, status=Status.NO_ANSWER, duration=0,
                     answered_by="", final_ext="", closed_by=ClosedBy.TIMEOUT)
    fields = completed_requests(call, stub_config())[0].fields
    assert (fields["type"], fields["status"], fields["duration"]) == ("out", "NoAnswer", "0")
    assert fields["data_closed_by"] == "timeout"


def test_internal_calls_only_when_asked_told_from_the_callee_side():
    call = make_call(direction=Direction.INTERNAL, phone="", phone_raw="102", ext="101")
    assert completed_requests(call, stub_config()) == []
    [req] = completed_requests(call, stub_config(planfix={"send_internal": True}))
    assert (req.fields["type"], req.fields["phone"], req.fields["ext"]) == ("in", "102", "101")
    assert req.fields["data_direction"] == "internal"


def test_ring_group_cancelled_one_per_other_extension_that_rang():
    cfg = stub_config(planfix={"ring_group_cancelled": True})
    call = make_call(rung=("101", "102", "103", "104"), answered_by="102", final_ext="104",
                     ext="104")
    reqs = completed_requests(call, cfg)
    assert [r.key for r in reqs] == ["1700000000.1|completed", "1700000000.1|cancelled|101",
                                     "1700000000.1|cancelled|103"]
    cancelled = reqs[1].fields
    assert (cancelled["status"], cancelled["ext"]) == ("Cancelled", "101")
    assert cancelled["duration"] == "0"
    assert cancelled["callid"] == reqs[0].fields["callid"]
    assert "record_link" not in cancelled
    missed = make_call(status=Status.MISSED, answered_by="", final_ext="", duration=0)
    assert len(completed_requests(missed, cfg)) == 1  # nobody picked up: no Cancelled


def test_record_request():
    assert record_request("1.5", "https://pbx/r/x").fields == {
        "cmd": "record", "callid": "1.5", "record_link": "https://pbx/r/x"}
    temp = record_request("1.5", "https://pbx/r/x", is_temp=True)
    assert temp.fields["is_temp"] == "1" and temp.key == "1.5|record"


def _missed_call(**values):
    values.setdefault("rung", ("101", "102"))
    return make_call(status=Status.MISSED, answered_by="", final_ext="", duration=0, **values)


def test_missed_notice_per_extension_that_rang_only_with_missed_url():
    call = _missed_call()
    assert missed_requests(call, stub_config()) == []
    reqs = missed_requests(call, stub_config(planfix=MISSED_URL))
    assert [r.key for r in reqs] == ["1700000000.1|missed|101", "1700000000.1|missed|102"]
    assert reqs[0].target == MISSED
    assert as_dry_run(reqs[0]) == {"event": "callMissedNotify", "uniqueId": "1700000000.1",
                                   "intNum": "101", "extNum": "+74951234567"}
    assert reqs[0].not_before is None


def test_no_missed_notice_for_answered_or_outbound_calls():
    cfg = stub_config(planfix=MISSED_URL)
    assert missed_requests(make_call(), cfg) == []
    assert missed_requests(_missed_call(direction=Direction.OUTBOUND), cfg) == []


def test_missed_targets_by_did_then_queue_falling_back_to_rang():
    cfg = stub_config(planfix=MISSED_URL, missed={
        "notify": "targets", "targets": {"+7 (495) 765-43-21": ["200", "201"], "400": "300"}})
    by_did = missed_requests(_missed_call(), cfg)
    assert [r.fields["intNum"] for r in by_did] == ["200", "201"]
    by_queue = missed_requests(_missed_call(did="111", queue="400"), cfg)
    assert [r.fields["intNum"] for r in by_queue] == ["300"]
    unlisted = missed_requests(_missed_call(did="111"), cfg)
    assert [r.fields["intNum"] for r in unlisted] == ["101", "102"]


def test_missed_nobody_rang_falls_back_to_the_call_ext():
    reqs = missed_requests(_missed_call(rung=(), ext="600"), stub_config(planfix=MISSED_URL))
    assert [r.fields["intNum"] for r in reqs] == ["600"]


def test_callback_window_holds_the_notice_back_until_window_and_settle_passed():
    cfg = stub_config(planfix=MISSED_URL, missed={"callback_window": 10},
                      schedule={"settle": 60})
    call = _missed_call()
    [first, _] = missed_requests(call, cfg)
    assert first.not_before == call.end.timestamp() + 600 + 60


def test_responsible_queues_one_question_that_carries_its_fallback():
    cfg = stub_config(planfix=MISSED_URL, missed={"notify": "responsible"})
    call = _missed_call(rung=("102", "101"), ext="102")
    [question] = missed_requests(call, cfg)
    assert (question.key, question.target) == ("1700000000.1|responsible", RESPONSIBLE)
    assert as_dry_run(question) == {"event": "callInfoRespNum", "uniqueId": "1700000000.1",
                                    "intNum": "102", "extNum": "+74951234567",
                                    "fallback": "102,101"}
    assert lookup_body(question) == {"event": "callInfoRespNum", "uniqueId": "1700000000.1",
                                     "intNum": "102", "extNum": "+74951234567"}
    assert fallback(question) == ("102", "101")
    # what it becomes is exactly what notify = "rang" queues at once
    rang = missed_requests(call, stub_config(planfix=MISSED_URL))
    assert notices(call.callid, "+74951234567", fallback(question)) == rang


def test_responsible_without_a_number_to_ask_about_tells_those_that_rang():
    cfg = stub_config(planfix=MISSED_URL, missed={"notify": "responsible"})
    anonymous = missed_requests(_missed_call(phone="", phone_raw=""), cfg)
    assert [(r.target, r.fields["intNum"]) for r in anonymous] == [(MISSED, "101"),
                                                                  (MISSED, "102")]
    ivr = missed_requests(_missed_call(rung=(), ext="", did=""), cfg)  # hung up in the IVR
    assert [(r.fields["intNum"], fallback(r)) for r in ivr] == [("", ())]
