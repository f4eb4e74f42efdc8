"""Discovery of finished calls (the cursor), against a real MariaDB read with a SELECT-only user
and a real SQLite state store. Time is a fake `now` (UTC epoch); nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine

from cdrsync import finder, history
from cdrsync.config import from_dict
from cdrsync.model import ClosedBy
from cdrsync.source.reader import Source
from cdrsync.state import progress
from cdrsync.state.db import metadata
from tests.corpus import CORPUS as CORPUS_DIR

ZONE = ZoneInfo("Europe/Moscow")  # UTC+3: PBX times are local, `now` is UTC
NOW = 1709290800.0  # 2024-03-01 11:00 UTC = 14:00 at the PBX
LOOKBACK = 3600
SETTLE = 60
CEL_SETTLE = 5
GRACE = 1  # [schedule] cdr_grace's default
ORPHAN = 1800
LONG_EVERY = 300


def local(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, ZONE).replace(tzinfo=None)


def config(url: str, use_cel: str = "auto"):
    return from_dict({
        "source": {"url": url, "timezone": "Europe/Moscow", "use_cel": use_cel,
                   "lookback": LOOKBACK, "max_call": 4 * 3600, "long_every": LONG_EVERY,
                   "batch": 3},
        "planfix": {"url": "http://127.0.0.1:1/", "token": "t"},
        "schedule": {"settle": SETTLE, "cel_settle": CEL_SETTLE, "orphan_after": ORPHAN},
    }, env={})


class Call:
    """Rows of one simple call: caller channel `<start>.<n>` dialing a phone `<start>.<n+1>`."""

    counter = 0

    def __init__(self, start: float, duration: int = 30, linkedid: str = "") -> None:
        Call.counter += 2
        self.start, self.duration = int(start), duration
        self.linkedid = linkedid or f"{self.start}.{Call.counter}"
        self.phone = f"{self.start}.{Call.counter + 1}"

    def cdr(self, db, uniqueid: str = "", offset: int = 0, duration: int = 0) -> None:
        uid = uniqueid or self.linkedid
        db.insert_cdr([{"calldate": local(self.start + offset), "uniqueid": uid,
                        "linkedid": self.linkedid, "duration": duration or self.duration,
                        "billsec": 5, "disposition": "ANSWERED", "sequence": Call.counter + offset,
                        "dstchannel": f"PJSIP/101-{uid}"}])

    def cel(self, db, end: bool = True) -> None:
        db.insert_cel(self.cel_rows(end))

    def cel_rows(self, end: bool = True) -> list[dict]:
        """CHAN_START x2 at its start; HANGUP x2 (and LINKEDID_END) at its end."""
        lid, t = self.linkedid, self.start
        rows = [{"eventtype": "CHAN_START", "eventtime": local(t), "uniqueid": lid,
                 "linkedid": lid},
                {"eventtype": "CHAN_START", "eventtime": local(t), "uniqueid": self.phone,
                 "linkedid": lid},
                {"eventtype": "HANGUP", "eventtime": local(t + self.duration),
                 "uniqueid": self.phone, "linkedid": lid},
                {"eventtype": "HANGUP", "eventtime": local(t + self.duration), "uniqueid": lid,
                 "linkedid": lid}]
        if end:
            rows.append({"eventtype": "LINKEDID_END", "eventtime": local(t + self.duration),
                         "uniqueid": lid, "linkedid": lid})
        return rows

    def add(self, db, end: bool = True) -> Call:
        self.cdr(db)
        self.cel(db, end)
        return self


class Pipeline:
    """Stands in for the lead's pipeline: a ledger of handled linkedids, one transaction a pass."""

    def __init__(self, db, tmp_path, use_cel: str = "auto") -> None:
        self.cfg = config(db.ro_url, use_cel)
        self.source = Source.from_config(self.cfg)
        self.store = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
        metadata.create_all(self.store, tables=[progress.cursors, progress.pending, progress.quiet])
        self.delivered: set[str] = set()
        self.sent: list[str] = []
        self.found: list = []  # the calls of the committed discoveries
        self.notes: list[str] = []

    def handled(self, linkedids: Iterable[str]) -> set[str]:
        return set(linkedids) & self.delivered

    def record(self, discovery: finder.Discovery, commit: bool = True) -> list:
        self.notes += discovery.notes
        if commit:
            with self.store.begin() as conn:
                discovery.commit(conn)
            for call in discovery.calls:
                self.delivered |= call.linkedids
                self.sent.append(call.callid)
            self.found += discovery.calls
        return discovery.calls

    def sync(self, now: float, commit: bool = True) -> list:
        """One pass as `pipeline.sync_pass` makes it: a first sync's catch-up, then the pass."""
        gap = [c for d in history.catch_up(self.source, self.store, self.cfg, now, self.handled)
               for c in self.record(d, commit)]
        found = finder.find_finished(self.source, self.store, self.cfg, now, self.handled)
        return gap + self.record(found, commit)

    def backfill(self, since: datetime, until, now: float, batch_calls: int = 2, stop_after=None):
        for n, discovery in enumerate(history.find_history(
                self.source, self.store, self.cfg, since, until, now, self.handled, batch_calls)):
            if stop_after is not None and n >= stop_after:
                return  # killed before recording this step
            self.record(discovery)


