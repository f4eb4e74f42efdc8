"""One pass of cdrsync: find finished calls → interpret → resolve recording → remember → deliver.

The only place where the parts meet. The rule that keeps calls from being lost or doubled lives
here: a call's requests enter the ledger (the outbox) in the SAME state-store transaction that moves
the finder's cursor past its rows, and a request leaves the outbox only after Planfix answered 200.
A call that one of its steps cannot process costs that call only: it goes to the quarantine, in
the same transaction, with the step and the reason (see `state/quarantine.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Optional

from sqlalchemy.exc import IntegrityError

from . import finder, history
from .budget import sending_eta
from .config import Config, redact
from .courier import Courier
from .courier import available as courier_available
from .deliver import Deliverer, DrainResult
from .dryrun import DryRunOut
from .lock import send_lock
from .model import Call, CallRows
from .pbx.keeper import Keeper
from .planfix import messages as pfreq
from .planfix.client import PlanfixClient
from .recordings import late
from .recordings.convert import playable
from .recordings.links import make_link
from .recordings.resolve import Folders, find_recording
from .salvage import read_call
from .source.reader import Source
from .state import ledger, quarantine
from .state.db import open_store

log = logging.getLogger("cdrsync.pipeline")

LATE_EVERY = 60.0  # s between two looks for recordings that were missing at COMPLETED time
PRUNE_EVERY = 3600.0  # s between two prunings of delivered request bodies
RECORD_ATTEMPTS = 3  # a batch's recording, when another process recorded one of its calls first
RETRY_EVERY = 10.0  # s between two looks for calls `retry --quarantined` marked
REPROBE_EVERY = 60.0  # s between two looks for LINKEDID_END while "auto" runs CDR-only


@dataclass
class Prepared:
    """A call ready to be remembered: its requests, and whether its recording is still awaited."""

    call: Call
    linkedids: frozenset[str]
    requests: list[pfreq.Request]
    await_recording: bool = False


@dataclass
class PassResult:
    found: int = 0
    recorded: int = 0
    sent: int = 0
    printed: int = 0  # --dry-run: requests printed instead of sent
    quarantined: list[str] = field(default_factory=list)  # calls no step could process
    drain: Optional[DrainResult] = None
    error: str = ""
    settled_at: Optional[float] = None  # when a call found settling is ready (`run` passes then)
    more: bool = False  # rows left unread, or history left unsent: `run` passes again at once


@dataclass
class RetryResult:
    """What `retry_quarantined` did: calls recorded normally, calls kept with a new reason."""

    recorded: list[str] = field(default_factory=list)
    kept: list[quarantine.Held] = field(default_factory=list)


def _one_line(exc: BaseException, cfg: Config) -> str:
    """Why a step failed, as one line without secrets (the quarantine's reason)."""
    text = " ".join(str(exc).split()) or "(no message)"
    return redact(f"{type(exc).__name__}: {text}", cfg)[:500]


def _log_quarantined(held: list[quarantine.Held], again: bool = False) -> None:
    """One WARNING per call, when it enters the quarantine (or a retry fails): never per pass."""
    for h in held:
        log.warning("call %s %s at step %s: %s; see `cdrsync show %s`, then `cdrsync retry "
                    "--quarantined %s` once the rows or cdrsync are fixed", h.callid,
                    "still quarantined" if again else "quarantined", h.step, h.reason,
                    h.callid, h.callid)


class Pipeline:
    """Everything a pass needs, opened once and reused by every pass of a `run`."""

    def __init__(self, cfg: Config, *, dry_run: bool = False, out: Optional[DryRunOut] = None,
                 stop: Optional[threading.Event] = None) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.out = out
        self.stop = stop or threading.Event()
        self.store = open_store(cfg.state)
        self.source = Source.from_config(cfg)
        self.client = PlanfixClient(cfg.planfix)
        self.deliverer = Deliverer(self.store, self.client, cfg, sender=send_lock(cfg.state))
        self.zone = cfg.source.zone
        self.pbx_model = Keeper(self.store, self.source, cfg.pbx)  # the learned PBX model
        self._late_checked_at = float("-inf")
        self._pruned_at = float("-inf")
        self._retried_at = float("-inf")
        self._probed_at: Optional[float] = None  # the first pass decides the mode
        self._synced = False  # a pass committed with the horizon set: no catch-up is due
        self.idle_noted_at = float("-inf")  # when the cli last logged a pass that found nothing
        self.failing = ""  # the error of the last pass (the cli logs a repeated one once)

    def close(self) -> None:
        self.deliverer.close()
        self.source.close()
        self.store.dispose()

    # ---- the regular pass -------------------------------------------------------------------
    def sync_pass(self, now: Optional[float] = None, drain_seconds: Optional[float] = None
                  ) -> PassResult:
        """Find finished calls, record them, send them at once. With `run` this runs every
        second or so, so a pass that finds nothing new (the common case) costs little: one
        indexed range query on the PBX (CEL mode), a few reads of the store, no write. The work
        that may wait is done on its own period (RETRY_EVERY, LATE_EVERY, PRUNE_EVERY,
        REPROBE_EVERY)."""
        now = time.time() if now is None else now
        result = PassResult()
        if not self.dry_run and now - self._retried_at >= RETRY_EVERY:
            self._retried_at = now  # calls `retry --quarantined` marked while this process works
            self.retry_quarantined(now)
        self._reprobe(now)
        if not self._synced:  # a first sync's catch-up: nothing to do once the horizon is set
            for gap in history.catch_up(self.source, self.store, self.cfg, now, self._handled,
                                        batch_calls=self.cfg.source.batch):
                self._remember(gap, "sync", notify_missed=True, now=now, result=result)
                result.found += len(gap.calls)
                if self.stop.is_set():
                    return result  # the first live pass must not begin before the gap is read
        discovery = finder.find_finished(self.source, self.store, self.cfg, now, self._handled)
        for note in discovery.notes:
            log.info("%s", note)
        result.found += len(discovery.calls)
        result.settled_at = discovery.settled_at
        result.more = discovery.more
        if not discovery.idle:
            self._remember(discovery, "sync", notify_missed=True, now=now, result=result)
        self._synced = not self.dry_run  # a dry run commits nothing: its horizon is never set
        if not self.dry_run:  # sent as soon as recorded: nothing slow comes in between
            result.drain = self.deliverer.drain(self.stop, max_seconds=drain_seconds)
            result.sent = result.drain.sent
            result.more = result.more or result.drain.more  # history waits for its next slice
            self._late_recordings(now)
            self._prune(now)
        return result

    def _reprobe(self, now: float) -> None:
        """`use_cel = "auto"` in CDR-only mode: look again, every REPROBE_EVERY s, whether the PBX
        logs LINKEDID_END now (CEL just enabled, a new PBX), and switch to CEL mode if so. The
        finder's CEL cursor then starts early enough to cover every call the CDR-only passes
        have not emitted; those they did are in the ledger, so none is sent twice."""
        if self._probed_at is None:
            self._probed_at = now
        if self.source.schema.cel_mode or now - self._probed_at < REPROBE_EVERY:
            return
        self._probed_at = now
        if self.source.reprobe():
            log.info("cel now logs LINKEDID_END: switching to CEL mode (%s)",
                     self.source.schema.reason)

    # ---- history ----------------------------------------------------------------------------
    def backfill(self, since: datetime, until: Optional[datetime], *, notify_missed: bool,
                 now: Optional[float] = None,
                 progress: Optional[Callable[[int, int, Optional[float], Optional[float]],
                                             None]] = None
                 ) -> PassResult:
        """Import calls that started in [since, until): resumable, nothing sent twice.

        `progress(found, sent, share_done, sending_eta)` is called after every batch; the ETA
        (s) is what the requests queued and not yet sent take at `[planfix] rate` and
        `daily_limit` (None: neither limits them).
        """
        now = time.time() if now is None else now
        result = PassResult()
        courier = None
        if not self.dry_run and courier_available(self.cfg):
            courier = Courier(self.cfg, (self.store, self.source.engine))
        queued = 0  # requests recorded by this backfill, for the courier's back-pressure
        try:
            for discovery in history.find_history(self.source, self.store, self.cfg, since, until,
                                                 now, self._handled,
                                                 batch_calls=self.cfg.source.batch):
                if self.stop.is_set():
                    break
                result.found += len(discovery.calls)
                queued += self._remember(discovery, "backfill", notify_missed=notify_missed,
                                         now=now, result=result)
                if courier is not None:
                    courier.check()
                    if courier.unauthorized:
                        break
                    courier.keep_up(queued, self.stop)
                    result.sent = courier.sent
                elif not self.dry_run:
                    result.drain = self.deliverer.drain(self.stop)
                    result.sent += result.drain.sent
                    if result.drain.unauthorized:
                        break
                if progress:
                    progress(result.found, result.sent, discovery.progress,
                             self._sending_eta(queued - result.sent))
        finally:
            if courier is not None:
                result.drain = courier.finish(self.stop)
                result.sent = result.drain.sent
                if progress:
                    progress(result.found, result.sent, None, None)
        if courier is None and not self.dry_run and not self.stop.is_set() and not (
                result.drain and result.drain.unauthorized):
            result.drain = self.deliverer.drain(self.stop)
            result.sent += result.drain.sent
        return result

    def _sending_eta(self, pending: int) -> Optional[float]:
        return sending_eta(pending, self.cfg.planfix.rate, self.cfg.planfix.daily_limit)

    # ---- the parts ------------------------------------------------------------------------
    def _handled(self, linkedids: Iterable[str]) -> set[str]:
        with self.store.connect() as conn:
            return ledger.handled_linkedids(conn, linkedids)

    def _remember(self, discovery: finder.Discovery, origin: str, *, notify_missed: bool,
                  now: float, result: PassResult) -> int:
        """Interpret the discovery's calls and record them with their requests, and quarantine
        those no step could process, moving the cursor in the same transaction; returns the
        number of requests queued."""
        prepared, held = self._prepare(discovery.calls, notify_missed, now)
        result.quarantined += [h.callid for h in held]
        if self.dry_run:
            payloads = [pfreq.as_dry_run(r) for item in prepared for r in item.requests]
            if self.out is not None:
                self.out.print_requests(payloads)  # a batch in one write, not one per request
            result.printed += len(payloads)
            for h in held:
                log.warning("call %s would be quarantined (%s): %s", h.callid, h.step, h.reason)
            return 0
        for attempt in range(RECORD_ATTEMPTS):
            try:
                with ledger.transaction(self.store) as conn:
                    self._record(conn, prepared, origin, now)
                    new = quarantine.hold(conn, held, origin, notify_missed, now)
                    discovery.commit(conn)
                break
            except IntegrityError:
                # the live sync and a backfill recorded one call at the same moment: the other
                # committed first, so this transaction rolled back; recorded again, the ledger
                # sees their call and keeps the first record
                if attempt + 1 == RECORD_ATTEMPTS:
                    raise
                log.info("another cdrsync recorded some of these calls at the same moment; "
                         "recording the others")
        self.pbx_model.save(now)
        _log_quarantined([h for h in held if h.callid in set(new)])
        result.recorded += len(prepared)
        return sum(len(item.requests) for item in prepared)

    def _record(self, conn, prepared: list[Prepared], origin: str, now: float) -> None:
        ledger.record_calls(conn, [(item.call, item.linkedids, item.requests)
                                   for item in prepared], origin)
        for item in prepared:
            if item.await_recording:
                late.remember(conn, item.call, now + self.cfg.recordings.late_window)

    def _prepare(self, calls: list[CallRows], notify_missed: bool, now: float
                 ) -> tuple[list[Prepared], list[quarantine.Held]]:
        """Each call through every step of its own; a call a step raises for is held for the
        quarantine with the step and the reason, and costs no other call anything."""
        folders = Folders(self.cfg.recordings.dir)  # each recordings folder listed once a batch
        model = self.pbx_model.learn_calls(calls)
        prepared: list[Prepared] = []
        held: list[quarantine.Held] = []
        for rows in calls:
            step = "interpret"
            try:
                call = read_call(rows, self.cfg, model)
                for reason in call.reasons:
                    log.debug("call %s: %s", call.callid, reason)
                step = "recording"  # lookup, link, mp3 conversion
                link, recorded, awaited = self._recording(call, now, folders)
                step = "requests"
                requests = pfreq.completed_requests(call, self.cfg, record_link=link,
                                                    recorded=recorded)
                # a late `cmd=record` only makes sense for a call Planfix got a COMPLETED for
                awaited = awaited and bool(requests)
                if notify_missed:
                    step = "missed-call recipients"
                    requests += pfreq.missed_requests(call, self.cfg)
            except Exception as exc:  # whatever it is, it is this call's alone
                held.append(quarantine.Held(rows.callid, rows.linkedids, step,
                                            _one_line(exc, self.cfg)))
                continue
            prepared.append(Prepared(call, rows.linkedids, requests, awaited))
        return prepared, held

    # ---- the quarantine ---------------------------------------------------------------------
    def retry_quarantined(self, now: Optional[float] = None) -> RetryResult:
        """Process again every quarantined call marked for a retry: its rows re-read from the
        PBX database and rebuilt; recorded normally (its requests queued) if every step now
        works, else kept with the new reason. Nothing is sent here: the pass that follows
        delivers what was queued."""
        now = time.time() if now is None else now
        result = RetryResult()
        with self.store.connect() as conn:
            due = quarantine.entries(conn, (quarantine.RETRY,))
        for entry in due:
            rows = finder.rows_for_callid(self.source, entry.callid, self.zone)
            if rows is None:
                held = [quarantine.Held(entry.callid, frozenset(entry.linkedids), "read",
                                        "no rows for it in the PBX database any more")]
                prepared: list[Prepared] = []
            else:
                prepared, held = self._prepare([rows], entry.notify_missed, now)
            with ledger.transaction(self.store) as conn:
                if prepared and self._taken_by_another(conn, prepared[0], entry):
                    held = [quarantine.Held(entry.callid, frozenset(entry.linkedids), "read",
                                            f"its rows now belong to call {prepared[0].call.callid}"
                                            ", which cdrsync recorded already")]
                    prepared = []
                for h in held:  # under its entry's callid, should the rows now group otherwise
                    quarantine.kept(conn, entry.callid, h.step, h.reason, now)
                if prepared:
                    quarantine.release(conn, entry.callid)
                    self._record(conn, prepared, entry.origin, now)
            if prepared:
                result.recorded.append(prepared[0].call.callid)
                log.info("call %s: processed again after quarantine, queued for delivery",
                         entry.callid)
            else:
                result.kept += held
                _log_quarantined(held, again=True)
        return result

    @staticmethod
    def _taken_by_another(conn, item: Prepared, entry: quarantine.Entry) -> bool:
        """Whether the re-read call reaches linkedids another call handled (then recording it
        would send that call a second time, or take a quarantined one's rows)."""
        owners = ledger.owners(conn, item.linkedids - set(entry.linkedids))
        return bool(set(owners.values()) - {entry.callid, item.call.callid})

    def _recording(self, call: Call, now: float, folders: Folders) -> tuple[str, bool, bool]:
        """(record_link, is_recorded, still awaited) for a call. A file that appears after
        `folders` listed its folder counts as not there yet: the late-recording look finds it."""
        found = find_recording(call, self.cfg.recordings, self.zone, now, folders)
        if found.state == "refused":
            log.warning("call %s: recording refused: %s", call.callid, found.reason)
            return "", False, False
        if found.state == "ready" and found.relpath:
            return self._link(found.relpath, now)[0], True, False
        awaited = found.retry and bool(self.cfg.recordings.base_url)
        if found.state == "wait":
            log.info("call %s: recording not finished yet (%s); its link follows", call.callid,
                     found.reason)
            return "", True, awaited
        if call.recording_candidates:
            log.info("call %s: no recording: %s", call.callid, found.reason)
        return "", False, awaited

    def _prune(self, now: float) -> None:
        """Forget delivered request bodies older than [state] keep_days, once an hour."""
        keep = self.cfg.state.keep_days
        if keep <= 0 or now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        with ledger.transaction(self.store) as conn:
            gone = ledger.prune(conn, now - keep * 86400)
        if gone:
            log.info("forgot %d delivered request(s) older than %d days", gone, keep)

    def _link(self, relpath: str, now: float) -> tuple[str, bool]:
        """(record_link, is_temp) for a found file; an mp3 copy when [recordings] mp3 is on."""
        if not self.cfg.recordings.base_url:
            return "", False
        if self.cfg.recordings.mp3:
            relpath = playable(relpath, self.cfg.recordings)
        return make_link(relpath, self.cfg.recordings, now)

    def _late_recordings(self, now: float) -> None:
        """Send `cmd=record` once for each call whose file appeared after its COMPLETED.

        Looked at no more than once a minute: a day of calls whose files never come (a
        recordings folder not mounted here) must not cost a folder search each per pass."""
        if not self.cfg.recordings.base_url or now - self._late_checked_at < LATE_EVERY:
            return
        self._late_checked_at = now
        folders = Folders(self.cfg.recordings.dir)
        with ledger.transaction(self.store) as conn:
            for item in late.due(conn, now):
                found = find_recording(item.call, self.cfg.recordings, self.zone, now, folders)
                if found.state == "ready" and found.relpath:
                    url, is_temp = self._link(found.relpath, now)
                    ledger.add_requests(conn, [pfreq.record_request(item.call.callid, url,
                                                                    is_temp)])
                    late.forget(conn, item.call.callid)
                    log.info("call %s: recording found late, link queued", item.call.callid)
                elif found.state in ("refused",) or item.expired:
                    late.forget(conn, item.call.callid)
                    log.info("call %s: recording given up: %s", item.call.callid, found.reason)
