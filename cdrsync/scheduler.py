"""`cdrsync run`: passes one after another, each planning the next as a one-shot APScheduler job.

A pass is a `date` job that, when it ends, adds the next one: at its own start + [schedule]
interval, sooner when a call it found settling is ready then (`settled_at`), at once when it left
work waiting (more LINKEDID_END events than a pass reads). Only the pass in flight ever plans the
next, so two never overlap and APScheduler never has to refuse one (no "maximum number of running
instances" warning, whatever a pass costs); a suspend or a pass longer than the interval makes
ONE late pass, run as soon as possible (`misfire_grace_time=None`). A pass that fails on the PBX
database is logged and retried at the next interval; an unexpected error is logged when it first
happens (again only once it changes) and retried too; a state store that can not be written stops
the daemon (systemd restarts it once the disk is fixed; nothing is lost). Shutdown waits for the
pass in flight.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from apscheduler.schedulers.background import BackgroundScheduler

from .config import ConfigError
from .state.db import StoreError

log = logging.getLogger("cdrsync.run")
PASS_JOB = "pass"
STATS_EVERY = 15.0  # s between two readings of the outbox's counts for the metrics


def run_forever(pipeline, stop: threading.Event, one_pass: Callable[[], Any]) -> None:
    """Run passes until `stop` is set; re-raise a StoreError that ended the daemon."""
    from . import metrics as metrics_mod
    from .readiness import notify

    cfg = pipeline.cfg
    fatal: list[BaseException] = []
    failure = _Failures()
    metrics = metrics_mod.Metrics(metrics_mod.pbx_label(cfg))
    observer = _Observer(metrics, pipeline)
    try:
        server = metrics.serve(cfg.metrics.listen) if cfg.metrics.listen else None
    except OSError as exc:
        raise ConfigError(f"metrics.listen: cannot listen on {cfg.metrics.listen}: "
                          f"{exc.strerror or exc}") from None

    # APScheduler's shutdown holds its job-store lock while it waits for the pass in flight, so a
    # pass must not reach for the scheduler once shutdown may have begun (it would wait forever)
    closing = threading.Lock()
    closed = threading.Event()
    numbers = itertools.count(1)

    def plan(when: float) -> None:
        # a new id each time: APScheduler counts the pass that plans it as running until it
        # returns, and would refuse (and drop) a next pass of the same id due at once
        with closing:
            if not closed.is_set() and not stop.is_set():
                scheduler.add_job(job, "date", run_date=datetime.fromtimestamp(when, timezone.utc),
                                  id=f"{PASS_JOB}-{next(numbers)}")

    def job() -> None:
        if stop.is_set():
            return
        started = time.time()
        again = started + cfg.schedule.interval  # a failed pass is tried again an interval on
        try:
            result = one_pass()
            again = next_run(started, time.time(), cfg.schedule.interval, result)
            failure.cleared()
            observer.observe(result, time.time())
            notify("WATCHDOG=1")
        except StoreError as exc:  # the store can not be written: the daemon stops
            fatal.append(exc)
            stop.set()
        except Exception as exc:  # caught here, not by APScheduler, which logs every one
            failure.report(exc)
        finally:
            plan(again)

    # a pass planned for a moment the machine slept through still runs, once, when it wakes
    scheduler = BackgroundScheduler(timezone=timezone.utc,
                                    job_defaults={"misfire_grace_time": None})
    scheduler.start()
    plan(time.time())
    notify("READY=1")
    log.info("running: a pass every %d s (state %s)", cfg.schedule.interval,
             pipeline.store.url.render_as_string(hide_password=True))
    try:
        stop.wait()
    finally:
        notify("STOPPING=1")
        with closing:
            closed.set()
        # emptied while it still runs: shutdown marks the scheduler stopped before it takes the
        # job store's lock, and a pass APScheduler has just submitted (one that stopped the
        # daemon at once) would then be looked for among jobs not yet started, JobLookupError
        # and a traceback in its thread; this waits for that lock, so the pass is filed away
        scheduler.remove_all_jobs()
        scheduler.shutdown(wait=True)  # the pass in flight finishes its request first
        if server is not None:
            server.shutdown()
        log.info("stopped")
    if fatal:
        raise fatal[0]


def next_run(started: float, ended: float, interval: float, result: Any) -> float:
    """When the pass after one that ran from `started` to `ended` begins (UTC epoch): at once if
    it left work waiting, at `settled_at` if a call it found settling is ready before the
    interval is over, else an interval after it started; never before it ended."""
    if result.more:
        return ended
    when = started + interval
    if result.settled_at is not None:
        when = min(when, result.settled_at)
    return max(ended, when)


class _Failures:
    """Unexpected pass failures, logged once each: a bug that fails every pass would otherwise
    write a line a second."""

    def __init__(self) -> None:
        self._last = ""

    def report(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last:
            log.exception("pass failed unexpectedly: %s; the next passes try again", text)
        else:
            log.debug("pass failed again: %s", text)
        self._last = text

    def cleared(self) -> None:
        if self._last:
            log.info("passes work again")
        self._last = ""


class _Observer:
    """Feeds the metrics after a pass: how it ended, what it delivered, and the outbox as the
    store counts it (which survives restarts, unlike the counters). The counts cost a store query:
    read after a pass that changed the outbox or the quarantine, else every STATS_EVERY s, and never
    when no one reads the metrics (neither `listen` nor `textfile`); the textfile is rewritten when
    they are read: an idle pass a second stays cheap, and node-exporter (which reads the file when
    Prometheus scrapes, every 15 s or more) misses nothing."""

    def __init__(self, metrics, pipeline) -> None:
        self.metrics, self.pipeline = metrics, pipeline
        cfg = pipeline.cfg.metrics
        self.exported = bool(cfg.listen or cfg.textfile)
        self._stats_at = float("-inf")

    def observe(self, result, now: float) -> None:
        metrics, drain = self.metrics, result.drain
        if result.error:
            ended = "failed"
        elif drain is not None and drain.unauthorized:
            ended = "unauthorized"
        elif drain is not None and drain.stalled:
            ended = "stalled"
        else:
            ended = "ok"
        metrics.observe_pass(ended, now)
        metrics.calls.inc(result.recorded)
        changed = bool(result.recorded or result.quarantined)
        if drain is not None:
            metrics.requests_sent.inc(drain.sent)
            metrics.requests_refused.inc(drain.failed)
            metrics.requests_retried.inc(drain.retried)
            for lag in drain.lags:
                metrics.observe_delivery(lag)
            changed = changed or bool(drain.sent or drain.failed or drain.retried
                                      or drain.skipped)
        if self.exported and (changed or now - self._stats_at >= STATS_EVERY):
            self._stats_at = now
            self._outbox()
            if self.pipeline.cfg.metrics.textfile:
                metrics.write_textfile(self.pipeline.cfg.metrics.textfile)

    def _outbox(self) -> None:
        from .state import ledger, quarantine

        with self.pipeline.store.connect() as conn:
            stats = ledger.stats(conn)
            self.metrics.quarantined.set(quarantine.count(conn))
        for state in ledger.STATES:
            self.metrics.outbox(state).set(stats[state])
        oldest = stats["oldest_undelivered"]
        self.metrics.oldest_undelivered.set(oldest["age"] if oldest else 0)