def ids(calls) -> list[str]:
    return [c.callid for c in calls]


@pytest.fixture
def cel_pipe(pbx_db, tmp_path):
    pipe = Pipeline(pbx_db, tmp_path)
    yield pipe
    pipe.source.close()


@pytest.fixture
def cdr_pipe(pbx_db, tmp_path):
    pipe = Pipeline(pbx_db, tmp_path, use_cel="false")
    yield pipe
    pipe.source.close()


# ---- CEL mode ---------------------------------------------------------------------------------

def test_cel_first_run_on_months_of_history_starts_at_lookback(pbx_db, cel_pipe):
    old = [Call(NOW - d * 86400).add(pbx_db) for d in range(90, 0, -1)]
    edge = Call(NOW - LOOKBACK - 100, duration=30).add(pbx_db)  # ended before the horizon
    recent = [Call(NOW - 1800).add(pbx_db), Call(NOW - 600).add(pbx_db)]
    fresh = Call(NOW - 32).add(pbx_db)  # ended 2 s ago: its cdr rows may still be on their way
    got = cel_pipe.sync(NOW)  # long-ended calls need no settle time
    assert ids(got) == [c.linkedid for c in recent]
    assert all(c.closed_by is ClosedBy.LINKEDID_END and len(c.cdr) == 1 for c in got)
    assert any("first sync" in n for n in cel_pipe.notes)
    assert cel_pipe.sync(NOW + GRACE / 2) == []  # its cdr row is there: a grace
    assert ids(cel_pipe.sync(NOW + GRACE)) == [fresh.linkedid]
    assert edge.linkedid not in cel_pipe.sent and old[-1].linkedid not in cel_pipe.sent


def test_cel_incremental_passes_and_row_landing_after_the_end(pbx_db, cel_pipe):
    a = Call(NOW - 300).add(pbx_db)
    assert ids(cel_pipe.sync(NOW)) == [a.linkedid]
    assert cel_pipe.sync(NOW + 10) == []
    # LINKEDID_END is there, the cdr row comes a moment later (CDR batch mode, slow ODBC)
    b = Call(NOW - 60)
    b.cel(pbx_db)
    assert cel_pipe.sync(NOW + 20) == []
    assert cel_pipe.sync(NOW + 20 + CEL_SETTLE - 1) == []  # no cdr row yet: waits, up to settle
    b.cdr(pbx_db)
    got = cel_pipe.sync(NOW + 20 + CEL_SETTLE - 0.5)  # the row is there, the grace long over
    assert ids(got) == [b.linkedid] and len(got[0].cdr) == 1 and len(got[0].cel) == 5
    assert cel_pipe.sent == [a.linkedid, b.linkedid]


