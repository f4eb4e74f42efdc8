"""Decode raw database values into `CdrRow` / `CelEvent`.

Drivers and schemas disagree: NULLs where FreePBX says NOT NULL, zero dates (`0000-00-00`) that
PyMySQL returns as None or as a string, the `1000-01-01` default of `cdr.calldate`, bytes in an
old latin1/cp1251 table, numbers stored as text, SQLite times as text, columns that old versions
lack. Everything here is pure; every oddity that loses information is reported as one line in the
optional `problems` list so the caller can log it once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Optional

from cdrsync.model import CdrRow, CelEvent

# Times before this are defaults or junk (`1000-01-01`, `1970-01-01`), never a real call.
_EARLIEST_YEAR = 1971
_TIME = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
)
_TEXT_ENCODINGS = ("utf-8", "cp1251")  # then latin-1, which never fails

CDR_FIELDS = tuple(f.name for f in fields(CdrRow))
CEL_FIELDS = tuple(f.name for f in fields(CelEvent))
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
    if parsed.year < _EARLIEST_YEAR:
        _note(problems, f"{label} {parsed:%Y-%m-%d} is a placeholder date, not a call")
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


def _lower(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in raw.items()}


_AS_TEXT, _AS_INT, _AS_TIME = 0, 1, 2  # how `_decode_row` reads a column


def _plan(names: Iterable[str], time_column: str) -> tuple[tuple[str, int], ...]:
    return tuple((n, _AS_TIME if n == time_column else _AS_INT if n in _INT_FIELDS else _AS_TEXT)
                 for n in names)


_CDR_PLAN = _plan(CDR_FIELDS, "calldate")
_CEL_PLAN = _plan(CEL_FIELDS, "eventtime")


def _decode_row(table: str, plan: tuple[tuple[str, int], ...], raw: Mapping[str, Any],
                problems: Optional[list[str]]) -> dict[str, Any]:
    """Column values of one row decoded by kind; an empty `linkedid` becomes the `uniqueid`, so
    such rows (Asterisk 1.8, rows older than FreePBX's linkedid column) never fall together into
    one giant "call" with linkedid "". The common shapes (str, int, a plausible datetime) skip
    the general decoders: backfill decodes every row of the tables."""
    data = _lower(raw)
    values: dict[str, Any] = {}
    for name, kind in plan:
        value = data.get(name)
        if kind == _AS_TEXT:
            values[name] = value.rstrip(" \x00") if type(value) is str else decode_text(value)
        elif kind == _AS_INT:
            values[name] = value if type(value) is int else decode_int(
                value, problems, f"{table}.{name}")
        elif (type(value) is datetime and value.tzinfo is None
              and value.year >= _EARLIEST_YEAR):
            values[name] = value
        else:
            values[name] = decode_time(value, problems, f"{table}.{name}")
    if not values["linkedid"]:
        values["linkedid"] = values["uniqueid"]
    return values


def cdr_row(raw: Mapping[str, Any], problems: Optional[list[str]] = None) -> CdrRow:
    """Build a `CdrRow` from one `cdr` row (column name -> value, any case); missing columns
    take their default."""
    return CdrRow(**_decode_row("cdr", _CDR_PLAN, raw, problems))


def cel_event(raw: Mapping[str, Any], problems: Optional[list[str]] = None) -> CelEvent:
    """Build a `CelEvent` from one `cel` row (column name -> value, any case)."""
    return CelEvent(**_decode_row("cel", _CEL_PLAN, raw, problems))
