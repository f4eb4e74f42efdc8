"""`cdrsync run`: an APScheduler job every [schedule] interval seconds.

`max_instances=1` keeps two passes from overlapping; `coalesce=True` with no misfire grace limit
turns every interval missed during a suspend or a long pass into ONE catch-up pass. A pass that
leaves a call settling (CEL mode: `cel_settle` after its LINKEDID_END was first seen) brings the
next pass forward to the moment the call is ready, so it is delivered `cel_settle` after it was
seen, not a whole interval later. A pass that fails on the PBX database is logged and retried at
the next interval; a state store that can not be written stops the daemon (systemd restarts it
once the disk is fixed; nothing is lost).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .config import ConfigError
from .state.db import StoreError

log = logging.getLogger("cdrsync.run")
PASS_JOB = "pass"


def run_forever(pipeline, stop: threading.Event, one_pass: Callable[[], Any]) -> None:
    """Run passes until `stop` is set; re-raise a StoreError that ended the daemon."""
    from . import metrics as metrics_mod
    from .readiness import notify

    cfg = pipeline.cfg
    fatal: list[BaseException] = []
    metrics = metrics_mod.Metrics(metrics_mod.pbx_label(cfg))
    try:
        server = metrics.serve(cfg.metrics.listen) if cfg.metrics.listen else None
    except OSError as exc:
        raise ConfigError(f"metrics.listen: cannot listen on {cfg.metrics.listen}: "
                          f"{exc.strerror or exc}") from None

    # APScheduler's shutdown holds its job-store lock while it waits for the pass in flight, so a
    # pass must not reach for the scheduler once shutdown may have begun (it would wait forever)
    closing = threading.Lock()
    closed = threading.Event()

    def job() -> None:
        if stop.is_set():
            return
        result = one_pass()
        with closing:
            if not closed.is_set():
                _hurry(scheduler, result.settled_at)
        _observe(metrics, pipeline, result)
        if cfg.metrics.textfile:
            metrics.write_textfile(cfg.metrics.textfile)
        notify("WATCHDOG=1")

    def on_error(event: JobExecutionEvent) -> None:
        exc: Optional[BaseException] = event.exception
        if isinstance(exc, StoreError):
            fatal.append(exc)
        else:
            log.error("pass failed unexpectedly: %s: %s; the next pass tries again",
                      type(exc).__name__, exc)
        if fatal:
            stop.set()

    scheduler = BackgroundScheduler(timezone=timezone.utc, job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    scheduler.add_listener(on_error, EVENT_JOB_ERROR)
    scheduler.add_job(job, IntervalTrigger(seconds=cfg.schedule.interval),
                      next_run_time=datetime.now(timezone.utc), id=PASS_JOB)
    scheduler.start()
    notify("READY=1")
    log.info("running: a pass every %d s (state %s)", cfg.schedule.interval,
             pipeline.store.url.render_as_string(hide_password=True))
    try:
        stop.wait()
    finally:
        notify("STOPPING=1")
        with closing:
            closed.set()
        scheduler.shutdown(wait=True)  # the pass in flight finishes its request first
        if server is not None:
            server.shutdown()
        log.info("stopped")
    if fatal:
        raise fatal[0]


def _hurry(scheduler: BackgroundScheduler, settled_at: Optional[float]) -> None:
    """Run the next pass at `settled_at` if that is sooner than planned (the interval then counts
    from it)."""
    if settled_at is None:  # the common case: nothing settling, the scheduler is not asked
        return
    job = scheduler.get_job(PASS_JOB)
    if job is None or job.next_run_time is None:
        return
    when = datetime.fromtimestamp(settled_at, timezone.utc)
    if when < job.next_run_time:
        job.modify(next_run_time=when)


def _observe(metrics, pipeline, result) -> None:
    """Feed the metrics after a pass: how it ended, what it delivered, and the outbox as the
    store counts it (which survives restarts, unlike the counters)."""
    import time

    from .state import ledger, quarantine

    drain = result.drain
    if result.error:
        ended = "failed"
    elif drain is not None and drain.unauthorized:
        ended = "unauthorized"
    elif drain is not None and drain.stalled:
        ended = "stalled"
    else:
        ended = "ok"
    metrics.observe_pass(ended, time.time())
    metrics.calls.inc(result.recorded)
    if drain is not None:
        metrics.requests_sent.inc(drain.sent)
        metrics.requests_refused.inc(drain.failed)
        metrics.requests_retried.inc(drain.retried)
        for lag in drain.lags:
            metrics.observe_delivery(lag)
    with pipeline.store.connect() as conn:
        stats = ledger.stats(conn)
        metrics.quarantined.set(quarantine.count(conn))
    for state in ledger.STATES:
        metrics.outbox(state).set(stats[state])
    oldest = stats["oldest_undelivered"]
    metrics.oldest_undelivered.set(oldest["age"] if oldest else 0)