def test_cel_call_without_cdr_rows_waits_cel_settle_at_most(pbx_db, cel_pipe):
    Call(NOW - 300).add(pbx_db)
    cel_pipe.sync(NOW - 100)  # the cursor is placed
    silent = Call(NOW - 60)
    silent.cel(pbx_db)  # a PBX that writes no cdr (or drops this unanswered call's row)
    assert cel_pipe.sync(NOW) == []
    assert cel_pipe.sync(NOW + CEL_SETTLE - 0.1) == []
    got = cel_pipe.sync(NOW + CEL_SETTLE)
    assert ids(got) == [silent.linkedid] and got[0].cdr == ()


def test_cel_the_grace_after_the_root_cdr_row_brings_the_other_channels_rows(pbx_db, cel_pipe):
    Call(NOW - 300).add(pbx_db)
    cel_pipe.sync(NOW - 100)  # the cursor is placed
    call = Call(NOW - 60)
    call.cel(pbx_db)
    call.cdr(pbx_db)  # the caller's channel: its row is written at its hang-up
    assert cel_pipe.sync(NOW) == []  # complete, the root's row there: CDR_GRACE s more
    call.cdr(pbx_db, uniqueid=call.phone, offset=1)  # the phone's row, a moment behind
    assert cel_pipe.sync(NOW + GRACE - 0.1) == []
    got = cel_pipe.sync(NOW + GRACE)
    assert ids(got) == [call.linkedid]
    assert sorted(r.uniqueid for r in got[0].cdr) == sorted([call.linkedid, call.phone])


def test_a_settling_call_says_when_it_is_ready(pbx_db, cel_pipe):
    def settled_at(now: float):
        found = finder.find_finished(cel_pipe.source, cel_pipe.store, cel_pipe.cfg, now,
                                     cel_pipe.handled)
        cel_pipe.record(found)
        return found.settled_at, ids(found.calls)

    call = Call(NOW - 60).add(pbx_db)
    grace = GRACE  # its cdr row is there: the grace, not cel_settle
    assert settled_at(NOW) == (NOW + grace, [])  # first seen now: ready the grace later
    assert settled_at(NOW + grace / 2) == (NOW + grace, [])  # counted from the first sight
    assert settled_at(NOW + grace) == (None, [call.linkedid])  # nothing left to wait for


def test_cel_many_ends_are_read_in_batches(pbx_db, cel_pipe):
    calls = [Call(NOW - 900 + i).add(pbx_db) for i in range(8)]  # batch = 3 per query
    assert sorted(ids(cel_pipe.sync(NOW))) == sorted(c.linkedid for c in calls)


def test_commit_not_called_finds_the_same_calls_again(pbx_db, cel_pipe):
    a = Call(NOW - 300).add(pbx_db)
    assert ids(cel_pipe.sync(NOW, commit=False)) == [a.linkedid]  # crash before the commit
    assert ids(cel_pipe.sync(NOW + 10)) == [a.linkedid]
    assert cel_pipe.sync(NOW + 20) == []
    assert cel_pipe.sent == [a.linkedid]


def test_cel_call_split_over_two_linkedids_waits_for_both(pbx_db, cel_pipe):
    # a pickup: the phone channel moved from linkedid A to B; A ends first
    a = Call(NOW - 200)
    a.cdr(pbx_db)
    a.cel(pbx_db)
    b_lid = f"{int(NOW - 150)}.900"
    pbx_db.insert_cel([
        {"eventtype": "CHAN_START", "eventtime": local(NOW - 150), "uniqueid": b_lid,
         "linkedid": b_lid},
        {"eventtype": "BRIDGE_ENTER", "eventtime": local(NOW - 150), "uniqueid": a.phone,
         "linkedid": b_lid}])
    cel_pipe.sync(NOW)
    assert cel_pipe.sync(NOW + CEL_SETTLE + 1) == []  # b is still going on
    pbx_db.insert_cel([{"eventtype": "LINKEDID_END", "eventtime": local(NOW + 10),
                        "uniqueid": b_lid, "linkedid": b_lid}])
    cel_pipe.sync(NOW + 20)
    got = cel_pipe.sync(NOW + 20 + CEL_SETTLE)
    assert ids(got) == [a.linkedid] and got[0].linkedids == {a.linkedid, b_lid}


