"""Builds cdrsync/data/demo-asteriskcdrdb.sqlite, the copy `cdrsync --demo` reads, and copies
that PBX's recordings beside it (cdrsync/data/monitor/).

Its rows are the corpus of a real Asterisk 20 for 28 scripted calls (../shared/corpus), stored the
way Asterisk's cdr_sqlite3_custom / a SQLite asteriskcdrdb would hold them. Run
`python -m tests.demo_db` after the corpus changes; test_demo.py checks the shipped copy matches.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

from tests.corpus import CORPUS, sql_tables

TARGET = Path(__file__).resolve().parents[1] / "cdrsync" / "data" / "demo-asteriskcdrdb.sqlite"
RECORDINGS = TARGET.parent / "monitor"


def copy_recordings(target: Path) -> None:
    """The corpus's monitor/ folder, as it is (YYYY/MM/DD), without its read-only modes."""
    shutil.rmtree(target, ignore_errors=True)
    for source in sorted((CORPUS / "monitor").rglob("*")):
        if source.is_file():
            copy = target / source.relative_to(CORPUS / "monitor")
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(source.read_bytes())


def corpus_tables() -> dict[str, list[dict]]:
    return sql_tables((CORPUS / "asteriskcdrdb-cdr-cel.sql").read_text(encoding="utf-8"))


def build(path: Path) -> None:
    path.unlink(missing_ok=True)
    tables = corpus_tables()
    with sqlite3.connect(path) as db:
        for name in ("cdr", "cel"):
            rows = tables[name]
            columns = list(rows[0])
            decl = ", ".join(
                f'"{c}" INTEGER PRIMARY KEY' if (name, c) == ("cel", "id") else f'"{c}"'
                for c in columns)
            db.execute(f'CREATE TABLE "{name}" ({decl})')
            marks = ", ".join("?" for _ in columns)
            db.executemany(f'INSERT INTO "{name}" VALUES ({marks})',
                           [tuple(r[c] for c in columns) for r in rows])
        db.execute('CREATE INDEX cdr_calldate ON cdr (calldate)')
        db.execute('CREATE INDEX cdr_linkedid ON cdr (linkedid)')
        db.execute('CREATE INDEX cdr_uniqueid ON cdr (uniqueid)')
        db.execute('CREATE INDEX cel_linkedid ON cel (linkedid)')
        db.execute('CREATE INDEX cel_uniqueid ON cel (uniqueid)')
    with sqlite3.connect(path) as db:
        db.execute("VACUUM")


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET)
    copy_recordings(Path(sys.argv[1]).parent / "monitor" if len(sys.argv) > 1 else RECORDINGS)
