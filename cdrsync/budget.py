"""`[planfix] daily_limit`: a rolling 24 hours' budget of requests that history respects.

Planfix publishes no limit for its telephony API, but documents 20,000-100,000 requests a day for
its other APIs: an admin importing years of calls can keep the import under such a figure. Every
request counts against the budget (`ledger.sent_since`, one range of `ix_outbox_sent_at`), but
only history waits for it: a live call or a missed-call notice goes even when it is spent.

The count is read from the store at most every `RECOUNT` seconds and kept up to date in between
by the sender itself (only the holder of the send lock sends, so nothing else adds to it):
requests that age out of the window are noticed up to `RECOUNT` s late, never too early.
"""

from __future__ import annotations

import math
from typing import Optional

from sqlalchemy import Connection

from cdrsync.state import ledger

DAY = 86400.0
RECOUNT = 60.0  # s between two counts of the window in the store


class DailyBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = 0
        self._counted_at = -math.inf

    def left(self, conn: Connection, now: float) -> float:
        """Requests history may still send in the window ending now (inf: no limit)."""
        if self.limit <= 0:
            return math.inf
        if now - self._counted_at >= RECOUNT:
            self._count = ledger.sent_since(conn, now - DAY)
            self._counted_at = now
        return self.limit - self._count

    def spend(self) -> None:
        """One request went (of either lane)."""
        self._count += 1

    def resumes_at(self, conn: Connection, now: float) -> float:
        """When the window, as counted, has room for history again: a day after the request
        whose ageing out brings the count under the limit."""
        first = ledger.nth_sent_since(conn, now - DAY, max(self._count - self.limit, 0))
        return max(now, (first if first is not None else now) + DAY)


def sending_eta(pending: int, rate: float, daily_limit: int) -> Optional[float]:
    """Seconds the `pending` history requests take at the rate and the daily budget (the slower
    of the two); None when neither limits them."""
    per_second = [r for r in (rate, daily_limit / DAY if daily_limit > 0 else 0.0) if r > 0]
    if not per_second:
        return None
    return max(pending, 0) / min(per_second)


def duration(seconds: float) -> str:
    """A span for a log line or the progress bar: `45s`, `12min`, `3h05`, `2d04h`."""
    seconds = int(max(seconds, 0))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
