"""Draining the outbox to Planfix: live first, rate-limited, retried for as long as an outage lasts.

One sender per store. A deliverer given the store's `SEND` lock (`cdrsync.lock`) takes it at the
first drain that finds something due and keeps it until `close()`: whoever holds it sends for
every process that records into the store (a backfill and the daemon at once); a deliverer that
finds it taken sends nothing (`DrainResult.elsewhere`) and leaves its requests to the holder.

Order. The outbox has two lanes (`ledger.LIVE`, `ledger.HISTORY`). Live calls and missed-call
notices go first; a history request goes only when no live one is due (asked before each, one
probe of the lane index, at most every `PROBE_EVERY` s), so a live call recorded meanwhile waits
for at most the request in flight (and, at an unlimited rate, `PROBE_EVERY` s of history).
History also respects `[planfix] daily_limit` (`budget.DailyBudget`): when the rolling day's
budget is spent it waits — logged once at INFO, with when it resumes — while live calls still
go. A deliverer given a `history_slice` (the daemon's) sends history for at most that long per
drain and says so (`DrainResult.more`), so the next live pass is never held up by history.

Delivery guarantee. One request is in flight at a time, and its entry is marked `sent` (one
UPDATE, committed) right after Planfix answered 200, never before, and before the next request
goes. A process crash (SIGKILL, OOM) between that 200 and the commit therefore repeats exactly
that one request on the next start — the same stored body (an expiring recording link in it is
signed afresh at each send), at most one duplicate per crash — and loses nothing. Those commits
skip the fsync (`db.marking_connection`): a power cut or kernel crash may also undo the marks of
the last moments before it, whose requests are then sent again, with the same bodies; still
nothing is lost. SIGTERM/SIGINT (the `stop` event) lets the request in flight finish and be
committed, so a clean stop repeats nothing.

Speed (tests/benchmarks/deliver.py). Due entries are read `BATCH` at a time, with what each waits
for (`held_by`) and the call's description for the log, on one connection held for the drain; an
entry held behind an earlier request of its call goes as soon as that one went in the same batch.
The delivery flags are read once per drain and written only when they change. So a delivered
request costs one UPDATE and one commit next to its HTTP exchange.

Retries are per entry (exponential back-off with full jitter, capped at `[planfix] backoff_max`,
without a give-up), so one call Planfix keeps failing never holds newer calls back; when the
endpoint itself is down (`OUTAGE_AFTER` retryable failures in a row, or a 429) the pass stops
instead of hammering it, and the next pass tries again.

Missed calls for the person responsible (`[missed] notify = "responsible"`): the call's
`RESPONSIBLE` entry goes after its `COMPLETED` like any request; Planfix's answer (or the one it
gave about that caller within `responsible_ttl`) turns it into the call's `callMissedNotify`
entries in the commit that marks it done, so a crash repeats at most the question, never a notice.

Planfix's own rate signals are obeyed: after an answer saying no request remains
(`X-RateLimit-Remaining: 0`) nothing goes until its `X-RateLimit-Reset` — waited for within the
drain when that is at most `PAUSE_INLINE` away, else the pass stops as after a 429.

Log lines: one INFO line per call delivered (its `COMPLETED`) and one WARNING per request Planfix
refused. A stall is logged once when it starts (with the reason) and once when delivery recovers;
the "stalled" condition lives in the store (`delivery_flags`), so a cron `sync` every minute does
not repeat it either. A wrong token (401) is logged once per process and stops the pass at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from sqlalchemy import Connection, Engine

from cdrsync.budget import DailyBudget, duration
from cdrsync.config import Config
from cdrsync.lock import StoreLock
from cdrsync.planfix.client import OK, REJECT, UNAUTHORIZED, Outcome, PlanfixClient
from cdrsync.planfix.messages import MISSED, RESPONSIBLE
from cdrsync.recordings.links import signed_again
from cdrsync.state import ledger, notices
from cdrsync.state.db import marking_connection

log = logging.getLogger("cdrsync.deliver")

BATCH = 200  # due entries read at once when the rate is not limited
OUTAGE_AFTER = 3  # retryable failures in a row that mean "Planfix is down", not "this call"
BACKOFF_BASE = 1.0  # s: the first retry waits up to this long (then 2, 4, ... up to backoff_max)
PAUSE_INLINE = 5.0  # s: a spent rate allowance that refills sooner is waited for inside a drain
SPENT_PAUSE = 1.0  # s: the pause when Planfix says nothing remains but not when that changes

# s: a history request first asks whether a live one is due, unless it asked this recently: at
# the default rate that is before each one; unlimited, the probe costs no statement per request
PROBE_EVERY = 0.1
STALLED, UNAUTHORIZED_FLAG, BUDGET_FLAG = "stalled", "unauthorized", "budget"


@dataclass
class DrainResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0  # refused by Planfix (400): parked until `retry` / `skip`
    skipped: int = 0  # missed-call notices dropped by the callback window
    # s from each delivered call's end to its COMPLETED's 200, for the delivery-lag metric
    lags: list[float] = field(default_factory=list)
    unauthorized: bool = False
    stalled: bool = False  # the pass stopped because Planfix or the network is down
    elsewhere: bool = False  # another process holds the send lock: it sends what is queued
    more: bool = False  # history was still due when the drain's `history_slice` ended
    history_waits_until: Optional[float] = None  # the daily budget is spent until then


class RateLimiter:
    """Spaces requests `1/rate` seconds apart (0 = no limit) and holds them back while Planfix
    says its allowance is spent (`hold`); the clock is injectable for tests."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self._next = float("-inf")

    def wait(self, sleep: Callable[[float], object]) -> None:
        """Sleep (with `sleep`, e.g. `stop_event.wait`) until the next request may go."""
        now = self.clock()
        if self._next > now:
            sleep(self._next - now)
            now = max(now, self.clock())
        self._next = max(now, self._next) + self.interval

    def hold(self, seconds: float) -> None:
        """Let no request go for `seconds` from now."""
        self._next = max(self._next, self.clock() + seconds)


