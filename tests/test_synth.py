"""The synthetic PBX (tests/synth.py) is deterministic, faithful to the FreePBX schema and to the
real rows, and `interpret` agrees with the truth of every generated call.

The last test is the one that matters: the generator's templates were copied from the real rows of
../shared/corpus/asterisk-20.20.1, so interpretation agreeing with the truth on thousands of varied
calls shows both that the generator is realistic and that interpretation is consistent.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cdrsync.config import PbxConfig
from cdrsync.grouping import group_calls
from cdrsync.interpret import interpret
from cdrsync.source.rows import cdr_row, cel_event
from tests import synth

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 3, 27, 9, 0)  # two days before the EU spring DST change


def _schema_columns(table: str) -> set[str]:
    sql = (ROOT / "sql" / "asteriskcdrdb.sql").read_text(encoding="utf-8")
    body = re.search(rf"CREATE TABLE `{table}` \((.*?)\) ENGINE", sql, re.S)
    assert body, f"sql/asteriskcdrdb.sql has no table {table}"
    return set(re.findall(r"^\s*`(\w+)`", body.group(1), re.M))


def _rows(call: synth.SynthCall, first_id: int = 1):
    cdr = [cdr_row(r) for r in call.cdr]
    cel = [cel_event(dict(e, id=first_id + i)) for i, e in enumerate(call.cel)]
    return cdr, cel


def test_same_seed_same_rows_other_seed_other_rows():
    a = list(synth.generate(300, START, seed=5))
    b = list(synth.generate(300, START, seed=5))
    c = list(synth.generate(300, START, seed=6))
    assert [(x.cdr, x.cel, x.truth) for x in a] == [(x.cdr, x.cel, x.truth) for x in b]
    assert [x.cdr for x in a] != [x.cdr for x in c]


def test_every_flow_appears_in_realistic_proportions():
    flows = Counter(c.truth.flow for c in synth.generate(5000, START, seed=2))
    assert set(flows) == set(synth.FLOWS)
    total = sum(synth.DEFAULT_MIX.values())
    for flow, weight in synth.DEFAULT_MIX.items():
        expected = 5000 * weight / total
        assert abs(flows[flow] - expected) < 5 * expected ** 0.5 + 5, (flow, flows[flow], expected)


def test_rows_have_exactly_the_freepbx_columns():
    cdr_cols, cel_cols = _schema_columns("cdr"), _schema_columns("cel")
    for call in synth.generate(400, START, seed=3):
        for row in call.cdr:
            assert set(row) == cdr_cols
        for event in call.cel:
            assert set(event) == cel_cols - {"id"}  # the database numbers the events


def test_row_shapes_follow_the_real_rows():
    uid = re.compile(r"^\d{10}\.\d+$")
    for call in synth.generate(2000, START, seed=4):
        t = call.truth
        cel = call.cel
        assert cel[0]["eventtype"] == "CHAN_START"
        assert cel[-1]["eventtype"] == "LINKEDID_END"
        assert [e["eventtime"] for e in cel] == sorted(e["eventtime"] for e in cel)
        assert {e["linkedid"] for e in cel} == {t.linkedid} == {r["linkedid"] for r in call.cdr}
        started = {e["uniqueid"] for e in cel if e["eventtype"] == "CHAN_START"}
        ended = [e["uniqueid"] for e in cel if e["eventtype"] == "CHAN_END"]
        assert sorted(ended) == sorted(started), "every channel starts and ends once"
        for e in cel:
            assert uid.match(e["uniqueid"]) and e["uniqueid"] in started
            if e["eventtype"] == "HANGUP":
                assert set(eval_json(e["extra"])) == {"hangupcause", "hangupsource", "dialstatus"}
            if e["eventtype"].startswith("BRIDGE_"):
                assert "bridge_id" in eval_json(e["extra"])
        for row in call.cdr:
            assert row["disposition"] in ("ANSWERED", "NO ANSWER", "BUSY", "FAILED")
            assert 0 <= row["billsec"] <= row["duration"]
            assert row["disposition"] == "ANSWERED" or row["billsec"] == 0 or \
                row["lastapp"] == "Queue"  # the queue answered the caller: billsec runs
            assert len(row["lastdata"]) <= 80
        if t.direction == "inbound":
            assert any(r["channel"].startswith("PJSIP/carrier-") for r in call.cdr)
        assert t.start <= t.end


def eval_json(text: str) -> dict:
    import json

    return json.loads(text)


def test_uniqueid_epoch_is_utc_of_the_channel_start_across_dst():
    zone = "Europe/Berlin"
    for call in synth.generate(3000, datetime(2026, 3, 28, 20, 0), seed=9, zone=zone,
                               mean_gap=60):
        for e in call.cel:
            if e["eventtype"] == "CHAN_START":
                aware = e["eventtime"].replace(tzinfo=ZoneInfo(zone))
                assert synth.utc_epoch(e["uniqueid"]) == int(aware.timestamp())
    assert call.truth.start > datetime(2026, 3, 29, 3, 0), "the run crossed the DST change"


def test_calls_overlap_and_landing_order_interleaves_them():
    calls = list(synth.generate(500, START, seed=1))
    overlapping = sum(1 for a, b in zip(calls, calls[1:]) if b.truth.start < a.truth.end)
    assert overlapping > 50
    landed = list(synth.landing_order(calls))
    assert len(landed) == sum(len(c.cdr) + len(c.cel) for c in calls)
    cel_times = [row["eventtime"] for table, row in landed if table == "cel"]
    assert cel_times == sorted(cel_times)
    seen = [row["linkedid"] for table, row in landed if table == "cel"]
    switches = sum(1 for a, b in zip(seen, seen[1:]) if a != b)
    assert switches > len(calls), "events of overlapping calls are interleaved"


def test_cdr_only_calls_have_no_events():
    calls = list(synth.generate(50, START, seed=1, cel=False))
    assert all(c.cdr and not c.cel for c in calls)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Moscow"])
def test_interpretation_agrees_with_the_truth_of_every_call(zone):
    pbx = PbxConfig()
    mismatches = []
    next_id = 1
    calls = list(synth.generate(3000, START - timedelta(days=1), seed=11, zone=zone))
    for call in calls:
        cdr, cel = _rows(call, next_id)
        next_id += len(cel)
        [rows] = group_calls(cdr, cel)
        got = interpret(rows, pbx, ZoneInfo(zone))
        t = call.truth
        want = (t.direction, t.status, t.answered if t.direction != "outbound" else "", t.ext)
        have = (got.direction.value, got.status.value,
                got.answered_by if t.direction != "outbound" else "", got.ext)
        if have != want or abs(got.duration - t.talk) > 1 or got.callid != t.linkedid \
                or list(got.rung) != list(t.rung):
            mismatches.append(f"{t.flow} {t.linkedid}: want {want} talk {t.talk} rung {t.rung}; "
                              f"got {have} talk {got.duration} rung {got.rung}")
    assert not mismatches, f"{len(mismatches)} of {len(calls)}:\n" + "\n".join(mismatches[:20])


def test_cdr_only_interpretation_agrees_on_direction_status_and_answer():
    """Without CEL (Asterisk 13/14 setups without cel), the rows alone still tell the story."""
    pbx = PbxConfig()
    mismatches = []
    calls = list(synth.generate(2000, START, seed=12, cel=False))
    for call in calls:
        cdr, _ = _rows(call)
        [rows] = group_calls(cdr, [])
        got = interpret(rows, pbx, ZoneInfo("UTC"))
        t = call.truth
        want = (t.direction, t.status, t.answered if t.direction != "outbound" else "")
        have = (got.direction.value, got.status.value,
                got.answered_by if t.direction != "outbound" else "")
        if have != want:
            mismatches.append(f"{t.flow} {t.linkedid}: want {want}; got {have}")
    assert not mismatches, f"{len(mismatches)} of {len(calls)}:\n" + "\n".join(mismatches[:20])


def test_insert_loads_every_row_in_landing_order(pbx_db):
    calls = list(synth.generate(300, START, seed=13))
    n_cdr, n_cel = synth.insert(pbx_db.admin, calls, batch=1000)
    assert n_cdr == sum(len(c.cdr) for c in calls)
    assert n_cel == sum(len(c.cel) for c in calls)
    from sqlalchemy import text

    with pbx_db.admin.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM cdr")).scalar_one() == n_cdr
        events = conn.execute(text("SELECT eventtime, eventtype, linkedid FROM cel ORDER BY id")
                              ).all()
    assert len(events) == n_cel
    assert [e.eventtime for e in events] == sorted(e.eventtime for e in events)
    ends = [e.linkedid for e in events if e.eventtype == "LINKEDID_END"]
    assert sorted(ends) == sorted(c.truth.linkedid for c in calls)
