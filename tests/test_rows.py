"""Decoding raw database values into CdrRow / CelEvent (pure)."""

from __future__ import annotations

import pickle
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdrsync.model import CdrRow, CelEvent
from cdrsync.source.rows import (
    CDR_FIELDS,
    CEL_FIELDS,
    cdr_decoder,
    cdr_row,
    cel_decoder,
    cel_event,
    decode_int,
    decode_text,
    decode_time,
)


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
    ("9999-12-31 23:59:59", "placeholder"),  # DATETIME's maximum: "never" in hand-made tables
    (datetime(9999, 12, 31, 23, 59, 59), "placeholder"),
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


# ---- by position: the decoder the reader builds once per result ---------------------------------

_CDR_COLUMNS = ("UniqueID", "calldate", "src", "DURATION", "linkedid", "sequence", "clid")


def test_decoder_reads_by_position_like_the_mapping_path():
    values = ("1.5", datetime(2024, 3, 1, 10, 0, 5), "100 ", 8, "", 2, '"A" <100>')
    row = cdr_decoder(_CDR_COLUMNS).decode(values)
    assert row == cdr_row(dict(zip(_CDR_COLUMNS, values)))
    assert (row.uniqueid, row.linkedid, row.src, row.duration, row.sequence) == (
        "1.5", "1.5", "100", 8, 2)
    assert row.dst == "" and row.billsec == 0  # columns the result lacks


def test_decoder_general_path_for_odd_values_reports_them():
    problems: list[str] = []
    decode = cel_decoder(("id", "eventtype", "eventtime", "uniqueid", "extra", "appdata")).decode
    event = decode(("7x", None, "0000-00-00 00:00:00", b"1.2 ", 12, "ok\x00"), problems)
    assert (event.id, event.eventtype, event.eventtime) == (0, "", None)
    assert (event.uniqueid, event.linkedid, event.extra, event.appdata) == (
        "1.2", "1.2", "12", "ok")
    assert len(problems) == 2
    assert "cel.id" in problems[0] and "cel.eventtime is a zero date" in problems[1]


def test_decoder_with_no_text_column_or_one():
    assert cel_decoder(("id",)).decode((3,)) == CelEvent(id=3, eventtype="", eventtime=None)
    assert cel_decoder(("eventtype",)).decode(("HANGUP ",)).eventtype == "HANGUP"


_ANY = st.one_of(
    st.none(), st.text(max_size=8), st.binary(max_size=8), st.integers(), st.booleans(),
    st.floats(), st.decimals(allow_nan=False), st.dates(),
    st.datetimes(min_value=datetime(1, 1, 1)),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.sampled_from(["0000-00-00 00:00:00", "2024-03-01 10:00:05", " 12 ", "a \x00", ""]),
)


def _general(fields: tuple[str, ...], table: str, time_column: str, raw: dict, problems: list):
    """What every column gives through the general decoders alone: the fast paths must agree."""
    values = {}
    for name in fields:
        label = f"{table}.{name}"
        if name == time_column:
            values[name] = decode_time(raw.get(name), problems, label)
        elif name in ("duration", "billsec", "sequence", "id"):
            values[name] = decode_int(raw.get(name), problems, label)
        else:
            values[name] = decode_text(raw.get(name))
    values["linkedid"] = values["linkedid"] or values["uniqueid"]
    return values


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={name: _ANY for name in CDR_FIELDS}), st.randoms())
def test_fast_paths_agree_with_the_general_decoders_cdr(raw, rnd):
    columns = list(raw)
    rnd.shuffle(columns)
    problems: list[str] = []
    got = cdr_decoder(columns).decode(tuple(raw[c] for c in columns), problems)
    expected: list[str] = []
    assert got == CdrRow(**_general(CDR_FIELDS, "cdr", "calldate", raw, expected))
    assert problems == expected


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={name: _ANY for name in CEL_FIELDS}))
def test_fast_paths_agree_with_the_general_decoders_cel(raw):
    problems: list[str] = []
    got = cel_decoder([c.upper() for c in raw]).decode(tuple(raw.values()), problems)
    expected: list[str] = []
    assert got == CelEvent(**_general(CEL_FIELDS, "cel", "eventtime", raw, expected))
    assert problems == expected


_PLAIN = {  # the common shape of a value, by how a column is read
    "text": st.text(alphabet="abc01 \x00\x01-/.", max_size=6).map(lambda t: t.rstrip(" \x00")),
    "int": st.integers(-5, 10**6),
    "time": st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)),
}


