"""Backfill → live sync hand-over: whatever the order and however long apart they run, every call
is found once. Real MariaDB read as the SELECT-only user, real SQLite state; `now` is a fake UTC
epoch (nothing sleeps), so "three days later" is exact. The call rows are `tests.test_finder.Call`:
one caller channel dialing one phone, the cdr row and the cel events (CHAN_START, HANGUP,
LINKEDID_END) as Asterisk 13+ writes them."""

from __future__ import annotations

import pytest

from cdrsync import finder
from tests.test_finder import NOW, Call, Pipeline, cdr_pipe, cel_pipe, local  # noqa: F401

DAY = 86400
MODES = ["cel", "cdr"]


@pytest.fixture(params=MODES)
def pipe(request, pbx_db, tmp_path):
    p = Pipeline(pbx_db, tmp_path, use_cel="auto" if request.param == "cel" else "false")
    yield p
    p.source.close()


def history(pbx_db) -> list[Call]:
    return [Call(NOW - d * DAY - 3600 * (d % 3)).add(pbx_db) for d in range(9, 1, -1)]


def settle(pipe: Pipeline, now: float) -> None:
    """A first pass, and one a settle time later (CDR-only calls wait for quiet)."""
    pipe.sync(now)
    pipe.sync(now + 61)


def assert_each_once(pipe: Pipeline, calls: list[Call]) -> None:
    assert sorted(pipe.sent) == sorted(c.linkedid for c in calls)


@pytest.mark.parametrize("later", [2 * 3600, 3 * DAY], ids=["hours", "days"])
def test_a_first_sync_after_a_backfill_takes_over_where_it_stopped(pbx_db, pipe, later):
    """The README's order: backfill, then (hours or days later: beyond `max_call`, 4 h here) the
    daemon. The calls that ended in between are the first sync's, though older than lookback."""
    old = history(pbx_db)
    recent = Call(NOW - 1200).add(pbx_db)  # CDR-only: within lookback, left to the live sync
    going = Call(NOW - 1800, duration=2500)  # in progress while the backfill runs
    pbx_db.insert_cel(going.cel_rows()[:2])
    pipe.backfill(local(NOW - 10 * DAY), None, NOW)
    assert set(c.linkedid for c in old) <= set(pipe.sent)
    going.cdr(pbx_db)  # its row lands at its hang-up, dated at its start: before the backfill
    pbx_db.insert_cel(going.cel_rows()[2:])
    gap = [Call(NOW + t).add(pbx_db) for t in (300, later / 3, later - 2 * 3600)]
    settle(pipe, NOW + later)
    assert_each_once(pipe, old + [recent, going] + gap)
    assert any("taking over from the backfill" in n for n in pipe.notes)
    fresh = Call(NOW + later + 200).add(pbx_db)  # and the live sync goes on from there
    settle(pipe, NOW + later + 400)
    assert_each_once(pipe, old + [recent, going, fresh] + gap)


def test_a_first_sync_without_a_backfill_still_starts_at_the_lookback(pbx_db, pipe):
    old = history(pbx_db)
    before = Call(NOW - 3600 - 600).add(pbx_db)  # ended before now - lookback
    inside = Call(NOW - 1800).add(pbx_db)
    settle(pipe, NOW)
    assert pipe.sent == [inside.linkedid]
    pipe.backfill(local(NOW - 10 * DAY), None, NOW + 200)
    assert_each_once(pipe, old + [before, inside])


def test_a_backfill_while_the_sync_runs_reaches_where_the_sync_began(pbx_db, pipe):
    """The live sync ran once, then stopped for two days (beyond its CDR-only scans); a backfill
    without --until covers history and the stopped days; the sync then goes on: each call once."""
    old = history(pbx_db)
    live = Call(NOW - 900).add(pbx_db)
    settle(pipe, NOW)
    assert pipe.sent == [live.linkedid]
    stopped = [Call(NOW + t).add(pbx_db) for t in (600, DAY, 2 * DAY - 7200)]
    pipe.backfill(local(NOW - 10 * DAY), None, NOW + 2 * DAY)
    after = Call(NOW + 2 * DAY + 100).add(pbx_db)
    settle(pipe, NOW + 2 * DAY + 300)
    assert_each_once(pipe, old + [live, after] + stopped)


def test_a_backfill_with_an_until_in_the_past_hands_nothing_over(pbx_db, pipe):
    """A range the admin closed in the past stays closed: the first sync starts at now - lookback
    (it would otherwise send weeks with missed-call notices) and says how to fill the gap."""
    old = history(pbx_db)
    until = NOW - 5 * DAY
    between = Call(NOW - 3 * DAY).add(pbx_db)
    recent = Call(NOW - 1200).add(pbx_db)
    pipe.backfill(local(NOW - 10 * DAY), local(until), NOW)
    assert_each_once(pipe, [c for c in old if c.start < until])
    settle(pipe, NOW + 60)
    assert recent.linkedid in pipe.sent and between.linkedid not in pipe.sent
    assert any("no backfill reached the present" in n for n in pipe.notes)
    pipe.backfill(local(until), None, NOW + 200)  # what the note says to do
    assert_each_once(pipe, old + [between, recent])


def test_an_interrupted_backfill_hands_over_at_its_end_and_finishes_when_run_again(pbx_db, pipe):
    """A backfill that reaches the present hands over with its first batch (a daemon started
    while it reads must not lose the calls after its start): killed after that batch, the first
    sync takes over where it would have stopped, and sending it again fills the rest."""
    old = history(pbx_db)
    pipe.backfill(local(NOW - 10 * DAY), None, NOW, batch_calls=2, stop_after=1)  # killed
    assert 0 < len(pipe.sent) < len(old)
    gap = [Call(NOW + t).add(pbx_db) for t in (600, DAY)]
    settle(pipe, NOW + 2 * DAY)  # takes over at the backfill's end: the gap is the sync's
    assert {c.linkedid for c in gap} <= set(pipe.sent)
    assert any("taking over from the backfill" in n for n in pipe.notes)
    pipe.backfill(local(NOW - 10 * DAY), None, NOW + 2 * DAY + 200)
    assert_each_once(pipe, old + gap)
    settle(pipe, NOW + 2 * DAY + 400)
    assert_each_once(pipe, old + gap)


def test_handover_encoding_round_trips():
    at = local(NOW)
    assert finder.Handover.decode(finder.Handover(at).encode()) == finder.Handover(at)
    assert finder.Handover.decode(finder.Handover(at, 4711).encode()) == finder.Handover(at, 4711)
    assert finder.Handover.decode(None) is None
