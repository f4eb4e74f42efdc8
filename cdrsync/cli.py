"""The `cdrsync` command line. Every command: a clear --help, one-line errors, exit codes.

Exit codes: 0 ok (also: another cdrsync already works, so this one had nothing to do),
1 the work failed (database unreachable, Planfix refused...), 2 wrong usage or configuration,
or a state store that can not be written.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import date, datetime
from datetime import time as dtime
from typing import Any, Optional

import click

from . import __version__, logs
from . import config as config_mod
from .config import Config, ConfigError, redact
from .lock import HISTORY, LIVE, Busy, StoreLock
from .state.db import StoreError

log = logging.getLogger("cdrsync.cli")

GC_EVERY = 100_000  # net allocations between two youngest-generation collections in a backfill


class Context:
    def __init__(self, config_path: Optional[str], verbose: int, log_format: Optional[str],
                 demo: bool) -> None:
        self.config_path = config_path
        self.verbose = verbose
        self.log_format = log_format
        self.demo = demo
        self._cfg: Optional[Config] = None

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            if self.demo:
                from .demo import demo_config

                self._cfg = demo_config()
            else:
                self._cfg = config_mod.load(self.config_path)
            logs.setup(self._cfg, self.verbose, self.log_format)
        return self._cfg


class Failure(click.ClickException):
    """An expected failure: `cdrsync: <one line>` on stderr, then the exit code of its kind.
    The message is redacted with the configuration, if one was loaded."""

    def __init__(self, message: str, cfg: Optional[Config] = None) -> None:
        super().__init__(redact(message, cfg))

    def show(self, file: Optional[Any] = None) -> None:
        click.echo(f"cdrsync: {self.format_message()}", err=True)


class WorkFailed(Failure):
    """Exit 1: the work failed (the PBX database unreachable, a call not found, a bug)."""

    exit_code = 1


class BadSetup(Failure):
    """Exit 2: the configuration is wrong, or the state store can not be written."""

    exit_code = 2


def _as_failure(exc: Exception, cfg: Optional[Config]) -> Optional[Failure]:
    """The library's expected errors (it knows nothing of click), as the command line says them."""
    from .source.reader import SourceError

    if isinstance(exc, ConfigError):
        return BadSetup(f"configuration: {exc}", cfg)
    if isinstance(exc, StoreError):
        return BadSetup(f"state store: {exc}; nothing was lost, fix it and start again", cfg)
    if isinstance(exc, SourceError):  # most of its messages name the PBX database already
        text = str(exc) if str(exc).startswith("PBX database") else f"PBX database: {exc}"
        return WorkFailed(text, cfg)
    return None


class _Command(click.Command):
    """Every command turns the library's expected errors into a `Failure`, and a bug into one
    `internal error` line (its traceback with -v): never a traceback by default."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # whoever read stdout has gone (`cdrsync sync --dry-run | head`): nothing to say;
            # stdout goes to /dev/null so that the interpreter's last flush fails no more
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(1) from None
        except Exception as exc:
            obj = ctx.obj if isinstance(ctx.obj, Context) else None
            cfg = obj._cfg if obj is not None else None
            failure = _as_failure(exc, cfg)
            if failure is not None:
                raise failure from exc
            if obj is not None and obj.verbose:
                raise
            raise WorkFailed(f"internal error: {type(exc).__name__}: {exc} "
                             "(run with -v for the details)", cfg) from exc


class _Group(click.Group):
    """`cdrsync`: its commands, and those of any group added under it, are `_Command`s."""

    command_class = _Command
    group_class = type  # a sub-group is a _Group too


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH",
              help="Config file (default: $CDRSYNC_CONFIG, else /etc/cdrsync/cdrsync.toml).")
@click.option("-v", "--verbose", count=True, help="Log the reasoning behind each call.")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Log line format on stderr (overrides [log] format).")
@click.option("--demo", is_flag=True,
              help="Use the small asteriskcdrdb copy shipped with cdrsync and a throw-away state "
                   "store instead of a config file (try: cdrsync --demo sync --dry-run).")
@click.version_option(__version__, prog_name="cdrsync")
@click.pass_context
def main(ctx: click.Context, config_path: Optional[str], verbose: int,
         log_format: Optional[str], demo: bool) -> None:
    """Deliver every finished Asterisk / FreePBX call from asteriskcdrdb into Planfix.

    Reads the PBX's cdr and cel tables read-only, rebuilds each call and posts it to
    Planfix's telephony API, exactly once.
    """
    logs.setup(None, verbose, log_format)
    ctx.obj = Context(config_path, verbose, log_format, demo)


def _pipeline(obj: Context, dry_run: bool = False, stop: Optional[threading.Event] = None):
    from .dryrun import DryRunOut
    from .pipeline import Pipeline

    return Pipeline(obj.cfg, dry_run=dry_run, out=DryRunOut(sys.stdout) if dry_run else None,
                    stop=stop)


def _tell_dry_run(pipeline) -> None:
    """After a dry run's requests (stdout), what they add up to, for a person (stderr)."""
    if pipeline.dry_run:
        click.echo("\n".join(pipeline.out.summary()), err=True)