class Deliverer:
    """Sends due outbox entries through `client`, committing each outcome before the next send."""

    def __init__(self, engine: Engine, client: PlanfixClient, cfg: Config, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random, keep_lags: bool = True,
                 sender: Optional[StoreLock] = None,
                 history_slice: Optional[float] = None) -> None:
        self.engine = engine
        # the store's SEND lock (None: the caller vouches that nothing else sends)
        self.sender = sender
        self.history_slice = history_slice
        self.budget = DailyBudget(cfg.planfix.daily_limit)
        self._told_elsewhere = False
        # a drain that goes on for a whole backfill would hold one lag per call it sent: only
        # `run`, which reports them as a metric, wants them
        self.keep_lags = keep_lags
        self.client = client
        self.cfg = cfg
        self.clock = clock
        self.rng = rng
        self.limiter = RateLimiter(cfg.planfix.rate, clock)
        self._told_unauthorized = False
        self._paused_until = 0.0  # wall time before which Planfix asked for quiet (429, rate)
        # the store's delivery flags, read at the start of each drain (`_load_flags`)
        self._stall: Optional[tuple[str, float]] = None
        self._refused = False
        self._waiting: Optional[tuple[str, float]] = None  # the budget flag

    def close(self) -> None:
        """Give the send lock up (another process may send from now on)."""
        if self.sender is not None:
            self.sender.release()

    def backoff(self, attempts: int, retry_after: Optional[float] = None) -> float:
        """Seconds before attempt `attempts + 1`: full jitter over an exponential, capped."""
        ceiling = min(self.cfg.planfix.backoff_max, BACKOFF_BASE * 2.0 ** min(attempts - 1, 40))
        delay = min(self.cfg.planfix.backoff_max, max(BACKOFF_BASE, self.rng() * ceiling))
        return max(delay, retry_after or 0.0)

    def drain(self, stop: threading.Event, now: Callable[[], float] = time.time,
              max_seconds: Optional[float] = None,
              watch: Optional[Callable[[DrainResult], None]] = None) -> DrainResult:
        """Deliver what is due, oldest first, until nothing is due, `stop` is set, `max_seconds`
        passed, the token is refused, or Planfix is down. `watch` sees the counts so far before
        each request (the courier shows them to its parent while a long drain goes on)."""
        result = DrainResult()
        if now() < self._paused_until:
            result.stalled = True
            return result
        with marking_connection(self.engine) as conn:
            self._load_flags(conn)
            in_a_row, last_problem = self._drain(conn, stop, now, max_seconds, result, watch)
            # A lone failure after successes is that call's problem, not a stall of delivery.
            if (in_a_row >= OUTAGE_AFTER or self._paused_until > now()
                    or (in_a_row and not result.sent)):
                result.stalled = True
                self._stalled(conn, last_problem, now())
        return result

    def _drain(self, conn: Connection, stop: threading.Event, now: Callable[[], float],
               max_seconds: Optional[float], result: DrainResult,
               watch: Optional[Callable[[DrainResult], None]]) -> tuple[int, str]:
        """The sending loop; returns (retryable failures in a row at the end, the last one)."""
        started = self.clock()
        after = {ledger.LIVE: 0, ledger.HISTORY: 0}  # the last entry looked at, per lane
        lane = ledger.LIVE
        locked = False
        probed = float("-inf")  # when history last asked for due live entries
        in_a_row = 0
        last_problem = ""
        # about a second of work per read: a batch read long before its turn could be stale
        rate = self.cfg.planfix.rate
        limit = BATCH if rate <= 0 else max(1, min(BATCH, int(rate)))
        while True:
            with ledger.transaction(conn):
                batch = ledger.due(conn, now(), limit=limit, after_id=after[lane],
                                   include_held=True, priority=lane)
            if not batch:
                if lane == ledger.LIVE:
                    lane = ledger.HISTORY
                    continue
                return in_a_row, last_problem
            if not locked:  # only now: an idle drain costs the lock nothing
                taken = self._take_sender(result)
                if taken is None:
                    return in_a_row, last_problem
                locked = True
                if taken:  # what was read before may have been sent by the last holder
                    continue
            went: set[int] = set()  # ids sent from this batch: what held entries wait for
            for entry in batch:
                if watch is not None:
                    watch(result)
                if stop.is_set() or (max_seconds is not None
                                     and self.clock() - started >= max_seconds):
                    return in_a_row, last_problem
                if lane == ledger.HISTORY and self.clock() - probed >= PROBE_EVERY:
                    probed = self.clock()
                    with ledger.transaction(conn):
                        live = ledger.any_due(conn, now(), ledger.LIVE, after[ledger.LIVE])
                    if live:
                        lane = ledger.LIVE
                        break
                if lane == ledger.HISTORY and not self._history_may_go(conn, now(), started,
                                                                       result):
                    return in_a_row, last_problem
                after[lane] = entry.id
                if entry.held_by is not None and entry.held_by not in went:
                    continue
                if self._held_back(conn, entry, now()):
                    result.skipped += 1
                    continue
                told = self._remembered(conn, entry, now())
                if told is None:
                    self.limiter.wait(stop.wait)
                    if stop.is_set():
                        return in_a_row, last_problem
                    outcome, told = self._send(entry, now())
                    self.budget.spend()
                else:
                    outcome = Outcome(OK, told.why)
                if outcome.kind == OK:
                    at = now()
                    self._sent(conn, entry, at, told)
                    went.add(entry.id)
                    result.sent += 1
                    if self.keep_lags and entry.kind == "completed" and entry.call_end is not None:
                        result.lags.append(max(0.0, at - entry.call_end))
                    in_a_row = 0
                elif outcome.kind == UNAUTHORIZED:
                    self._unauthorized(conn, outcome, now())
                    result.unauthorized = True
                    return in_a_row, last_problem
                elif outcome.kind == REJECT:
                    self._rejected(conn, entry, outcome, now())
                    result.failed += 1
                    in_a_row = 0
                else:
                    self._retry_later(conn, entry, outcome, now())
                    result.retried += 1
                    in_a_row += 1
                    last_problem = outcome.detail
                    if outcome.status == 429:
                        self._paused_until = now() + self.backoff(1, outcome.retry_after)
                        return in_a_row, last_problem
                    if in_a_row >= OUTAGE_AFTER:
                        return in_a_row, last_problem
                if outcome.rate_remaining == 0:
                    paused = self._spent(outcome, now())
                    if paused:
                        return in_a_row, paused

    def _take_sender(self, result: DrainResult) -> Optional[bool]:
        """Make sure this process is the store's sender. None: another process is (it sends
        what this one records); True: the send lock was taken just now; False: it was held."""
        if self.sender is None:
            return False
        if self.sender.held and self.sender.still_held():
            return False
        if not self.sender.held and self.sender.take():
            self._told_elsewhere = False
            return True
        result.elsewhere = True
        if not self._told_elsewhere:
            self._told_elsewhere = True
            log.info("another cdrsync sends this state store's requests (it holds the send "
                     "lock): it also sends what this one records")
        return None

    def _history_may_go(self, conn: Connection, at: float, started: float,
                        result: DrainResult) -> bool:
        """Whether a due history request may go now: within the drain's history slice and the
        daily budget. A budget spent is written down (and logged) once, with when it resumes."""
        if self.history_slice is not None and self.clock() - started >= self.history_slice:
            result.more = True
            return False
        with ledger.transaction(conn):
            if self.budget.left(conn, at) > 0:
                if self._waiting is not None:
                    ledger.clear_flag(conn, BUDGET_FLAG)
                    self._waiting = None
                    log.info("daily limit: history is sent again")
                return True
            until = self.budget.resumes_at(conn, at)
            result.history_waits_until = until
            reason = (f"[planfix] daily_limit of {self.budget.limit} requests spent; history "
                      f"waits until {_clock(until)} (live calls still go)")
            if self._waiting is None:
                ledger.set_flag(conn, BUDGET_FLAG, reason, at)
                self._waiting = (reason, at)
                log.info("%s", reason)
        return False

    def _spent(self, outcome: Outcome, at: float) -> str:
        """Pause after Planfix said no request remains; why, when the pass must end for it."""
        pause = SPENT_PAUSE if outcome.rate_reset is None else outcome.rate_reset
        if pause <= PAUSE_INLINE:
            self.limiter.hold(pause)
            return ""
        self._paused_until = at + pause
        return f"Planfix allows no more requests for {pause:.0f}s (X-RateLimit-Remaining: 0)"

    def _send(self, entry: ledger.OutboxEntry, at: float
              ) -> tuple[Outcome, Optional[notices.Recipients]]:
        """Send `entry`; for a `RESPONSIBLE` one also who its answer tells (then it counts as
        delivered: the extensions that rang stand in when Planfix names nobody, refuses the
        question or does not answer within `[missed] responsible_timeout`). An expiring
        recording link is signed again now (`links.signed_again`)."""
        request = entry.request()
        link = request.fields.get("record_link")
        if link and self.cfg.recordings.link_ttl > 0:
            request.fields["record_link"] = signed_again(link, self.cfg.recordings, at)
        if entry.target != RESPONSIBLE:
            return self.client.send(request), None
        outcome, numbers = self.client.responsible(request, self.cfg.missed.responsible_timeout)
        if numbers is None and outcome.kind not in (OK, REJECT) and not outcome.timed_out:
            return outcome, None  # Planfix is down or refuses the token: asked again later
        return replace(outcome, kind=OK), notices.told(request, numbers, outcome.detail)

    def _remembered(self, conn: Connection, entry: ledger.OutboxEntry, at: float
                    ) -> Optional[notices.Recipients]:
        """Who a `RESPONSIBLE` entry tells by Planfix's recent answer about the same caller."""
        if entry.target != RESPONSIBLE:
            return None
        with ledger.transaction(conn):
            return notices.remembered(conn, entry.request(), at, self.cfg.missed.responsible_ttl)

    def _load_flags(self, conn: Connection) -> None:
        """Read the delivery conditions once per drain (one query); afterwards only changes are
        written."""
        with ledger.transaction(conn):
            flags = ledger.flags(conn)
        self._stall = flags.get(STALLED)
        self._refused = UNAUTHORIZED_FLAG in flags
        self._waiting = flags.get(BUDGET_FLAG)

    def _held_back(self, conn: Connection, entry: ledger.OutboxEntry, at: float) -> bool:
        """Drop a missed-call notice that the callback window made pointless."""
        window = self.cfg.missed.callback_window
        if entry.target not in (MISSED, RESPONSIBLE) or window <= 0:
            return False
        with ledger.transaction(conn):
            reason = notices.superseded(conn, entry.callid, window)
            if reason:
                ledger.mark_skipped(conn, entry.id, reason, at)
        if reason:
            log.info("missed-call notice %s not sent: %s", entry.key, reason)
        return bool(reason)

    def _sent(self, conn: Connection, entry: ledger.OutboxEntry, at: float,
              told: Optional[notices.Recipients] = None) -> None:
        """Write the 200 down (one UPDATE, one commit) — with the notices `told` for a
        `RESPONSIBLE` entry, in the same commit — and lower what it proves wrong."""
        stall, refused = self._stall, self._refused
        with ledger.transaction(conn):
            ledger.mark_sent(conn, entry.id, at)
            if told is not None:
                notices.replace_lookup(conn, entry.request(), told, at,
                                       self.cfg.missed.responsible_ttl)
            if stall is not None:
                ledger.clear_flag(conn, STALLED)
            if refused:
                ledger.clear_flag(conn, UNAUTHORIZED_FLAG)
        self._stall, self._refused = None, False
        if stall is not None:
            log.info("Planfix delivery recovered after %s", duration(at - stall[1]))
        if refused or self._told_unauthorized:
            self._told_unauthorized = False
            log.info("Planfix accepts the token again; delivery resumed")
        if told is not None:
            log.log(logging.INFO if told.answer is not None or told.remembered else logging.WARNING,
                    "missed call %s: %s%s; telling %s", entry.callid, told.why,
                    " (remembered)" if told.remembered else "",
                    ", ".join(told.extensions) or "nobody")
        elif entry.kind == "completed":
            log.info("delivered %s", _describe(entry))
        else:
            log.debug("delivered %s (%s)", entry.key, _describe(entry))

    def _rejected(self, conn: Connection, entry: ledger.OutboxEntry, outcome: Outcome,
                  at: float) -> None:
        with ledger.transaction(conn):
            ledger.mark_failed(conn, entry.id, outcome.detail, at)
        log.warning("Planfix refused %s %s: %s; parked as failed (cdrsync retry %s / skip %s)",
                    entry.kind, _describe(entry), outcome.detail, entry.callid, entry.callid)

    def _retry_later(self, conn: Connection, entry: ledger.OutboxEntry, outcome: Outcome,
                     at: float) -> None:
        attempts = entry.attempts + 1
        delay = self.backoff(attempts, outcome.retry_after)
        with ledger.transaction(conn):
            ledger.mark_retry(conn, entry.id, attempts, at + delay, outcome.detail, at)
        log.debug("%s not delivered (%s); attempt %d, next in %.1fs",
                  entry.key, outcome.detail, attempts, delay)

    def _unauthorized(self, conn: Connection, outcome: Outcome, at: float) -> None:
        first = not self._refused
        with ledger.transaction(conn):
            ledger.set_flag(conn, UNAUTHORIZED_FLAG, outcome.detail, at)
            queued = ledger.undelivered(conn)
        self._refused = True
        if first or not self._told_unauthorized:
            self._told_unauthorized = True
            log.error("Planfix rejected the token (%s): check [planfix] token; "
                      "%d requests kept queued", outcome.status, queued)

    def _stalled(self, conn: Connection, reason: str, at: float) -> None:
        first = self._stall is None
        with ledger.transaction(conn):
            ledger.set_flag(conn, STALLED, reason, at)
            queued = ledger.undelivered(conn)
        if first:
            self._stall = (reason, at)
            log.warning("Planfix delivery stalled: %s; %d requests queued, retrying with back-off",
                        reason, queued)


def _describe(entry: ledger.OutboxEntry) -> str:
    if entry.call is None:
        return entry.callid
    direction, status, ext = entry.call
    return f"{entry.callid} {direction} {status} ext {ext or '-'}"


def _clock(epoch: float) -> str:
    """A moment of the next day or so, for a log line (local time of this host)."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))
