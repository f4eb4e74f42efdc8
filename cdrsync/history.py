"""Backfill: the calls between two PBX-local times, found the way a live pass finds them, but
streamed in bulk.

CEL mode streams `cel` by id range from the id where `since` begins (a binary search over the
primary key: `eventtime` has no index) and `cdr` by a calldate window kept just ahead of it;
calls are grouped in memory (`grouping.CallAssembler`) and forgotten once handed out, so memory
stays flat however long the range. A call the stream may not hold whole (straddling `since`, the
restart cursor or `until`, or older than `max_call`) is read the live way instead
(`finder.expand` + `finder.with_cdr`). CDR-only mode walks `calldate` in one-hour chunks from
one row to the next: an empty stretch, however long, costs one probe of the calldate index. So
the cost follows the rows found, not the calendar given (`--since 2000-01-01` costs what the
first row's day does); in CEL mode the id range does that by itself.

The position is a cursor named by (since, until); each Discovery's `commit` moves it in the
caller's ledger transaction, so a stopped backfill continues where it was, nothing lost, nothing
twice. Calls still in progress, or that ended within the live sync's reach, are left to `sync`.
A backfill that reaches the present (no --until, or one still to come) records where it stopped
(`finder.Handover`) with its last calls: a first sync, however much later, takes over there, and
in CDR-only mode walks the stretch its scans cannot reach the same way (`catch_up`).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import Engine

from cdrsync.config import Config
from cdrsync.finder import (
    CLOCK_MARGIN,
    HANDOVER,
    HISTORY_PREFIX,
    HORIZON,
    START_SLACK,
    Discovery,
    Handled,
    Handover,
    drop_handled,
    expand,
    last_end,
    to_epoch,
    to_local,
    with_cdr,
)
from cdrsync.grouping import (
    CallAssembler,
    OpenCall,
    assembled_calls,
    group_calls,
    linkedid_key,
)
from cdrsync.model import CallRows, CdrRow, ClosedBy
from cdrsync.source.reader import Source
from cdrsync.state import progress
from cdrsync.timeconv import shifted

HISTORY_CHUNK = timedelta(hours=1)  # CDR-only backfill: calldate span read per step (if busy)
HISTORY_EVENTS = 5000  # CEL backfill: cel events read per query
# CEL backfill: stream time a call waits after its last LINKEDID_END before it is emitted, in
# case a channel of it shows up under a new linkedid (a linkedid change ends the old one first)
HOLD = timedelta(seconds=60)
# s: CEL backfill's margin for the PBX's local clock against uniqueid epochs (DST, skew): a call
# that began less than this after the first event read may have events before it
STREAM_SLACK = START_SLACK


# ---- backfill ---------------------------------------------------------------------------------

def history_key(since_local: datetime, until_local: Optional[datetime]) -> str:
    until = until_local.isoformat(sep=" ") if until_local else "open"
    return f"{HISTORY_PREFIX}{since_local.isoformat(sep=' ')}:{until}"


def find_history(source: Source, store: Engine, cfg: Config, since_local: datetime,
                 until_local: Optional[datetime], now: float, handled: Handled,
                 batch_calls: int = 500) -> Iterator[Discovery]:
    """Backfill: the calls between two PBX-local times, in steps of about `batch_calls` calls.

    Resumable: the position is a cursor named by (since, until); each Discovery's `commit` moves
    it, so run it (with the ledger write) before asking for the next Discovery. CEL mode reads
    `cel` by id range and groups it in memory (`_CelStream`), not call by call; the cursor may
    stay a little behind calls already emitted (a call whose other linkedids are still open holds
    it), so a restart can meet a few calls again: the ledger skips them. Calls the ledger
    already handled (sent by the live sync or an earlier run) are skipped. A call belongs to the
    range by its end (CEL: its last LINKEDID_END) or start (CDR-only); with no `until`, calls that
    may still be going on are left to the live sync.
    """
    key = history_key(since_local, until_local)
    with store.connect() as conn:
        saved = progress.read_cursor(conn, key)
    if source.schema.cel_mode:
        yield from _cel_history(source, cfg, key, saved, since_local, until_local, now, handled,
                                batch_calls)
    else:
        yield from _cdr_history(source, cfg, key, saved, since_local, until_local, now, handled,
                                batch_calls)


def _reaches_present(until_local: Optional[datetime], now: float, cfg: Config) -> bool:
    """Whether a range ends where the live sync begins (no --until, or one not yet come): only
    such a backfill hands over to a first sync. One that ends in the past leaves the calls after
    it to the admin's choice, not to a live sync that would send them with missed-call notices."""
    return until_local is None or until_local >= to_local(now, cfg.source.zone)


