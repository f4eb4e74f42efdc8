"""The courier: a child process that drains the outbox while its parent backfills.

Why. A backfill is CPU-bound in one Python process: reading and decoding rows, interpreting
calls, and the HTTP exchange with Planfix each cost about as much as the others. Sending from a
second process lets the two halves run on two cores. They meet only in the state store — the
parent records calls and their requests (as always, in the transaction that moves the cursor),
the courier sends what is due with the ordinary `Deliverer` — so nothing about what is sent, or
when a request counts as delivered, changes.

Guarantees kept:
- one request in flight at a time (one sender per store: the courier takes the `SEND` lock, or,
  when another cdrsync holds it, leaves the sending to that one and only the parent records),
  marked sent right after its 200 and before the next request goes;
- a SIGKILL of the parent kills the courier too (`PR_SET_PDEATHSIG`), so a killed backfill repeats
  at most the one request in flight, as before; a courier killed alone is noticed by the parent,
  which stops with one line (what is recorded stays queued for the next run);
- SIGTERM / SIGINT let the request in flight finish and be marked, in either process.

The courier is forked (it inherits the configuration; not the parent's `HISTORY` lock, which ends
with the parent: `lock.StoreLock`; the `SEND` lock it takes is its own, and ends with it) and
opens its own store connections; it never touches the parent's
database connections. Counters it shares in memory let the parent show progress and keep no more
than `MAX_AHEAD` requests queued ahead of it, unless what is queued cannot go for now (Planfix
down, another process sending, the daily budget spent: recording goes on, as it does without a
courier). Linux only: elsewhere, or for an in-memory store, the
parent sends between batches itself.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, Optional

from sqlalchemy import Engine

from .config import Config
from .deliver import Deliverer, DrainResult
from .lock import send_lock
from .planfix.client import PlanfixClient
from .state.db import StoreError, open_store, shared

log = logging.getLogger("cdrsync.courier")

MAX_AHEAD = 20_000  # requests the parent may record ahead of the courier's progress
IDLE = 0.05  # s the courier waits before looking at an empty outbox again
_PR_SET_PDEATHSIG = 1

# shared counters (one writer each: the courier, except DONE and HALT, written by the parent);
# HELD_BACK: what is queued cannot go for now (another process sends, or history's daily budget
# is spent), so the parent must not wait for the courier to catch up
SENT, HANDLED, RETRIED, FAILED, SKIPPED, STALLED, UNAUTHORIZED, DONE, HALT, HELD_BACK = range(10)


def available(cfg: Config) -> bool:
    """Whether a courier can run: Linux (for PR_SET_PDEATHSIG) and a store two processes share."""
    return sys.platform.startswith("linux") and shared(cfg.state.url)


class _Stop:
    """The courier's stop: the parent's halt flag, or a SIGTERM / SIGINT of its own."""

    def __init__(self, shared: Any, local: threading.Event) -> None:
        self._shared, self._local = shared, local

    def is_set(self) -> bool:
        return bool(self._shared[HALT]) or self._local.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Sleep up to `timeout` (the rate limiter's pause), waking early on a stop."""
        end = time.monotonic() + (timeout or 0.0)
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            self._local.wait(min(left, 0.1))
        return True


