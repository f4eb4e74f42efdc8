"""Epoch columns keep the microsecond on every store (issue 14 item 5).

cdrsync 0.1.0 declared them `Float`: single precision on MySQL / MariaDB, where a `next_try` of
1796222407 was stored as 1796222464. Values here are written and read through the ledger, the
finder's progress and the pass history, as cdrsync writes them.
"""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text

from cdrsync.planfix.messages import completed_requests
from cdrsync.state import ledger, passes, progress
from cdrsync.state.db import open_store
from tests.planfix_stub import make_call, stub_config
from tests.test_store_migrations import build_old_store

EXACT = [1796222407.0, 1796222407.123456, 1719826400.000001, 4102444799.999999]


def test_every_epoch_column_round_trips_to_the_microsecond(store_url):
    store = open_store(store_url)
    cfg = stub_config()
    try:
        with ledger.transaction(store) as conn:
            for i, moment in enumerate(EXACT):
                call = make_call(f"{i}.1")
                ledger.record_call(conn, call, [call.callid], completed_requests(call, cfg),
                                   "sync", now=moment)
                progress.Changes(now=moment, cursors={f"c{i}": "1"},
                                 pending_add={f"{i}.9": (moment, "settle")},
                                 quiet_set={f"{i}.8": ("f", moment)}).apply(conn)
                passes.remember(conn, "sync", moment, moment, 0, 0)
            entries = ledger.due(conn, max(EXACT) + 1, limit=10)
            for entry, moment in zip(entries, EXACT):
                ledger.mark_retry(conn, entry.id, 1, moment, "HTTP 503", moment)
            ledger.set_flag(conn, "stalled", "HTTP 503", EXACT[1])
        with ledger.transaction(store) as conn:
            entries = ledger.due(conn, max(EXACT) + 1, limit=10)
            assert [e.next_try for e in entries] == EXACT
            assert [e.created_at for e in entries] == EXACT
            for entry, moment in zip(entries, EXACT):
                ledger.mark_sent(conn, entry.id, moment)
        with store.connect() as conn:
            requests = [ledger.summary(conn, f"{i}.1")["requests"][0] for i in range(len(EXACT))]
            assert [r["sent_at"] for r in requests] == EXACT
            assert [ledger.summary(conn, f"{i}.1")["recorded_at"]
                    for i in range(len(EXACT))] == EXACT
            assert [progress.read_cursors(conn)[f"c{i}"][1] for i in range(len(EXACT))] == EXACT
            assert sorted(t for t, _ in progress.read_pending(conn).values()) == sorted(EXACT)
            assert sorted(t for _, t in progress.read_quiet(conn).values()) == sorted(EXACT)
            assert ledger.get_flag(conn, "stalled") == ("HTTP 503", EXACT[1])
            assert passes.last(conn)["started"] == EXACT[-1]
    finally:
        store.dispose()


def test_a_mysql_store_of_the_last_release_gets_exact_times(store_servers):
    url = store_servers.empty("mysql")
    build_old_store("mysql", url)
    raw = create_engine(url)
    with raw.begin() as conn:  # what 0.1.0's FLOAT did to a retry time
        conn.execute(text("UPDATE outbox SET next_try = 1796222407 WHERE id = 3"))
        assert conn.execute(text("SELECT next_try FROM outbox WHERE id = 3")).scalar() != \
            1796222407.0
    open_store(url).dispose()
    types = {c["name"]: str(c["type"]) for c in inspect(raw).get_columns("outbox")}
    assert {types[c] for c in ("next_try", "created_at", "last_try", "sent_at")} == {"DOUBLE"}
    with raw.begin() as conn:
        conn.execute(text("UPDATE outbox SET next_try = 1796222407.123456 WHERE id = 3"))
        assert conn.execute(text("SELECT next_try FROM outbox WHERE id = 3")).scalar() == \
            1796222407.123456
    raw.dispose()
