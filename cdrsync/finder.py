"""Discovery of finished calls: what one pass (or one step of a backfill) hands to interpretation.

Where a call is known to be over:

* CEL mode (`Source.schema.cel_mode`): the cursor `cel_end` is the id of the last LINKEDID_END event
  consumed. Each ended linkedid is expanded to its whole call (linkedids sharing a channel or named
  by a transfer/pickup event, to a bounded fixpoint). A call is complete when EVERY linkedid in it
  has a LINKEDID_END. Its cdr rows are then read: Asterisk writes them at each channel's hang-up,
  so they land with the LINKEDID_END or a moment around it. Once the row of its first channel
  (uniqueid == callid) is there, the call is emitted `[schedule] cdr_grace` s after cdrsync
  first saw it complete, for the rows of the other channels; without that row (a PBX that
  writes no cdr, CDR batch mode) it waits `[schedule] cel_settle` s, the longest wait (a call
  first seen when its LINKEDID_END is already older than cel_settle + CLOCK_MARGIN by the PBX
  clock does not wait). `more` says that a pass left LINKEDID_END events unread.
  Ended linkedids whose call is not complete wait in `progress_pending`; when the call has had
  no event for `[schedule] orphan_after` s it is emitted as `ClosedBy.TIMEOUT`. Calls that never
  get any LINKEDID_END (Asterisk restarted mid-call) are found by a cdr scan over
  `[source] max_call`, done every `[source] long_every` s, and emitted as TIMEOUT after
  `orphan_after` s of quiet.
* CDR-only mode: each pass re-reads the cdr rows of the last `[source] lookback` s; every
  `long_every` s it reads the last `max_call` s instead, so that a call longer than `lookback`
  (whose rows carry its old start time in `calldate`) is still found - with up to `long_every` s of
  extra delay. A call is emitted (`ClosedBy.QUIET`) once its rows have not changed for
  `[schedule] settle` s and its last row ended at least `settle` s ago (or at once when first seen
  more than settle + CLOCK_MARGIN s after its last row ended). A short scan only judges
  calls that started inside its window, so it never sees half a call.

The first sync on a database with years of rows starts with the calls that ENDED within the last
`lookback` s (CEL: at `cel_id_at(now - lookback)`; CDR-only: calls whose last row ended after that
moment). Older calls are the business of `cdrsync backfill` (`find_history`). After a backfill
that reached the present, the first sync starts where it stopped instead (`Handover`), however
long ago: CEL at the last cel id it read; CDR-only with the calls that started from its cursor
(those beyond the reach of the scans are walked first by `history.catch_up`).

Nothing here writes to the store: every discovery carries a `commit(conn)` that the pipeline runs
in the same transaction as its ledger write, so a crash loses neither calls nor progress. The
pipeline must run `commit` after EVERY pass, also when `calls` is empty: it also records calls
that are settling. A call whose linkedids the ledger already handled is never emitted again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Optional
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from cdrsync.config import Config
from cdrsync.grouping import (
    group_calls,
    linkedid_epoch,
    linkedid_key,
    transfer_uniqueids,
)
from cdrsync.model import CallRows, CelEvent, ClosedBy
from cdrsync.source.reader import Source
from cdrsync.state import progress
from cdrsync.timeconv import credible_seconds, local_time

log = logging.getLogger("cdrsync.finder")

Handled = Callable[[Iterable[str]], "set[str]"]

CEL_CURSOR = "cel_end"
HORIZON = "horizon"  # UTC epoch before which the live sync ignores calls (first sync - lookback)
HANDOVER = "handover"  # where the last backfill that reached the present stopped (`Handover`)
HISTORY_PREFIX = "history:"  # the cursors of backfill ranges
LONG_SCAN = "long_scan_at"
MAX_BATCHES = 20  # LINKEDID_END batches read per pass; the rest waits for the next pass
EXPAND_ROUNDS = 6
EXPAND_MAX = 1000  # linkedids; a runaway expansion stops here
START_SLACK = 2 * 3600  # s subtracted from a call's start when bounding cdr lookups (DST, skew)
# s: a call whose end (by the PBX's clock) is this much older than the settle time is not made to
# wait again when cdrsync first sees it (first run, catching up after downtime, one-shot --dry-run)
CLOCK_MARGIN = 60


@dataclass
class Discovery:
    calls: list[CallRows]
    # applies the cursor / pending / quiet updates IN the caller's state transaction
    commit: Callable[[Connection], None]
    notes: list[str] = field(default_factory=list)  # worth logging once
    progress: Optional[float] = None  # backfill: share of the range done, 0..1
    # UTC epoch at which the first call now settling is ready: a pass then delivers it
    settled_at: Optional[float] = None
    more: bool = False  # the pass stopped reading with events left: the next one should not wait
    idle: bool = False  # no call and nothing to commit: the caller may skip its transaction


@dataclass(frozen=True)
class Handover:
    """Where the last finished backfill that reached the present stopped, so that the first live
    pass takes over exactly there however long after it runs. `history` writes it with the
    backfill's last calls; only a first sync (no `horizon` yet) reads it.

    `start` (PBX-local): every call that started before it was handled. A CDR-only backfill's
    cursor; for a CEL backfill its `now` less `max_call` (a call ends at most that long after it
    starts). `cel_id`: the last cel id a CEL backfill read, where the CEL cursor takes over."""

    start: datetime
    cel_id: Optional[int] = None

    def encode(self) -> str:
        text = self.start.isoformat(sep=" ")
        return text if self.cel_id is None else f"{self.cel_id} {text}"

    @classmethod
    def decode(cls, value: Optional[str]) -> Optional[Handover]:
        if not value:
            return None
        head, _, rest = value.partition(" ")
        if head.isdigit() and ":" in rest:
            return cls(datetime.fromisoformat(rest), int(head))
        return cls(datetime.fromisoformat(value))


# ---- time -------------------------------------------------------------------------------------

def to_local(epoch: float, zone: ZoneInfo) -> datetime:
    """UTC epoch -> naive local time of the PBX (held at the calendar's edge: see timeconv)."""
    return local_time(epoch, zone)


def to_epoch(local: datetime, zone: ZoneInfo) -> float:
    """Naive local time of the PBX -> UTC epoch (first reading of an ambiguous hour)."""
    return local.replace(tzinfo=zone).timestamp()


def call_start(call: CallRows, zone: ZoneInfo) -> Optional[float]:
    """When the call began (UTC): its oldest linkedid's epoch, else its earliest row."""
    epochs = [e for e in (linkedid_epoch(x) for x in call.linkedids) if e is not None]
    if epochs:
        return float(min(epochs))
    times = [r.calldate for r in call.cdr if r.calldate] + [e.eventtime for e in call.cel
                                                            if e.eventtime]
    return to_epoch(min(times), zone) if times else None


def last_end(call: CallRows, zone: ZoneInfo) -> Optional[float]:
    """When the last thing of the call happened (UTC): row end (calldate + duration), event.
    A duration no call has counts as 0: else the call would seem to go on for decades."""
    ends = [to_epoch(r.calldate, zone) + credible_seconds(r.duration) for r in call.cdr
            if r.calldate]
    ends += [to_epoch(e.eventtime, zone) for e in call.cel if e.eventtime]
    return max(ends) if ends else None


def _credible_end(last: Optional[float], now: float, seen: Optional[tuple[str, float]]
                  ) -> float:
    """A call's end as the quiet rules may use it. Rows without a usable time, or with one
    after now (a PBX clock gone wild, a 9998 date), tell nothing: such a call counts as ended
    when cdrsync first saw its rows as they are, so that it is still sent once they stay
    quiet, instead of waiting for ever."""
    if last is not None and last <= now + CLOCK_MARGIN:
        return last
    return seen[1] if seen is not None else now


def _fingerprint(call: CallRows) -> str:
    parts = sorted(repr((r.key, r.linkedid, r.duration, r.billsec, r.disposition))
                   for r in call.cdr)
    parts += [str(e.id) for e in call.cel]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]


