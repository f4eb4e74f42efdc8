"""PBX local time -> UTC, and time arithmetic that junk times cannot break.

`cdr.calldate` and `cel.eventtime` are naive local times of the PBX. In the DST fall-back hour the
same wall-clock time happens twice; the epoch inside a channel's `uniqueid`
(`[system-]<epoch>.<counter>`, UTC) is written when the channel is created, so no event of that
channel can be earlier: it tells which of the two instants was meant.

Rows may hold times near the end of the calendar (a clock gone wild, a `9998-12-31`): `shifted`
and `local_time` hold such a time at the calendar's edge instead of raising, so a bound or a wait
built from it is merely far away, never an OverflowError that stops every call behind it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Optional
from zoneinfo import ZoneInfo

from cdrsync.linkedids import linkedid_epoch

_SLACK = 2.0  # s: uniqueid epochs and second-precision times may disagree by rounding
# s: no phone call lasts a week; a longer (or negative) duration is junk: `INT_MAX` in a hand-made
# table, a row of a channel whose clock jumped
LONGEST_CALL = 7 * 86400
_LAST = datetime.max.replace(microsecond=0)
_SECOND = timedelta(seconds=1)  # made once: `seconds` runs for every span of every call
_FIRST = datetime.min


def shifted(moment: datetime, seconds: float) -> datetime:
    """`moment` + `seconds`, held at the first or last second of the calendar where the sum
    would leave it (a PBX time of 9998-12-31 plus a margin is still a bound a query can use)."""
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return (_LAST if seconds > 0 else _FIRST).replace(tzinfo=moment.tzinfo)


def credible_seconds(value: int) -> int:
    """A duration as rows may be trusted with it: itself when some call could last that long,
    else 0 (unknown), so that a junk duration never puts a call's end in the far future."""
    return value if 0 <= value <= LONGEST_CALL else 0


def local_time(epoch: float, zone: ZoneInfo) -> datetime:
    """UTC epoch -> naive local time of the PBX (whole seconds); an epoch no calendar date can
    show (a junk linkedid's `99999999999999`) is held at the calendar's edge."""
    try:
        return datetime.fromtimestamp(epoch, zone).replace(tzinfo=None, microsecond=0)
    except (OverflowError, ValueError, OSError):
        return _LAST if epoch > 0 else _FIRST


@lru_cache(maxsize=4096)
def uniqueid_epoch(uniqueid: str) -> Optional[float]:
    """The creation epoch inside a uniqueid, or None for ids that are not `<epoch>.<n>` (UUIDs).
    Cached: every CDR row of a channel asks again."""
    epoch = linkedid_epoch(uniqueid)
    return None if epoch is None else float(epoch)


def to_utc(local: Optional[datetime], zone: ZoneInfo,
           witness: Optional[float] = None) -> Optional[datetime]:
    """Aware UTC time of a naive PBX-local time; `witness` = an epoch the time is not before.
    Not cached as a whole: its callers already skip the asks that repeat the last (a channel's
    consecutive events), and the rest rarely repeat (a witness is one channel's)."""
    if local is None:
        return None
    readings = _readings(local, zone)
    if readings is None:
        return None
    first, second = readings
    if witness is None:
        return first
    floor = _floor(witness)
    if floor is None:
        return None
    if first == second:
        return first
    candidates = sorted((first, second))
    later = [c for c in candidates if c >= floor]
    if later:
        return later[0]
    return min(candidates, key=lambda c: abs(c - floor))


@lru_cache(maxsize=8192)
def _readings(local: datetime, zone: ZoneInfo) -> Optional[tuple[datetime, datetime]]:
    """The two UTC readings (fold 0, fold 1) of a naive local time; equal unless it falls in a
    DST change. Cached: it is the costly part of `to_utc`, which runs for every CEL event, and
    the events of a call (and of calls going on together) share their seconds."""
    try:
        # what `astimezone(timezone.utc)` computes, asking the zone only for its two offsets
        # (a third of the cost): the time less its offset, and one subtraction when they agree
        off0 = zone.utcoffset(local if local.fold == 0 else local.replace(fold=0))
        off1 = zone.utcoffset(local.replace(fold=1))
        first = (local - off0).replace(tzinfo=timezone.utc)
        return first, (first if off1 == off0 else (local - off1).replace(tzinfo=timezone.utc))
    except (OverflowError, ValueError, OSError):  # junk at the ends of the calendar
        return None


@lru_cache(maxsize=1024)
def _floor(witness: float) -> Optional[datetime]:
    """The earliest instant a time witnessed by `witness` may be, or None for a junk epoch (then
    the time is unknown). Cached: a channel's events share its witness."""
    try:
        return datetime.fromtimestamp(witness - _SLACK, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def seconds(start: Optional[datetime], end: Optional[datetime]) -> int:
    """Whole seconds from start to end, never negative."""
    if start is None or end is None:
        return 0
    return max(0, int(round((end - start) / _SECOND)))
