"""Read the corpus files (mysqldump / Navicat SQL, Asterisk CSV exports) into cdrsync rows.

Pure parsing, no database: the interpretation tests feed real rows to `interpret` without MariaDB.
Values go through production's decoder (`cdrsync.source.rows`) and grouping
(`cdrsync.grouping`), so a test sees what production would.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cdrsync.grouping import group_calls
from cdrsync.model import CallRows, CdrRow, CelEvent
from cdrsync.source.rows import cdr_row, cel_event

# ../shared beside the checkout (where CI lays it), else the developers' machine's copy
ROOT = next((p for p in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared"))
             if p.is_dir()), Path("/work/shared"))
CORPUS = ROOT / "corpus" / "asterisk-20.20.1"
CORPUS_B = ROOT / "corpus" / "asterisk-20.20.1-b"  # round B: another PBX, other numbering
PUBLIC = ROOT / "corpus-public"

_INSERT = re.compile(r"INSERT INTO `(\w+)`\s*(?:\(([^)]*)\))?\s*VALUES\s*", re.IGNORECASE)
_CREATE = re.compile(r"CREATE TABLE `(\w+)`\s*\((.*?)\)\s*(?:ENGINE|;)", re.IGNORECASE | re.DOTALL)
_COLUMN = re.compile(r"^\s*`(\w+)`", re.MULTILINE)
_TOKEN = re.compile(
    r"'((?:[^'\\]|\\.|'')*)'|(NULL)\b|(-?\d+(?:\.\d+)?)|([(),;])", re.IGNORECASE | re.DOTALL
)
_ESCAPES = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "b": "\b"}


def _unescape(text: str) -> str:
    """MySQL string literal body -> text (backslash escapes and doubled quotes)."""
    text = text.replace("''", "'")
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text, flags=re.DOTALL)


def sql_tables(text: str) -> dict[str, list[dict[str, Any]]]:
    """Every INSERTed row of a dump, as {table: [{column: value}]}; values are str, int or None.

    Accepts mysqldump (extended or not, MySQL 5.0 to MariaDB 10.11) and Navicat syntax; columns
    come from the INSERT's own list, else from the table's CREATE TABLE in the same dump.
    """
    columns = {m.group(1): _COLUMN.findall(m.group(2)) for m in _CREATE.finditer(text)}
    tables: dict[str, list[dict[str, Any]]] = {}
    for insert in _INSERT.finditer(text):
        table = insert.group(1)
        names = re.findall(r"`(\w+)`", insert.group(2)) if insert.group(2) else columns[table]
        out = tables.setdefault(table, [])
        row: list[Any] = []
        for tok in _TOKEN.finditer(text, insert.end()):
            literal, null, number, punct = tok.groups()
            if literal is not None:
                row.append(_unescape(literal))
            elif null:
                row.append(None)
            elif number is not None:
                row.append(int(number) if "." not in number else number)
            elif punct == ")":
                out.append(dict(zip(names, row)))
                row = []
            elif punct == ";":
                break
    return tables


def _dmy_to_iso(text: str) -> str:
    """`1/9/2017 16:33:01` (a spreadsheet re-saved the export day-first) -> ISO, else as is."""
    m = re.match(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (.*)$", text.strip())
    return f"{m.group(3)}-{int(m.group(2)):02d}-{int(m.group(1)):02d} {m.group(4)}" if m else text


def _cdr(values: dict[str, Any]) -> CdrRow:
    """Plain Asterisk names the start time `start`; FreePBX calls it `calldate`."""
    if "calldate" not in values and "start" in values:
        values = {**values, "calldate": values["start"]}
    return cdr_row(values)


def load_sql(path: Path) -> tuple[list[CdrRow], list[CelEvent]]:
    tables = sql_tables(path.read_text(encoding="utf-8", errors="replace"))
    cdr = [_cdr(v) for v in tables.get("cdr", [])]
    cel = sorted((cel_event(v) for v in tables.get("cel", [])), key=lambda e: e.id)
    return cdr, cel


# cdr_custom.conf's sample mapping (the KelySaina Master.csv): clid first, start/answer/end.
CUSTOM_CSV = ["clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata",
              "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
              "accountcode", "uniqueid", "userfield", "sequence"]
# FreePBX 13 "CDR Reports" export without header (g9telecom cdr.csv): the table's column order.
FREEPBX_CSV = ["calldate", "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp",
               "lastdata", "duration", "billsec", "disposition", "amaflags", "accountcode",
               "uniqueid", "userfield", "recordingfile", "did", "cnum", "cnam", "outbound_cnum",
               "outbound_cnam", "dst_cnam", "sequence", "peeraccount"]


def load_csv(path: Path) -> list[CdrRow]:
    """A CSV of cdr rows: with a header line, or headerless in one of the two known layouts."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        lines = list(csv.reader(fh))
    if not lines:
        return []
    if lines[0] and lines[0][0] == "calldate":
        names, lines = lines[0], lines[1:]
    elif re.match(r"^\d{1,2}/\d{1,2}/\d{4} ", lines[0][0]):
        names = FREEPBX_CSV
    else:
        names = CUSTOM_CSV
    rows = [dict(zip(names, line)) for line in lines if line]
    for row in rows:
        row["calldate"] = _dmy_to_iso(row.get("calldate") or row.get("start") or "")
    return [_cdr(row) for row in rows]


def calls_of(cdr: Iterable[CdrRow], cel: Iterable[CelEvent] = ()) -> list[CallRows]:
    """The calls of a dump, grouped as production groups them (union-find over linkedids).

    Rows without a time and without a uniqueid (hand-inserted junk dated `1000-01-01`) are never
    inside a pass's calldate window, so production never reads them; they are left out here too.
    """
    rows = [r for r in cdr if r.calldate is not None or r.uniqueid]
    return group_calls(rows, cel)


def corpus_rows(folder: Path = CORPUS) -> tuple[list[CdrRow], list[CelEvent]]:
    return load_sql(folder / "asteriskcdrdb-cdr-cel.sql")
