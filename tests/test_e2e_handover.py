"""Backfill → sync hand-over through the real command line: a throw-away MariaDB read as the
SELECT-only user, the loopback Planfix stub, real time. Calls are `tests/synth.py`'s (Asterisk 20
/ FreePBX 17 shapes of the round A corpus); the calls written "into the gap" are short ones of
its flows (busy, congestion, unanswered ring groups: a few seconds), started just after a step,
so that a few seconds of waiting stand for hours: `lookback` and `max_call` are shrunk to match.

Each test writes calls into the stretch between two steps, where a first sync starting at
now - lookback loses them, and proves that Planfix accepted every call exactly once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from tests import synth
from tests.e2e import cdrsync, start_cdrsync

SHORT = 4  # s: the longest call written into a gap
# flows that often last a few seconds: busy / congested outbound, a ring group nobody answers,
# an inbound call the caller gives up on while it rings
SHORT_FLOWS = {"out_busy": 1.0, "out_congestion": 1.0, "rg_noanswer": 1.0,
               "in_noanswer_cancel": 1.0}


def utc_now() -> datetime:
    return datetime.utcnow().replace(microsecond=0)  # the synthetic PBX's clock is UTC


def short_calls(n: int, start: datetime, seed: int, cel: bool, uid: int) -> list[synth.SynthCall]:
    """`n` external calls of at most SHORT s, starting from `start` within a few seconds."""
    pool = synth.generate(20 * n, start, seed=seed, mix=SHORT_FLOWS, mean_gap=0.5, cel=cel,
                          first_uid=uid)
    calls = [c for c in pool if c.truth.direction != "internal"
             and (c.truth.end - c.truth.start).total_seconds() <= SHORT]
    assert len(calls) >= n
    return calls[:n]


def wait_until_older(calls, seconds: float) -> None:
    """Sleep until every call ended more than `seconds` ago."""
    end = max(c.truth.end for c in calls) + timedelta(seconds=seconds)
    while utc_now() <= end:
        time.sleep(0.2)


def history(days_ago: float, cel: bool, seed: int, n: int = 12) -> list[synth.SynthCall]:
    return short_calls(n, utc_now() - timedelta(days=days_ago), seed, cel, uid=0)


def assert_each_once(planfix, calls) -> None:
    got = Counter(r.callid for r in planfix.received("event"))
    assert set(got) == {c.truth.linkedid for c in calls}
    assert [k for k, n in got.items() if n > 1] == []


def day(days_ago: float) -> str:
    return (utc_now() - timedelta(days=days_ago)).date().isoformat()


@pytest.mark.parametrize("cel", [True, False], ids=["cel", "cdr-only"])
def test_sync_long_after_a_backfill_sends_every_call_of_the_gap(env, cel):
    """The README's order: backfill, then the daemon, later than lookback and max_call (the
    reach of the CDR-only scans): the first sync takes over where the backfill stopped."""
    pbx_db, planfix, config = env
    cfg = config(source={"use_cel": cel, "lookback": 2, "max_call": 6})
    old = history(2, cel, seed=31)
    synth.insert(pbx_db.admin, old)
    cdrsync(cfg, "backfill", "--since", day(3), check=True)
    assert_each_once(planfix, old)
    gap = short_calls(4, utc_now() + timedelta(seconds=1), seed=32, cel=cel, uid=5000)
    synth.insert(pbx_db.admin, gap)
    wait_until_older(gap, 6 + 2 + 1)  # beyond max_call and lookback
    proc = cdrsync(cfg, "sync", check=True)
    assert "taking over from the backfill" in proc.stderr
    cdrsync(cfg, "sync", check=True)
    assert_each_once(planfix, old + gap)


def test_a_backfill_after_the_sync_began_sends_what_the_stopped_sync_missed(env):
    """The sync ran, then stopped; calls came; a backfill without --until covers them and the
    history, and the sync, started again, goes on without sending any call twice."""
    pbx_db, planfix, config = env
    cfg = config(source={"use_cel": False, "lookback": 2, "max_call": 6})
    old = history(2, False, seed=33)
    synth.insert(pbx_db.admin, old)
    cdrsync(cfg, "sync", check=True)
    assert_each_once(planfix, [])
    missed = short_calls(3, utc_now() + timedelta(seconds=1), seed=34, cel=False, uid=5000)
    synth.insert(pbx_db.admin, missed)
    wait_until_older(missed, 6 + 2 + 1)  # out of the stopped sync's reach
    cdrsync(cfg, "backfill", "--since", day(3), check=True)
    assert_each_once(planfix, old + missed)
    after = short_calls(3, utc_now() + timedelta(seconds=1), seed=35, cel=False, uid=9000)
    synth.insert(pbx_db.admin, after)
    wait_until_older(after, 1)
    cfg = config(source={"use_cel": False, "lookback": 600})  # restarted with a usual window
    for _ in range(2):
        cdrsync(cfg, "sync", check=True)
    assert_each_once(planfix, old + missed + after)


def test_a_backfill_with_an_until_in_the_past_leaves_the_gap_to_a_backfill(env):
    """A range closed in the past hands nothing over (the sync would send weeks of calls with
    missed-call notices): the first sync starts at now - lookback and says so; the backfill it
    names fills the gap; nothing is sent twice."""
    pbx_db, planfix, config = env
    cfg = config(source={"lookback": 600})
    until = utc_now() - timedelta(hours=2)
    old = history(2, True, seed=36)
    between = short_calls(3, utc_now() - timedelta(minutes=70), seed=37, cel=True, uid=5000)
    recent = short_calls(3, utc_now() - timedelta(minutes=5), seed=38, cel=True, uid=9000)
    synth.insert(pbx_db.admin, old + between + recent)
    cdrsync(cfg, "backfill", "--since", day(3), "--until", until.isoformat(), check=True)
    assert_each_once(planfix, old)
    proc = cdrsync(cfg, "sync", check=True)
    assert "no backfill reached the present" in proc.stderr
    assert_each_once(planfix, old + recent)
    cdrsync(cfg, "backfill", "--since", until.isoformat(), check=True)
    cdrsync(cfg, "sync", check=True)
    assert_each_once(planfix, old + between + recent)


def test_an_interrupted_backfill_finishes_the_gap_when_run_again(env):
    pbx_db, planfix, config = env
    old = list(synth.generate(60, utc_now() - timedelta(days=5), seed=39, mean_gap=3600))
    synth.insert(pbx_db.admin, old)
    external = [c for c in old if c.truth.direction != "internal"]
    cfg = config(source={"lookback": 2, "max_call": 6}, planfix={"rate": 10})
    proc = start_cdrsync(cfg, "backfill", "--since", day(6))
    assert planfix.wait_for(lambda s: len(s.received("event")) >= 5, timeout=30)
    proc.send_signal(signal.SIGTERM)  # stopped: the request in flight finishes
    proc.communicate(timeout=30)
    assert len(planfix.received("event")) < len(external)
    gap = short_calls(3, utc_now() + timedelta(seconds=1), seed=40, cel=True, uid=50_000)
    synth.insert(pbx_db.admin, gap)
    wait_until_older(gap, 6 + 2 + 1)
    cfg = config(source={"lookback": 2, "max_call": 6}, planfix={"rate": 0})
    cdrsync(cfg, "sync", check=True)  # starts at now - lookback: the rest is the backfill's
    cdrsync(cfg, "backfill", "--since", day(6), check=True)
    cdrsync(cfg, "sync", check=True)
    assert_each_once(planfix, external + gap)