# ---- reading around a set of linkedids ---------------------------------------------------------

def expand(source: Source, seeds: Iterable[str]) -> list[CelEvent]:
    """All cel events of the calls the seed linkedids belong to: linkedids reached through shared
    channels and through uniqueids named by transfer / pickup events, to a bounded fixpoint."""
    known = set(seeds)
    frontier = set(known)
    seen_uniqueids: set[str] = set()
    events: dict[int, CelEvent] = {}
    for _ in range(EXPAND_ROUNDS):
        if not frontier:
            break
        found = source.cel_for_linkedids(frontier)
        events.update((e.id, e) for e in found)
        uniqueids = {e.uniqueid for e in found if e.uniqueid}
        for event in found:
            uniqueids |= transfer_uniqueids(event)
        uniqueids -= seen_uniqueids
        seen_uniqueids |= uniqueids
        frontier = source.linkedids_for_uniqueids(uniqueids) - known
        if len(known) + len(frontier) > EXPAND_MAX:
            log.warning("call expansion stopped at %d linkedids", len(known))
            break
        known |= frontier
    return [events[i] for i in sorted(events)]


def with_cdr(source: Source, calls: list[CallRows], zone: ZoneInfo) -> list[CallRows]:
    """The same calls with their cdr rows; regrouped, since a cdr row may join two of them."""
    if not calls:
        return []
    linkedids = set().union(*(c.linkedids for c in calls))
    uniqueids = {e.uniqueid for c in calls for e in c.cel if e.uniqueid}
    uniqueids |= {r.uniqueid for c in calls for r in c.cdr if r.uniqueid}
    starts = [s for s in (call_start(c, zone) for c in calls) if s is not None]
    since = to_local(min(starts) - START_SLACK, zone) if starts else None
    rows = source.cdr_for_linkedids(linkedids, uniqueids, since_local=since)
    closed = {lid: c.closed_by for c in calls for lid in c.linkedids}
    regrouped = []
    for call in group_calls(rows, [e for c in calls for e in c.cel]):
        kinds = {closed[lid] for lid in call.linkedids if lid in closed}
        kind = next((k for k in (ClosedBy.TIMEOUT, ClosedBy.QUIET, ClosedBy.HISTORY) if k in kinds),
                    ClosedBy.LINKEDID_END)
        regrouped.append(replace(call, closed_by=kind))
    return regrouped


