"""History never delays today's calls (issue 16 §3): `backfill` and `run` at once on one store,
through the real command line, a throw-away MariaDB PBX and the loopback Planfix stub.

- A backfill runs while the daemon works (each reads under its own lock; one sends), and every
  call, of history or of today, reaches Planfix exactly once.
- A daemon started for the first time while a backfill reads takes over where the backfill
  will stop: the calls that ended between the backfill's start and the daemon's lookback are
  neither lost nor sent twice.
- With 20,000 history requests queued, a live call written to the PBX is sent before the queued
  history: after its request was recorded, at most the history request in flight goes first.
- A call another process records in the middle of a batch's recording is recorded once.
- A backfill against a wrong token ends as `sync` does (issue 14 item 9).
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from cdrsync import config as config_mod
from cdrsync.pipeline import Pipeline
from cdrsync.planfix.messages import completed_requests
from cdrsync.state import ledger
from cdrsync.state.db import open_store
from tests import synth
from tests.e2e import cdrsync, start_cdrsync
from tests.planfix_stub import make_call
from tests.test_e2e_handover import day, short_calls, wait_until_older
from tests.test_e2e_sync import external, finished, recent, utc_now

BUSY = "another cdrsync is working"


def each_once(planfix, calls) -> bool:
    got = Counter(r.callid for r in planfix.received("event"))
    return set(got) == external(calls) and max(got.values(), default=1) == 1


def stop_daemon(daemon) -> None:
    daemon.send_signal(signal.SIGTERM)
    _out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err


def test_a_backfill_runs_while_the_daemon_works_and_every_call_goes_once(env):
    pbx_db, planfix, config = env
    old = list(synth.generate(40, utc_now() - timedelta(days=6), seed=61, mean_gap=3600))
    synth.insert(pbx_db.admin, old)
    cfg = config(planfix={"rate": 20})
    daemon = start_cdrsync(cfg, "run")
    try:
        today = recent(6, seed=62)
        synth.insert(pbx_db.admin, today)
        assert planfix.wait_for(lambda s: external(today) <= set(s.callids()), timeout=60)
        backfill = cdrsync(cfg, "backfill", "--since", day(7))
        assert backfill.returncode == 0, backfill.stderr
        assert BUSY not in backfill.stderr, "the backfill waited for the daemon"
        # the daemon holds the send lock: the backfill recorded, the daemon sends
        assert "another cdrsync sends" in backfill.stderr, backfill.stderr
        later = recent(4, seed=63, minutes=20)
        synth.insert(pbx_db.admin, later)
        assert planfix.wait_for(lambda s: each_once(s, old + today + later), timeout=90), \
            sorted(Counter(planfix.callids()).items())
        again = cdrsync(cfg, "backfill", "--since", day(7))  # its range is done: nothing new
        assert again.returncode == 0, again.stderr
    finally:
        stop_daemon(daemon)
    assert each_once(planfix, old + today + later)


@pytest.mark.parametrize("cel", [True, False], ids=["cel", "cdr-only"])
def test_a_first_sync_while_a_backfill_reads_takes_over_where_the_backfill_will_stop(env, cel):
    """The backfill (in this process, so that the sync runs between two of its batches) has
    committed its first batch when calls are written and age past `lookback` and `max_call`;
    the first sync then starts. Starting at now - lookback it would lose those calls: they ended
    after the backfill began, so its range does not hold them."""
    pbx_db, planfix, config = env
    path = config(source={"use_cel": cel, "lookback": 2, "max_call": 6, "batch": 5})
    old = short_calls(30, utc_now() - timedelta(days=2), seed=64, cel=cel, uid=0)
    synth.insert(pbx_db.admin, old)
    cfg = config_mod.load(str(path), env={})
    gap: list = []
    syncs: list[str] = []

    def between_batches(*_progress) -> None:
        if syncs:
            return
        gap.extend(short_calls(3, utc_now() + timedelta(seconds=1), seed=65, cel=cel,
                               uid=50_000))
        synth.insert(pbx_db.admin, gap)
        wait_until_older(gap, 6 + 2 + 1)  # beyond max_call and lookback
        for _ in range(2):
            syncs.append(cdrsync(path, "sync", check=True).stderr)

    since = (utc_now() - timedelta(days=3)).replace(hour=0, minute=0, second=0)
    pipeline = Pipeline(cfg)
    try:
        result = pipeline.backfill(since, None, notify_missed=False, progress=between_batches)
    finally:
        pipeline.close()
    assert result.found >= 5 and syncs, "the sync did not run between two batches"
    assert "taking over from the backfill" in syncs[0], syncs[0]
    cdrsync(path, "sync", check=True)
    assert each_once(planfix, old + gap), sorted(Counter(planfix.callids()).items())


HISTORY = 20_000


def queue_history(state_url: str, cfg, n: int) -> None:
    """`n` history requests in the outbox, recorded as a backfill records them (not sent)."""
    store = open_store(state_url)
    try:
        for first in range(0, n, 1000):
            calls = [make_call(f"1500000000.{i}") for i in range(first, min(n, first + 1000))]
            with ledger.transaction(store) as conn:
                ledger.record_calls(conn, [(c, [c.callid], completed_requests(c, cfg)[:1])
                                           for c in calls], "backfill")
    finally:
        store.dispose()


def test_a_live_call_goes_before_20000_queued_history_requests(env, tmp_path: Path):
    pbx_db, planfix, config = env
    path = config(planfix={"rate": 20})
    cfg = config_mod.load(str(path), env={})
    queue_history(cfg.state.url, cfg, HISTORY)
    log = (tmp_path / "daemon.log").open("w")
    daemon = start_cdrsync(path, "run", stderr=log)
    try:
        assert planfix.wait_for(lambda s: len(s.received("event")) >= 40, timeout=60), \
            "the daemon does not send the queued history"
        live = [c for c in finished(synth.generate(6, utc_now() - timedelta(seconds=90), seed=66,
                                                   mean_gap=5, first_uid=90_000))
                if c.truth.direction != "internal"][:1]
        assert live, "no external call generated"
        callid = live[0].truth.linkedid
        written = time.monotonic()
        synth.insert(pbx_db.admin, live)
        assert planfix.wait_for(lambda s: callid in s.callids(), timeout=30), \
            "the live call did not come within 30 s"
        arrived = next(r.time for r in planfix.received("event") if r.callid == callid)
        store = open_store(cfg.state.url)
        try:
            with store.connect() as conn:
                queued_at = ledger.summary(conn, callid)["recorded_at"]
        finally:
            store.dispose()
        # the stub's clock is monotonic, the ledger's the wall clock
        queued = queued_at - (time.time() - time.monotonic())
        history = [r for r in planfix.received("event") if r.callid.startswith("1500000000.")]
        went_between = [r for r in history if queued < r.time < arrived]
        assert len(went_between) <= 1, f"{len(went_between)} history requests went first"
        assert len(history) < HISTORY // 2, "the history was mostly sent before the live call"
        assert arrived - written < 15, f"the live call took {arrived - written:.1f} s"
        print(f"live call: {arrived - written:.2f} s from its rows to Planfix, "
              f"{arrived - queued:.2f} s from its record; {len(went_between)} history request(s) "
              f"went between; {len(history)} history requests before it")
    finally:
        stop_daemon(daemon)
        log.close()
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


def test_a_backfill_against_a_wrong_token_says_so_like_sync(env):
    """Issue 14 item 9: the courier meets the 401; the backfill ends with the token message
    `sync` prints and sync's exit code, not "the delivery process ended unexpectedly"."""
    pbx_db, planfix, config = env
    old = list(synth.generate(12, utc_now() - timedelta(days=3), seed=67, mean_gap=3600))
    today = recent(4, seed=68)
    synth.insert(pbx_db.admin, old + today)
    bad = config(planfix={"token": "not-the-token"})
    sync = cdrsync(bad, "sync")
    proc = cdrsync(bad, "backfill", "--since", day(4))
    assert proc.returncode == sync.returncode == 1, proc.stderr
    assert "rejected the token" in proc.stderr and "check [planfix] token" in proc.stderr
    assert "ended unexpectedly" not in proc.stderr and "not-the-token" not in proc.stderr
    assert len(planfix.attempts()) == 2  # one 401 each, then stopped
    good = config(planfix={"token": planfix.token})
    cdrsync(good, "backfill", "--since", day(4), check=True)
    assert each_once(planfix, old + today)


