"""Draining the outbox to Planfix: in order, rate-limited, retried for as long as an outage lasts.

Delivery guarantee. An entry is marked `sent` in its own transaction right after Planfix answered
200, never before. A crash (SIGKILL, power cut) between that 200 and the commit therefore repeats
exactly that one request on the next start — the same stored body, at most one duplicate per crash
— and loses nothing. SIGTERM/SIGINT (the `stop` event) lets the request in flight finish and be
committed, so a clean stop repeats nothing.

Retries are per entry (exponential back-off with full jitter, capped at `[planfix] backoff_max`,
without a give-up), so one call Planfix keeps failing never holds newer calls back; when the
endpoint itself is down (`OUTAGE_AFTER` retryable failures in a row, or a 429) the pass stops
instead of hammering it, and the next pass tries again.

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
from dataclasses import dataclass
from typing import Callable, Optional

from sqlalchemy import Connection, Engine

from cdrsync import missed
from cdrsync.config import Config
from cdrsync.planfix.client import OK, REJECT, UNAUTHORIZED, Outcome, PlanfixClient
from cdrsync.planfix.requests import MISSED
from cdrsync.state import ledger

log = logging.getLogger("cdrsync.deliver")

OUTAGE_AFTER = 3  # retryable failures in a row that mean "Planfix is down", not "this call"
BACKOFF_BASE = 1.0  # s: the first retry waits up to this long (then 2, 4, ... up to backoff_max)
STALLED, UNAUTHORIZED_FLAG = "stalled", "unauthorized"


@dataclass
class DrainResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0  # refused by Planfix (400): parked until `retry` / `skip`
    skipped: int = 0  # missed-call notices dropped by the callback window
    unauthorized: bool = False
    stalled: bool = False  # the pass stopped because Planfix or the network is down


class RateLimiter:
    """Spaces requests `1/rate` seconds apart (0 = no limit); the clock is injectable for tests."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self._next = float("-inf")

    def wait(self, sleep: Callable[[float], object]) -> None:
        """Sleep (with `sleep`, e.g. `stop_event.wait`) until the next request may go."""
        if not self.interval:
            return
        now = self.clock()
        if self._next > now:
            sleep(self._next - now)
            now = max(now, self.clock())
        self._next = max(now, self._next) + self.interval