def _locked(obj: Context, job: str = LIVE) -> StoreLock:
    """The lock of a reading job: LIVE (sync, run, retry) or HISTORY (backfill); sending has
    its own lock, taken by the deliverer (`lock` module)."""
    return StoreLock(obj.cfg.state, job)


def _stop_on_signals() -> threading.Event:
    """SIGTERM/SIGINT: finish the request in flight, remember, exit cleanly."""
    stop = threading.Event()

    def handler(signum, _frame):
        log.info("signal %s received: finishing the current request, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


@main.command()
@click.option("--dry-run", is_flag=True,
              help="Send and record nothing; print each request that would be sent as one JSON "
                   "object per line on stdout.")
@click.pass_obj
def sync(obj: Context, dry_run: bool) -> None:
    """One pass and exit (for cron): new finished calls to Planfix.

    If another cdrsync (the daemon, or a previous cron run) is working, say so and exit 0.

    Example: cdrsync --config /etc/cdrsync/cdrsync.toml sync
    """
    cfg = obj.cfg
    stop = _stop_on_signals()
    try:
        with _locked(obj):
            pipeline = _pipeline(obj, dry_run, stop)
            try:
                result = _timed_pass(pipeline, "sync", lambda: pipeline.sync_pass(
                    drain_seconds=_drain_budget(cfg)))
                _tell_dry_run(pipeline)
            finally:
                pipeline.close()
    except Busy as exc:
        click.echo(f"cdrsync: {exc}; nothing to do", err=True)
        return
    if result.error:
        sys.exit(1)
    if result.drain is not None and result.drain.unauthorized:
        sys.exit(1)


def _drain_budget(cfg: Config) -> float:
    """Seconds a pass may spend sending a backlog: the next pass (and the systemd watchdog,
    fed after each pass) must not wait for hours behind a long queue."""
    return max(cfg.schedule.interval * 6, 60)


def _collect_rarely() -> None:
    """Spare a long run most of the cyclic garbage collector's work.

    A backfill makes millions of short-lived objects (rows, events, requests) that reference
    counting frees; what is alive at the start (modules, SQLAlchemy, the configuration) lives as
    long as the process. With Python's defaults the collector runs every 700 allocations and
    keeps walking both: frozen, the start-up objects are never walked again, and a collection
    every GC_EVERY allocations still bounds what cycles can pile up. The count is of objects
    made less those freed, so above what one batch holds at once (its rows, events and calls:
    some 50,000 objects at 500 calls) a collection comes seldom; below it, every batch paid
    several, each walking the batch's big lists (0.3-0.4 s of a 22,594-call dry run at 20,000,
    0.06-0.08 s at 100,000, peak memory the same).
    """
    gc.freeze()
    gc.set_threshold(GC_EVERY, 20, 20)


IDLE_NOTED_EVERY = 60.0  # s: passes that find nothing are logged and remembered once this often


def _timed_pass(pipeline, kind: str, work):
    """Run a pass, log its summary line, remember it for `status`."""
    from .pipeline import PassResult
    from .source.reader import SourceError
    from .state import ledger, passes

    started = time.time()
    try:
        result = work()
    except SourceError as exc:
        result = PassResult(error=str(exc))
    again = bool(result.error) and result.error == pipeline.failing
    if result.error:  # the error names the database; said again only when it changes
        (log.debug if again else log.error)("pass failed: %s; the next pass tries again",
                                            result.error)
    elif pipeline.failing:
        log.info("the PBX database answers again")
    pipeline.failing = result.error
    sent = result.sent
    error = f", error: {result.error}" if result.error else ""
    # a pass a second that finds nothing (or fails as the one before) is not worth a line and a
    # store write each: one a minute
    idle = not (result.found or result.recorded or sent or result.quarantined
                or (result.error and not again))
    if idle and started - pipeline.idle_noted_at < IDLE_NOTED_EVERY:
        log.debug("%s pass: nothing new", kind)
        return result
    if idle:
        pipeline.idle_noted_at = started
    if pipeline.dry_run:
        log.info("%s pass (dry run): %d call(s) found, %d request(s) printed, %d would be "
                 "quarantined; nothing sent or recorded%s", kind, result.found, result.printed,
                 len(result.quarantined), error)
        return result
    log.info("%s pass: %d call(s) found, %d recorded, %d sent, %d quarantined%s", kind,
             result.found, result.recorded, sent, len(result.quarantined), error)
    with ledger.transaction(pipeline.store) as conn:
        passes.remember(conn, kind, started, time.time(), result.found, sent, result.error)
    return result


@main.command()
@click.pass_obj
def run(obj: Context) -> None:
    """The daemon: a pass every [schedule] interval seconds until SIGTERM/SIGINT.

    Never two passes at once; after a suspend or a pass longer than the interval it runs once,
    not once per missed interval. On SIGTERM the request in flight is finished first.

    Example: cdrsync --config /etc/cdrsync/cdrsync.toml run
    """
    from .scheduler import run_forever

    stop = _stop_on_signals()
    try:
        with _locked(obj) as lock:
            pipeline = _pipeline(obj, stop=stop)
            # history waits for the next live pass after an interval's worth of it
            pipeline.deliverer.history_slice = obj.cfg.schedule.interval

            def one_pass():
                lock.check()  # a server lock goes with its connection: never run unlocked
                return _timed_pass(pipeline, "sync", lambda: (
                    pipeline.sync_pass(drain_seconds=_drain_budget(obj.cfg))))

            try:
                run_forever(pipeline, stop, one_pass)
            finally:
                pipeline.close()
    except Busy as exc:
        click.echo(f"cdrsync: {exc}; not starting a second daemon", err=True)


STEPS = 1000  # resolution of the backfill progress bar
QUARANTINE_LISTED = 20  # quarantined calls `status` lists by name (the count covers all)


def _parse_day(value: Optional[str], name: str) -> Optional[datetime]:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2024-01-01 or 2024-01-01T08:00",
                                 param_hint=name) from None
    if isinstance(parsed, date) and len(value) <= 10:
        parsed = datetime.combine(parsed.date(), dtime.min)
    return parsed