def _history_discovery(calls: list[CallRows], handled: Handled, key: str, value: str, now: float,
                       share: float, handover: Optional[Handover] = None) -> Discovery:
    """A batch of the range, moving its cursor; with `handover`, also where a first live sync
    takes over.

    A backfill that reaches the present writes its hand-over point twice: with its last batch,
    and early, with its first (`early`), at a point it is sure to reach (CEL: the last cel id of
    the range, known at the start; CDR-only: before any call it may leave to the live sync). So
    a daemon started for the first time while the backfill works takes over where the backfill
    will stop, not at now - lookback, which would lose the calls between the backfill's start
    and that moment once the backfill has run longer than `lookback`."""
    fresh, old = drop_handled(calls, handled)
    changes = progress.Changes(now=now, cursors={key: value})
    if handover is not None:
        changes.cursors[HANDOVER] = handover.encode()
    notes = [f"{len(old)} call(s) already handled, skipped"] if old else []
    return Discovery(calls=fresh, commit=changes.apply, notes=notes, progress=share)


def _cel_history(source: Source, cfg: Config, key: str, saved: Optional[str],
                 since_local: datetime, until_local: Optional[datetime], now: float,
                 handled: Handled, batch_calls: int) -> Iterator[Discovery]:
    """CEL backfill: `cel` streamed by id range (see `_CelStream`), in discoveries of about
    `batch_calls` calls ordered by their owner (the id of their last LINKEDID_END)."""
    first = source.cel_id_at(since_local) - 1
    end_id = source.cel_id_at(until_local) if until_local else source.max_cel_id() + 1
    stream = _CelStream(source, cfg, int(saved) if saved is not None else first, end_id, now)
    span = max(1, end_id - 1 - first)
    collected: list[tuple[int, CallRows]] = []
    done = stream.position >= end_id - 1
    handover = None
    if _reaches_present(until_local, now, cfg):
        handover = Handover(to_local(now - cfg.source.max_call - START_SLACK, cfg.source.zone),
                            end_id - 1)
    early = handover  # with the first batch: see `_early`
    while not done:
        done = stream.step()
        collected += stream.take_ready()
        collected.sort(key=lambda item: item[0])
        cap = stream.safe_cursor()
        while len(collected) >= batch_calls or (done and len(collected) > batch_calls):
            part, collected = collected[:batch_calls], collected[batch_calls:]
            # calls still to come must stay ahead of the cursor
            cursor = min(cap, collected[0][0] - 1) if collected else cap
            yield _history_discovery(_distinct(part), handled, key, str(cursor), now,
                                     (cursor - first) / span, early)
            early = None
    yield _history_discovery(_distinct(collected), handled, key, str(end_id - 1), now, 1.0,
                             handover)


def _distinct(items: list[tuple[int, CallRows]]) -> list[CallRows]:
    """The calls, without one that shares a linkedid with a bigger call of the batch (a call
    met both through the stream and through its by-linkedid expansion)."""
    kept: list[CallRows] = []
    taken: set[str] = set()
    for _, call in sorted(items, key=lambda item: -len(item[1].linkedids)):
        if not call.linkedids & taken:
            kept.append(call)
            taken |= call.linkedids
    return sorted(kept, key=lambda c: linkedid_key(c.callid))


def _owner(call: CallRows) -> int:
    """The id of the call's last LINKEDID_END: the backfill step that emits it."""
    return max((e.id for e in call.cel if e.eventtype == "LINKEDID_END"), default=0)