class Courier:
    """Handle of the courier process, held by the backfilling parent."""

    def __init__(self, cfg: Config, engines: Iterable[Engine] = ()) -> None:
        # no database connection may cross the fork (SQLite forbids it; a MySQL socket would be
        # shared): the parent's pools are emptied first and refill on their next use
        for engine in engines:
            engine.dispose()
        ctx = multiprocessing.get_context("fork")
        self._shared = ctx.RawArray("q", 10)
        self._recv, send = ctx.Pipe(duplex=False)
        self._parent = os.getpid()
        self._process = ctx.Process(target=_main, args=(cfg, self._shared, send, self._parent),
                                    name="cdrsync-courier", daemon=True)
        self._process.start()
        send.close()

    @property
    def sent(self) -> int:
        return int(self._shared[SENT])

    @property
    def unauthorized(self) -> bool:
        return bool(self._shared[UNAUTHORIZED])

    def check(self) -> None:
        """Raise if the courier died under the parent (OOM killer, a signal of its own); one
        that stopped at Planfix's 401 ended as it should (see `unauthorized`)."""
        if (not self._process.is_alive() and not self._shared[DONE]
                and not self._shared[UNAUTHORIZED]):
            self._process.join()
            raise StoreError(self._failure() or self._ended())

    def keep_up(self, recorded: int, stop: threading.Event) -> None:
        """Wait while more than MAX_AHEAD of the `recorded` requests are still queued, so a
        fast reader does not pile the outbox up; never while Planfix is down, another process
        sends or the daily budget holds history back (recording goes on: the outbox keeps it)."""
        while (recorded - self._shared[HANDLED] > MAX_AHEAD and not self._shared[STALLED]
               and not self._shared[UNAUTHORIZED] and not self._shared[HELD_BACK]
               and not stop.is_set()):
            self.check()
            stop.wait(IDLE)

    def finish(self, stop: threading.Event) -> DrainResult:
        """Tell the courier nothing more comes and wait while it sends what is due; once `stop`
        is set (now or while waiting) it ends after the request in flight. Returns what it did."""
        self._shared[DONE] = 1
        while self._process.is_alive():
            if stop.is_set():
                self._shared[HALT] = 1
            self._process.join(0.1)
        failure = self._failure()
        if failure or self._process.exitcode:
            raise StoreError(failure or self._ended())
        s = self._shared
        return DrainResult(sent=s[SENT], retried=s[RETRIED], failed=s[FAILED],
                           skipped=s[SKIPPED], unauthorized=bool(s[UNAUTHORIZED]),
                           stalled=bool(s[STALLED]))

    def _ended(self) -> str:
        code = self._process.exitcode or 0
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        return (f"the delivery process ended unexpectedly ({how}); what is recorded is sent by "
                "the next run")

    def _failure(self) -> str:
        if self._recv.poll():
            try:
                return str(self._recv.recv())
            except (EOFError, OSError):
                return ""
        return ""


def _die_with(parent: int) -> None:
    """Ask the kernel for a SIGKILL when the parent dies; leave at once if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("delivery process: PR_SET_PDEATHSIG failed (errno %d)", ctypes.get_errno())
    if os.getppid() != parent:
        os._exit(0)


def _main(cfg: Config, shared: Any, report: Any, parent: int) -> None:
    _die_with(parent)
    local = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        local.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        _deliver(cfg, shared, _Stop(shared, local))
    except StoreError as exc:
        report.send(str(exc))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line, then exit
        log.debug("delivery process failed", exc_info=True)
        report.send(f"delivery process: {type(exc).__name__}: {exc}")


def _deliver(cfg: Config, shared: Any, stop: _Stop) -> None:
    store = open_store(cfg.state)
    client = PlanfixClient(cfg.planfix)
    deliverer = Deliverer(store, client, cfg, keep_lags=False, sender=send_lock(cfg.state))
    try:
        while True:
            last = bool(shared[DONE])  # everything is recorded: this drain is the final one
            before = [shared[i] for i in _COUNTS]  # what the drains that have ended did

            def publish(current: DrainResult, before: list[int] = before) -> None:
                for i, done, now in zip(_COUNTS, before, _counts(current)):
                    shared[i] = done + now
                shared[HANDLED] = shared[SENT] + shared[FAILED] + shared[SKIPPED]

            got = deliverer.drain(stop, watch=publish)  # type: ignore[arg-type]
            publish(got)
            shared[STALLED] = int(got.stalled)
            shared[HELD_BACK] = int(got.elsewhere or got.history_waits_until is not None)
            if got.unauthorized:
                shared[UNAUTHORIZED] = 1
            if last or stop.is_set() or got.unauthorized:
                return
            if not got.sent:
                stop.wait(IDLE if not (got.stalled or got.elsewhere) else 1.0)
    finally:
        deliverer.close()
        client.close()
        store.dispose()


_COUNTS = (SENT, RETRIED, FAILED, SKIPPED)  # the shared totals of the DrainResult counts


def _counts(result: DrainResult) -> tuple[int, int, int, int]:
    return (result.sent, result.retried, result.failed, result.skipped)