def drop_handled(calls: list[CallRows], handled: Handled) -> tuple[list[CallRows], list[CallRows]]:
    """(calls to emit, calls containing a linkedid the ledger already handled)."""
    if not calls:
        return [], []
    done = handled(sorted(set().union(*(c.linkedids for c in calls))))
    fresh = [c for c in calls if not (c.linkedids & done)]
    old = [c for c in calls if c.linkedids & done]
    return fresh, old


# ---- the live sync ----------------------------------------------------------------------------

def find_finished(source: Source, store: Engine, cfg: Config, now: float, handled: Handled
                  ) -> Discovery:
    """The calls that finished since the last committed pass (see the module docstring)."""
    cel_mode = source.schema.cel_mode
    with store.connect() as conn:  # what this pass needs, no more: an idle pass reads little
        cursors = {k: v for k, (v, _) in progress.read_cursors(conn).items()}
        # the first pass scans long too: a long call that ended after the horizon started
        # before it
        long_due = (LONG_SCAN not in cursors
                    or now - float(cursors[LONG_SCAN]) >= cfg.source.long_every)
        pending = progress.read_pending(conn) if cel_mode else {}
        quiet = progress.read_quiet(conn) if long_due or not cel_mode else {}
    changes = progress.Changes(now=now)
    notes: list[str] = []
    horizon = float(cursors[HORIZON]) if HORIZON in cursors else None
    handover: Optional[Handover] = None
    if horizon is None:
        handover = Handover.decode(cursors.get(HANDOVER))
        horizon = _first_horizon(cfg, now, handover, set(cursors), notes)
        changes.cursors[HORIZON] = repr(horizon)
    if long_due:
        changes.cursors[LONG_SCAN] = repr(now)
        changes.quiet_prune_before = now - 2 * cfg.source.max_call - cfg.schedule.orphan_after
    settling: list[float] = []
    more: list[bool] = []
    if cel_mode:
        calls, busy = _cel_pass(source, cfg, now, handled, cursors, pending, horizon, handover,
                                changes, notes, settling, more)
        if long_due:
            calls += _orphan_scan(source, cfg, now, handled, quiet, horizon, busy, changes, notes)
    else:
        calls = _cdr_pass(source, cfg, now, handled, quiet, horizon, long_due, changes, notes)
    calls.sort(key=lambda c: linkedid_key(c.callid))
    return Discovery(calls=calls, commit=changes.apply, notes=notes,
                     settled_at=min(settling, default=None), more=bool(more),
                     idle=not calls and changes.empty)


