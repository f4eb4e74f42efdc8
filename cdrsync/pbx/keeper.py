"""The model in the running product: learned at start, kept current, remembered across restarts.

At start the model is the stored one; with none stored (a first start), it is learned from the
newest rows of the PBX — the last `SAMPLE_CEL` cel ids and `SAMPLE_CDR` cdr rows, not a window on
the clock, so a table whose newest row is years old still teaches it. Each pass then adds the
rows of the calls it found (a backfill, those of the range it reads) before they are
interpreted, so a phone seen for the first time is known for its first call; the model is
stored again after a pass that taught it something.

- A call counts once: a call this process learned from already (re-read by a later pass, a
  quarantine retry) adds nothing the second time (the last `REMEMBERED` calls are remembered).
- Saving merges: `run` and `backfill` may learn at once; each stores the stored model plus what
  it learned since it last read or stored it, in one transaction that locks the row first, so
  neither overwrites the other's evidence.
- A pass that taught nothing stores nothing (no statement at all).
- A call whose rows make the model fail to derive is left out of it, with a warning: the
  rest of the pass learns and goes on (its interpretation then decides whether it is held).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Optional

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cdrsync.config import PbxConfig
from cdrsync.model import CallRows
from cdrsync.pbx import store
from cdrsync.pbx.learn import learn, observe
from cdrsync.pbx.model import Evidence, PbxModel
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
    events = source.cel_range(max(0, top - cel_count), top + 1, cel_count) if top else []
    return learn(source.newest_cdr(cdr_count), events, pbx=pbx)


REMEMBERED = 100_000  # linkedids of calls learned from, per process (a few MB at most)


class Keeper:
    """Holds the model of one PBX for a `run`, a `sync` or a `backfill`."""

    def __init__(self, state: Engine, source: Source, pbx: PbxConfig) -> None:
        self._state, self._source, self._pbx = state, source, pbx
        self._model: Optional[PbxModel] = None
        self._sampled = False  # the model holds a sample of the PBX the store has not got
        self._new = Evidence.none()  # what the passes taught since the model was read or stored
        self._learned: OrderedDict[str, None] = OrderedDict()  # linkedids, oldest first

    @property
    def model(self) -> PbxModel:
        if self._model is None:
            with self._state.connect() as conn:
                stored = store.load(conn)
            if stored is not None:
                self._model = stored[0]
            else:
                self._model, self._sampled = sample(self._source, self._pbx), True
                log.info("learned the PBX from its newest %d rows: %s", self._model.rows,
                         self._model)
        return self._model

    def learn_calls(self, calls: Iterable[CallRows]) -> PbxModel:
        """The model plus the rows of these calls (which it then holds); a call learned from
        before adds nothing."""
        fresh = [c for c in calls if not any(i in self._learned for i in c.linkedids)]
        if not fresh:
            return self.model
        try:
            self._add(fresh)
        except Exception:  # one call's evidence breaks the model: learn call by call
            for call in fresh:
                try:
                    self._add([call])
                except Exception as exc:
                    log.warning("learning the PBX: call %s left out (%s)", call.callid,
                                type(exc).__name__)
        for call in fresh:
            self._learned.update(dict.fromkeys(sorted(call.linkedids)))
        while len(self._learned) > REMEMBERED:
            self._learned.popitem(last=False)
        return self.model

    def _add(self, calls: list[CallRows]) -> None:
        taught = observe((r for c in calls for r in c.cdr), (e for c in calls for e in c.cel),
                         pbx=self._pbx)
        model = self.model.merged(taught)
        self._new, self._model = self._new.plus(taught), model

    def save(self, now: float) -> None:
        """Store what was learned since the model was read or stored, added to what the store
        holds now (another process may have stored meanwhile); nothing when nothing was."""
        if self._model is None or not (self._sampled or self._new.rows):
            return
        try:
            self._model = self._merge_into_store(now)
        except IntegrityError:  # two first saves at once: the other inserted; add to it
            self._model = self._merge_into_store(now)
        self._sampled, self._new = False, Evidence.none()

    def _merge_into_store(self, now: float) -> PbxModel:
        with transaction(self._state) as conn:
            current = store.load_locked(conn)
            # nothing stored: all of it (a sample too); else what is new here, on top of it (a
            # sample taken here is not added: the process that stored first sampled the same
            # newest rows)
            merged = self.model if current is None else current.merged(self._new)
            store.save(conn, merged, now)
        return merged


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
