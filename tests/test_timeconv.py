from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from cdrsync.timeconv import seconds, to_utc, uniqueid_epoch

BERLIN = ZoneInfo("Europe/Berlin")
AMBIGUOUS = datetime(2026, 10, 25, 2, 30)  # happens at 00:30 UTC (CEST) and 01:30 UTC (CET)


def test_uniqueid_epoch():
    assert uniqueid_epoch("1795697854.0") == 1795697854.0
    assert uniqueid_epoch("pbx-east-1795697854.12") == 1795697854.0
    assert uniqueid_epoch("6c8b1f7e-2a44-4c0e-9d3c-1b2a3c4d5e6f") is None


def test_plain_times_convert_with_the_zone():
    got = to_utc(datetime(2026, 7, 1, 12, 0), BERLIN)
    assert got == datetime(2026, 7, 1, 10, 0, tzinfo=timezone.utc)
    assert to_utc(None, BERLIN) is None


def test_fall_back_hour_is_resolved_by_the_uniqueid_witness():
    first = datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)
    second = datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc)
    assert to_utc(AMBIGUOUS, BERLIN, first.timestamp()) == first
    assert to_utc(AMBIGUOUS, BERLIN, second.timestamp()) == second
    # an event of a channel created at 00:50 UTC cannot be at 00:30 UTC
    assert to_utc(AMBIGUOUS, BERLIN, first.timestamp() + 1200) == second
    assert to_utc(AMBIGUOUS, BERLIN) == first  # no witness: the first reading


def test_seconds_never_negative():
    a = datetime(2026, 1, 1, tzinfo=timezone.utc)
    b = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
    assert (seconds(a, b), seconds(b, a), seconds(None, b)) == (5, 0, 0)


def test_a_junk_witness_leaves_the_time_unknown():
    assert to_utc(datetime(2026, 7, 1, 12, 0), BERLIN, 1e20) is None
    assert to_utc(datetime(2026, 7, 1, 12, 0), BERLIN, 0.0) == datetime(
        2026, 7, 1, 10, 0, tzinfo=timezone.utc)


def test_cached_readings_do_not_mix_folds_or_zones():
    """The same wall-clock time, asked with either fold or in another zone, reads alike each time
    (the readings are cached by local time and zone)."""
    moscow = ZoneInfo("Europe/Moscow")
    for _ in range(2):
        assert to_utc(AMBIGUOUS.replace(fold=1), BERLIN) == to_utc(AMBIGUOUS, BERLIN)
        assert to_utc(AMBIGUOUS, moscow) == datetime(2026, 10, 24, 23, 30, tzinfo=timezone.utc)
