"""Missed-call policy: who is told (the extensions that rang, the targets, or whom Planfix names
responsible), and when the callback window makes a notice pointless."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from cdrsync.config import ConfigError, MissedConfig
from cdrsync.deliver import Deliverer
from cdrsync.missed import recipients
from cdrsync.model import Direction, Status
from cdrsync.planfix.client import PlanfixClient
from cdrsync.planfix.messages import completed_requests, missed_requests
from cdrsync.state import ledger
from cdrsync.state.db import open_store
from cdrsync.state.notices import superseded
from tests.planfix_stub import make_call, planfix, stub_config  # noqa: F401

MISSED = {"status": Status.MISSED, "answered_by": "", "final_ext": "", "duration": 0}


def test_rang_tells_each_extension_that_rang_once_in_order():
    call = make_call(rung=("102", "101", "102"), **MISSED)
    assert recipients(call, MissedConfig()) == ("102", "101")


def test_targets_by_did_or_queue_and_the_fallbacks():
    cfg = MissedConfig(notify="targets", targets={"74957654321": ("200",), "q400": ("300", "301")})
    assert recipients(make_call(rung=("101",), **MISSED), cfg) == ("200",)
    by_queue = make_call(did="", queue="q400", rung=("101",), **MISSED)
    assert recipients(by_queue, cfg) == ("300", "301")
    assert recipients(make_call(did="999", rung=("101",), **MISSED), cfg) == ("101",)
    # "rang" with nobody ringing (hung up in the IVR) uses the list, then the call's ext
    assert recipients(make_call(rung=(), **MISSED), MissedConfig(targets=cfg.targets)) == ("200",)
    assert recipients(make_call(did="", rung=(), ext="600", **MISSED), MissedConfig()) == ("600",)


@pytest.fixture
def store(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield engine
    engine.dispose()


def _remember(engine, *calls):
    with ledger.transaction(engine) as conn:
        for call in calls:
            ledger.record_call(conn, call, {call.callid}, [], "sync", 0.0)


def _later(missed_call, callid, minutes, **values):
    start = missed_call.end + timedelta(minutes=minutes)
    return make_call(callid, start=start, end=start + timedelta(minutes=1), **values)


def test_a_callback_within_the_window_supersedes_the_notice(store):
    missed = make_call("1.1", **MISSED)
    callback = _later(missed, "2.1", 8, direction=Direction.OUTBOUND)
    _remember(store, missed, callback)
    with store.connect() as conn:
        assert superseded(conn, "1.1", 10) == "caller was called back within 10 min (call 2.1)"
        assert superseded(conn, "1.1", 5) is None  # too late to count


def test_only_a_later_answered_call_of_the_same_number_counts(store):
    missed = make_call("1.1", **MISSED)
    earlier = make_call("0.1", start=missed.start - timedelta(minutes=3))
    missed_again = _later(missed, "2.1", 1, **MISSED)
    other_number = _later(missed, "3.1", 2, phone="+74950000009")
    _remember(store, missed, earlier, missed_again, other_number)
    with store.connect() as conn:
        assert superseded(conn, "1.1", 30) is None
    _remember(store, _later(missed, "4.1", 3))
    with store.connect() as conn:
        assert superseded(conn, "1.1", 30) == "caller got through within 30 min (call 4.1)"


def test_no_number_or_unknown_call_never_supersedes(store):
    anonymous = make_call("1.1", phone="", phone_raw="", **MISSED)
    _remember(store, anonymous, _later(anonymous, "2.1", 1, phone="", phone_raw=""))
    with store.connect() as conn:
        assert superseded(conn, "1.1", 30) is None
        assert superseded(conn, "9.9", 30) is None


# --- notify = "responsible": Planfix names who is told (real stub, deliverer and store) ---------
# The calls are make_call()'s inbound call from +74951234567, missed after ringing 101 and 102 (a
# FreePBX ring group, as in tests/test_planfix_messages.py).

T0 = 1_719_826_400.0  # just after make_call()'s call ended
PHONE = "+74951234567"


def _responsible_cfg(stub, **missed):
    return stub_config(stub, planfix={"rate": 0, "timeout": 2},
                       missed={"notify": "responsible", **missed})


def _record(engine, cfg, *callids, **values):
    with ledger.transaction(engine) as conn:
        for callid in callids:
            call = make_call(callid, **MISSED, **values)
            ledger.record_call(conn, call, {callid},
                               completed_requests(call, cfg) + missed_requests(call, cfg),
                               "sync", T0)


def _drain(engine, cfg, at=T0, client=None):
    deliverer = Deliverer(engine, client or PlanfixClient(cfg.planfix), cfg)
    return deliverer.drain(threading.Event(), now=lambda: at)


def _told(stub):
    """(callid, extension) of every notice Planfix accepted, in order of arrival."""
    return [(r.callid, r.fields["intNum"]) for r in stub.received("callMissedNotify")]


def _questions(stub):
    return stub.received("callInfoRespNum")


def test_the_employees_planfix_names_are_told_after_the_completed(planfix, store):  # noqa: F811
    cfg = _responsible_cfg(planfix)
    planfix.responsible(PHONE, "105", "106")
    _record(store, cfg, "1.1")
    result = _drain(store, cfg)
    assert result.sent == 4 and not result.stalled  # COMPLETED, the question, two notices
    assert [r.cmd for r in planfix.attempts()] == [
        "event", "callInfoRespNum", "callMissedNotify", "callMissedNotify"]
    [question] = _questions(planfix)
    assert question.without_token() == {"event": "callInfoRespNum", "uniqueId": "1.1",
                                        "intNum": "101", "extNum": PHONE}
    assert question.fields["planfix_token"] == planfix.token
    assert _told(planfix) == [("1.1", "105"), ("1.1", "106")]
    with store.connect() as conn:
        keys = {r["key"]: r["state"] for r in ledger.summary(conn, "1.1")["requests"]}
    assert keys == {"1.1|completed": "sent", "1.1|responsible": "sent",
                    "1.1|missed|105": "sent", "1.1|missed|106": "sent"}


@pytest.mark.parametrize("responsible", [(), ("101",)], ids=["nobody", "the-one-called"])
def test_nobody_named_tells_the_extensions_that_rang(planfix, store, responsible):  # noqa: F811
    """Planfix answers "no persons responsible" also when the responsible is the extension asked
    about (its help page): the fallback, which starts with that one, tells them."""
    cfg = _responsible_cfg(planfix)
    planfix.responsible(PHONE, *responsible)
    _record(store, cfg, "1.1")
    _drain(store, cfg)
    assert len(_questions(planfix)) == 1
    assert _told(planfix) == [("1.1", "101"), ("1.1", "102")]


def test_no_answer_in_time_tells_those_that_rang_and_is_not_remembered(planfix, store):  # noqa: F811
    cfg = _responsible_cfg(planfix, responsible_timeout=0.3)
    planfix.responsible(PHONE, "105")
    planfix.hang_lookups(3)
    _record(store, cfg, "1.1", "2.1")
    result = _drain(store, cfg)
    assert (result.sent, result.retried) == (8, 0)
    assert len(_questions(planfix)) == 2  # asked for each call: a silence is not an answer
    assert _told(planfix) == [("1.1", "101"), ("1.1", "102"), ("2.1", "101"), ("2.1", "102")]


def test_one_question_per_caller_within_the_ttl(planfix, store):  # noqa: F811
    cfg = _responsible_cfg(planfix, responsible_ttl=600)
    planfix.responsible(PHONE, "105")
    _record(store, cfg, "1.1", "2.1")
    _drain(store, cfg)
    assert len(_questions(planfix)) == 1
    planfix.responsible(PHONE, "107")  # Planfix's answer changes; cdrsync still knows the old one
    _record(store, cfg, "3.1")
    _drain(store, cfg, at=T0 + 590)
    assert len(_questions(planfix)) == 1
    _record(store, cfg, "4.1")
    _drain(store, cfg, at=T0 + 610)
    assert len(_questions(planfix)) == 2
    assert _told(planfix) == [("1.1", "105"), ("2.1", "105"), ("3.1", "105"), ("4.1", "107")]
    other = make_call("5.1", phone="+74959999999", **MISSED)  # another caller: asked anew
    with ledger.transaction(store) as conn:
        ledger.record_call(conn, other, {"5.1"}, missed_requests(other, cfg), "sync", T0)
    _drain(store, cfg, at=T0 + 620)
    assert len(_questions(planfix)) == 3 and _told(planfix)[-2:] == [("5.1", "101"),
                                                                     ("5.1", "102")]


def test_the_question_waits_for_the_completed_of_its_call(planfix, store):  # noqa: F811
    cfg = _responsible_cfg(planfix)
    planfix.responsible(PHONE, "105")
    planfix.reject_callid("1.1")  # Planfix refuses the COMPLETED: it is parked as failed
    _record(store, cfg, "1.1")
    assert _drain(store, cfg).failed == 1
    assert [r.cmd for r in planfix.attempts()] == ["event"]  # no question while it waits
    planfix.accept_callid("1.1")
    with ledger.transaction(store) as conn:
        ledger.retry(conn, "1.1", now=T0)
    _drain(store, cfg)
    assert [r.cmd for r in planfix.received(None)] == [
        "event", "callInfoRespNum", "callMissedNotify"]


def test_planfix_down_keeps_the_question_and_a_callback_drops_it(planfix, store):  # noqa: F811
    """An outage is no answer to fall back on (the notices could not go either): the question
    waits like any request. With a callback window it is asked only once the window is over,
    and not at all when the caller was called back."""
    cfg = _responsible_cfg(planfix, callback_window=5)
    planfix.responsible(PHONE, "105")
    _record(store, cfg, "1.1")
    called_back = make_call("1.2", phone="+74950000002", **MISSED)
    back = make_call("2.2", direction=Direction.OUTBOUND, phone="+74950000002",
                     start=called_back.end + timedelta(minutes=2))
    _remember(store, back)
    with ledger.transaction(store) as conn:
        ledger.record_call(conn, called_back, {"1.2"}, completed_requests(called_back, cfg)
                           + missed_requests(called_back, cfg), "sync", T0)
    _drain(store, cfg)  # the window is not over: only the two COMPLETEDs go
    assert [r.cmd for r in planfix.attempts()] == ["event", "event"]
    planfix.stop()
    outage = _drain(store, cfg, at=T0 + 1000)
    assert outage.stalled and outage.skipped == 1  # the called-back caller's question dropped
    planfix.start()
    _drain(store, cfg, at=T0 + 2000)
    assert [r.callid for r in _questions(planfix)] == ["1.1"]
    assert _told(planfix) == [("1.1", "105")]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in this process."""


