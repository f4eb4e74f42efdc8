"""The ledger on real SQLite, PostgreSQL and MariaDB stores: idempotent recording, per-call order,
retry/skip, stats; what only SQLite does (its driver-level shortcut, a read-only file, a full
disk) on SQLite alone."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from cdrsync.model import Status
from cdrsync.planfix.messages import completed_requests, missed_requests, record_request
from cdrsync.state import ledger
from cdrsync.state.db import StoreError, open_store
from tests.planfix_stub import make_call, stub_config

CFG = stub_config(planfix={"missed_url": "https://example.planfix.ru/freepbx",
                           "ring_group_cancelled": True})
T0 = 1_700_000_000.0


@pytest.fixture
def store(store_url):
    engine = open_store(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_store(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield engine
    engine.dispose()


def _record(engine, call, linkedids=(), origin="sync", extra=(), now=T0):
    reqs = completed_requests(call, CFG) + missed_requests(call, CFG) + list(extra)
    with ledger.transaction(engine) as conn:
        return ledger.record_call(conn, call, linkedids or {call.callid}, reqs, origin, now)


def _keys(engine, state=None):
    with engine.connect() as conn:
        q = select(ledger.outbox.c.key).order_by(ledger.outbox.c.id)
        if state:
            q = q.where(ledger.outbox.c.state == state)
        return [r[0] for r in conn.execute(q)]


def test_handled_linkedids_answers_for_every_linkedid_of_a_recorded_call(store):
    call = make_call("1700000000.1")
    _record(store, call, {"1700000000.1", "1700000003.7"})
    with store.connect() as conn:
        asked = ["1700000003.7", "1700000099.1", "1700000000.1"] + [f"9.{i}" for i in range(1200)]
        assert ledger.handled_linkedids(conn, asked) == {"1700000000.1", "1700000003.7"}
        assert ledger.handled_linkedids(conn, []) == set()


def test_recording_a_call_twice_queues_nothing_twice(store):
    call = make_call()
    assert _record(store, call, origin="sync") is True
    first = _keys(store)
    assert first == ["1700000000.1|completed", "1700000000.1|cancelled|102"]
    # backfill finds the same call later, with one more linkedid: nothing new is queued
    assert _record(store, call, {call.callid, "1700000005.2"}, origin="backfill") is False
    assert _keys(store) == first
    with store.connect() as conn:
        assert ledger.handled_linkedids(conn, ["1700000005.2"]) == {"1700000005.2"}
        assert ledger.summary(conn, call.callid)["origin"] == "sync"


def test_add_requests_ignores_keys_already_queued(store):
    _record(store, make_call())
    with ledger.transaction(store) as conn:
        link = record_request("1700000000.1", "https://pbx/r/1")
        assert ledger.add_requests(conn, [link, link], now=T0) == 1
        assert ledger.add_requests(conn, [link], now=T0) == 0


def test_due_keeps_the_order_of_a_call_and_holds_back_what_must_wait(store):
    _record(store, make_call("1.1"))
    _record(store, make_call("2.1", status=Status.MISSED, answered_by="", final_ext=""))
    with ledger.transaction(store) as conn:
        ledger.add_requests(conn, [record_request("1.1", "https://pbx/r/1")], now=T0)
        due = [e.key for e in ledger.due(conn, T0)]
    # 1.1's Cancelled and record wait for its COMPLETED; 2.1's notices wait for its COMPLETED
    assert due == ["1.1|completed", "2.1|completed"]
    with ledger.transaction(store) as conn:
        first = ledger.due(conn, T0)[0]
        ledger.mark_sent(conn, first.id, T0)
        assert [e.key for e in ledger.due(conn, T0)] == ["1.1|cancelled|102", "2.1|completed"]
        assert [e.key for e in ledger.due(conn, T0, after_id=first.id + 1)] == ["2.1|completed"]


def test_mark_sent_on_sqlite_writes_what_the_portable_statement_writes(sqlite_store):
    """SQLite takes a driver-level shortcut (`exec_driver_sql`); other databases the Core
    statement. Both must leave the same row."""
    _record(sqlite_store, make_call("1.1", rung=("101", "102")))  # COMPLETED + a Cancelled
    with ledger.transaction(sqlite_store) as conn:
        shortcut, portable = ledger.due(conn, T0, include_held=True)
        ledger.mark_retry(conn, shortcut.id, 1, T0, "HTTP 503", T0)  # attempts 1 -> 2 below
        ledger.mark_retry(conn, portable.id, 1, T0, "HTTP 503", T0)
    statements: list[str] = []
    event.listen(sqlite_store, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with ledger.transaction(sqlite_store) as conn:
        ledger.mark_sent(conn, shortcut.id, T0 + 5)
        conn.execute(ledger._MARK_SENT, {"entry_id": portable.id, "at": T0 + 5})
    assert len(statements) == 2  # the shortcut is an SQL statement like any other (counted)
    columns = [c for c in ledger.outbox.c if c.name not in ("id", "key", "body")]
    with sqlite_store.connect() as conn:
        rows = [tuple(conn.execute(select(*columns).where(ledger.outbox.c.id == entry.id)).one())
                for entry in (shortcut, portable)]
    assert rows[0] == rows[1]
    assert rows[0][columns.index(ledger.outbox.c.state)] == ledger.SENT
    assert rows[0][columns.index(ledger.outbox.c.attempts)] == 2
    assert rows[0][columns.index(ledger.outbox.c.sent_at)] == T0 + 5


def test_due_with_held_entries_names_what_each_waits_for_and_describes_the_call(store):
    _record(store, make_call("1.1", rung=("101", "102", "103")))  # COMPLETED + 2 Cancelled
    with ledger.transaction(store) as conn:
        ledger.add_requests(conn, [record_request("1.1", "https://pbx/r/1"),
                                   record_request("9.9", "https://pbx/r/9")], now=T0)
        entries = ledger.due(conn, T0, include_held=True)
    assert [e.key for e in entries] == ["1.1|completed", "1.1|cancelled|102",
                                        "1.1|cancelled|103", "1.1|record", "9.9|record"]
    ids = [e.id for e in entries]
    # each waits for the latest earlier undelivered API entry of its call, not the first
    assert [e.held_by for e in entries] == [None, ids[0], ids[1], ids[2], None]
    assert entries[0].call == ("inbound", "Success", "101")
    assert entries[4].call is None  # no call recorded under that callid
    with ledger.transaction(store) as conn:
        assert [e.key for e in ledger.due(conn, T0, limit=2, include_held=True)] == [
            "1.1|completed", "1.1|cancelled|102"]


def test_a_failed_completed_holds_its_record_but_not_other_calls(store):
    _record(store, make_call("1.1", rung=("101",)))
    _record(store, make_call("2.1", rung=("101",)))
    with ledger.transaction(store) as conn:
        ledger.add_requests(conn, [record_request("1.1", "https://pbx/r/1")], now=T0)
        one = ledger.due(conn, T0)[0]
        ledger.mark_failed(conn, one.id, 'HTTP 400: {"error":"Invalid parameters"}', T0)
        assert [e.key for e in ledger.due(conn, T0)] == ["2.1|completed"]
        assert ledger.retry(conn, "1.1", now=T0) == 2  # the failed COMPLETED and its record
        assert [e.key for e in ledger.due(conn, T0)] == ["1.1|completed", "2.1|completed"]


def test_missed_notices_do_not_hold_back_a_late_record_and_respect_not_before(store):
    cfg = stub_config(planfix={"missed_url": "https://example.planfix.ru/freepbx"},
                      missed={"callback_window": 5})
    call = make_call("3.1", status=Status.MISSED, answered_by="", final_ext="", rung=("101",))
    reqs = completed_requests(call, cfg) + missed_requests(call, cfg)
    with ledger.transaction(store) as conn:
        ledger.record_call(conn, call, {"3.1"}, reqs, "sync", T0)
        ledger.add_requests(conn, [record_request("3.1", "https://pbx/r/3")], now=T0)
        ledger.mark_sent(conn, ledger.due(conn, T0)[0].id, T0)
        assert [e.key for e in ledger.due(conn, T0)] == ["3.1|record"]
        later = reqs[1].not_before + 1
        assert [e.key for e in ledger.due(conn, later)] == ["3.1|missed|101", "3.1|record"]


def test_retry_failed_skip_and_stats(store):
    for i in range(1, 4):
        _record(store, make_call(f"{i}.1", rung=("101",)), now=T0 + i)
    with ledger.transaction(store) as conn:
        e1, e2, e3 = ledger.due(conn, T0 + 10)
        ledger.mark_sent(conn, e1.id, T0 + 10)
        ledger.mark_failed(conn, e2.id, 'HTTP 400: {"error":"Invalid parameters"}', T0 + 11)
        ledger.mark_retry(conn, e3.id, 1, T0 + 20, "cannot connect: Connection refused", T0 + 12)
        stats = ledger.stats(conn, now=T0 + 100)
    assert (stats["sent"], stats["failed"], stats["pending"], stats["skipped"]) == (1, 1, 1, 0)
    assert stats["calls"] == 3
    assert stats["oldest_undelivered"]["callid"] == "2.1"
    assert stats["oldest_undelivered"]["age"] == pytest.approx(98)
    assert stats["last_error"] == {"callid": "3.1", "error": "cannot connect: Connection refused",
                                   "at": T0 + 12}
    with ledger.transaction(store) as conn:
        assert ledger.retry(conn, now=T0 + 101) == 1  # every failed one
        assert ledger.skip(conn, "3.1", now=T0 + 101) == 1
        assert ledger.skip(conn, "1.1", now=T0 + 101) == 0  # already sent: stays sent
        stats = ledger.stats(conn, now=T0 + 101)
        assert (stats["sent"], stats["pending"], stats["skipped"]) == (1, 1, 1)
        assert [e.key for e in ledger.due(conn, T0 + 101)] == ["2.1|completed"]
        info = ledger.summary(conn, "3.1")
    assert info["call"]["status"] == "Success" and info["linkedids"] == ["3.1"]
    assert info["requests"][0]["state"] == "skipped"
    assert info["requests"][0]["body"]["callid"] == "3.1"


def test_flags_keep_their_first_since(store):
    with ledger.transaction(store) as conn:
        ledger.set_flag(conn, "stalled", "HTTP 503", T0)
        ledger.set_flag(conn, "stalled", "cannot connect", T0 + 50)
        assert ledger.get_flag(conn, "stalled") == ("cannot connect", T0)
        assert ledger.clear_flag(conn, "stalled") == ("cannot connect", T0)
        assert ledger.clear_flag(conn, "stalled") is None


def test_a_read_only_store_stops_with_one_clear_line(tmp_path):
    path = tmp_path / "state.db"
    open_store(f"sqlite:///{path}").dispose()
    readonly = open_store(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(StoreError) as err:
        _record(readonly, make_call())
    message = str(err.value)
    assert "readonly database" in message and "\n" not in message
    assert "INSERT" not in message


def test_a_full_disk_stops_with_one_clear_line(tmp_path):
    path = tmp_path / "state.db"
    open_store(f"sqlite:///{path}").dispose()
    full = open_store(f"sqlite:///{path}")

    @event.listens_for(full, "connect")
    def _no_room_left(dbapi_conn, _record):
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    full.dispose()  # reconnect with the limit
    calls = [make_call(f"{i}.1", reasons=["x" * 2000]) for i in range(50)]
    with pytest.raises(StoreError, match="database or disk is full"):
        for call in calls:
            _record(full, call)


def test_prune_forgets_old_delivered_bodies_but_never_what_keeps_calls_from_repeating(store):
    old, new, waiting = make_call("1.1"), make_call("2.2"), make_call("3.3")
    cfg = stub_config()
    with ledger.transaction(store) as conn:
        for call, at in ((old, 1_000.0), (new, 90_000.0), (waiting, 1_000.0)):
            ledger.record_call(conn, call, [call.callid], completed_requests(call, cfg), "sync",
                               now=at)
        for entry in ledger.due(conn, 100_000.0, limit=10):
            if entry.callid != "3.3":
                ledger.mark_sent(conn, entry.id, 1_000.0 if entry.callid == "1.1" else 90_000.0)
    with ledger.transaction(store) as conn:
        assert ledger.prune(conn, before=50_000.0) == 1
        left = {r[0] for r in conn.execute(select(ledger.outbox.c.callid))}
        assert left == {"2.2", "3.3"}  # the recent one, and the one still to deliver
        assert ledger.handled_linkedids(conn, ["1.1", "2.2", "3.3"]) == {"1.1", "2.2", "3.3"}
        assert conn.execute(select(func.count()).select_from(ledger.calls)).scalar_one() == 3
        # recording the pruned call again (a re-run backfill) queues nothing
        assert ledger.record_calls(conn, [(old, ["1.1"], completed_requests(old, cfg))],
                                   "backfill") == []


def test_a_long_caller_id_or_ext_never_stops_recording(store):
    """A SIP URI as caller id (cdr.src and cel.cid_num are varchar(80); a caller id that is no
    number gives `phone` "" and keeps the raw text) and an absurd ext: PostgreSQL and MySQL enforce
    the store's column widths, and one such call must not keep the batch from committing."""
    uri = "sip:" + "very-long-user-part-of-a-webrtc-softphone." * 2 + "@pbx.example.com"
    assert len(uri) > 64
    odd = make_call("1700000000.2", phone="", phone_raw=uri, ext="x" * 80)
    plain = make_call("1700000000.3")
    reqs = {c.callid: completed_requests(c, CFG) for c in (odd, plain)}
    with ledger.transaction(store) as conn:
        new = ledger.record_calls(conn, [(c, {c.callid}, reqs[c.callid]) for c in (odd, plain)],
                                  "sync", T0)
    assert sorted(new) == ["1700000000.2", "1700000000.3"]
    with store.connect() as conn:
        summary = ledger.summary(conn, "1700000000.2")
        row = conn.execute(select(ledger.calls.c.phone, ledger.calls.c.ext)
                           .where(ledger.calls.c.callid == "1700000000.2")).one()
    assert summary["call"]["phone_raw"] == uri  # nothing of it is lost
    assert row.phone == "" and row.ext == "x" * 64


def test_two_anonymous_callers_are_not_one_caller(store):
    """The callback window matches callers by the number Planfix knows them by; anonymous callers
    have none, so one's answered call does not silence the other's missed-call notice."""
    from cdrsync.state.notices import superseded

    first = make_call("1700000000.1", status=Status.MISSED, phone="", phone_raw="anonymous",
                      answered_by="", final_ext="")
    later = make_call("1700000060.1", phone="", phone_raw="anonymous",
                      start=first.start.replace(minute=31))
    for call in (first, later):
        _record(store, call)
    with store.connect() as conn:
        assert superseded(conn, first.callid, 10) is None
