"""Decode raw database values into `CdrRow` / `CelEvent`.

Drivers and schemas disagree: NULLs where FreePBX says NOT NULL, zero dates (`0000-00-00`) that
PyMySQL returns as None or as a string, the `1000-01-01` default of `cdr.calldate` (and
`9999-12-31`, the other end of DATETIME), bytes in an
old latin1/cp1251 table, numbers stored as text, SQLite times as text, columns that old versions
lack. Everything here is pure; every oddity that loses information is reported as one line in the
optional `problems` list so the caller can log it once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from operator import itemgetter
from typing import Any, Callable, Optional

from cdrsync.model import CdrRow, CelEvent

# Times before this are defaults or junk (`1000-01-01`, `1970-01-01`), never a real call.
_EARLIEST_YEAR = 1971
# Nor is a time in the calendar's last year: `9999-12-31` is DATETIME's maximum, the "never"
# placeholder of hand-made tables, and no arithmetic on it (a day either side) stays in range.
_LATEST_YEAR = 9998
# [first, end) of the times a clock wrote: a row dated outside is never in a calldate window
USABLE_TIMES = (datetime(_EARLIEST_YEAR, 1, 1), datetime(_LATEST_YEAR + 1, 1, 1))
_TIME = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
)
_TEXT_ENCODINGS = ("utf-8", "cp1251")  # then latin-1, which never fails

CDR_FIELDS: tuple[str, ...] = CdrRow._fields
CEL_FIELDS: tuple[str, ...] = CelEvent._fields
_INT_FIELDS = {"duration", "billsec", "sequence", "id"}


def decode_text(value: Any) -> str:
    """A column as `str`: NULL -> "", bytes decoded (utf-8, else cp1251, else latin-1), no
    trailing blanks (CHAR padding, ODBC drivers)."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        for encoding in _TEXT_ENCODINGS:
            try:
                value = raw.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            value = raw.decode("latin-1")
    elif not isinstance(value, str):
        value = str(value)
    return value.rstrip(" \x00")