class Deliverer:
    """Sends due outbox entries through `client`, committing each outcome before the next send."""

    def __init__(self, engine: Engine, client: PlanfixClient, cfg: Config, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self.engine = engine
        self.client = client
        self.cfg = cfg
        self.clock = clock
        self.rng = rng
        self.limiter = RateLimiter(cfg.planfix.rate, clock)
        self._told_unauthorized = False
        self._paused_until = 0.0  # wall time before which a 429's Retry-After asks for quiet

    def backoff(self, attempts: int, retry_after: Optional[float] = None) -> float:
        """Seconds before attempt `attempts + 1`: full jitter over an exponential, capped."""
        ceiling = min(self.cfg.planfix.backoff_max, BACKOFF_BASE * 2.0 ** min(attempts - 1, 40))
        delay = min(self.cfg.planfix.backoff_max, max(BACKOFF_BASE, self.rng() * ceiling))
        return max(delay, retry_after or 0.0)

    def drain(self, stop: threading.Event, now: Callable[[], float] = time.time,
              max_seconds: Optional[float] = None) -> DrainResult:
        """Deliver what is due, oldest first, until nothing is due, `stop` is set, `max_seconds`
        passed, the token is refused, or Planfix is down."""
        result = DrainResult()
        if now() < self._paused_until:
            result.stalled = True
            return result
        started = self.clock()
        after_id = 0
        in_a_row = 0
        last_problem = ""
        while not stop.is_set():
            if max_seconds is not None and self.clock() - started >= max_seconds:
                break
            with ledger.transaction(self.engine) as conn:
                batch = ledger.due(conn, now(), limit=1, after_id=after_id)
            if not batch:
                break
            entry = batch[0]
            after_id = entry.id
            if self._held_back(entry, now()):
                result.skipped += 1
                continue
            self.limiter.wait(stop.wait)
            if stop.is_set():
                break
            outcome = self.client.send(entry.request())
            if outcome.kind == OK:
                self._sent(entry, now())
                result.sent += 1
                in_a_row = 0
            elif outcome.kind == UNAUTHORIZED:
                self._unauthorized(outcome, now())
                result.unauthorized = True
                break
            elif outcome.kind == REJECT:
                self._rejected(entry, outcome, now())
                result.failed += 1
                in_a_row = 0
            else:
                self._retry_later(entry, outcome, now())
                result.retried += 1
                in_a_row += 1
                last_problem = outcome.detail
                if outcome.status == 429:
                    self._paused_until = now() + self.backoff(1, outcome.retry_after)
                    break
                if in_a_row >= OUTAGE_AFTER:
                    break
        # A lone failure after successes is that call's problem, not a stall of delivery.
        if in_a_row >= OUTAGE_AFTER or self._paused_until > now() or (in_a_row and not result.sent):
            result.stalled = True
            self._stalled(last_problem, now())
        return result

    def _held_back(self, entry: ledger.OutboxEntry, at: float) -> bool:
        """Drop a missed-call notice that the callback window made pointless."""
        window = self.cfg.missed.callback_window
        if entry.target != MISSED or window <= 0:
            return False
        with ledger.transaction(self.engine) as conn:
            reason = missed.superseded(conn, entry.callid, window)
            if reason:
                ledger.mark_skipped(conn, entry.id, reason, at)
        if reason:
            log.info("missed-call notice %s not sent: %s", entry.key, reason)
        return bool(reason)

    def _sent(self, entry: ledger.OutboxEntry, at: float) -> None:
        with ledger.transaction(self.engine) as conn:
            ledger.mark_sent(conn, entry.id, at)
            stall = ledger.clear_flag(conn, STALLED)
            refused = ledger.clear_flag(conn, UNAUTHORIZED_FLAG)
            described = self._describe(conn, entry)
        if stall is not None:
            log.info("Planfix delivery recovered after %s", _duration(at - stall[1]))
        if refused is not None or self._told_unauthorized:
            self._told_unauthorized = False
            log.info("Planfix accepts the token again; delivery resumed")
        if entry.kind == "completed":
            log.info("delivered %s", described)
        else:
            log.debug("delivered %s (%s)", entry.key, described)

    def _rejected(self, entry: ledger.OutboxEntry, outcome: Outcome, at: float) -> None:
        with ledger.transaction(self.engine) as conn:
            ledger.mark_failed(conn, entry.id, outcome.detail, at)
            described = self._describe(conn, entry)
        log.warning("Planfix refused %s %s: %s; parked as failed (cdrsync retry %s / skip %s)",
                    entry.kind, described, outcome.detail, entry.callid, entry.callid)

    def _retry_later(self, entry: ledger.OutboxEntry, outcome: Outcome, at: float) -> None:
        attempts = entry.attempts + 1
        delay = self.backoff(attempts, outcome.retry_after)
        with ledger.transaction(self.engine) as conn:
            ledger.mark_retry(conn, entry.id, attempts, at + delay, outcome.detail, at)
        log.debug("%s not delivered (%s); attempt %d, next in %.1fs",
                  entry.key, outcome.detail, attempts, delay)

    def _unauthorized(self, outcome: Outcome, at: float) -> None:
        with ledger.transaction(self.engine) as conn:
            first = ledger.get_flag(conn, UNAUTHORIZED_FLAG) is None
            ledger.set_flag(conn, UNAUTHORIZED_FLAG, outcome.detail, at)
            queued = ledger.undelivered(conn)
        if first or not self._told_unauthorized:
            self._told_unauthorized = True
            log.error("Planfix rejected the token (%s): check [planfix] token; "
                      "%d requests kept queued", outcome.status, queued)

    def _stalled(self, reason: str, at: float) -> None:
        with ledger.transaction(self.engine) as conn:
            first = ledger.get_flag(conn, STALLED) is None
            ledger.set_flag(conn, STALLED, reason, at)
            queued = ledger.undelivered(conn)
        if first:
            log.warning("Planfix delivery stalled: %s; %d requests queued, retrying with back-off",
                        reason, queued)

    @staticmethod
    def _describe(conn: Connection, entry: ledger.OutboxEntry) -> str:
        known = ledger.call_fields(conn, entry.callid)
        if known is None:
            return entry.callid
        direction, status, ext = known
        return f"{entry.callid} {direction} {status} ext {ext or '-'}"


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}min"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}"
