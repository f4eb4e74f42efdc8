"""The outbox's lanes and the one sender (issue 16 §3), against the loopback Planfix stub on
SQLite, PostgreSQL and MariaDB stores: live calls and every missed-call notice go before queued
history, a live call recorded during a drain of history goes next, history keeps within
`[planfix] daily_limit` (live calls do not), a daemon's drain sends history for at most its
slice, only the holder of the send lock sends, and an expiring recording link is signed when its
request is sent (issue 16 brief item 7)."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from cdrsync.budget import DAY, sending_eta
from cdrsync.deliver import BUDGET_FLAG, Deliverer
from cdrsync.lock import send_lock
from cdrsync.model import Status
from cdrsync.planfix.client import PlanfixClient
from cdrsync.planfix.messages import completed_requests, missed_requests, record_request
from cdrsync.recordings.links import make_link, signed_again, verify
from cdrsync.state import ledger
from cdrsync.state.db import open_store
from tests.planfix_stub import make_call, planfix, stub_config  # noqa: F401
from tests.test_deliver import T0, Clock, _callids, _cfg, _lines, deliver_log, store  # noqa: F401

MISSED = {"status": Status.MISSED, "answered_by": "", "final_ext": "", "duration": 0}


def record(engine, cfg, callids, origin, now=T0, **call_values) -> None:
    with ledger.transaction(engine) as conn:
        items = []
        for callid in callids:
            call = make_call(callid, **call_values)
            items.append((call, {callid}, completed_requests(call, cfg)[:1]
                          + missed_requests(call, cfg)))
        ledger.record_calls(conn, items, origin, now)


def test_live_calls_and_missed_notices_go_before_history_queued_earlier(planfix, store):  # noqa: F811
    cfg = _cfg(planfix)
    history = _callids(6, first=1)
    live = _callids(2, first=20)
    notified = _callids(1, first=30)  # backfilled with --notify-missed: its call goes first too
    record(store, cfg, history, "backfill")
    record(store, cfg, live, "sync")
    record(store, cfg, notified, "backfill", **MISSED)
    with store.connect() as conn:
        assert [e.callid for e in ledger.due(conn, T0, priority=ledger.HISTORY)] == history
    Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(), now=Clock())
    order = [r.callid for r in planfix.attempts()]
    first = len(order) - len(history)
    assert set(order[:first]) == set(live + notified) and order[first:] == history
    assert [r.cmd for r in planfix.attempts()].count("callMissedNotify") >= 1


def test_a_live_call_recorded_while_history_drains_goes_next(planfix, store):  # noqa: F811
    """The recorder is another process in real life (the daemon beside a backfill's courier):
    here the drain's own progress hook records it, before the fourth history request."""
    cfg = _cfg(planfix)
    history = _callids(8, first=1)
    live = _callids(1, first=40)
    record(store, cfg, history, "backfill")
    ticks = iter(range(10_000))  # a second per look at the clock: the probe is never skipped
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg,
                          clock=lambda: float(next(ticks)))

    def watch(result) -> None:
        if result.sent == 3 and not planfix.callids(None).count(live[0]):
            with ledger.transaction(store) as conn:
                if not ledger.handled_linkedids(conn, live):
                    record(store, cfg, live, "sync")

    deliverer.drain(threading.Event(), now=Clock(), watch=watch)
    order = [r.callid for r in planfix.attempts()]
    assert order[:3] == history[:3]
    assert order[3] == live[0], order  # nothing of history went between its record and it
    assert order[4:] == history[3:]


def test_history_keeps_within_the_daily_limit_and_live_calls_do_not(planfix, store,  # noqa: F811
                                                                    deliver_log):  # noqa: F811
    cfg = _cfg(planfix, daily_limit=100)
    clock = Clock()
    # 98 requests Planfix answered in the last hours: two remain of the day's budget
    record(store, cfg, _callids(98, first=1000), "sync", now=T0 - 7200)
    Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(),
                                                            now=lambda: T0 - 3600)
    planfix.reset_log()
    history = _callids(5, first=1)
    record(store, cfg, history, "backfill")
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg)
    result = deliverer.drain(threading.Event(), now=clock)
    assert planfix.callids() == history[:2]
    assert result.history_waits_until == pytest.approx(T0 - 3600 + DAY, abs=1)
    waits = _lines(deliver_log, containing="daily_limit")
    assert len(waits) == 1 and "waits until" in waits[0] and "live calls still go" in waits[0]
    live = _callids(3, first=50)
    record(store, cfg, live, "sync")
    clock.advance(120)
    deliverer.drain(threading.Event(), now=clock)  # the budget is spent: live calls still go
    assert planfix.callids() == history[:2] + live
    assert len(_lines(deliver_log, containing="daily_limit")) == 1  # logged once
    with store.connect() as conn:
        assert ledger.stats(conn)["budget"]["value"].startswith("[planfix] daily_limit of 100")
    clock.advance(DAY)  # the day's requests have aged out
    deliverer.drain(threading.Event(), now=clock)
    assert planfix.callids() == history[:2] + live + history[2:]
    with store.connect() as conn:
        assert ledger.get_flag(conn, BUDGET_FLAG) is None
    assert _lines(deliver_log, containing="history is sent again")


