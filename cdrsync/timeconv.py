"""PBX local time -> UTC.

`cdr.calldate` and `cel.eventtime` are naive local times of the PBX. In the DST fall-back hour the
same wall-clock time happens twice; the epoch inside a channel's `uniqueid`
(`[system-]<epoch>.<counter>`, UTC) is written when the channel is created, so no event of that
channel can be earlier: it tells which of the two instants was meant.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional
from zoneinfo import ZoneInfo

from cdrsync.grouping import linkedid_epoch

_SLACK = 2.0  # s: uniqueid epochs and second-precision times may disagree by rounding


def uniqueid_epoch(uniqueid: str) -> Optional[float]:
    """The creation epoch inside a uniqueid, or None for ids that are not `<epoch>.<n>` (UUIDs)."""
    epoch = linkedid_epoch(uniqueid)
    return None if epoch is None else float(epoch)


def to_utc(local: Optional[datetime], zone: ZoneInfo,
           witness: Optional[float] = None) -> Optional[datetime]:
    """Aware UTC time of a naive PBX-local time; `witness` = an epoch the time is not before."""
    if local is None:
        return None
    try:
        first = local.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
        second = local.replace(tzinfo=zone, fold=1).astimezone(timezone.utc)
        floor = datetime.fromtimestamp((witness or 0) - _SLACK, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):  # junk at the ends of the calendar
        return None
    if first == second or witness is None:
        return first
    candidates = sorted((first, second))
    later = [c for c in candidates if c >= floor]
    if later:
        return later[0]
    return min(candidates, key=lambda c: abs(c - floor))


def seconds(start: Optional[datetime], end: Optional[datetime]) -> int:
    """Whole seconds from start to end, never negative."""
    if start is None or end is None:
        return 0
    return max(0, int(round((end - start) / timedelta(seconds=1))))
