from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from cdrsync import timeconv
from cdrsync.finder import to_local
from cdrsync.timeconv import local_time, seconds, shifted, to_utc, uniqueid_epoch

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


def test_a_channels_events_of_one_second_are_converted_once():
    """Events that share their second and their channel's witness are read from the cache: the
    zone conversion (both folds) runs once for them, and they all read alike."""
    when, witness = datetime(2026, 3, 5, 9, 30, 7), 1772699400.0
    before = timeconv._readings.cache_info()
    times = {to_utc(when, BERLIN, witness) for _ in range(5)}
    after = timeconv._readings.cache_info()
    assert times == {datetime(2026, 3, 5, 8, 30, 7, tzinfo=timezone.utc)}
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 4)


def test_arithmetic_at_the_ends_of_the_calendar_holds_at_the_edge():
    """Bounds built from junk times (a margin after 9998-12-31 23:59, a window before year 1)
    stay usable bounds instead of raising OverflowError."""
    late = datetime(9999, 12, 31, 23, 59, 30)
    assert shifted(late, 60) == datetime(9999, 12, 31, 23, 59, 59)
    assert shifted(datetime(1, 1, 1, 0, 0, 30), -3600) == datetime(1, 1, 1)
    assert shifted(datetime(2026, 1, 1), 90) == datetime(2026, 1, 1, 0, 1, 30)
    aware = datetime(9999, 12, 31, 23, 0, tzinfo=timezone.utc)
    assert shifted(aware, 7200).tzinfo is timezone.utc


def test_an_epoch_no_calendar_holds_becomes_the_edge_of_the_calendar():
    assert local_time(99999999999999, BERLIN) == datetime(9999, 12, 31, 23, 59, 59)
    assert to_local(-99999999999999, BERLIN) == datetime.min
    assert to_local(1767225600.7, BERLIN) == datetime(2026, 1, 1, 1, 0)


def test_time_conversion_stands_below_grouping():
    """timeconv reads the epoch of a uniqueid from `linkedids`, not from `grouping` (which
    works with times and would otherwise be above and below it at once)."""
    tree = ast.parse(Path(timeconv.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "cdrsync.linkedids" in imported
    assert not {m for m in imported if m and m.startswith("cdrsync.")} - {"cdrsync.linkedids"}


def test_readings_are_those_of_astimezone_across_dst_changes():
    """The two readings come from the zone's offsets, not from `astimezone`: they must be what
    `astimezone` gives for both folds, every 5 minutes of the days a clock goes back or
    forward (Berlin's whole hour, Lord Howe's half hour) and of an ordinary day."""
    days = {BERLIN: (datetime(2026, 3, 29), datetime(2026, 10, 25), datetime(2026, 7, 1)),
            ZoneInfo("Australia/Lord_Howe"): (datetime(2026, 4, 5), datetime(2026, 10, 4))}
    changed = 0
    for zone, starts in days.items():
        for when in (day + timedelta(minutes=m) for day in starts for m in range(0, 1440, 5)):
            expected = tuple(when.replace(tzinfo=zone, fold=f).astimezone(timezone.utc)
                             for f in (0, 1))
            assert timeconv._readings.__wrapped__(when, zone) == expected, (zone, when)
            changed += expected[0] != expected[1]
    assert changed == 12 + 12 + 6 + 6  # the hour (half hour) of each change, both ways
