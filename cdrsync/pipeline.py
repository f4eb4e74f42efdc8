"""One pass of cdrsync: find finished calls → interpret → resolve recording → remember → deliver.

The only place where the parts meet. The rule that keeps calls from being lost or doubled lives
here: a call's requests enter the ledger (the outbox) in the SAME state-store transaction that moves
the finder's cursor past its rows, and a request leaves the outbox only after Planfix answered 200.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Optional, TextIO

from . import finder, history
from .config import Config
from .courier import Courier
from .courier import available as courier_available
from .deliver import Deliverer, DrainResult
from .interpret import interpret
from .model import Call, CallRows
from .pbx.keeper import Keeper
from .planfix import messages as pfreq
from .planfix.client import PlanfixClient
from .recordings import late
from .recordings.convert import playable
from .recordings.links import make_link
from .recordings.resolve import Folders, find_recording
from .source.reader import Source
from .state import ledger
from .state.db import open_store

log = logging.getLogger("cdrsync.pipeline")

LATE_EVERY = 60.0  # s between two looks for recordings that were missing at COMPLETED time
PRUNE_EVERY = 3600.0  # s between two prunings of delivered request bodies


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
    skipped: list[str] = field(default_factory=list)
    drain: Optional[DrainResult] = None
    error: str = ""
    settled_at: Optional[float] = None  # when a call found settling is ready (`run` passes then)


class Pipeline:
    """Everything a pass needs, opened once and reused by every pass of a `run`."""

    def __init__(self, cfg: Config, *, dry_run: bool = False, out: Optional[TextIO] = None,
                 stop: Optional[threading.Event] = None) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.out = out
        self.stop = stop or threading.Event()
        self.store = open_store(cfg.state)
        self.source = Source.from_config(cfg)
        self.client = PlanfixClient(cfg.planfix)
        self.deliverer = Deliverer(self.store, self.client, cfg)
        self.zone = cfg.source.zone
        self.pbx_model = Keeper(self.store, self.source, cfg.pbx)  # the learned PBX model
        self._late_checked_at = float("-inf")
        self._pruned_at = float("-inf")

    def close(self) -> None:
        self.source.close()
        self.store.dispose()

    # ---- the regular pass -------------------------------------------------------------------
    def sync_pass(self, now: Optional[float] = None, drain_seconds: Optional[float] = None
                  ) -> PassResult:
        now = time.time() if now is None else now
        result = PassResult()
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
        self._remember(discovery, "sync", notify_missed=True, now=now, result=result)
        if not self.dry_run:
            self._late_recordings(now)
            result.drain = self.deliverer.drain(self.stop, max_seconds=drain_seconds)
            result.sent = result.drain.sent
            self._prune(now)
        return result

    # ---- history ----------------------------------------------------------------------------
    def backfill(self, since: datetime, until: Optional[datetime], *, notify_missed: bool,
                 now: Optional[float] = None,
                 progress: Optional[Callable[[int, int, Optional[float]], None]] = None
                 ) -> PassResult:
        """Import calls that started in [since, until): resumable, nothing sent twice.

        `progress(found, sent, share_done)` is called after every batch.
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
                    progress(result.found, result.sent, discovery.progress)
        finally:
            if courier is not None:
                result.drain = courier.finish(self.stop)
                result.sent = result.drain.sent
                if progress:
                    progress(result.found, result.sent, None)
        if courier is None and not self.dry_run and not self.stop.is_set() and not (
                result.drain and result.drain.unauthorized):
            result.drain = self.deliverer.drain(self.stop)
            result.sent += result.drain.sent
        return result

    # ---- the parts ------------------------------------------------------------------------
    def _handled(self, linkedids: Iterable[str]) -> set[str]:
        with self.store.connect() as conn:
            return ledger.handled_linkedids(conn, linkedids)

    def _remember(self, discovery: finder.Discovery, origin: str, *, notify_missed: bool,
                  now: float, result: PassResult) -> int:
        """Interpret the discovery's calls and record them with their requests, moving the
        cursor in the same transaction; returns the number of requests queued."""
        prepared = list(self._prepare(discovery.calls, notify_missed, now, result))
        if self.dry_run:
            for item in prepared:
                for request in item.requests:
                    self._print(pfreq.as_dry_run(request))
                    result.printed += 1
            return 0
        with ledger.transaction(self.store) as conn:
            ledger.record_calls(conn, [(item.call, item.linkedids, item.requests)
                                       for item in prepared], origin)
            for item in prepared:
                if item.await_recording:
                    late.remember(conn, item.call, now + self.cfg.recordings.late_window)
            discovery.commit(conn)
        self.pbx_model.save(now)
        result.recorded += len(prepared)
        return sum(len(item.requests) for item in prepared)

    def _prepare(self, calls: list[CallRows], notify_missed: bool, now: float,
                 result: PassResult) -> Iterator[Prepared]:
        folders = Folders(self.cfg.recordings.dir)  # each recordings folder listed once a batch
        model = self.pbx_model.learn_calls(calls)
        for rows in calls:
            try:
                call = interpret(rows, self.cfg.pbx, self.zone, model)
            except Exception as exc:  # one bad call must not stop the others (logged, counted)
                log.error("call %s skipped: its rows could not be interpreted: %s", rows.callid,
                          exc)
                result.skipped.append(rows.callid)
                continue
            for reason in call.reasons:
                log.debug("call %s: %s", call.callid, reason)
            link, recorded, awaited = self._recording(call, now, folders)
            requests = pfreq.completed_requests(call, self.cfg, record_link=link,
                                                recorded=recorded)
            # a late `cmd=record` only makes sense for a call Planfix got a COMPLETED for
            awaited = awaited and bool(requests)
            if notify_missed:
                requests += pfreq.missed_requests(call, self.cfg)
            yield Prepared(call, rows.linkedids, requests, awaited)

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

    def _print(self, payload: dict) -> None:
        if self.out is not None:
            self.out.write(json.dumps(payload, ensure_ascii=False) + "\n")
            self.out.flush()