def test_cel_incomplete_call_closed_by_timeout(pbx_db, cel_pipe):
    a = Call(NOW - 200)
    a.add(pbx_db)
    b_lid = f"{int(NOW - 150)}.901"
    pbx_db.insert_cel([{"eventtype": "CHAN_START", "eventtime": local(NOW - 150),
                        "uniqueid": a.phone, "linkedid": b_lid}])  # b never ends
    cel_pipe.sync(NOW)
    assert cel_pipe.sync(NOW + ORPHAN - 200) == []
    got = cel_pipe.sync(NOW + ORPHAN)
    assert ids(got) == [a.linkedid] and got[0].closed_by is ClosedBy.TIMEOUT
    assert any("no LINKEDID_END" in n for n in cel_pipe.notes)


def test_cel_orphan_without_any_linkedid_end(pbx_db, cel_pipe):
    Call(NOW - 7000).add(pbx_db)  # an older normal call keeps auto-detection on CEL
    orphan = Call(NOW - 600)
    orphan.add(pbx_db, end=False)  # Asterisk restarted: no LINKEDID_END ever
    cel_pipe.sync(NOW)
    t = NOW
    sent_at = None
    while t < NOW + ORPHAN + 3 * LONG_EVERY:
        t += 60
        if cel_pipe.sync(t):
            sent_at = t
            break
    assert cel_pipe.sent == [orphan.linkedid]
    assert NOW - 600 + 30 + ORPHAN <= sent_at <= NOW + ORPHAN + 2 * LONG_EVERY
    assert any("no LINKEDID_END at all" in n for n in cel_pipe.notes)


def test_cel_late_linkedid_of_a_sent_call_is_never_sent_again(pbx_db, cel_pipe):
    a = Call(NOW - 300).add(pbx_db)
    assert ids(cel_pipe.sync(NOW)) == [a.linkedid]
    late = f"{int(NOW)}.950"  # a channel of the sent call shows up under a new linkedid
    pbx_db.insert_cel([
        {"eventtype": "CHAN_START", "eventtime": local(NOW), "uniqueid": a.phone, "linkedid": late},
        {"eventtype": "LINKEDID_END", "eventtime": local(NOW), "uniqueid": late, "linkedid": late}])
    assert cel_pipe.sync(NOW + 20) == []
    assert cel_pipe.sync(NOW + 40) == []
    assert cel_pipe.sent == [a.linkedid]
    assert sum("late rows for call" in n for n in cel_pipe.notes) == 1


# ---- CDR-only mode ----------------------------------------------------------------------------

def test_cdr_first_run_starts_at_lookback_and_settles(pbx_db, cdr_pipe):
    for d in range(60, 0, -1):
        Call(NOW - d * 86400).cdr(pbx_db)
    before = Call(NOW - 2 * 3600)  # ended before the horizon, but inside the long-scan window
    before.cdr(pbx_db)
    recent = Call(NOW - 900)
    recent.cdr(pbx_db)
    fresh = Call(NOW - 40)  # ended 10 s ago: more rows may come
    fresh.cdr(pbx_db)
    assert ids(cdr_pipe.sync(NOW)) == [recent.linkedid]  # long over when first seen
    assert cdr_pipe.sync(NOW + SETTLE - 1) == []
    assert ids(cdr_pipe.sync(NOW + SETTLE)) == [fresh.linkedid]
    for t in range(int(NOW + SETTLE + 10), int(NOW + 3 * LONG_EVERY), 50):
        assert cdr_pipe.sync(t) == []
    assert cdr_pipe.sent == [recent.linkedid, fresh.linkedid]


