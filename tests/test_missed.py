"""Missed-call policy: who is told, and when the callback window makes a notice pointless."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cdrsync.config import MissedConfig
from cdrsync.missed import recipients
from cdrsync.model import Direction, Status
from cdrsync.state import ledger
from cdrsync.state.db import open_store
from cdrsync.state.notices import superseded
from tests.planfix_stub import make_call

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
