"""One poisoned call costs that call only: the real `sync` and `backfill` commands over a real
MariaDB (SELECT-only user) and the loopback Planfix, with good calls around the poison.

Rows are FreePBX 17 / Asterisk 20 calls from `tests/synth.py` (shapes of the real Asterisk 20
corpus, ../shared/corpus/asterisk-20.20.1), each poisoned the way the issue saw it in the field:
times at the end of the calendar (`9999-12-31`, DATETIME's maximum, the "never" placeholder of
hand-made tables), a linkedid whose epoch no calendar holds, a lonely `LINKEDID_END`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

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
