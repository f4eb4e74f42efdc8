"""The model in the running product: learned at start, kept current, remembered across restarts.

At start the model is the stored one; with none stored (a first start), it is learned from the
newest rows of the PBX — the last `SAMPLE_CEL` cel ids and `SAMPLE_CDR` cdr rows, not a window on
the clock, so a table whose newest row is years old still teaches it. Each pass then adds the
rows of the calls it found (a backfill, those of the range it reads) before they are
interpreted, so a phone seen for the first time is known for its first call; the model is
stored again after each pass that recorded calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Optional

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cdrsync.config import PbxConfig
from cdrsync.model import CallRows
from cdrsync.pbx import store
from cdrsync.pbx.learn import learn
from cdrsync.pbx.model import PbxModel
from cdrsync.source.reader import Source
from cdrsync.state.db import Store, address, peek_store, sqlite_file
from cdrsync.state.ledger import transaction

log = logging.getLogger("cdrsync.pbx")

SAMPLE_CEL = 20000  # cel events (Wazo's sweep reads the same number)
SAMPLE_CDR = 5000  # cdr rows


def sample(source: Source, pbx: PbxConfig, cel_count: int = SAMPLE_CEL,
           cdr_count: int = SAMPLE_CDR) -> PbxModel:
    """The model of the newest rows of the PBX database."""
    top = source.max_cel_id()
    events = list(source.cel_range(max(0, top - cel_count), top + 1, cel_count)) if top else []
    return learn(source.newest_cdr(cdr_count), events, pbx=pbx)


class Keeper:
    """Holds the model of one PBX for a `run`, a `sync` or a `backfill`."""

    def __init__(self, state: Engine, source: Source, pbx: PbxConfig) -> None:
        self._state, self._source, self._pbx = state, source, pbx
        self._model: Optional[PbxModel] = None
        self._dirty = False

    @property
    def model(self) -> PbxModel:
        if self._model is None:
            with self._state.connect() as conn:
                stored = store.load(conn)
            if stored is not None:
                self._model = stored[0]
            else:
                self._model = sample(self._source, self._pbx)
                self._dirty = True
                log.info("learned the PBX from its newest %d rows: %s", self._model.rows,
                         self._model)
        return self._model

    def learn_calls(self, calls: Iterable[CallRows]) -> PbxModel:
        """The model plus the rows of these calls (which it then holds)."""
        calls = list(calls)
        if calls:
            self._model = learn((r for c in calls for r in c.cdr),
                                (e for c in calls for e in c.cel), base=self.model,
                                pbx=self._pbx)
            self._dirty = True
        return self.model

    def save(self, now: float) -> None:
        """Store the model if it changed since it was loaded or stored."""
        if self._dirty and self._model is not None:
            with transaction(self._state) as conn:
                store.save(conn, self._model, now)
            self._dirty = False


def current(state: Store, source: Source, pbx: PbxConfig, fresh: bool = False
            ) -> tuple[PbxModel, str]:
    """The model the next pass would use, and where it comes from (for `cdrsync pbx`, `show`
    and `check`). Writes nothing, not even a new store: a store that does not exist yet, or
    holds no model, means the first pass will learn from the newest rows, so those are read.
    `fresh`: learn from the newest rows even when a model is stored."""
    stored = None
    path = sqlite_file(address(state)[0])
    if not fresh and (path is None or path.is_file()):
        engine = peek_store(state)
        try:
            with engine.connect() as conn:
                stored = store.load(conn)
        except SQLAlchemyError:  # no such table yet (or no store at all)
            stored = None
        finally:
            engine.dispose()
    if stored is not None:
        return stored[0], "stored in the state store"
    return sample(source, pbx), "learned now from the newest rows of the PBX database"