class _CdrWindow:
    """cdr rows read by calldate (indexed) just ahead of the cel stream's clock, held until the
    call they belong to is complete, and forgotten once older than any call still assembled."""

    def __init__(self, source: Source, start_local: datetime) -> None:
        self._source = source
        self.low = start_local  # rows with an earlier calldate were not read (or forgotten)
        self._high = start_local  # rows with calldate < _high were read
        self._rows: dict[int, CdrRow] = {}
        self._order: deque[tuple[datetime, int]] = deque()
        self._by_id: dict[str, set[int]] = defaultdict(set)  # linkedid / uniqueid -> rows
        self._serial = 0
        for row in source.cdr_undated():  # held until their call takes them (never forgotten)
            self._hold(row)

    def read_until(self, local: datetime) -> None:
        if local <= self._high:
            return
        for row in self._source.cdr_window(self._high, local):
            if row.calldate is not None:  # else read once by `cdr_undated`
                self._order.append((row.calldate, self._hold(row)))
        self._high = local

    def _hold(self, row: CdrRow) -> int:
        self._serial += 1
        self._rows[self._serial] = row
        self._by_id[row.linkedid].add(self._serial)
        self._by_id[row.uniqueid].add(self._serial)
        return self._serial

    def take(self, ids: Iterable[str]) -> list[CdrRow]:
        """Remove and return the rows whose linkedid or uniqueid is one of `ids`."""
        serials: set[int] = set()
        for item in ids:
            serials.update(self._by_id.get(item, ()))
        return [self._drop(n) for n in serials]

    def forget_before(self, local: datetime) -> None:
        while self._order and self._order[0][0] < local:
            _, serial = self._order.popleft()
            if serial in self._rows:
                self._drop(serial)
        self.low = max(self.low, local)

    def _drop(self, serial: int) -> CdrRow:
        row = self._rows.pop(serial)
        for item in {row.linkedid, row.uniqueid}:
            held = self._by_id[item]
            held.discard(serial)
            if not held:
                del self._by_id[item]
        return row