@main.command()
@click.option("--since", required=True, metavar="DATE",
              help="First day to import (PBX local time), e.g. 2024-01-01.")
@click.option("--until", metavar="DATE", help="Stop before this day (default: now).")
@click.option("--dry-run", is_flag=True, help="Send and record nothing; print the requests.")
@click.option("--notify-missed", is_flag=True,
              help="Also send missed-call notifications (history is not news: off by default).")
@click.pass_obj
def backfill(obj: Context, since: str, until: Optional[str], dry_run: bool,
             notify_missed: bool) -> None:
    """Import history: every call that started from --since up to --until.

    Stopped and started again, it continues where it was. Calls the regular sync already sent
    are not sent again, and sync will not resend what backfill sent. Honours [planfix] rate.

    Example: cdrsync backfill --since 2024-01-01 --until 2024-07-01
    """
    since_dt = _parse_day(since, "--since")
    until_dt = _parse_day(until, "--until")
    if until_dt is not None and since_dt is not None and until_dt <= since_dt:
        raise click.BadParameter("must be after --since", param_hint="--until")
    from .budget import duration

    stop = _stop_on_signals()
    _collect_rarely()
    try:
        with _locked(obj, HISTORY):
            pipeline = _pipeline(obj, dry_run, stop)
            try:
                with click.progressbar(length=STEPS, label="backfill", file=sys.stderr,
                                       show_eta=True, show_percent=True,
                                       item_show_func=lambda text: text) as bar:
                    started = time.time()

                    def progress(found: int, sent: int, share: Optional[float],
                                 eta: Optional[float]) -> None:
                        rate = sent / max(time.time() - started, 1e-6)
                        step = int((share or 0.0) * STEPS)
                        sending = f", sending done in ~{duration(eta)}" if eta else ""
                        bar.update(max(0, step - bar.pos),
                                   f"{found} calls found, {sent} sent, {rate:.0f}/s{sending}")

                    result = _timed_pass(pipeline, "backfill", lambda: pipeline.backfill(
                        since_dt, until_dt, notify_missed=notify_missed, progress=progress))
                _tell_dry_run(pipeline)
            finally:
                pipeline.close()
    except Busy as exc:
        click.echo(f"cdrsync: {exc}; nothing to do", err=True)
        return
    if result.error or (result.drain is not None and result.drain.unauthorized):
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def status(obj: Context, as_json: bool) -> None:
    """Last pass, cursors, calls sent / pending / failed, the oldest undelivered call, and the
    calls in quarantine (rows no step could process) with the reason of each (the first 20;
    --json lists all).

    Example: cdrsync status
    """
    cfg = obj.cfg
    from .state import ledger, passes, progress, quarantine
    from .state.db import open_store

    store = open_store(cfg.state)
    with store.connect() as conn:
        report = {
            "last_pass": passes.last(conn),
            "last_good_pass": passes.last(conn, ok_only=True),
            "cursors": {name: value for name, (value, _at) in
                        progress.read_cursors(conn).items()},
            "delivery": ledger.stats(conn),
            "quarantine": {"count": quarantine.count(conn),
                           "calls": [e.as_dict() for e in quarantine.entries(conn)]},
        }
    store.dispose()
    if as_json:
        click.echo(json.dumps(report, default=str, ensure_ascii=False))
        return
    for line in _status_lines(report):
        click.echo(line)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 86400:
        return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min {seconds % 60} s"