def decode_int(value: Any, problems: Optional[list[str]] = None, name: str = "") -> int:
    """A count as `int`: NULL -> 0; "12", " 12 ", b"12", 12.0, Decimal all work."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        value = str(value)  # NaN / inf go the text way below: noted, read as 0
    text = decode_text(value).strip()
    if not text:
        return 0
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        if problems is not None:
            problems.append(f"{name or 'number'} {text[:20]!r} is not a number; read as 0")
        return 0


def decode_time(
    value: Any, problems: Optional[list[str]] = None, name: str = ""
) -> Optional[datetime]:
    """A naive local time, or None for NULL / zero / junk dates (reported in `problems`)."""
    label = name or "time"
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value.replace(tzinfo=None)
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        text = decode_text(value).strip()
        if not text or text.startswith("0000-00-00"):
            _note(problems, f"{label} is a zero date")
            return None
        parsed = _parse_time(text)
        if parsed is None:
            _note(problems, f"{label} {text[:32]!r} is not a date and time")
            return None
    if not _EARLIEST_YEAR <= parsed.year <= _LATEST_YEAR:
        _note(problems, f"{label} {parsed.isoformat(' ')[:10]} is a placeholder date, not a call")
        return None
    return parsed


def _parse_time(text: str) -> Optional[datetime]:
    m = _TIME.match(text)
    if not m:
        return None
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m.group(6) or 0)
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    try:
        return datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        return None


def _note(problems: Optional[list[str]], text: str) -> None:
    if problems is not None:
        problems.append(text)


_AS_TEXT, _AS_INT, _AS_TIME = 0, 1, 2  # how a column is read
_BLANKS = " \x00"  # trailing CHAR padding / ODBC NULs, stripped from every text column


@dataclass(frozen=True)
class _Layout:
    """What a model needs from a row: its fields in order and how each is read."""

    model: type  # CdrRow / CelEvent: a named tuple of the fields in order
    table: str  # for the problem lines: "cdr.duration ..."
    kinds: tuple[tuple[str, int], ...]

    @property
    def missing(self) -> dict[str, Any]:
        """Every field, in order, as a column the table lacks leaves it: what NULL decodes to."""
        return {name: ("", 0, None)[kind] for name, kind in self.kinds}


def _layout(model: Any, table: str, time_column: str) -> _Layout:
    kinds = tuple((name, _AS_TIME if name == time_column
                   else _AS_INT if name in _INT_FIELDS else _AS_TEXT) for name in model._fields)
    return _Layout(model, table, kinds)


_CDR = _layout(CdrRow, "cdr", "calldate")
_CEL = _layout(CelEvent, "cel", "eventtime")


def _picker(indexes: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """`row -> tuple of row[i]`; `itemgetter` returns a bare value for a single index."""
    if len(indexes) == 1:
        only = indexes[0]
        return lambda row: (row[only],)
    if not indexes:
        return lambda row: ()
    return itemgetter(*indexes)


class RowDecoder:
    """Turns the rows of one result into `CdrRow` / `CelEvent` by position.

    Built once per result from its column names (any case, any order, some missing), so the
    name matching happens once and not per row: backfill decodes every row of the tables. Per
    row the common shapes take fast paths: every text column a `str` (stripped by a C-level
    `map`), counts `int`, a naive datetime from 1971 on. Anything else (NULL, bytes, numbers as
    text, zero dates, SQLite's text times, Decimal) goes through `decode_text` / `decode_int` /
    `decode_time`, which report in `problems` whatever they lose. An empty `linkedid` becomes
    the `uniqueid`, so such rows (Asterisk 1.8, rows older than FreePBX's linkedid column) never
    fall together into one giant "call" with linkedid "".
    """

    def __init__(self, layout: _Layout, columns: Iterable[Any]) -> None:
        columns = tuple(str(name).lower() for name in columns)
        position = {name: i for i, name in enumerate(columns)}  # the last one wins
        present = [(name, kind, position[name]) for name, kind in layout.kinds
                   if name in position]
        texts = [(name, i) for name, kind, i in present if kind == _AS_TEXT]
        self._make = layout.model
        # the model from a row of its fields in order, in one C step (the `__new__` of a named
        # tuple is Python code, with arguments to bind)
        self._make_from = partial(tuple.__new__, layout.model)
        # the fields of columns the table lacks, as NULL decodes them (most tables lack none)
        self._absent = {name: value for name, value in layout.missing.items()
                        if name not in position}
        self._text_names = tuple(name for name, _ in texts)
        self._pick_texts = _picker([i for _, i in texts])
        self._blanks = (_BLANKS,) * len(texts)
        self._others = tuple((name, kind, i, f"{layout.table}.{name}")
                             for name, kind, i in present if kind != _AS_TEXT)
        # a result whose columns are the fields in order is decoded a batch at a time
        names = tuple(name for name, _ in layout.kinds)
        self._in_order = columns == names
        self._columns_of = {kind: tuple(i for i, (_, k) in enumerate(layout.kinds) if k == kind)
                            for kind in (_AS_TEXT, _AS_INT, _AS_TIME)}
        self._linkedid_at = names.index("linkedid")

    def decode(self, row: Sequence[Any], problems: Optional[list[str]] = None) -> Any:
        """One row (a tuple or SQLAlchemy `Row` with the columns this decoder was built for)."""
        texts = self._pick_texts(row)
        try:  # str.rstrip refuses anything but a str: then the general way, column by column
            # a new dict straight from the columns: copying a template first cost a third more
            values = dict(zip(self._text_names, map(str.rstrip, texts, self._blanks)))
        except TypeError:
            values = dict(zip(self._text_names, map(decode_text, texts)))
        for name, kind, index, label in self._others:  # in field order, as problems are told
            value = row[index]
            if kind == _AS_INT:
                if type(value) is not int:
                    value = decode_int(value, problems, label)
            elif not (type(value) is datetime and value.tzinfo is None
                      and _EARLIEST_YEAR <= value.year <= _LATEST_YEAR):
                value = decode_time(value, problems, label)
            values[name] = value
        if self._absent:
            values.update(self._absent)
        if not values["linkedid"]:
            values["linkedid"] = values["uniqueid"]
        return self._make(**values)

    def decode_all(self, rows: Sequence[Sequence[Any]], problems: Optional[list[str]] = None
                   ) -> list[Any]:
        """The rows of one result (or of a batch of it), as `decode` decodes each.

        Backfill decodes every row of the tables: where the columns are the fields in order
        and a batch is all of the common shape (every text a `str` without trailing blanks,
        counts `int`, times naive and usable, no empty linkedid: what `_plain` checks column by
        column, in C), each row is the model's tuple as it is, made in C; that costs a few
        times less than row by row. Any other batch goes row by row."""
        if self._in_order and rows and self._plain(list(zip(*rows))):
            return list(map(self._make_from, rows))
        return [self.decode(row, problems) for row in rows]

    def _plain(self, columns: list[tuple[Any, ...]]) -> bool:
        """Whether `decode` would take every value of these columns as it is."""
        try:
            for i in self._columns_of[_AS_TEXT]:
                # TypeError unless every value is a str; one of `_BLANKS` before a separator, or
                # at the end, is a value to strip (or, rarely, one holding the separator: row by
                # row then)
                joined = "\x01".join(columns[i])
                if " \x01" in joined or "\x00\x01" in joined or joined.endswith((" ", "\x00")):
                    return False
            if any(set(map(type, columns[i])) != {int} for i in self._columns_of[_AS_INT]):
                return False
            for i in self._columns_of[_AS_TIME]:
                # naive and inside USABLE_TIMES (an aware time makes min / max a TypeError)
                if set(map(type, columns[i])) != {datetime} or not (
                        USABLE_TIMES[0] <= min(columns[i]) and max(columns[i]) < USABLE_TIMES[1]):
                    return False
        except TypeError:
            return False
        return "" not in columns[self._linkedid_at]


def cdr_decoder(columns: Iterable[Any]) -> RowDecoder:
    """A decoder of `cdr` rows with these columns, in this order (names in any case)."""
    return RowDecoder(_CDR, columns)


def cel_decoder(columns: Iterable[Any]) -> RowDecoder:
    """A decoder of `cel` rows with these columns, in this order (names in any case)."""
    return RowDecoder(_CEL, columns)


def cdr_row(raw: Mapping[str, Any], problems: Optional[list[str]] = None) -> CdrRow:
    """Build a `CdrRow` from one `cdr` row (column name -> value, any case); missing columns
    take their default."""
    items = tuple(raw.items())
    return cdr_decoder(k for k, _ in items).decode([v for _, v in items], problems)


def cel_event(raw: Mapping[str, Any], problems: Optional[list[str]] = None) -> CelEvent:
    """Build a `CelEvent` from one `cel` row (column name -> value, any case)."""
    items = tuple(raw.items())
    return cel_decoder(k for k, _ in items).decode([v for _, v in items], problems)
