"""The whole path through the real command line: synthetic but realistic asteriskcdrdb rows in a
throw-away MariaDB, read by cdrsync as the SELECT-only user, delivered to the loopback Planfix.

Every test asserts the exact set of calls Planfix accepted, each once (or, where cdrsync is killed
with SIGKILL, at most once more per kill for the request that was in flight — with the same
body)."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from tests import synth
from tests.e2e import cdrsync, start_cdrsync

LOOKBACK = 3600


def utc_now() -> datetime:
    return datetime.utcnow().replace(microsecond=0)  # the synthetic PBX's clock is UTC


def finished(calls, now=None):
    """Only calls that are over: the PBX has not written anything else yet."""
    now = now or utc_now()
    return [c for c in calls if c.truth.end < now - timedelta(seconds=2)]


def recent(n: int, seed: int, minutes: int = 40, **kw) -> list:
    start = utc_now() - timedelta(minutes=minutes)
    return finished(synth.generate(n, start, seed=seed, mean_gap=(minutes - 15) * 60 / n, **kw))


def accepted(planfix) -> Counter:
    return Counter(r.callid for r in planfix.received("event"))


def external(calls) -> set[str]:
    return {c.truth.linkedid for c in calls if c.truth.direction != "internal"}


def assert_once(planfix, calls) -> None:
    got = accepted(planfix)
    assert set(got) == external(calls)
    assert [k for k, n in got.items() if n > 1] == []


def assert_statuses(planfix, calls) -> None:
    truth = {c.truth.linkedid: c.truth for c in calls}
    for r in planfix.received("event"):
        assert r.fields["status"] == truth[r.callid].status, (r.callid, truth[r.callid].flow)



def test_first_sync_on_months_of_history_starts_at_the_lookback_and_backfill_adds_the_rest(env):
    pbx_db, planfix, config = env
    old_start = utc_now() - timedelta(days=90)
    old = list(synth.generate(200, old_start, seed=3, mean_gap=88 * 86400 / 200))
    new = recent(12, seed=4)
    synth.insert(pbx_db.admin, old + new)
    cfg = config(source={"lookback": LOOKBACK})

    assert cdrsync(cfg, "sync", check=True)
    assert_once(planfix, new)
    assert_statuses(planfix, new)

    proc = cdrsync(cfg, "backfill", "--since", old_start.date().isoformat(), check=True)
    assert "backfill" in proc.stderr
    assert_once(planfix, old + new)  # the history arrived, and the recent calls not again
    assert_statuses(planfix, old + new)


def test_incremental_passes_deliver_each_call_once(env):
    pbx_db, planfix, config = env
    calls = recent(30, seed=5)
    first, second = calls[:15], calls[15:]
    cfg = config()
    synth.insert(pbx_db.admin, first)
    cdrsync(cfg, "sync", check=True)
    assert_once(planfix, first)
    synth.insert(pbx_db.admin, second)
    cdrsync(cfg, "sync", check=True)
    cdrsync(cfg, "sync", check=True)
    assert_once(planfix, calls)
    assert_statuses(planfix, calls)


@pytest.mark.parametrize("cel", [True, False], ids=["cel", "cdr-only"])
def test_calls_whose_rows_land_in_two_passes_are_whole_and_sent_once(env, cel):
    """The rows are written in the order a PBX writes them, and a pass runs in the middle."""
    pbx_db, planfix, config = env
    calls = recent(30, seed=6, cel=cel)
    stream = list(synth.landing_order(calls))
    cut = len(stream) // 2
    cfg = config(source={"use_cel": cel}, schedule={"settle": 2 if not cel else 0})

    def load(part):
        cdr = [row for table, row in part if table == "cdr"]
        cel_rows = [row for table, row in part if table == "cel"]
        if cel_rows:
            pbx_db.insert_cel(cel_rows)
        if cdr:
            pbx_db.insert_cdr(cdr)

    load(stream[:cut])
    cdrsync(cfg, "sync", check=True)
    load(stream[cut:])
    cdrsync(cfg, "sync", check=True)
    time.sleep(2.5)  # CDR-only: a call counts as finished after `settle` s without a new row
    cdrsync(cfg, "sync", check=True)
    assert_once(planfix, calls)
    assert_statuses(planfix, calls)


def test_a_call_longer_than_the_lookback_is_not_skipped_in_cdr_only_mode(env):
    """A 3-hour call's row is written at its end with calldate = its start, far behind the
    lookback window; the `max_call` window still finds it."""
    pbx_db, planfix, config = env
    call = synth.one("in_answered", utc_now() - timedelta(hours=3), seed=7, cel=False)
    ended = utc_now() - timedelta(minutes=2)
    for row in call.cdr:
        talk_before = row["duration"] - row["billsec"]
        row["duration"] = int((ended - row["calldate"]).total_seconds())
        row["billsec"] = row["duration"] - talk_before
    synth.insert(pbx_db.admin, [call])
    cfg = config(source={"use_cel": False, "lookback": 600, "max_call": 6 * 3600,
                         "long_every": 0})
    cdrsync(cfg, "sync", check=True)
    got = planfix.received("event")
    assert [r.callid for r in got] == [call.truth.linkedid]
    assert int(got[0].fields["duration"]) > 2 * 3600


def test_two_overlapping_syncs_send_each_call_once(env):
    pbx_db, planfix, config = env
    calls = recent(40, seed=8)
    synth.insert(pbx_db.admin, calls)
    cfg = config(planfix={"rate": 20})  # the first run takes ~2 s: the second finds it busy
    first = start_cdrsync(cfg, "sync")
    time.sleep(0.8)
    second = cdrsync(cfg, "sync")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert second.returncode == 0
    assert "another cdrsync is working" in second.stderr
    assert_once(planfix, calls)


def test_backfill_killed_in_the_middle_continues_where_it_was(env):
    pbx_db, planfix, config = env
    since = utc_now() - timedelta(days=10)
    calls = list(synth.generate(90, since, seed=9, mean_gap=600))
    synth.insert(pbx_db.admin, calls)
    cfg = config(planfix={"rate": 25})
    proc = start_cdrsync(cfg, "backfill", "--since", since.date().isoformat())
    assert planfix.wait_for(lambda s: len(s.received("event")) >= 25, timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    sent_before = len(planfix.received("event"))
    assert sent_before < len(external(calls))

    cdrsync(config(planfix={"rate": 0}), "backfill", "--since", since.date().isoformat(),
            check=True)
    assert_at_most_inflight_repeats(planfix, calls, kills=1)


def assert_at_most_inflight_repeats(planfix, calls, kills: int) -> None:
    got = accepted(planfix)
    assert set(got) == external(calls)
    repeats = sum(n - 1 for n in got.values())
    assert repeats <= kills
    bodies: dict[str, set[str]] = {}
    for r in planfix.received("event"):
        bodies.setdefault(r.callid, set()).add(json.dumps(r.without_token(), sort_keys=True))
    assert all(len(b) == 1 for b in bodies.values()), "one callid, two different bodies"


def test_sigkill_at_random_points_loses_nothing(env):
    pbx_db, planfix, config = env
    calls = recent(60, seed=10)
    synth.insert(pbx_db.admin, calls)
    cfg = config(planfix={"rate": 40})
    rnd = random.Random(10)
    kills = 0
    for _ in range(8):
        proc = start_cdrsync(cfg, "sync")
        time.sleep(rnd.uniform(0.3, 1.2))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    cdrsync(cfg, "sync", check=True)
    assert kills >= 3
    assert_at_most_inflight_repeats(planfix, calls, kills)


def test_sync_after_a_backfill_of_the_same_range_sends_nothing_again(env):
    pbx_db, planfix, config = env
    calls = recent(20, seed=11)
    synth.insert(pbx_db.admin, calls)
    cfg = config()
    since = (utc_now() - timedelta(days=1)).date().isoformat()
    cdrsync(cfg, "backfill", "--since", since, check=True)
    assert_once(planfix, calls)
    cdrsync(cfg, "sync", check=True)
    cdrsync(cfg, "backfill", "--since", since, check=True)
    assert_once(planfix, calls)


def test_planfix_down_for_a_while_then_back(env):
    pbx_db, planfix, config = env
    calls = recent(15, seed=12)
    synth.insert(pbx_db.admin, calls)
    cfg = config()
    planfix.stop()
    proc = cdrsync(cfg, "sync")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    status = json.loads(cdrsync(cfg, "status", "--json", check=True).stdout)
    assert status["delivery"]["pending"] == len(external(calls))
    planfix.start()
    time.sleep(1.1)  # back-off of the last failure (backoff_max = 1 s in tests)
    cdrsync(cfg, "sync", check=True)
    assert_once(planfix, calls)
    status = json.loads(cdrsync(cfg, "status", "--json", check=True).stdout)
    assert status["delivery"]["pending"] == 0


def test_wrong_token_stops_sending_keeps_everything_and_resumes_when_fixed(env):
    pbx_db, planfix, config = env
    calls = recent(10, seed=13)
    synth.insert(pbx_db.admin, calls)
    bad = config(planfix={"token": "not-the-token"})
    proc = cdrsync(bad, "sync")
    assert proc.returncode == 1
    assert "401" in proc.stderr and "token" in proc.stderr
    assert "not-the-token" not in proc.stderr
    assert len(planfix.attempts()) == 1  # stopped at once, not one 401 per call
    good = config(planfix={"token": planfix.token})
    cdrsync(good, "sync", check=True)
    assert_once(planfix, calls)


def test_run_daemon_delivers_new_calls_and_stops_cleanly_on_sigterm(env):
    pbx_db, planfix, config = env
    cfg = config(schedule={"interval": 1})
    daemon = start_cdrsync(cfg, "run")
    try:
        time.sleep(1.5)
        calls = recent(8, seed=14)
        synth.insert(pbx_db.admin, calls)
        assert planfix.wait_for(lambda s: len(s.received("event")) >= len(external(calls)),
                                timeout=20)
        cron = cdrsync(cfg, "sync")
        assert cron.returncode == 0 and "another cdrsync is working" in cron.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "stopped" in err
    assert_once(planfix, calls)


def test_run_daemon_delivers_a_settling_call_after_cel_settle_not_an_interval_later(env):
    """The first pass sees the calls over (LINKEDID_END seconds ago) and lets them settle; the
    daemon passes again when they are ready instead of a minute later, at the next interval."""
    pbx_db, planfix, config = env
    now = utc_now()
    pool = synth.generate(40, now - timedelta(minutes=3), seed=16, mean_gap=5)
    calls = [c for c in finished(pool, now) if c.truth.end > now - timedelta(seconds=40)]
    assert external(calls)
    synth.insert(pbx_db.admin, calls)
    daemon = start_cdrsync(config(schedule={"interval": 60, "cel_settle": 2}), "run")
    try:
        arrived = planfix.wait_for(
            lambda s: len(s.received("event")) >= len(external(calls)), timeout=20)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    assert arrived, err
    assert_once(planfix, calls)