def _first_horizon(cfg: Config, now: float, handover: Optional[Handover], names: set[str],
                   notes: list[str]) -> float:
    """Where the live sync starts: where the last backfill that reached the present stopped, so
    that no call between the two is lost however long apart they ran, else now - lookback."""
    zone = cfg.source.zone
    horizon = now - cfg.source.lookback
    if handover is not None:
        notes.append(f"first sync: taking over from the backfill, with the calls that "
                     f"started from {handover.start:%Y-%m-%d %H:%M:%S} (PBX time)")
        return min(horizon, to_epoch(handover.start, zone))
    notes.append(f"first sync: starting with calls that ended after "
                 f"{to_local(horizon, zone):%Y-%m-%d %H:%M:%S} (PBX time); "
                 "use `cdrsync backfill` for older calls")
    if any(name.startswith(HISTORY_PREFIX) for name in names):
        notes.append("no backfill reached the present (it was stopped, or its --until is past): "
                     "the calls between its end and that moment are left to `cdrsync backfill "
                     "--since ...`; a backfill without --until hands over to the live sync")
    return horizon


def _cel_pass(source: Source, cfg: Config, now: float, handled: Handled, cursors: dict[str, str],
              pending: dict[str, tuple[float, str]], horizon: float,
              handover: Optional[Handover], changes: progress.Changes, notes: list[str],
              settling: list[float], more: list[bool]) -> tuple[list[CallRows], set[str]]:
    """CEL mode; returns the calls to emit and every linkedid it looked at, adds to `settling`
    when each call that waits will be ready, and to `more` if it left events unread. A first
    pass after a CEL backfill takes over at the last cel id the backfill read."""
    zone = cfg.source.zone
    takeover = CEL_CURSOR not in cursors and HORIZON in cursors
    if CEL_CURSOR in cursors:
        position = int(cursors[CEL_CURSOR])
    elif handover is not None and handover.cel_id is not None:
        position = handover.cel_id
    elif takeover:  # CDR-only passes ran before: CEL mode takes over from them
        position = source.cel_id_at(to_local(_cdr_takeover(cfg, cursors, horizon), zone)) - 1
        notes.append(f"CEL mode takes over from CDR-only mode: CEL cursor starts after cel id "
                     f"{position}; calls CDR-only mode sent are not sent again")
    else:
        position = source.cel_id_at(to_local(horizon, zone)) - 1
        notes.append(f"first sync: CEL cursor starts after cel id {position}")
    start_position = position
    ended: list[tuple[int, str]] = []
    for _ in range(MAX_BATCHES):
        got = source.ended_linkedids(position, cfg.source.batch)
        ended += got
        if got:
            position = got[-1][0]
        if len(got) < cfg.source.batch:
            break
    else:
        more.append(True)  # LINKEDID_END events are left: the next pass should not wait
    if position != start_position or CEL_CURSOR not in cursors:
        changes.cursors[CEL_CURSOR] = str(position)
    seeds = set(pending) | {lid for _, lid in ended}
    if not seeds:
        return [], set()
    events = expand(source, seeds)
    closed = {e.linkedid for e in events if e.eventtype == "LINKEDID_END"}
    groups = group_calls([], events)
    fresh, old = drop_handled(groups, handled)
    for call in old:
        if not takeover:  # at a take-over, re-reading calls CDR-only mode sent is the point
            notes.append(f"late rows for call {call.callid} ignored: it was already handled")
        changes.pending_drop |= call.linkedids
    ready: list[CallRows] = []  # timed out
    complete: list[CallRows] = []
    emit: list[CallRows] = []
    for call in fresh:
        if call.linkedids <= closed:
            complete.append(call)
            continue
        first_seen = min((pending[lid][0] for lid in call.linkedids if lid in pending), default=now)
        last = min(last_end(call, zone) or first_seen, now)  # a PBX clock ahead counts as now
        if now - last >= cfg.schedule.orphan_after:
            ready.append(replace(call, closed_by=ClosedBy.TIMEOUT))
            changes.pending_drop |= call.linkedids
            notes.append(f"call {call.callid}: no LINKEDID_END for "
                         f"{sorted(call.linkedids - closed)}; closed after "
                         f"{cfg.schedule.orphan_after} s without events")
        else:
            _keep_pending(changes, call, closed, pending, now, "open")
    # read together, as before: a cdr row may join a timed-out call to a complete one
    for call in with_cdr(source, ready + complete, zone):
        due = now if call.closed_by is ClosedBy.TIMEOUT else _settled_at(call, closed, pending,
                                                                          now, cfg)
        if now >= due:
            emit.append(call)
            changes.pending_drop |= call.linkedids
        else:
            _keep_pending(changes, call, closed, pending, now, "settle")
            settling.append(due)
    looked_at = set().union(*(c.linkedids for c in groups)) if groups else set()
    return emit, looked_at