class _CelStream:
    """Backfill's reading of `cel`: ids after the cursor in chunks of HISTORY_EVENTS (a
    primary-key range scan), grouped in memory as they come (`CallAssembler`); a call is emitted
    HOLD of stream time after its last linkedid ended, with the cdr rows of `_CdrWindow`.

    A call the stream may not hold whole goes the per-call way instead (`expand` + `_with_cdr`,
    as the live sync does): one with a linkedid or channel created before the stream started
    (it straddles the cursor or `since`), one older than `max_call` (its start may have been
    forgotten), one with ids that carry no time; and at the end of the range, every call that
    has ended in part. So every call with its last LINKEDID_END in (start, end_id) is emitted."""

    def __init__(self, source: Source, cfg: Config, start: int, end_id: int, now: float) -> None:
        self._source, self._cfg, self._now = source, cfg, now
        self._zone = cfg.source.zone
        self._start, self._end_id = start, end_id
        self.position = start  # the last cel id read
        self._calls = CallAssembler()
        self._cdr: Optional[_CdrWindow] = None  # opened at the first event's time
        self._floor = 0.0  # UTC epoch of the first event read
        self._ready: list[tuple[int, CallRows]] = []

    def take_ready(self) -> list[tuple[int, CallRows]]:
        """(owner, call) of the calls found since the last call."""
        ready, self._ready = self._ready, []
        return ready

    def safe_cursor(self) -> int:
        """The highest id a cursor may hold now: every call owned at or before it was found."""
        ends = [min(c.ends) for c in self._calls.calls() if c.ends]
        return min([self.position] + [e - 1 for e in ends])

    def step(self) -> bool:
        """Read the next chunk of events; True when the range is done."""
        read = 0
        for event in self._source.cel_range(self.position, self._end_id, HISTORY_EVENTS):
            read += 1
            self.position = event.id
            if self._cdr is None and event.eventtime is not None:
                self._floor = to_epoch(event.eventtime, self._zone)
                self._cdr = _CdrWindow(self._source, shifted(event.eventtime, -STREAM_SLACK))
            self._calls.add(event)
        done = read < HISTORY_EVENTS
        if done:
            self.position = self._end_id - 1
        clock = self._calls.now
        if clock is None:  # nothing timed read yet
            complete = self._calls.take_complete(None) if done else []
        else:
            complete = self._calls.take_complete(None if done else clock - HOLD)
        if self._cdr is not None and clock is not None:
            self._cdr.read_until(shifted(clock, CLOCK_MARGIN))
        oldest = (to_epoch(clock, self._zone) if clock else self._floor) - self._cfg.source.max_call
        whole: list[OpenCall] = []
        doubtful: list[OpenCall] = []
        for call in complete:
            (whole if self._whole(call, oldest) else doubtful).append(call)
        stale = (None if clock is None or done
                 else shifted(clock, -(self._cfg.source.max_call + STREAM_SLACK)))
        for call in self._calls.calls():
            if done or call.first_time is None or (stale is not None and call.first_time < stale):
                self._calls.forget(call)
                if call.ends:
                    doubtful.append(call)  # never-ending linkedids: closed by the old rules
        for call in whole:
            rows = self._cdr.take(call.linkedids | call.uniqueids) if self._cdr else []
            self._ready += [(_owner(c), c) for c in assembled_calls(call, rows,
                                                                     ClosedBy.HISTORY)]
        self._ready += self._per_call(doubtful)
        if self._cdr is not None and clock is not None:
            self._cdr.forget_before(shifted(clock, -(self._cfg.source.max_call
                                                     + 2 * STREAM_SLACK)))
        return done

    def _whole(self, call: OpenCall, oldest: float) -> bool:
        """Whether the stream read all of the call's events, and the window all its cdr rows
        (`oldest`: UTC epoch before which a call may have been forgotten)."""
        if not call.dated or call.min_epoch is None or call.first_time is None:
            return False
        return (call.min_epoch >= self._floor + STREAM_SLACK and call.min_epoch >= oldest
                and self._cdr is not None
                and call.first_time >= shifted(self._cdr.low, STREAM_SLACK))

    def _per_call(self, calls: list[OpenCall]) -> list[tuple[int, CallRows]]:
        """The old way for the few calls the stream may not hold whole: expand their linkedids
        in `cel` and look their cdr rows up; keep those owned by this range."""
        if not calls:
            return []
        events = expand(self._source, set().union(*(c.linkedids for c in calls)))
        found = []
        for call in group_calls([], events, ClosedBy.HISTORY):
            owner = _owner(call)
            if not self._start < owner < self._end_id:
                continue  # an earlier run, the live sync (or nobody: never ended) owns it
            closed = {e.linkedid for e in call.cel if e.eventtype == "LINKEDID_END"}
            last = last_end(call, self._zone) or self._now
            if not call.linkedids <= closed and self._now - last < self._cfg.schedule.orphan_after:
                continue  # may still be going on: the live sync's business
            found.append(call)
        return [(_owner(c), c) for c in with_cdr(self._source, found, self._zone)]


def _cdr_history(source: Source, cfg: Config, key: str, saved: Optional[str],
                 since_local: datetime, until_local: Optional[datetime], now: float,
                 handled: Handled, batch_calls: int,
                 recent: Optional[float] = None) -> Iterator[Discovery]:
    """CDR-only backfill: the calls that started in [since, until) (until: now at the latest),
    walked by calldate in chunks of HISTORY_CHUNK from one row to the next (`_busy_chunks`),
    so that years without a call cost a probe, not a query an hour. A call that ended less than
    `recent` s ago (default: lookback, or settle if longer) may still be going on: it is left to
    the live sync, and the cursor stays before it, so that a later run meets it again.

    The cursor means "every call that started before it was handled", so it never passes a
    call left to the live sync, nor now - max_call: a call going on now started after that, and
    its rows (written at hang-up) may not be there yet. The share done is rows read over the
    rows of the range (two counts over the index)."""
    zone = cfg.source.zone
    if recent is None:
        recent = max(cfg.source.lookback, cfg.schedule.settle)
    present = to_local(now, zone)
    end = min(until_local, present) if until_local else present
    start = datetime.fromisoformat(saved) if saved else since_local
    total = max(1, source.cdr_count(since_local, end))
    done = source.cdr_count(since_local, start) if start > since_local else 0
    held = present - timedelta(seconds=cfg.source.max_call)  # the cursor stays before it

    def cursor(at: datetime) -> str:
        return max(start, min(at, held)).isoformat(sep=" ")

    collected: list[CallRows] = []
    # with the first batch (see `_early`): before any call this backfill may leave to the live
    # sync (one that ended within `recent` of now started at most max_call before that)
    early = (Handover(datetime.fromisoformat(cursor(present - timedelta(
        seconds=recent + cfg.source.max_call)))) if _reaches_present(until_local, now, cfg)
        else None)
    for first, chunk_end, rows in _busy_chunks(source, start, end):
        done += len(rows)
        for call in _calls_started(source, cfg, rows, first, chunk_end):
            if now - (last_end(call, zone) or now) < recent:
                held = min(held, _first_calldate(call))
                continue
            collected.append(call)
        if len(collected) >= batch_calls:
            yield _history_discovery(collected, handled, key, cursor(chunk_end), now,
                                     min(1.0, done / total), early)
            collected, early = [], None
    last = cursor(end)
    handover = (Handover(datetime.fromisoformat(last))
                if _reaches_present(until_local, now, cfg) else None)
    yield _history_discovery(collected, handled, key, last, now, 1.0, handover)


