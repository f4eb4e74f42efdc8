"""Grouping rows into calls: a union-find over linkedids (pure)."""

from __future__ import annotations

import random
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from cdrsync.grouping import (
    CallAssembler,
    assembled_calls,
    group_calls,
    transfer_uniqueids,
)
from cdrsync.linkedids import linkedid_epoch, linkedid_key
from cdrsync.model import CdrRow, CelEvent, ClosedBy

T = datetime(2024, 3, 1, 10)


def cdr(uniqueid: str, linkedid: str, seq: int = 0) -> CdrRow:
    return CdrRow(calldate=T, uniqueid=uniqueid, linkedid=linkedid, sequence=seq)


def cel(id_: int, uniqueid: str, linkedid: str, eventtype: str = "CHAN_START",
        extra: str = "") -> CelEvent:
    return CelEvent(id=id_, eventtype=eventtype, eventtime=T, uniqueid=uniqueid,
                    linkedid=linkedid, extra=extra)


def test_linkedid_key_is_numeric_not_string():
    ids = ["1709280858.10", "1709280858.9", "1709280857.100", "pbx-1-1709280858.2", "abc-uuid"]
    assert sorted(ids, key=linkedid_key) == [
        "1709280857.100", "pbx-1-1709280858.2", "1709280858.9", "1709280858.10", "abc-uuid"]


def test_an_epoch_no_calendar_holds_is_no_time():
    """`99999999999999.1` (seen in the field) and ids of thousands of digits (a TEXT `extra`) sort
    like other ids but carry no time, as a UUID carries none; they never raise."""
    assert linkedid_epoch("pbx-1-1709280858.2") == 1709280858
    assert linkedid_epoch("99999999999999.1") is None
    huge = "9" * 5000 + ".1"
    assert linkedid_epoch(huge) is None
    assert sorted(["99999999999999.1", "1709280858.2", huge], key=linkedid_key)[0] == "1709280858.2"


def test_transfer_uniqueids_reads_truncated_extra():
    full = ('{"bridge1_id":"b1","channel2_name":"PJSIP/104-1","channel2_uniqueid":"1.5",'
            '"bridge2_id":"b2","transferee_channel_name":"PJSIP/carrier-1",'
            '"transferee_channel_uniqueid":"1.1","transfer_target_channel_uniqueid":"1.6"}')
    event = cel(9, "1.2", "1.1", "ATTENDEDTRANSFER", full)
    assert transfer_uniqueids(event) == {"1.5", "1.1", "1.6"}
    cut = cel(9, "1.2", "1.1", "ATTENDEDTRANSFER", full[:150])  # varchar(512) cut mid-value
    assert transfer_uniqueids(cut) == {"1.5"}
    assert transfer_uniqueids(cel(9, "1.2", "1.1", "HANGUP", full)) == set()


def test_shared_channel_joins_linkedids_and_callid_is_smallest():
    # a pickup: channel 100.3 appears under linkedid 100.9 then under 100.10
    rows = [cdr("100.9", "100.9"), cdr("100.10", "100.10")]
    events = [cel(1, "100.3", "100.10"), cel(2, "100.3", "100.9"), cel(3, "200.1", "200.1")]
    calls = group_calls(rows, events)
    assert [c.callid for c in calls] == ["100.9", "200.1"]
    assert calls[0].linkedids == {"100.9", "100.10"}
    assert len(calls[0].cdr) == 2 and [e.id for e in calls[0].cel] == [1, 2]


def test_transfer_extra_joins_linkedids():
    events = [cel(1, "1.1", "1.1"), cel(2, "2.1", "2.1"),
              cel(3, "1.1", "1.1", "BLINDTRANSFER", '{"transferee_channel_uniqueid":"2.1"}')]
    calls = group_calls([], events)
    assert len(calls) == 1 and calls[0].linkedids == {"1.1", "2.1"}


def test_transitive_chain_is_one_call():
    # A-B share a channel, B-C share another: one call even though A and C share nothing.
    events = [cel(1, "u1", "3.1"), cel(2, "u1", "3.2"), cel(3, "u2", "3.2"), cel(4, "u2", "3.3")]
    calls = group_calls([], events, ClosedBy.TIMEOUT)
    assert len(calls) == 1 and calls[0].callid == "3.1" and calls[0].closed_by is ClosedBy.TIMEOUT


def test_duplicates_from_overlapping_reads_are_dropped():
    calls = group_calls([cdr("1.1", "1.1")] * 2, [cel(1, "1.1", "1.1")] * 2)
    assert len(calls[0].cdr) == 1 and len(calls[0].cel) == 1


def test_rows_alike_but_for_other_columns_keep_one_order():
    """Rows with the same time, sequence, uniqueid and channels are ordered by their other
    columns (their repr), whatever order they were read in."""

    rows = [cdr("1.1", "1.1")._replace(dst=dst, disposition=disp)
            for dst, disp in (("102", "BUSY"), ("101", "ANSWERED"), ("101", "BUSY"))]
    expected = sorted(rows, key=repr)
    for order in (rows, rows[::-1], rows[1:] + rows[:1]):
        assert list(group_calls(order, [])[0].cdr) == expected