def _cdr_takeover(cfg: Config, cursors: dict[str, str], horizon: float) -> float:
    """From when (UTC epoch, by LINKEDID_END time) CEL mode must read to cover every call that
    CDR-only passes may not have emitted. A call the short scans reach was emitted once its
    rows were `settle` s old at a pass; one only the long scan reaches, by the second long scan
    `settle` s after its last row (up to 2 x long_every later). Both bounds count back from the
    last long scan, which is not later than the last CDR-only pass; the ledger keeps a call
    re-read from being sent twice."""
    if LONG_SCAN not in cursors:
        return horizon
    last_long = float(cursors[LONG_SCAN])
    reach = 2 * (cfg.source.long_every + cfg.schedule.interval) + cfg.schedule.settle
    return max(horizon, last_long - reach - CLOCK_MARGIN)


def _has_root_cdr(call: CallRows) -> bool:
    """Whether the cdr row of the call's first channel (uniqueid == its callid) is there: Asterisk
    writes a channel's cdr rows when it hangs up, so by its LINKEDID_END every row is written or
    on its way, and the root's row being there says the batch of the call's rows has landed."""
    return any(r.uniqueid == call.callid for r in call.cdr)


def _settled_at(call: CallRows, closed: set[str], pending: dict[str, tuple[float, str]],
                now: float, cfg: Config) -> float:
    """When a complete call (its cdr rows read) may be emitted (UTC epoch), counted from when
    cdrsync first saw its last LINKEDID_END: `cdr_grace` s later once the cdr row of its first
    channel is there (the other channels' rows, written at their own hang-ups, land with it or a
    moment after), else `cel_settle` s later (a PBX that writes no cdr rows, CDR batch mode).
    `cel_settle` is the longest wait; a call first seen long after its end does not wait."""
    mine = call.linkedids & closed
    completed = max((pending[lid][0] if lid in pending else now) for lid in mine) if mine else now
    wait = cfg.schedule.cel_settle
    if _has_root_cdr(call):
        wait = min(wait, cfg.schedule.cdr_grace)
    ended_at = last_end(call, cfg.source.zone) or now
    return min(completed + wait, ended_at + cfg.schedule.cel_settle + CLOCK_MARGIN)


def _keep_pending(changes: progress.Changes, call: CallRows, closed: set[str],
                  pending: dict[str, tuple[float, str]], now: float, kind: str) -> None:
    for lid in call.linkedids & closed:
        first = pending[lid][0] if lid in pending else now
        if lid not in pending or pending[lid][1] != kind:
            changes.pending_add[lid] = (first, kind)