def _busy_chunks(source: Source, start: datetime, end: datetime
                 ) -> Iterator[tuple[datetime, datetime, list[CdrRow]]]:
    """(first, chunk end, rows with first <= calldate < chunk end) for each chunk of
    HISTORY_CHUNK that holds a row, from the first row on or after `start` to the last before
    `end`: an empty stretch between two rows costs one index probe, however long it is."""
    position = start
    while position < end:
        found = source.next_calldate(position, end)
        if found is None:
            return
        position = max(position, found)
        chunk_end = min(position + HISTORY_CHUNK, end)
        yield position, chunk_end, list(source.cdr_window(position, chunk_end))
        position = chunk_end


def _first_calldate(call: CallRows) -> datetime:
    return min(r.calldate for r in call.cdr if r.calldate)


def _calls_started(source: Source, cfg: Config, rows: list[CdrRow], first: datetime,
                   chunk_end: datetime) -> list[CallRows]:
    """The calls that started in [first, chunk_end), whole: the chunk's rows name them, their
    other rows are read by linkedid / uniqueid up to `max_call` past the chunk."""
    seen = group_calls(rows, [])
    if not seen:
        return []
    linkedids = set().union(*(c.linkedids for c in seen))
    uniqueids = {r.uniqueid for c in seen for r in c.cdr}
    reach = chunk_end + timedelta(seconds=cfg.source.max_call)
    found = source.cdr_for_linkedids(linkedids, uniqueids, first, reach)
    return [call for call in group_calls(found, [], ClosedBy.HISTORY)
            if any(r.calldate for r in call.cdr) and first <= _first_calldate(call) < chunk_end]


# ---- the first sync after a backfill: the calls between the two --------------------------------

def catch_up(source: Source, store: Engine, cfg: Config, now: float, handled: Handled,
             batch_calls: int = 500) -> Iterator[Discovery]:
    """CDR-only, a first sync after a backfill that stopped more than `max_call` ago: the calls
    that started from where it stopped up to the reach of the live scans (now - max_call), walked
    as a backfill walks them. The live pass of the same sync takes over from there (its first
    scan reads the last max_call s); CEL mode needs none of this, its cursor is a cel id.

    Its cursor is named after the hand-over point: stopped, the next sync continues it. Every
    call of the stretch is emitted: they all started more than max_call ago."""
    if source.schema.cel_mode:
        return
    with store.connect() as conn:
        cursors = {k: v for k, (v, _) in progress.read_cursors(conn).items()}
    handover = Handover.decode(cursors.get(HANDOVER))
    if HORIZON in cursors or handover is None:
        return
    reach = to_local(now - cfg.source.max_call, cfg.source.zone)
    if handover.start >= reach:
        return
    key = f"catch-up:{handover.start.isoformat(sep=' ')}"
    yield from _cdr_history(source, cfg, key, cursors.get(key), handover.start, reach, now,
                            handled, batch_calls, recent=0)