def test_cdr_new_row_restarts_the_quiet_time(pbx_db, cdr_pipe):
    a = Call(NOW - 60, duration=10)
    a.cdr(pbx_db)
    cdr_pipe.sync(NOW)
    a.cdr(pbx_db, uniqueid=a.phone, offset=20, duration=30)  # the call goes on: another leg
    assert cdr_pipe.sync(NOW + SETTLE) == []
    got = cdr_pipe.sync(NOW + 2 * SETTLE)
    assert ids(got) == [a.linkedid] and len(got[0].cdr) == 2
    assert got[0].closed_by is ClosedBy.QUIET


def test_cdr_call_still_ringing_is_not_closed_early(pbx_db, cdr_pipe):
    a = Call(NOW - 30, duration=25)  # its last row ended 5 s ago
    a.cdr(pbx_db)
    cdr_pipe.sync(NOW - 70)
    assert cdr_pipe.sync(NOW) == []  # quiet long enough, but ended < settle ago
    assert ids(cdr_pipe.sync(NOW - 5 + SETTLE)) == [a.linkedid]


def test_cdr_call_longer_than_lookback(pbx_db, cdr_pipe):
    cdr_pipe.sync(NOW)  # first run
    long_call = Call(NOW - 2 * 3600, duration=2 * 3600 - 30)  # started 2 h ago, ended 30 s ago
    long_call.cdr(pbx_db)
    # its second leg lies inside the short window: a short pass must not take it for a call
    long_call.cdr(pbx_db, uniqueid=long_call.phone, offset=2 * 3600 - 200, duration=170)
    short_window = [cdr_pipe.sync(NOW + s) for s in (10, 70, 130)]
    assert short_window == [[], [], []]  # started before lookback: short passes do not judge it
    t, got = NOW + 130, []
    while not got and t < NOW + 3 * LONG_EVERY:
        t += 10
        got = cdr_pipe.sync(t)
    assert ids(got) == [long_call.linkedid] and len(got[0].cdr) == 2
    assert t <= NOW + 2 * LONG_EVERY + 10


def test_cdr_late_row_of_a_sent_call_is_ignored_once(pbx_db, cdr_pipe):
    a = Call(NOW - 300)
    a.cdr(pbx_db)
    assert ids(cdr_pipe.sync(NOW)) == [a.linkedid]
    a.cdr(pbx_db, uniqueid=a.phone, offset=5)
    for s in (70, 140, 210):
        assert cdr_pipe.sync(NOW + s) == []
    assert sum("late rows for call" in n for n in cdr_pipe.notes) == 1


# ---- backfill ---------------------------------------------------------------------------------

@pytest.mark.parametrize("use_cel", ["auto", "false"])
def test_backfill_resumes_and_never_duplicates_sync(pbx_db, tmp_path, use_cel):
    pipe = Pipeline(pbx_db, tmp_path, use_cel)
    days = [Call(NOW - d * 86400 - 3600 * (d % 5)).add(pbx_db) for d in range(10, 0, -1)]
    recent = Call(NOW - 900).add(pbx_db)
    since, until = local(NOW - 11 * 86400), None
    pipe.sync(NOW)
    pipe.sync(NOW + SETTLE)  # the live sync sends the recent call
    assert pipe.sent == [recent.linkedid]
    pipe.backfill(since, until, NOW + SETTLE, batch_calls=3, stop_after=2)  # killed
    first_part = list(pipe.sent)
    assert 2 < len(first_part) < 11
    pipe.backfill(since, until, NOW + SETTLE + 30, batch_calls=3)  # restarted
    assert sorted(pipe.sent) == sorted([c.linkedid for c in days] + [recent.linkedid])
    assert len(pipe.sent) == len(set(pipe.sent))
    assert all(c.linkedid in pipe.sent for c in days)
    with pipe.store.connect() as conn:
        assert history.history_key(since, until) in progress.read_cursors(conn)
    pipe.backfill(since, until, NOW + SETTLE + 60)  # finished range: nothing new
    pipe.sync(NOW + 2 * SETTLE)
    assert len(pipe.sent) == 11
    pipe.source.close()