def _cursor_text(name: str, value: str) -> str:
    """Cursors that hold a moment (epoch seconds) are shown as a local time."""
    if name in ("horizon", "long_scan_at"):
        try:
            return datetime.fromtimestamp(float(value)).isoformat(" ", "seconds")
        except (ValueError, OverflowError, OSError):  # not a moment this machine can show
            return value
    return value


def _status_lines(report: dict) -> list[str]:
    def when(ts: Optional[float]) -> str:
        return datetime.fromtimestamp(ts).isoformat(" ", "seconds") if ts else "never"

    lines = []
    last = report["last_pass"]
    if last:
        lines.append(f"last pass:        {last['kind']} at {when(last['finished'])}, "
                     f"{last['found']} found, {last['sent']} sent"
                     + (f", error: {last['error']}" if last["error"] else ""))
    else:
        lines.append("last pass:        never")
    good = report["last_good_pass"]
    lines.append(f"last good pass:   {when(good['finished']) if good else 'never'}")
    for name, value in sorted(report["cursors"].items()):
        lines.append(f"cursor {name}: {_cursor_text(name, value)}")
    d = report["delivery"]
    lines.append(f"calls recorded:   {d.get('calls', 0)}")
    lines.append(f"requests sent:    {d.get('sent', 0)}")
    lines.append(f"pending:          {d.get('pending', 0)}")
    hint = "  (cdrsync retry --failed, or cdrsync skip CALLID)" if d.get("failed") else ""
    lines.append(f"failed:           {d.get('failed', 0)}{hint}")
    lines.append(f"skipped:          {d.get('skipped', 0)}")
    oldest = d.get("oldest_undelivered")
    if oldest:
        lines.append(f"oldest undelivered: call {oldest['callid']}, waiting "
                     f"{_age(oldest['age'])}")
    last_error = d.get("last_error")
    if last_error:
        lines.append(f"last Planfix error: call {last_error['callid']}: {last_error['error']}")
    for flag in ("stalled", "unauthorized", "budget"):
        if d.get(flag):
            lines.append(f"delivery {flag} since {when(d[flag]['since'])}: {d[flag]['value']}")
    lines += _quarantine_lines(report["quarantine"])
    return lines


