"""The learned model in cdrsync's state store, so that a restart does not forget the PBX.

One row: the model's observations as JSON (they grow with the PBX's phones, trunks, groups and
the contexts and numbers they were seen with, not with its calls: kilobytes for an office, more
than MySQL's 64 KB TEXT for a big PBX, hence LONGTEXT there - revision 0006), how many rows and
calls taught them, and when.
"""

from __future__ import annotations

import json
from typing import Optional

from sqlalchemy import Column, Integer, Table, Text, delete, insert, select, update
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from cdrsync.pbx.model import PbxModel
from cdrsync.state.db import EPOCH, metadata

pbx_model = Table(
    "pbx_model",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    # LONGTEXT on MySQL, whose TEXT holds 64 KB (revision 0006)
    Column("observations", Text().with_variant(mysql.LONGTEXT(), "mysql"), nullable=False),
    Column("rows_learned", Integer, nullable=False, default=0),
    Column("calls_learned", Integer, nullable=False, default=0),
    Column("learned_at", EPOCH, nullable=False, default=0.0),
)


def load(conn: Connection) -> Optional[tuple[PbxModel, float]]:
    """The stored model and when it was stored, or None when nothing was learned yet."""
    return _model_of(conn.execute(select(pbx_model).where(pbx_model.c.id == 1)).mappings()
                     .first())


def load_locked(conn: Connection) -> Optional[PbxModel]:
    """The stored model, its row locked until the transaction ends (MySQL, PostgreSQL: FOR
    UPDATE; SQLite: the touch takes the write lock), so that two processes saving at once
    add to each other's evidence instead of overwriting it."""
    conn.execute(update(pbx_model).where(pbx_model.c.id == 1)
                 .values(learned_at=pbx_model.c.learned_at))
    row = conn.execute(select(pbx_model).where(pbx_model.c.id == 1).with_for_update()) \
        .mappings().first()
    found = _model_of(row)
    return found[0] if found else None


def _model_of(row) -> Optional[tuple[PbxModel, float]]:
    if row is None:
        return None
    try:
        pairs = json.loads(row["observations"])
        model = PbxModel(((tuple(key), int(n)) for key, n in pairs), int(row["rows_learned"]),
                         int(row["calls_learned"]))
    except (ValueError, TypeError):  # a damaged row: learn again rather than stop
        return None
    return model, float(row["learned_at"])


def save(conn: Connection, model: PbxModel, now: float) -> None:
    """Store `model` in place of the stored one (a first insert racing another process's
    fails with IntegrityError: the caller adds to what the other stored)."""
    text = json.dumps([[list(key), n] for key, n in model.observations], ensure_ascii=False)
    conn.execute(delete(pbx_model).where(pbx_model.c.id == 1))
    conn.execute(insert(pbx_model).values(id=1, observations=text, rows_learned=model.rows,
                                          calls_learned=model.calls, learned_at=now))
