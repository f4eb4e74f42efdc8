"""The quarantine in the state store (SQLite, PostgreSQL, MariaDB): a held call's linkedids count
as handled, holding is idempotent, a retry that fails keeps the entry with the new reason, one
that works hands the call to the ledger. Times are kept exactly (epochs, as `db.EPOCH`)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cdrsync.state import ledger, quarantine
from cdrsync.state.db import open_store
from tests.planfix_stub import make_call

T0 = 1_796_222_407.25  # a 4-byte FLOAT would read it back minutes off
HELD = quarantine.Held("1700000000.1", frozenset({"1700000000.1", "1700000003.7"}), "interpret",
                       "ValueError: call 1700000000.1: no cdr rows and no cel events")


@pytest.fixture
def store(store_url):  # SQLite, PostgreSQL and MariaDB stores in turn (tests/conftest.py)
    engine = open_store(store_url)
    yield engine
    engine.dispose()


def test_a_held_call_counts_as_handled_and_is_held_once(store):
    with ledger.transaction(store) as conn:
        assert quarantine.hold(conn, [HELD], "sync", True, T0) == [HELD.callid]
        assert quarantine.hold(conn, [HELD], "backfill", False, T0 + 9) == []
    with store.connect() as conn:
        assert ledger.handled_linkedids(conn, ["1700000003.7", "1700000009.1"]) == {
            "1700000003.7"}
        assert conn.execute(select(ledger.calls.c.callid)).all() == []  # no call recorded
        [entry] = quarantine.entries(conn, callid="1700000003.7")  # by any of its linkedids
        assert quarantine.count(conn) == 1
    assert (entry.callid, entry.origin, entry.notify_missed, entry.first_at) == (
        HELD.callid, "sync", True, T0)
    assert entry.linkedids == ("1700000000.1", "1700000003.7")
    assert quarantine.summary(entry) == (
        "1700000000.1 (interpret): ValueError: call 1700000000.1: no cdr rows and no cel events")


def test_a_retry_that_fails_keeps_it_with_the_new_reason_one_that_works_releases_it(store):
    with ledger.transaction(store) as conn:
        quarantine.hold(conn, [HELD], "sync", True, T0)
        assert quarantine.mark(conn, None, quarantine.RETRY) == [HELD.callid]
        quarantine.kept(conn, HELD.callid, "recording", "OSError: disk gone", T0 + 60)
    with store.connect() as conn:
        [entry] = quarantine.entries(conn)
    assert (entry.state, entry.step, entry.reason, entry.attempts, entry.last_at) == (
        quarantine.HELD, "recording", "OSError: disk gone", 2, T0 + 60)
    assert "2 attempts" in quarantine.summary(entry)
    with ledger.transaction(store) as conn:
        quarantine.release(conn, HELD.callid)
        ledger.record_calls(conn, [(make_call(HELD.callid), HELD.linkedids, [])], "sync", T0)
    with store.connect() as conn:
        assert quarantine.entries(conn) == [] and quarantine.count(conn) == 0
        assert ledger.owners(conn, HELD.linkedids) == dict.fromkeys(HELD.linkedids,
                                                                         HELD.callid)
        assert ledger.summary(conn, HELD.callid)["linkedids"] == sorted(HELD.linkedids)


def test_a_dropped_call_stays_handled_but_no_longer_waits(store):
    with ledger.transaction(store) as conn:
        quarantine.hold(conn, [HELD], "sync", True, T0)
        assert quarantine.mark(conn, [HELD.callid], quarantine.DROPPED) == [HELD.callid]
        assert quarantine.mark(conn, [HELD.callid], quarantine.RETRY) == []  # not waiting
    with store.connect() as conn:
        assert quarantine.count(conn) == 0 and quarantine.entries(conn) == []
        assert ledger.handled_linkedids(conn, HELD.linkedids) == set(HELD.linkedids)
        assert [e.state for e in quarantine.entries(conn, (quarantine.DROPPED,))] == ["dropped"]