def _quarantine_lines(report: dict) -> list[str]:
    from .state.quarantine import Entry, summary

    total = report["count"]
    hint = "  (cdrsync show CALLID; cdrsync retry --quarantined [CALLID])" if total else ""
    lines = [f"quarantined:      {total}{hint}"]
    listed = [Entry(**{**e, "linkedids": tuple(e["linkedids"])})
              for e in report["calls"][:QUARANTINE_LISTED]]
    lines += [f"  {summary(entry)}" for entry in listed]
    if total > len(listed):
        lines.append(f"  ... and {total - len(listed)} more (cdrsync status --json)")
    return lines


@main.command()
@click.argument("callid")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def show(obj: Context, callid: str, as_json: bool) -> None:
    """The raw rows of a call, the call as cdrsync rebuilt it with the reasoning, and what was
    sent to Planfix for it.

    CALLID is the callid sent to Planfix (the call's smallest linkedid), or any linkedid of it.

    Example: cdrsync show 1795697854.0
    """
    from . import finder
    from .pbx.keeper import current
    from .show import render_call
    from .source.reader import Source
    from .state import ledger, quarantine
    from .state.db import open_store

    cfg = obj.cfg
    source = Source.from_config(cfg)
    store = open_store(cfg.state)
    try:
        rows = finder.rows_for_callid(source, callid, cfg.source.zone)
        model = current(cfg.state, source, cfg.pbx)[0] if rows is not None else None
    finally:
        source.close()
    with store.connect() as conn:
        held = quarantine.entries(conn, quarantine.WAITING + (quarantine.DROPPED,), callid)
        delivery = ledger.summary(conn, rows.callid) if rows is not None else None
    store.dispose()
    if rows is None:
        if held:
            raise WorkFailed(f"call {callid} has no rows in the PBX database any more; it was "
                             f"quarantined: {quarantine.summary(held[0])}")
        raise WorkFailed(f"no rows for call {callid} in the PBX database")
    click.echo(render_call(rows, cfg, as_json, delivery, held[0] if held else None, model))


