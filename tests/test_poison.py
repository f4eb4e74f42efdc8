"""One poisoned call costs that call only: the real `sync` and `backfill` commands over a real
MariaDB (SELECT-only user) and the loopback Planfix, with good calls around the poison.

Rows are FreePBX 17 / Asterisk 20 calls from `tests/synth.py` (shapes of the real Asterisk 20
corpus, ../shared/corpus/asterisk-20.20.1), each poisoned the way the issue saw it in the field:
times at the end of the calendar (`9999-12-31`, DATETIME's maximum, the "never" placeholder of
hand-made tables), a linkedid whose epoch no calendar holds, a lonely `LINKEDID_END`.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from datetime import datetime, timedelta

import pytest

from cdrsync import config as config_mod
from cdrsync.pipeline import Pipeline
from cdrsync.source.reader import Source
from cdrsync.state import quarantine
from tests import synth
from tests.e2e import cdrsync

NEVER = datetime(9999, 12, 31, 23, 59, 59)
JUNK_LINKEDID = "99999999999999.1"


def utc_now() -> datetime:
    return datetime.utcnow().replace(microsecond=0)  # the synthetic PBX's clock is UTC


def external(calls) -> list[str]:
    return sorted(c.truth.linkedid for c in calls if c.truth.direction != "internal")


def delivered(planfix) -> Counter:
    return Counter(r.callid for r in planfix.received("event"))


def answered_inbound(start: datetime, seed: int) -> synth.SynthCall:
    """An inbound call a phone answered, recorded: it goes through every step of a call."""
    return synth.one("in_answered", start, seed=seed, recording=1.0, first_uid=9000)


# ---- item 1: a time no clock can hold is a reason, never a crash ------------------------------

def test_a_call_whose_cel_rows_say_9999_does_not_stop_sync(env, tmp_path):
    pbx_db, planfix, config = env
    (tmp_path / "monitor").mkdir()  # the recording lookup runs (and once overflowed)
    good = list(synth.generate(8, utc_now() - timedelta(minutes=40), seed=31, mean_gap=120))
    poison = answered_inbound(utc_now() - timedelta(minutes=20), seed=32)
    for event in poison.cel:
        event["eventtime"] = NEVER
    synth.insert(pbx_db.admin, good + [poison])
    cfg = config()
    first = cdrsync(cfg, "sync")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr and "internal error" not in first.stderr
    got = delivered(planfix)
    assert sorted(got) == sorted(external(good) + [poison.truth.linkedid]), first.stderr
    assert set(got.values()) == {1}
    again = cdrsync(cfg, "sync")
    assert again.returncode == 0 and delivered(planfix) == got


def test_events_dated_9999_at_the_end_of_cel_do_not_move_where_a_time_begins(pbx_db):
    """`cel_id_at` (the first sync's CEL cursor, backfill's first id) bisects cel by id: events
    whose time no clock wrote, probed as "earlier", sent it past every call of the window."""
    start = datetime(2026, 2, 2, 9, 0)
    pbx_db.insert_cel([{"eventtype": "X", "eventtime": start + timedelta(minutes=i)}
                       for i in range(60)]
                      + [{"eventtype": "X", "eventtime": when}
                         for when in [NEVER] * 150 + ["0000-00-00 00:00:00"] * 50])
    source = Source(pbx_db.ro_url)
    try:
        assert source.cel_id_at(start + timedelta(minutes=30)) == 31
        assert source.cel_id_at(start - timedelta(days=1)) == 1
    finally:
        source.close()


def test_a_linkedid_end_dated_9999_does_not_stop_backfill(env):
    pbx_db, planfix, config = env
    since = utc_now() - timedelta(days=3)
    calls = list(synth.generate(12, since, seed=33, mean_gap=3600))
    poison = calls[5]
    for event in poison.cel:
        if event["eventtype"] == "LINKEDID_END":
            event["eventtime"] = NEVER
    synth.insert(pbx_db.admin, calls)
    cfg = config()
    for _ in range(2):  # the re-run once died the same way
        run = cdrsync(cfg, "backfill", "--since", since.date().isoformat())
        assert run.returncode == 0, run.stderr
        assert "internal error" not in run.stderr
    got = delivered(planfix)
    assert sorted(got) == external(calls), run.stderr
    assert set(got.values()) == {1}


def test_a_call_with_an_unreadable_linkedid_is_delivered_alone_in_its_pass(env):
    """Alone in its pass, nothing else bounds the time its cdr rows are looked up from."""
    pbx_db, planfix, config = env
    poison = answered_inbound(utc_now() - timedelta(minutes=10), seed=34)
    for row in poison.cdr + poison.cel:
        row["linkedid"] = JUNK_LINKEDID
    synth.insert(pbx_db.admin, [poison])
    cfg = config()
    run = cdrsync(cfg, "sync")
    assert run.returncode == 0, run.stderr
    [event] = planfix.received("event")
    assert (event.callid, event.fields["status"]) == (JUNK_LINKEDID, "Success")
    shown = cdrsync(cfg, "show", JUNK_LINKEDID)
    assert shown.returncode == 0, shown.stderr
    assert "delivery: recorded by sync" in shown.stdout


# ---- item 2: a call that cannot be processed is quarantined, not dropped or met every pass -----

def test_a_lonely_linkedid_end_is_quarantined_named_and_processed_again_once_fixed(env):
    """CEL mode: a call's LINKEDID_END landed, its other rows did not (a CEL table restored from
    a backup without them). Once the admin restores them, `retry --quarantined` delivers it."""
    pbx_db, planfix, config = env
    good = list(synth.generate(6, utc_now() - timedelta(minutes=40), seed=35, mean_gap=120))
    lost = answered_inbound(utc_now() - timedelta(minutes=15), seed=36)
    lonely = [e for e in lost.cel if e["eventtype"] == "LINKEDID_END"]
    synth.insert(pbx_db.admin, good)
    pbx_db.insert_cel(lonely)
    callid = lost.truth.linkedid
    cfg = config()
    first = cdrsync(cfg, "sync")
    assert first.returncode == 0, first.stderr
    assert sorted(delivered(planfix)) == external(good)
    warned = [line for line in first.stderr.splitlines() if callid in line]
    assert len(warned) == 1 and "WARNING" in warned[0] and "quarantined" in warned[0], warned
    assert "1 quarantined" in first.stderr

    again = cdrsync(cfg, "sync")
    assert again.returncode == 0 and callid not in again.stderr, again.stderr  # logged once
    status = cdrsync(cfg, "status")
    assert "quarantined:      1" in status.stdout
    [listed] = [line for line in status.stdout.splitlines() if line.startswith(f"  {callid}")]
    assert "(interpret)" in listed and "no cdr rows and no cel events" in listed
    shown = cdrsync(cfg, "show", callid)
    assert shown.returncode == 0, shown.stderr
    assert "quarantined (held)" in shown.stdout and "can not be rebuilt" in shown.stdout
    still = cdrsync(cfg, "retry", "--quarantined", callid)
    assert still.returncode == 1 and f"{callid}: still quarantined (interpret)" in still.stdout

    rest = [e for e in lost.cel if e["eventtype"] != "LINKEDID_END"]
    pbx_db.insert_cel(rest)
    pbx_db.insert_cdr(lost.cdr)
    fixed = cdrsync(cfg, "retry", "--quarantined")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"{callid}: processed, queued for delivery" in fixed.stdout
    cdrsync(cfg, "sync", check=True)
    got = delivered(planfix)
    assert sorted(got) == sorted(external(good) + [callid]) and set(got.values()) == {1}
    [event] = [r for r in planfix.received("event") if r.callid == callid]
    assert (event.fields["status"], event.fields["ext"]) == (lost.truth.status, lost.truth.ext)
    assert "quarantined:      0" in cdrsync(cfg, "status").stdout


STEPS = {  # where each step of one call is reached from the pipeline
    "interpret": "cdrsync.pipeline.read_call",
    "recording": "cdrsync.pipeline.find_recording",
    "requests": "cdrsync.planfix.messages.completed_requests",
    "missed-call recipients": "cdrsync.planfix.messages.missed_requests",
}


@pytest.mark.parametrize("step, cel", [(s, True) for s in STEPS] + [("interpret", False)],
                         ids=[f"{s}-cel" for s in STEPS] + ["interpret-cdr-only"])
def test_a_step_that_raises_costs_its_call_only(env, tmp_path, monkeypatch, caplog, step, cel):
    """Any step may meet what no test foresaw (a bug, a row no rule knows): simulated here by
    making the real step raise for one chosen call, in process, over the real database. The
    call is quarantined with that step, in the pass's transaction; the others are delivered;
    the next pass neither logs it again nor meets it again (CDR-only once did, every pass)."""
    pbx_db, planfix, config = env
    (tmp_path / "monitor").mkdir()
    calls = list(synth.generate(8, utc_now() - timedelta(minutes=40), seed=37, mean_gap=120,
                                cel=cel, mix={"in_noanswer_cancel": 1.0}))  # missed: every step
    victim = calls[3].truth.linkedid
    module_name, attr = STEPS[step].rsplit(".", 1)
    module = importlib.import_module(module_name)
    real = getattr(module, attr)

    def failing(*args, **kwargs):
        first = args[0]
        if getattr(first, "callid", None) == victim:
            raise RuntimeError(f"{step} failed on purpose")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, attr, failing)
    synth.insert(pbx_db.admin, calls)
    cfg = config_mod.load(str(config(source={"use_cel": cel},
                                         planfix={"missed_url": planfix.missed_url},
                                         schedule={"settle": 0})))
    pipeline = Pipeline(cfg)
    try:
        with caplog.at_level(logging.WARNING, logger="cdrsync.pipeline"):
            first = pipeline.sync_pass()
        assert first.quarantined == [victim]
        assert [r.levelname for r in caplog.records if victim in r.getMessage()] == ["WARNING"]
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            second = pipeline.sync_pass()
        assert second.found == 0 and second.quarantined == []
        assert not [r for r in caplog.records if victim in r.getMessage()]
        with pipeline.store.connect() as conn:
            [held] = quarantine.entries(conn)
    finally:
        pipeline.close()
    assert (held.callid, held.step) == (victim, step)
    assert held.reason == f"RuntimeError: {step} failed on purpose"
    assert sorted(delivered(planfix)) == sorted(set(external(calls)) - {victim})


# ---- salvage on the real path ------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["duration INT_MAX", "calldate 9999"])
def test_cdr_only_calls_with_junk_times_are_still_sent(env, damage):
    """CDR-only: with `INT_MAX` as its duration a call seemed to end in 2094, and one dated 9999
    never to end, so neither was ever sent (nor said to be anywhere)."""
    pbx_db, planfix, config = env
    calls = list(synth.generate(4, utc_now() - timedelta(minutes=40), seed=38, mean_gap=300,
                                cel=False, mix={"in_answered": 1.0}))
    bad = calls[1]
    for row in bad.cdr:
        if damage == "duration INT_MAX":
            row["duration"] = 2**31 - 1
        else:
            row["calldate"] = NEVER
    synth.insert(pbx_db.admin, [c for c in calls if c is not bad])
    pbx_db.insert_cdr(bad.cdr)
    cfg = config(source={"use_cel": False, "long_every": 0}, schedule={"settle": 0})
    for _ in range(2):  # seen, then quiet: sent
        cdrsync(cfg, "sync", check=True)
    got = delivered(planfix)
    assert sorted(got) == external(calls) and set(got.values()) == {1}
    [event] = [r for r in planfix.received("event") if r.callid == bad.truth.linkedid]
    assert abs(int(event.fields["duration"]) - bad.truth.talk) <= 1
    assert event.fields["status"] == "Success"