def test_backfill_closed_range(pbx_db, cel_pipe):
    calls = [Call(NOW - d * 86400).add(pbx_db) for d in (5, 4, 3, 2)]
    cel_pipe.backfill(local(NOW - 4.5 * 86400), local(NOW - 2.5 * 86400), NOW, batch_calls=10)
    assert cel_pipe.sent == [calls[1].linkedid, calls[2].linkedid]
    assert all("already" not in n for n in cel_pipe.notes)


# ---- backfill: cel streamed by id range ----------------------------------------------------------

def same_as_per_call(pipe: Pipeline, calls) -> None:
    """Each call the stream put together holds exactly the rows the per-call lookups find."""
    for call in calls:
        events = finder.expand(pipe.source, call.linkedids)
        assert {e.linkedid for e in events} == call.linkedids
        assert [e.id for e in call.cel] == [e.id for e in events]
        [alone] = finder.with_cdr(pipe.source, [replace(call, cdr=())], ZONE)
        assert sorted(r.key for r in call.cdr) == sorted(r.key for r in alone.cdr)


def count_per_call(monkeypatch) -> list[str]:
    """The linkedids `expand` is asked about from now on (the per-call way)."""
    seeds: list[str] = []
    expand = finder.expand

    def counting(source, linkedids):
        seeds.extend(sorted(linkedids))
        return expand(source, linkedids)

    monkeypatch.setattr(history, "expand", counting)  # the backfill's per-call way
    return seeds


@pytest.fixture
def streamed(cel_pipe, monkeypatch):
    """Backfill with tiny cel chunks, recording which calls took the per-call way."""
    monkeypatch.setattr(history, "HISTORY_EVENTS", 3)  # every call is cut by chunk ends
    cel_pipe.per_call = count_per_call(monkeypatch)
    return cel_pipe


def test_backfill_stream_calls_cut_by_chunk_ends(pbx_db, streamed):
    lead = Call(NOW - 3 * 86400).add(pbx_db)  # the range starts here: 2 h of per-call margin
    calls = [Call(NOW - 2 * 86400 + 50 * i, duration=40).add(pbx_db) for i in range(6)]
    for call in calls[::2]:  # a second cdr leg (the phone's), written at the call's end
        call.cdr(pbx_db, uniqueid=call.phone, offset=3)
    streamed.backfill(local(NOW - 3 * 86400 - 60), None, NOW, batch_calls=2)
    assert streamed.sent == [lead.linkedid] + [c.linkedid for c in calls]
    assert streamed.per_call == [lead.linkedid]  # only the call at the start of the range
    assert [len(c.cdr) for c in streamed.found[1:]] == [2, 1, 2, 1, 2, 1]
    same_as_per_call(streamed, streamed.found)
    assert all(c.closed_by is ClosedBy.HISTORY for c in streamed.found)