def _world(seed: int):
    rnd = random.Random(seed)
    rows, events, next_id = [], [], 1
    for n in range(rnd.randint(1, 8)):
        base = f"{1700000000 + n}"
        linkedids = [f"{base}.{k}" for k in range(rnd.randint(1, 3))]
        for lid in linkedids:
            for k in range(rnd.randint(1, 3)):
                uid = f"{lid}{k}" if k else lid
                rows.append(cdr(uid, lid, k))
                events.append(cel(next_id, uid, lid))
                next_id += 1
        for a, b in zip(linkedids, linkedids[1:]):  # a channel moved from a to b
            events.append(cel(next_id, a, b))
            next_id += 1
    return rows, events


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), shuffle=st.randoms(use_true_random=False))
def test_grouping_is_order_independent(seed, shuffle):
    rows, events = _world(seed)
    expected = group_calls(rows, events)
    rows2, events2 = rows[:], events[:]
    shuffle.shuffle(rows2)
    shuffle.shuffle(events2)
    got = group_calls(rows2, events2)
    assert [(c.callid, c.linkedids, c.cdr, c.cel) for c in got] == \
        [(c.callid, c.linkedids, c.cdr, c.cel) for c in expected]
    # one call per generated conversation, with exactly its linkedids, named by the smallest
    assert len(got) == len({r.linkedid.split(".")[0] for r in rows})
    for call in got:
        assert call.callid == min(call.linkedids, key=linkedid_key)
        assert {lid.split(".")[0] for lid in call.linkedids} == {call.callid.split(".")[0]}


def _local_row(when: str, channel: str, dstchannel: str, uniqueid: str, duration: int = 30):
    from datetime import datetime

    from cdrsync.model import CdrRow

    return CdrRow(calldate=datetime.fromisoformat(when), channel=channel, dstchannel=dstchannel,
                  duration=duration, uniqueid=uniqueid, linkedid=uniqueid)


def test_without_linkedid_the_two_halves_of_a_local_channel_make_one_call():
    """Asterisk 1.8 queue: the trunk row dials Local/101@from-queue-1a2b;1, the ;2 half rings the
    phone under its own uniqueid (shape of the mango-nextor 2013 rows)."""
    trunk = _local_row("2013-07-22 10:00:00", "SIP/trunk-0001", "Local/101@from-queue-1a2b;1",
                       "1374487200.1", duration=60)
    member = _local_row("2013-07-22 10:00:05", "Local/101@from-queue-1a2b;2", "SIP/101-0002",
                        "1374487205.3", duration=40)
    # the same Local name, reused an hour later by another call, must not join
    later = _local_row("2013-07-22 11:00:00", "Local/101@from-queue-1a2b;2", "SIP/101-0009",
                       "1374490800.7")
    calls = group_calls([later, member, trunk], [])
    assert [(c.callid, len(c.cdr)) for c in calls] == [("1374487200.1", 2), ("1374490800.7", 1)]


def _stream(rnd: random.Random) -> tuple[list[CdrRow], list[CelEvent]]:
    """Events in id order of a few calls whose channels move between linkedids and whose
    transfer events name channels of their own, of other calls, or never seen ones (the links
    of `_world` and of `test_transfer_extra_joins_linkedids`, interleaved)."""
    lids = [f"{1700000000 + n}.{n}" for n in range(rnd.randint(1, 6))]
    uids = [f"{lid}{k}" for lid in lids for k in range(rnd.randint(1, 3))] + ["9.9", "9.8"]
    events, rows = [], []
    for id_ in range(1, rnd.randint(2, 40)):
        lid, uid = rnd.choice(lids), rnd.choice(uids)
        kind = rnd.choice(["CHAN_START", "ANSWER", "BLINDTRANSFER", "ATTENDEDTRANSFER"])
        extra = (f'{{"transferee_channel_uniqueid":"{rnd.choice(uids)}",'
                 f'"channel2_uniqueid":"{rnd.choice(uids)}"}}' if "TRANSFER" in kind else "")
        events.append(cel(id_, uid, lid, kind, extra))
        if rnd.random() < 0.3:
            rows.append(cdr(uid, rnd.choice(lids), id_))
    ended = len(events)
    for lid in lids:  # every linkedid ends, so every call is complete at the end
        ended += 1
        events.append(cel(ended, lid, lid, "LINKEDID_END"))
    return rows * rnd.randint(1, 2), events  # a row read twice is dropped, as group_calls does


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 1_000_000))
def test_an_assembled_call_is_what_group_calls_makes_of_its_rows(seed):
    """`assembled_calls` skips grouping again what the assembler grouped: it must give exactly
    what `group_calls` gives for the call's events and the cdr rows that share an id with it."""
    rows, events = _stream(random.Random(seed))
    assembler = CallAssembler()
    for event in events:
        assembler.add(event)
    done = assembler.take_complete(None)
    assert done and not assembler.calls()
    for call in done:
        ids = call.linkedids | call.uniqueids
        mine = [r for r in rows if r.linkedid in ids or r.uniqueid in ids]
        assert assembled_calls(call, mine, ClosedBy.HISTORY) == \
            group_calls(mine, call.events, ClosedBy.HISTORY)
