"""The learned model in cdrsync's state store, so that a restart does not forget the PBX.

One row: the model's observations as JSON (a few kilobytes: they grow with the PBX's phones
and groups, not with its calls), how many rows and calls taught them, and when.
"""

from __future__ import annotations

import json
from typing import Optional

from sqlalchemy import Column, Integer, Table, Text, delete, insert, select
from sqlalchemy.engine import Connection

from cdrsync.pbx.model import PbxModel
from cdrsync.state.db import EPOCH, metadata

pbx_model = Table(
    "pbx_model",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("observations", Text, nullable=False),
    Column("rows_learned", Integer, nullable=False, default=0),
    Column("calls_learned", Integer, nullable=False, default=0),
    Column("learned_at", EPOCH, nullable=False, default=0.0),
)


def load(conn: Connection) -> Optional[tuple[PbxModel, float]]:
    """The stored model and when it was stored, or None when nothing was learned yet."""
    row = conn.execute(select(pbx_model).where(pbx_model.c.id == 1)).mappings().first()
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
    text = json.dumps([[list(key), n] for key, n in model.observations], ensure_ascii=False)
    conn.execute(delete(pbx_model).where(pbx_model.c.id == 1))
    conn.execute(insert(pbx_model).values(id=1, observations=text, rows_learned=model.rows,
                                          calls_learned=model.calls, learned_at=now))