def _rows(fields: tuple[str, ...], time_column: str, odd: str):
    """Batches of rows in field order, every value of the common shape but in the column `odd`
    (if any), which holds an odd one now and then (NULL, bytes, a blank to strip, an empty
    text, an aware or placeholder time, a bool): one column at a time, so that each check of
    the batch path is what decides."""
    def value(name: str):
        plain = _PLAIN["time" if name == time_column else (
            "int" if name in ("duration", "billsec", "sequence", "id") else "text")]
        if name != odd:
            return plain
        if plain is _PLAIN["text"]:  # CHAR padding, an ODBC NUL; an empty linkedid
            padded = st.builds(str.__add__, plain, st.sampled_from([" ", "\x00", "  "]))
            return st.one_of(plain, _ANY, padded, st.just(""))
        return st.one_of(plain, _ANY)
    return st.lists(st.tuples(*map(value, fields)), min_size=2, max_size=6)


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_a_batch_decodes_as_its_rows_do(data):
    """`decode_all` takes a batch of the common shape whole and any other row by row: either
    way each row and each problem line is what `decode` gives."""
    for decoder, fields, time_column in ((cdr_decoder(CDR_FIELDS), CDR_FIELDS, "calldate"),
                                         (cel_decoder(CEL_FIELDS), CEL_FIELDS, "eventtime")):
        odd = data.draw(st.sampled_from(("",) + fields))
        rows = data.draw(_rows(fields, time_column, odd))
        expected: list[str] = []
        one_by_one = [decoder.decode(row, expected) for row in rows]
        problems: list[str] = []
        assert decoder.decode_all(rows, problems) == one_by_one
        assert problems == expected


def test_a_plain_batch_is_decoded_whole(monkeypatch):
    """The batch path is taken for the common shape (else the test above proves nothing about
    it), and not for a batch with one value to strip."""
    decoder = cel_decoder(CEL_FIELDS)
    row = (7, "ANSWER", datetime(2024, 3, 1, 10, 0), "1.2", "1.1", "PJSIP/101-1", "ext-local",
           "101", "Ann", "101", "Dial", "PJSIP/101", "", "", "")
    decode = decoder.decode
    monkeypatch.setattr(decoder, "decode", lambda *a: pytest.fail("decoded row by row"))
    assert decoder.decode_all([row, row]) == [CelEvent(*row)] * 2
    for odd in ("101 ", "101\x00", "101  ", b"101", None):  # in the first row and in the last
        changed = row[:7] + (odd,) + row[8:]
        for batch in ([changed, row], [row, changed]):
            with pytest.raises(pytest.fail.Exception, match="row by row"):
                decoder.decode_all(batch)
    for i, odd in ((0, "7"), (0, True), (2, datetime(1970, 1, 1)), (4, "")):  # id, time, linkedid
        with pytest.raises(pytest.fail.Exception, match="row by row"):
            decoder.decode_all([row, row[:i] + (odd,) + row[i + 1:]])
    monkeypatch.setattr(decoder, "decode", decode)
    assert decoder.decode_all([row[:7] + ("101\x00",) + row[8:], row])[0].exten == "101"


# ---- CdrRow / CelEvent made from the driver's row in one step ---------------------------------

def test_a_row_made_in_one_step_is_the_named_tuple_itself():
    """`decode_all` makes each row by `tuple.__new__`, binding no arguments: the value must be
    the one the named tuple's own constructor makes, of its type, hashable and immutable."""
    row = (4, "ANSWER", datetime(2024, 3, 1), "1.2", "1.1", "PJSIP/101-1", "", "101", "", "", "",
           "", "", "", "")
    (fast,) = cel_decoder(CEL_FIELDS).decode_all([row])
    slow = CelEvent(**dict(zip(CEL_FIELDS, row)))
    assert type(fast) is CelEvent and fast == slow and hash(fast) == hash(slow)
    assert repr(fast) == repr(slow) and fast.exten == "101" and fast.extra == ""
    assert pickle.loads(pickle.dumps(fast)) == slow and fast._replace(id=5) == slow._replace(id=5)
    with pytest.raises(AttributeError):
        fast.id = 5  # type: ignore[misc]
    cdr = CdrRow(calldate=datetime(2024, 3, 1), uniqueid="1.2", linkedid="1.1", billsec=3)
    (made,) = cdr_decoder(CDR_FIELDS).decode_all([tuple(cdr)])
    assert type(made) is CdrRow and made == cdr and made.key == cdr.key