@main.command("pbx")
@click.option("--fresh", is_flag=True,
              help="Learn from the newest rows of the PBX now, not from the stored model.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def pbx_model(obj: Context, fresh: bool, as_json: bool) -> None:
    """What cdrsync learned about the PBX: phones and their devices, trunks, ring groups and
    queues with their members, IVRs, voicemail boxes, parking lots, conference rooms, each
    with the evidence it was learned from.

    Example: cdrsync pbx
    """
    from dataclasses import asdict

    from .pbx.keeper import current
    from .pbx.report import lines
    from .source.reader import Source

    cfg = obj.cfg
    source = Source.from_config(cfg)
    try:
        model, where = current(cfg.state, source, cfg.pbx, fresh)
    finally:
        source.close()
    if as_json:
        click.echo(json.dumps({"source": where, "rows": model.rows, "calls": model.calls,
                               "known": [asdict(k) for k in model.known]}))
        return
    click.echo(f"({where})")
    for text in lines(model):
        click.echo(text)


@main.command()
@click.argument("callid", required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed call.")
@click.option("--quarantined", is_flag=True,
              help="Process quarantined calls again (all, or CALLID): their rows are re-read and "
                   "rebuilt, and queued for delivery if that now works.")
@click.pass_obj
def retry(obj: Context, callid: Optional[str], all_failed: bool, quarantined: bool) -> None:
    """Send a failed call (Planfix said 400) again, at the next pass; or, with --quarantined,
    process again calls no step could process before (after an upgrade or a fix of the rows).

    A quarantined call that now works is queued and sent by the next pass; one that still fails
    stays quarantined with the new reason. When the daemon is running, it does the work within
    10 s.

    Example: cdrsync retry --failed   or   cdrsync retry --quarantined 1795697854.0
    """
    from .state import ledger
    from .state.db import open_store

    if quarantined:
        if all_failed:
            raise click.UsageError("give --failed or --quarantined, not both")
        _retry_quarantined(obj, callid)
        return
    if bool(callid) == all_failed:
        raise click.UsageError("give a CALLID, --failed or --quarantined")
    store = open_store(obj.cfg.state)
    with store.begin() as conn:
        count = ledger.retry(conn, None if all_failed else callid)
    store.dispose()
    click.echo(f"{count} request(s) queued again")
    if not count:
        sys.exit(1)


def _retry_quarantined(obj: Context, callid: Optional[str]) -> None:
    """Mark the calls for a retry, then do it here unless another cdrsync is working (that one
    does it within RETRY_EVERY s: a daemon need not be stopped for it)."""
    from .pipeline import RETRY_EVERY
    from .state import quarantine
    from .state.db import open_store

    store = open_store(obj.cfg.state)
    with store.begin() as conn:
        wanted = None if callid is None else [e.callid for e in quarantine.entries(
            conn, callid=callid)]
        marked = quarantine.mark(conn, wanted, quarantine.RETRY)
    store.dispose()
    if not marked:
        raise WorkFailed(f"call {callid} is not quarantined" if callid
                         else "no call is quarantined")
    try:
        with _locked(obj):
            pipeline = _pipeline(obj)
            try:
                outcome = pipeline.retry_quarantined()
            finally:
                pipeline.close()
    except Busy as exc:
        click.echo(f"{len(marked)} quarantined call(s) marked; {exc}: it processes them within "
                   f"{RETRY_EVERY:.0f} s")
        return
    for done in outcome.recorded:
        click.echo(f"{done}: processed, queued for delivery at the next pass")
    for held in outcome.kept:
        click.echo(f"{held.callid}: still quarantined ({held.step}): {held.reason}")
    if outcome.kept:
        sys.exit(1)


@main.command()
@click.argument("callid")
@click.pass_obj
def skip(obj: Context, callid: str) -> None:
    """Drop a call's undelivered requests: it will not be sent. A quarantined call is dropped
    from the quarantine (it stays handled: no pass picks it up again).

    Example: cdrsync skip 1795697854.0
    """
    from .state import ledger, quarantine
    from .state.db import open_store

    store = open_store(obj.cfg.state)
    with store.begin() as conn:
        count = ledger.skip(conn, callid)
        dropped = quarantine.mark(conn, [e.callid for e in quarantine.entries(conn, callid=callid)],
                                  quarantine.DROPPED)
    store.dispose()
    click.echo(f"{count} request(s) skipped")
    for gone in dropped:
        click.echo(f"call {gone} dropped from the quarantine")
    if not count and not dropped:
        sys.exit(1)


@main.command()
@click.pass_obj
def check(obj: Context) -> None:
    """Preflight: database, tables, privileges, time zone, recordings, Planfix, state store.

    Exit code 0 all good, 1 warnings, 2 something blocks.

    Example: cdrsync check
    """
    from .check import exit_code, format_results, run_checks

    results = run_checks(obj.cfg)
    for line in format_results(results):
        click.echo(line)
    sys.exit(exit_code(results))


@main.command("serve-recordings")
@click.pass_obj
def serve_recordings(obj: Context) -> None:
    """Serve recordings read-only to holders of a signed link, on [recordings] listen.

    For boxes without a web server to configure; point [recordings] base_url at it.

    Example: cdrsync serve-recordings
    """
    from .recordings.serve import make_server

    try:
        server = make_server(obj.cfg.recordings)
    except (ValueError, OSError) as exc:
        raise BadSetup(f"serve-recordings: {exc}", obj.cfg) from None
    stop = _stop_on_signals()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    log.info("serving recordings of %s on %s", obj.cfg.recordings.dir, obj.cfg.recordings.listen)
    stop.wait()
    server.shutdown()
    server.server_close()


@main.command()
@click.option("--client-host", default="", metavar="HOST",
              help="Host cdrsync connects from, for the CREATE USER (default: localhost).")
def init(client_host: str) -> None:
    """Print a starter config and the SQL for cdrsync's read-only database user.

    Reads what FreePBX already knows (/etc/freepbx.conf, cdr_adaptive_odbc.conf,
    res_odbc.conf) for the database location; never reuses the FreePBX admin login.

    Example: cdrsync init > /tmp/cdrsync-start.txt
    """
    from .init import init_text

    click.echo(init_text(client_host=client_host))