def _orphan_scan(source: Source, cfg: Config, now: float, handled: Handled,
                 quiet: dict[str, tuple[str, float]], horizon: float, busy: set[str],
                 changes: progress.Changes, notes: list[str]) -> list[CallRows]:
    """CEL mode: calls in cdr that never got any LINKEDID_END, closed after orphan_after."""
    zone = cfg.source.zone
    window = max(cfg.source.max_call, cfg.schedule.orphan_after)
    groups = group_calls(source.cdr_window(to_local(now - window, zone)), [], ClosedBy.TIMEOUT)
    groups = [g for g in groups if not (g.linkedids & busy)]
    fresh, _ = drop_handled(groups, handled)
    candidates = []
    for call in fresh:
        fp = _fingerprint(call)
        seen = quiet.get(call.callid)
        last = _credible_end(last_end(call, zone), now, seen)
        if last < horizon:
            continue
        if seen is None or seen[0] != fp:
            changes.quiet_set[call.callid] = (fp, now)
        elif now - seen[1] >= cfg.schedule.orphan_after and now - last >= cfg.schedule.orphan_after:
            candidates.append(call)
    out = []
    for call in candidates:
        events = expand(source, call.linkedids)
        if any(e.eventtype == "LINKEDID_END" for e in events):
            continue  # the CEL cursor owns it
        out.append(replace(call, cel=tuple(events)))
        notes.append(f"call {call.callid}: no LINKEDID_END at all (Asterisk restart?); closed "
                     f"after {cfg.schedule.orphan_after} s without new rows")
    return with_cdr(source, out, zone)


def _cdr_pass(source: Source, cfg: Config, now: float, handled: Handled,
              quiet: dict[str, tuple[str, float]], horizon: float, long_scan: bool,
              changes: progress.Changes, notes: list[str]) -> list[CallRows]:
    """CDR-only mode (see the module docstring)."""
    zone = cfg.source.zone
    window_start = now - (cfg.source.max_call if long_scan else cfg.source.lookback)
    groups = group_calls(source.cdr_window(to_local(window_start, zone)), [], ClosedBy.QUIET)
    covered = []
    for call in groups:
        start = call_start(call, zone)
        if long_scan or (start is not None and start >= window_start + 2):
            covered.append(call)
    fresh, old = drop_handled(covered, handled)
    for call in old:
        fp, seen = _fingerprint(call), quiet.get(call.callid)
        if seen is not None and seen[0] != fp:
            notes.append(f"late rows for call {call.callid} ignored: it was already handled")
        if seen is None or seen[0] != fp:
            changes.quiet_set[call.callid] = (fp, now)
    out = []
    for call in fresh:
        fp, seen = _fingerprint(call), quiet.get(call.callid)
        last = _credible_end(last_end(call, zone), now, seen)
        if last < horizon:
            continue
        if seen is None and now - last >= cfg.schedule.settle + CLOCK_MARGIN:
            changes.quiet_set[call.callid] = (fp, now)
            out.append(call)  # first seen long after its end (first run, catching up)
        elif seen is None or seen[0] != fp:
            changes.quiet_set[call.callid] = (fp, now)
        elif now - seen[1] >= cfg.schedule.settle and now - last >= cfg.schedule.settle:
            out.append(call)
    return out


# ---- one call, for `cdrsync show` --------------------------------------------------------------

def rows_for_callid(source: Source, callid: str, zone: Optional[ZoneInfo] = None
                    ) -> Optional[CallRows]:
    """Every row of the call that `callid` (any of its linkedids) belongs to, or None."""
    events = expand(source, {callid}) if source.schema.has_cel else []
    epoch = linkedid_epoch(callid)
    if zone is not None and epoch is not None:
        since: Optional[datetime] = to_local(epoch - START_SLACK, zone)
    elif epoch is not None:  # no zone: local is at most 14 h away from UTC
        since = datetime.fromtimestamp(epoch - 15 * 3600, timezone.utc).replace(tzinfo=None)
    else:
        since = None
    linkedids = {callid} | {e.linkedid for e in events}
    uniqueids = {e.uniqueid for e in events if e.uniqueid} | {callid}
    rows = source.cdr_for_linkedids(linkedids, uniqueids, since_local=since)
    closed = {e.linkedid for e in events if e.eventtype == "LINKEDID_END"}
    for call in group_calls(rows, events):
        if callid in call.linkedids:
            if call.linkedids <= closed:
                return call
            return replace(call, closed_by=ClosedBy.TIMEOUT if events else ClosedBy.QUIET)
    return None