def test_backfill_stream_transfer_joins_linkedids_across_chunks(pbx_db, streamed):
    Call(NOW - 3 * 86400).add(pbx_db)
    t = NOW - 2 * 86400
    a = Call(t, duration=30)
    a.add(pbx_db)  # a ends (LINKEDID_END) ...
    b_lid, c_lid = f"{int(t + 20)}.700", f"{int(t + 25)}.701"
    pbx_db.insert_cel([  # ... and its phone shows up in b a moment later (a pickup)
        {"eventtype": "CHAN_START", "eventtime": local(t + 20), "uniqueid": b_lid,
         "linkedid": b_lid},
        {"eventtype": "BRIDGE_ENTER", "eventtime": local(t + 40), "uniqueid": a.phone,
         "linkedid": b_lid},
        {"eventtype": "CHAN_START", "eventtime": local(t + 25), "uniqueid": c_lid,
         "linkedid": c_lid},
        {"eventtype": "ATTENDEDTRANSFER", "eventtime": local(t + 45), "uniqueid": c_lid,
         "linkedid": c_lid, "extra": f'{{"transferee_channel_uniqueid":"{b_lid}"}}'},
        {"eventtype": "LINKEDID_END", "eventtime": local(t + 50), "uniqueid": b_lid,
         "linkedid": b_lid},
        {"eventtype": "LINKEDID_END", "eventtime": local(t + 55), "uniqueid": c_lid,
         "linkedid": c_lid}])
    later = Call(t + 600).add(pbx_db)
    streamed.backfill(local(NOW - 3 * 86400 - 60), None, NOW, batch_calls=1)
    joined = [c for c in streamed.found if a.linkedid in c.linkedids]
    assert len(joined) == 1 and joined[0].linkedids == {a.linkedid, b_lid, c_lid}
    assert joined[0].callid == a.linkedid and len(joined[0].cel) == 11
    assert later.linkedid in streamed.sent and len(streamed.sent) == 3
    assert a.linkedid not in streamed.per_call
    same_as_per_call(streamed, streamed.found)


def test_backfill_stream_calls_straddling_both_bounds(pbx_db, streamed):
    before = Call(NOW - 2 * 86400 - 100, duration=200).add(pbx_db)  # starts before `since`
    inside = [Call(NOW - 86400 - 7200 + 600 * i).add(pbx_db) for i in range(3)]
    after = Call(NOW - 86400 - 30, duration=200).add(pbx_db)  # ends after `until`
    streamed.backfill(local(NOW - 2 * 86400), local(NOW - 86400), NOW, batch_calls=2)
    assert streamed.sent == [before.linkedid] + [c.linkedid for c in inside]
    same_as_per_call(streamed, streamed.found)
    assert len(streamed.found[0].cel) == 5  # its events before `since` too
    assert after.linkedid not in streamed.sent
    assert streamed.sync(NOW) == []  # the live sync's range starts later
    streamed.backfill(local(NOW - 86400), None, NOW, batch_calls=2)
    assert streamed.sent[-1] == after.linkedid and len(streamed.sent) == 5


def test_backfill_stream_restarts_from_the_cursor_mid_range(pbx_db, streamed):
    start = NOW - 3 * 86400
    calls = [Call(start + 1800 * i, duration=20 + 5 * (i % 4)) for i in range(12)]
    long_call = Call(start + 1800 * 4 + 60, duration=4 * 1800)  # spans the restart point
    long_call.cdr(pbx_db)
    for i, call in enumerate(calls):  # cel ids in time order, as the PBX writes them
        call.add(pbx_db)
        if i == 4:
            pbx_db.insert_cel(long_call.cel_rows()[:2])
        if i == 8:
            pbx_db.insert_cel(long_call.cel_rows()[2:])
    since = local(start - 60)
    streamed.backfill(since, None, NOW, batch_calls=3, stop_after=2)  # killed
    first = list(streamed.sent)
    with streamed.store.connect() as conn:
        cursor = int(progress.read_cursor(conn, history.history_key(since, None)))
    assert first == [c.linkedid for c in calls[:6]]
    long_events = [e.id for e in finder.expand(streamed.source, {long_call.linkedid})]
    assert long_events[0] < cursor < long_events[-1]  # the restart cuts the long call
    streamed.found = []
    streamed.backfill(since, None, NOW + 60, batch_calls=3)  # restarted
    assert sorted(streamed.sent) == sorted(c.linkedid for c in calls + [long_call])
    assert len(streamed.sent) == len(set(streamed.sent))
    [again] = [c for c in streamed.found if c.callid == long_call.linkedid]
    assert len(again.cel) == 5 and len(again.cdr) == 1
    same_as_per_call(streamed, streamed.found)


