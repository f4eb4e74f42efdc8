"""What damaged rows still allow (pure): a bad calldate read from CEL, a duration no call has
read from the rest of the call, a call without any usable time started at its callid's epoch,
each with a reason line.

Rows: FreePBX 17 / Asterisk 20 calls from tests/synth.py (shapes of the real Asterisk 20 corpus,
../shared/corpus/asterisk-20.20.1), damaged the way the issue planted them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from cdrsync.grouping import group_calls
from cdrsync.interpret import interpret
from cdrsync.model import CallRows
from cdrsync.salvage import read_call
from cdrsync.source.rows import cdr_row, cel_event
from cdrsync.timeconv import LONGEST_CALL
from tests import synth
from tests.planfix_stub import stub_config

START = datetime(2026, 2, 2, 9, 0)
CFG = stub_config(source={"timezone": "UTC"})
INT_MAX = 2**31 - 1


def rows_of(call: synth.SynthCall, **cdr_values) -> CallRows:
    cdr = [cdr_row({**r, **cdr_values}) for r in call.cdr]
    cel = [cel_event({**e, "id": i + 1}) for i, e in enumerate(call.cel)]
    [rows] = group_calls(cdr, cel)
    return rows


def test_good_rows_are_read_exactly_as_interpretation_reads_them():
    rows = rows_of(synth.one("in_answered", START, seed=3))
    assert read_call(rows, CFG) == interpret(rows, CFG.pbx, CFG.source.zone)


def test_a_zero_calldate_with_an_absurd_duration_is_read_from_cel():
    call = synth.one("in_answered", START, seed=4, cel=True)
    good = read_call(rows_of(call), CFG)
    damaged = rows_of(call, calldate="0000-00-00 00:00:00", duration=INT_MAX)
    assert all(r.calldate is None for r in damaged.cdr)
    got = read_call(damaged, CFG)
    assert (got.direction, got.status, got.ext, got.duration, got.start) == (
        good.direction, good.status, good.ext, good.duration, good.start)
    assert any("no usable calldate; read from CEL" in r for r in got.reasons), got.reasons
    assert any(f"duration {INT_MAX} s is no call's" in r for r in got.reasons), got.reasons


def test_cdr_only_an_absurd_duration_is_read_from_billsec_not_decades_of_call():
    call = synth.one("in_answered", START, seed=5, cel=False)
    good = read_call(rows_of(call), CFG)
    got = read_call(rows_of(call, duration=INT_MAX), CFG)
    assert got.end < good.start.replace(year=good.start.year + 1), "an end decades away"
    assert (got.status, got.ext, got.duration) == (good.status, good.ext, good.duration)
    assert any("read as" in r and "billsec" in r for r in got.reasons), got.reasons


def test_a_negative_billsec_and_one_longer_than_its_row_are_cut():
    call = synth.one("in_answered", START, seed=6, cel=False)
    for billsec, expect in ((-5, 0), (10**9, None)):
        got = read_call(rows_of(call, billsec=billsec), CFG)
        assert 0 <= got.duration <= LONGEST_CALL
        assert expect is None or got.duration == expect
        assert any(f"billsec {billsec} s does not fit" in r for r in got.reasons), got.reasons


def test_a_call_without_any_usable_time_starts_at_its_callid():
    call = synth.one("in_answered", START, seed=7)
    rows = rows_of(call)
    untimed = replace(rows, cel=tuple(e._replace(eventtime=None) for e in rows.cel),
                      cdr=tuple(r._replace(calldate=None) for r in rows.cdr))
    assert interpret(untimed, CFG.pbx, CFG.source.zone).start is None
    got = read_call(untimed, CFG)
    epoch = int(call.truth.linkedid.split(".")[0])
    assert got.start == datetime.fromtimestamp(epoch, timezone.utc)
    assert any("read from the callid" in r for r in got.reasons)
    assert any("carry no usable time" in r for r in got.reasons)


def test_a_talk_time_no_call_has_is_clamped_with_a_reason():
    """The PBX clock jumped a century between the answer and the hang-up."""
    call = synth.one("in_answered", START, seed=8)
    for event in call.cel:
        if event["eventtype"] in ("BRIDGE_EXIT", "HANGUP", "CHAN_END", "LINKEDID_END"):
            event["eventtime"] = event["eventtime"].replace(year=2126)
    rows = rows_of(call)
    assert interpret(rows, CFG.pbx, CFG.source.zone).duration > LONGEST_CALL
    got = read_call(rows, CFG)
    assert got.duration == LONGEST_CALL
    assert any("is no call's (a clock jump in the rows?)" in r for r in got.reasons)


def test_cdr_only_a_row_without_a_usable_calldate_is_dated_by_its_uniqueid():
    """No CEL to ask: the epoch inside the uniqueid is when Asterisk created the channel, which
    is when its first row starts, so the talk time is read right again."""
    call = synth.one("in_answered", START, seed=9, cel=False)
    good = read_call(rows_of(call), CFG)
    got = read_call(rows_of(call, calldate="9999-12-31 23:59:59"), CFG)
    assert (got.status, got.ext, got.duration) == (good.status, good.ext, good.duration)
    assert abs((got.start - good.start).total_seconds()) <= 1
    assert any("read from its uniqueid" in r for r in got.reasons), got.reasons
