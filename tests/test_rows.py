"""Decoding raw database values into CdrRow / CelEvent (pure)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from cdrsync.source.rows import cdr_row, cel_event, decode_int, decode_text, decode_time


@pytest.mark.parametrize("raw, expected", [
    (None, ""),
    ("101  ", "101"),
    (b"caf\xc3\xa9", "café"),
    ("Иван".encode("cp1251"), "Иван"),  # old latin1 tables holding cp1251 bytes
    (b"\x98\x81", "\x98\x81"),  # neither utf-8 nor cp1251: latin-1, never an error
    (42, "42"),
    ("pad\x00\x00", "pad"),
])
def test_decode_text(raw, expected):
    assert decode_text(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    (None, 0), ("12", 12), (" 7 ", 7), (b"3", 3), (4.9, 4), (Decimal("5"), 5), ("", 0),
    ("12.0", 12),
])
def test_decode_int(raw, expected):
    assert decode_int(raw) == expected


def test_decode_int_garbage_is_reported():
    problems: list[str] = []
    assert decode_int("abc", problems, "cdr.duration") == 0
    assert problems and "cdr.duration" in problems[0]


@pytest.mark.parametrize("raw, expected", [
    (datetime(2024, 3, 1, 10, 0, 5), datetime(2024, 3, 1, 10, 0, 5)),
    ("2024-03-01 10:00:05", datetime(2024, 3, 1, 10, 0, 5)),
    ("2024-03-01T10:00:05", datetime(2024, 3, 1, 10, 0, 5)),
    ("2024-03-01 10:00:05.250000", datetime(2024, 3, 1, 10, 0, 5, 250000)),
    ("2024-03-01 10:00:05.123456789", datetime(2024, 3, 1, 10, 0, 5, 123456)),
    ("2024-03-01 10:00", datetime(2024, 3, 1, 10, 0)),
    (b"2024-03-01 10:00:05", datetime(2024, 3, 1, 10, 0, 5)),
    (date(2024, 3, 1), datetime(2024, 3, 1)),
])
def test_decode_time(raw, expected):
    assert decode_time(raw) == expected


@pytest.mark.parametrize("raw, reason", [
    ("0000-00-00 00:00:00", "zero date"),
    (datetime(1000, 1, 1), "placeholder"),
    ("1000-01-01 00:00:00", "placeholder"),
    ("yesterday", "not a date"),
    ("2024-02-30 10:00:00", "not a date"),
])
def test_junk_times_are_none_with_a_reason(raw, reason):
    problems: list[str] = []
    assert decode_time(raw, problems, "cdr.calldate") is None
    assert len(problems) == 1 and reason in problems[0] and "cdr.calldate" in problems[0]


def test_null_time_is_none_silently():
    problems: list[str] = []
    assert decode_time(None, problems) is None
    assert problems == []


def test_cdr_row_full_and_uppercase_columns():
    row = cdr_row({"CALLDATE": "2024-03-01 10:00:05", "Src": "2125551001 ", "dst": "101",
                   "duration": "8", "billsec": None, "uniqueid": "1709280005.1",
                   "linkedid": "1709280005.0", "sequence": 3, "disposition": b"ANSWERED"})
    assert row.calldate == datetime(2024, 3, 1, 10, 0, 5)
    assert (row.src, row.dst, row.duration, row.billsec) == ("2125551001", "101", 8, 0)
    assert (row.linkedid, row.sequence, row.disposition) == ("1709280005.0", 3, "ANSWERED")
    assert row.recordingfile == "" and row.did == ""


def test_cdr_row_asterisk_18_without_linkedid_uses_uniqueid():
    row = cdr_row({"calldate": datetime(2012, 1, 1, 9), "uniqueid": "1325408400.7"})
    assert row.linkedid == "1325408400.7"
    assert row.sequence == 0 and row.cnum == "" and row.did == ""


def test_cdr_row_empty_linkedid_uses_uniqueid():
    # rows written before FreePBX added the column must not all fall into one call "".
    assert cdr_row({"uniqueid": "5.1", "linkedid": ""}).linkedid == "5.1"


def test_cdr_row_zero_calldate_reported():
    problems: list[str] = []
    row = cdr_row({"calldate": "0000-00-00 00:00:00", "uniqueid": "1.1"}, problems)
    assert row.calldate is None and problems


def test_cel_event():
    event = cel_event({"id": "17", "eventtype": "LINKEDID_END ", "eventtime": "2024-03-01 10:00:05",
                       "uniqueid": "1.2", "linkedid": "1.1", "extra": None})
    assert (event.id, event.eventtype, event.extra) == (17, "LINKEDID_END", "")
    assert event.eventtime == datetime(2024, 3, 1, 10, 0, 5)
    assert event.linkedid == "1.1" and event.appdata == ""