# ---- show -------------------------------------------------------------------------------------

def test_rows_for_callid(pbx_db, cel_pipe):
    a = Call(NOW - 300).add(pbx_db)
    a.cdr(pbx_db, uniqueid=a.phone, offset=2)
    call = finder.rows_for_callid(cel_pipe.source, a.linkedid, ZONE)
    assert call is not None and call.callid == a.linkedid and len(call.cdr) == 2
    assert call.closed_by is ClosedBy.LINKEDID_END
    assert finder.rows_for_callid(cel_pipe.source, "1.1") is None


# ---- the real corpus ----------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [7, 5000])
def test_corpus_every_scripted_call_found_once_with_its_linkedids(pbx_db, tmp_path, monkeypatch,
                                                                  chunk):
    """The 29 calls of a real Asterisk 20 (transfers included) come out as 29 calls whose
    linkedids are exactly those the truth files list, both in the live sync and in a backfill
    that streams cel in chunks of `chunk` events (no clock slack: the PBX ran in UTC)."""
    monkeypatch.setattr(history, "HISTORY_EVENTS", chunk)
    monkeypatch.setattr(history, "STREAM_SLACK", 0)
    import json

    corpus = CORPUS_DIR
    truth = []
    for path in sorted((corpus / "truth").glob("*.json")):
        data = json.loads(path.read_text())
        truth += data if isinstance(data, list) else [data]  # s17: two concurrent calls
    # s17 holds two concurrent calls whose scenario lists both linkedids; the others one call each
    expected = {t["linkedid"]: frozenset(t["all_linkedids_in_scenario"]) for t in truth
                if len(t["all_linkedids_in_scenario"]) == 1 or "transfer" in t["scenario"]}
    callids = {t["linkedid"] for t in truth}
    assert len(callids) == len(truth) == 29
    pbx_db.load_dump(corpus / "asteriskcdrdb-cdr-cel.sql")
    pipe = Pipeline(pbx_db, tmp_path)
    pipe.cfg = from_dict({**_raw(pbx_db.ro_url), "source": {
        **_raw(pbx_db.ro_url)["source"], "timezone": "UTC", "batch": 500}}, env={})
    end = 1795698372.0 + 10  # the last event of the dump, plus a little (the PBX ran in UTC)
    got = pipe.sync(end) + pipe.sync(end + CEL_SETTLE)  # the last calls settle first
    assert sorted(c.callid for c in got) == sorted(callids)
    assert all(c.linkedids == expected.get(c.callid, {c.callid}) and c.cdr and c.cel for c in got)
    (tmp_path / "h").mkdir()
    backfill = Pipeline(pbx_db, tmp_path / "h")
    backfill.cfg = pipe.cfg
    per_call = count_per_call(monkeypatch)
    backfill.backfill(datetime(2026, 11, 26), None, end + 7200, batch_calls=5)
    assert per_call == []  # every call came whole out of the stream
    assert sorted(backfill.sent) == sorted(pipe.sent)
    assert len(backfill.sent) == len(set(backfill.sent))

    def rows(call):
        return (call.linkedids, [e.id for e in call.cel], sorted(r.key for r in call.cdr))

    assert {c.callid: rows(c) for c in backfill.found} == {c.callid: rows(c) for c in got}
    pipe.source.close()
    backfill.source.close()


def _raw(url: str) -> dict:
    return {"source": {"url": url, "timezone": "UTC", "lookback": LOOKBACK, "max_call": 14400,
                       "long_every": LONG_EVERY, "batch": 3},
            "planfix": {"url": "http://127.0.0.1:1/", "token": "t"},
            "schedule": {"settle": SETTLE, "cel_settle": CEL_SETTLE, "orphan_after": ORPHAN}}