def test_the_daily_count_reads_the_sent_times_index_not_the_table(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with engine.connect() as conn:
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM outbox WHERE sent_at >= 1").fetchall()
    finally:
        engine.dispose()
    assert "ix_outbox_sent_at" in str(plan) and "SCAN outbox" not in str(plan).replace(
        "SCAN outbox USING COVERING INDEX", "")


def test_a_drain_with_a_history_slice_leaves_the_rest_of_history_for_the_next(planfix,  # noqa: F811
                                                                                store):  # noqa: F811
    cfg = _cfg(planfix)
    record(store, cfg, _callids(10, first=1), "backfill")
    ticks = iter(range(10_000))
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg, history_slice=3.5,
                          clock=lambda: float(next(ticks)))  # a second per look at the clock
    result = deliverer.drain(threading.Event(), now=Clock())
    assert result.more and 0 < result.sent < 10
    rest = Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(), now=Clock())
    assert not rest.more and result.sent + rest.sent == 10


def test_only_the_holder_of_the_send_lock_sends(planfix, tmp_path, caplog):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'state.db'}"
    cfg = _cfg(planfix)
    cfg = replace(cfg, state=replace(cfg.state, url=url))
    engine = open_store(url)
    first = Deliverer(engine, PlanfixClient(cfg.planfix), cfg, sender=send_lock(cfg.state))
    second = Deliverer(engine, PlanfixClient(cfg.planfix), cfg, sender=send_lock(cfg.state))
    try:
        assert first.drain(threading.Event(), now=Clock()).sent == 0  # idle: takes nothing
        assert not first.sender.held
        record(engine, cfg, _callids(2, first=1), "sync")
        assert first.drain(threading.Event(), now=Clock()).sent == 2
        record(engine, cfg, _callids(2, first=10), "backfill")
        with caplog.at_level(logging.INFO, logger="cdrsync.deliver"):
            got = second.drain(threading.Event(), now=Clock())
        assert got.elsewhere and got.sent == 0
        assert "another cdrsync sends" in caplog.text
        first.close()
        assert second.drain(threading.Event(), now=Clock()).sent == 2
        assert len(planfix.attempts()) == 4
    finally:
        first.close()
        second.close()
        engine.dispose()


def test_an_in_memory_store_needs_no_send_lock():
    assert send_lock("sqlite://") is None


def test_the_backfill_eta_follows_the_slower_of_the_rate_and_the_daily_limit():
    assert sending_eta(1000, 5.0, 0) == 200
    assert sending_eta(20_000, 5.0, 20_000) == DAY  # the budget is the slower
    assert sending_eta(10, 0.0, 0) is None


def test_an_expiring_recording_link_is_signed_when_it_is_sent_not_when_queued(planfix,  # noqa: F811
                                                                               store):  # noqa: F811
    """A history call queued three days ago with link_ttl = 1 h: Planfix gets a link that opens
    for an hour from the moment it is sent, not one that expired days ago."""
    cfg = _cfg(planfix)
    rec = replace(cfg.recordings, base_url="https://pbx.example.com/rec",
                  sign_key="k" * 32, link_ttl=3600)
    cfg = replace(cfg, recordings=rec)
    relpath = "2024/07/01/in-74951234567-101-20240701-093005-1719826205.1.wav"
    queued = T0 - 3 * DAY
    link, is_temp = make_link(relpath, rec, queued)
    assert is_temp and not verify(relpath, urlsplit(link).query, rec, T0)
    call = make_call("1719826205.1")
    with ledger.transaction(store) as conn:
        ledger.record_calls(conn, [(call, {call.callid}, completed_requests(
            call, cfg, record_link=link, recorded=True))], "backfill", queued)
    Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(), now=Clock())
    sent = planfix.received("event")[0].fields["record_link"]
    assert sent != link and urlsplit(sent).path == urlsplit(link).path
    assert verify(relpath, urlsplit(sent).query, rec, T0 + 3500)
    assert not verify(relpath, urlsplit(sent).query, rec, T0 + 3700)
    assert signed_again(sent, replace(rec, link_ttl=0), T0) == sent  # permanent: left alone
    foreign = "https://elsewhere/x.wav?e=1&s=x"
    assert signed_again(foreign, rec, T0) == foreign


def test_a_late_recording_link_joins_its_calls_lane(store):  # noqa: F811
    cfg = stub_config()
    record(store, cfg, ["1719826201.1"], "backfill")
    record(store, cfg, ["1719826202.2"], "sync")
    with ledger.transaction(store) as conn:
        ledger.add_requests(conn, [record_request(c, f"https://pbx/r/{c}")
                                   for c in ("1719826201.1", "1719826202.2", "1719826203.3")],
                            now=T0)
    with store.connect() as conn:
        lanes = {e.callid: lane for lane in ledger.LANES
                 for e in ledger.due(conn, T0 + 1, include_held=True, priority=lane)
                 if e.kind == "record"}
    assert lanes == {"1719826201.1": ledger.HISTORY, "1719826202.2": ledger.LIVE,
                     "1719826203.3": ledger.LIVE}


def test_an_idle_drain_reads_the_flags_and_each_lane_once_and_takes_no_lock(planfix,  # noqa: F811
                                                                             tmp_path):
    """What `run` pays every pass when nothing waits: three small queries on the store."""
    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'state.db'}"
    cfg = _cfg(planfix)
    cfg = replace(cfg, state=replace(cfg.state, url=url))
    engine = open_store(url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: statements.append(statement))
    deliverer = Deliverer(engine, PlanfixClient(cfg.planfix), cfg, sender=send_lock(cfg.state))
    try:
        deliverer.drain(threading.Event(), now=Clock())
        queries = [s for s in statements if not s.startswith("PRAGMA")]
        assert len(queries) == 3, queries
        assert not deliverer.sender.held
    finally:
        deliverer.close()
        engine.dispose()