def test_a_call_another_process_records_during_the_batch_is_recorded_once(env, caplog):
    """The race the ledger cannot see coming: between this batch's look at the handled
    linkedids and its INSERT, another cdrsync (here: a connection of this test, from a
    statement hook) records one of its calls. The batch's transaction collides on the linkedid
    and rolls back; recorded again, it keeps the other's record and sends that call no more."""
    from sqlalchemy import event

    pbx_db, planfix, config = env
    old = [c for c in synth.generate(8, utc_now() - timedelta(days=2), seed=69, mean_gap=600)
           if c.truth.direction != "internal"]
    synth.insert(pbx_db.admin, old)
    cfg = config_mod.load(str(config()), env={})
    taken = old[0].truth.linkedid
    rival = make_call("rival.1")
    pipeline = Pipeline(cfg)
    raced: list[bool] = []

    def rival_first(conn, _cursor, statement, *_args) -> None:
        if raced or not statement.lstrip().upper().startswith("INSERT INTO CALLS"):
            return
        raced.append(True)
        with ledger.transaction(pipeline.store) as other:
            ledger.record_calls(other, [(rival, {taken}, [])], "sync")

    event.listen(pipeline.store, "before_cursor_execute", rival_first)
    since = (utc_now() - timedelta(days=3)).replace(hour=0, minute=0, second=0)
    try:
        with caplog.at_level(logging.INFO, logger="cdrsync.pipeline"):
            pipeline.backfill(since, None, notify_missed=False)
    finally:
        pipeline.close()
    assert raced and "recorded some of these calls at the same moment" in caplog.text
    store = open_store(cfg.state.url)
    try:
        with store.connect() as conn:
            assert ledger.owners(conn, [taken]) == {taken: "rival.1"}
            assert ledger.summary(conn, taken) is None
    finally:
        store.dispose()
    assert each_once(planfix, old[1:])