class _KilledAt(PlanfixClient):
    """Dies right after Planfix answered the question ("answer": the notices are not queued
    yet) or right before the first notice goes ("notice": they are queued, none sent)."""

    def __init__(self, cfg, at):
        super().__init__(cfg)
        self.at = at

    def responsible(self, request, timeout):
        got = super().responsible(request, timeout)
        if self.at == "answer":
            raise Killed
        return got

    def send(self, request):
        if self.at == "notice" and request.target == "missed":
            raise Killed
        return super().send(request)


@pytest.mark.parametrize("at", ["answer", "notice"])
def test_a_crash_between_question_and_notices_sends_no_notice_twice(planfix, store, at):  # noqa: F811
    cfg = _responsible_cfg(planfix)
    planfix.responsible(PHONE, "105", "106")
    _record(store, cfg, "1.1")
    with pytest.raises(Killed):
        _drain(store, cfg, client=_KilledAt(cfg.planfix, at))
    _drain(store, cfg)  # the restart
    assert len(_questions(planfix)) == (2 if at == "answer" else 1)  # a question may repeat
    assert _told(planfix) == [("1.1", "105"), ("1.1", "106")]
    assert planfix.callids() == ["1.1"]


def test_responsible_is_a_choice_of_the_config_with_a_timeout_above_zero():
    assert stub_config(missed={"notify": "responsible"}).missed.responsible_timeout == 3.0
    with pytest.raises(ConfigError, match="missed.notify"):
        stub_config(missed={"notify": "owner"})
    with pytest.raises(ConfigError, match="missed.responsible_timeout: must be more than 0"):
        stub_config(missed={"responsible_timeout": 0})
