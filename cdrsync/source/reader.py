"""Read-only access to the PBX's `cdr` / `cel` tables, through any SQLAlchemy URL.

Queries follow the stock FreePBX indexes: `cel` by id range (primary key), by `linkedid` and by
`uniqueid`; `cdr` by `calldate` and `uniqueid` (FreePBX has no index on `cdr.linkedid`, so a
lookup by linkedid is always bounded by a calldate range). Nothing here ever writes. Columns are
selected untyped and decoded by `cdrsync.source.rows`, so odd values never break a query.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any, Callable, Optional

from pymysql.constants import FIELD_TYPE
from pymysql.converters import conversions, convert_datetime
from sqlalchemy import Engine, column, create_engine, func, inspect, or_, select, table
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError

from cdrsync.config import redact
from cdrsync.model import CdrRow, CelEvent
from cdrsync.source.rows import (
    CDR_FIELDS,
    CEL_FIELDS,
    USABLE_TIMES,
    RowDecoder,
    cdr_decoder,
    cel_decoder,
    decode_time,
)
from cdrsync.state.db import describe

log = logging.getLogger("cdrsync.source")

CHUNK = 500  # values per IN (...) list
CEL_PROBE = 10000  # how many recent cel ids "auto" looks at for LINKEDID_END
# cel events that tell nothing about who called, rang, answered or talked: never read, so never
# parsed (on FreePBX about a quarter of the table: every application's end, every playback, and
# every CHAN_END, whose HANGUP just before it says that the channel ended)
UNREAD_EVENTS = ("APP_END", "CHAN_END", "DTMF", "HOLD", "STREAM_BEGIN", "STREAM_END", "UNHOLD")


class SourceError(Exception):
    """The PBX database cannot be read; one line, no password."""


@dataclass(frozen=True)
class SourceSchema:
    """What the PBX database offers, found once by reflection."""

    cdr_columns: tuple[str, ...]
    cel_columns: tuple[str, ...]
    has_cel: bool
    has_linkedid: bool  # cdr.linkedid exists (Asterisk >= 1.8 with FreePBX's cdr module)
    cel_mode: bool  # finished calls are found through cel LINKEDID_END events
    reason: str  # why cel_mode is what it is, for `check` and the log


def _driver_options(url: URL) -> dict[str, Any]:
    """PyMySQL reads each DATETIME through a regular expression (about 2 µs, and every cel row
    has one): this hands it `mysql_datetime` instead. Other drivers parse in C already."""
    if url.get_driver_name() != "pymysql":
        return {}
    conv = dict(conversions)
    conv[FIELD_TYPE.DATETIME] = conv[FIELD_TYPE.TIMESTAMP] = mysql_datetime
    return {"connect_args": {"conv": conv}}


def mysql_datetime(text: str) -> Any:
    """A DATETIME as MySQL sends it (`2024-03-01 10:00:05[.fraction]`), parsed in C by
    `datetime.fromisoformat`; anything that refuses (zero dates, impossible days, fractions older
    Pythons do not take) goes to PyMySQL's own converter, so values come out exactly as before."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return convert_datetime(text)


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


class Source:
    """The PBX database. Every method raises `SourceError` on a database problem."""

    def __init__(self, url: str, use_cel: str = "auto", batch: int = 500) -> None:
        self._url = url
        self._use_cel = use_cel
        self._batch = max(1, batch)
        self._schema: Optional[SourceSchema] = None
        self._probed_top = 0  # cel ids up to this one were probed for LINKEDID_END
        try:
            parsed = make_url(url)
            self.engine: Engine = create_engine(parsed, pool_pre_ping=True, future=True,
                                                **_driver_options(parsed))
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise SourceError(f"source.url: {redact(str(exc))}") from None
        self._cdr = table("cdr")
        self._cel = table("cel")

    @classmethod
    def from_config(cls, cfg: Any) -> Source:
        return cls(cfg.source.url, cfg.source.use_cel, cfg.source.batch)

    def close(self) -> None:
        self.engine.dispose()

    # ---- plumbing ---------------------------------------------------------------------------

    def _fail(self, exc: BaseException, what: str) -> SourceError:
        return SourceError(f"PBX database: {what}: {redact(describe(exc))}")

    def _all(self, stmt: Any, what: str) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                # fetched at once: iterating a Result costs a few Python calls per row
                return conn.execute(stmt).all()
        except SQLAlchemyError as exc:
            raise self._fail(exc, what) from None

    def _stream(self, stmt: Any, decoder: Callable[[Sequence[str]], RowDecoder], what: str
                ) -> Iterator[Any]:
        """Rows decoded as they arrive (server-side cursor): memory stays flat however many
        match. Consume it to the end promptly: the server holds the query open meanwhile.

        SQLAlchemy's own share of this is small (its `Row`s are compiled): the driver's parsing
        and our decoding are the cost, so the query stays a plain SQLAlchemy one, any URL. The
        batches are flattened by `chain` (C), not by the generator, which then resumes once a
        batch and not once a row."""
        return chain.from_iterable(self._batches(stmt, decoder, what))

    def _batches(self, stmt: Any, decoder: Callable[[Sequence[str]], RowDecoder], what: str
                 ) -> Iterator[list[Any]]:
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=self._batch
                                                ).execute(stmt)
                decode = decoder(tuple(result.keys()))
                for part in result.partitions():
                    yield self._decoded(part, decode)
        except SQLAlchemyError as exc:
            raise self._fail(exc, what) from None

    def _param_time(self, local: datetime) -> Any:
        """SQLite keeps times as text; compare with text of the same shape."""
        if self.engine.dialect.name == "sqlite":
            return local.strftime("%Y-%m-%d %H:%M:%S")
        return local

    @property
    def schema(self) -> SourceSchema:
        if self._schema is None:
            self._schema = self._reflect()
        return self._schema

    def _columns(self, name: str) -> tuple[str, ...]:
        try:
            return tuple(c["name"].lower() for c in inspect(self.engine).get_columns(name))
        except NoSuchTableError:
            return ()

    def _reflect(self) -> SourceSchema:
        try:
            cdr_cols = self._columns("cdr")
            cel_cols = self._columns("cel")
        except SQLAlchemyError as exc:
            raise self._fail(exc, "reading the table definitions") from None
        if not cdr_cols:
            raise SourceError("PBX database: table cdr not found (or not readable by this user)")
        has_cel = {"id", "eventtype", "linkedid", "uniqueid"} <= set(cel_cols)
        if self._use_cel == "false":
            mode, reason = False, "use_cel = false"
        elif self._use_cel == "true":
            if not has_cel:
                raise SourceError("source.use_cel = true, but the PBX database has no usable cel "
                                  "table (id, eventtype, linkedid, uniqueid)")
            mode, reason = True, "use_cel = true"
        elif not has_cel:
            mode, reason = False, "no cel table: CDR-only mode"
        elif self._recent_linkedid_end():
            mode, reason = True, f"cel has LINKEDID_END events among the last {CEL_PROBE} rows"
        else:
            mode, reason = False, (f"cel has no LINKEDID_END among the last {CEL_PROBE} rows "
                                   "(CEL off or LINKEDID_END not logged): CDR-only mode")
        return SourceSchema(cdr_cols, cel_cols, has_cel, "linkedid" in cdr_cols, mode, reason)

    def reprobe(self) -> bool:
        """`use_cel = "auto"` found no LINKEDID_END: look again (the table definitions, then the
        cel rows added since the last look, at most CEL_PROBE) and switch `schema` to CEL mode if
        there is one now; True when it switched."""
        if self._use_cel != "auto" or self._schema is None or self._schema.cel_mode:
            return False
        fresh = self._reflect()
        if fresh.cel_mode:
            self._schema = fresh
        return fresh.cel_mode

    def _recent_linkedid_end(self) -> bool:
        top = self._max_id()
        since = self._probed_top if self._probed_top <= top else 0  # an emptied table: anew
        stmt = (select(column("id")).select_from(self._cel)
                .where(column("id") > max(top - CEL_PROBE, since),
                       column("eventtype") == "LINKEDID_END")
                .limit(1))
        found = bool(self._all(stmt, "probing cel for LINKEDID_END"))
        self._probed_top = top  # looked at: the next probe reads only what comes after
        return found

    def _max_id(self) -> int:
        stmt = select(func.max(column("id"))).select_from(self._cel)
        rows = self._all(stmt, "reading max(cel.id)")
        return int(rows[0][0] or 0)

    def _cdr_select(self) -> Any:
        cols = [column(c) for c in CDR_FIELDS if c in self.schema.cdr_columns]
        return select(*cols).select_from(self._cdr)

    def _cel_select(self) -> Any:
        cols = [column(c) for c in CEL_FIELDS if c in self.schema.cel_columns]
        kind = column("eventtype")
        return select(*cols).select_from(self._cel).where(
            or_(kind.is_(None), kind.not_in(UNREAD_EVENTS)))

    def _decode(self, rows: Sequence[Any], decoder: Callable[[Sequence[str]], RowDecoder]
                ) -> list[Any]:
        """Rows of one query (SQLAlchemy `Row`s, all with the same columns), decoded."""
        if not rows:
            return []
        return self._decoded(rows, decoder(rows[0]._fields))

    @staticmethod
    def _decoded(rows: Sequence[Any], decoder: RowDecoder) -> list[Any]:
        problems: list[str] = []
        out = decoder.decode_all(rows, problems)
        for problem in problems:
            log.debug("row read with a problem: %s", problem)
        return out

    # ---- CEL --------------------------------------------------------------------------------

    def max_cel_id(self) -> int:
        """Largest cel.id (0 when empty or when there is no cel table)."""
        return self._max_id() if self.schema.has_cel else 0

    def ended_linkedids(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        """`(cel.id, linkedid)` of LINKEDID_END events with id > after_id, by id, at most
        `limit`: a primary-key range scan (eventtime and eventtype have no index)."""
        if not self.schema.has_cel:
            return []
        stmt = (select(column("id"), column("linkedid")).select_from(self._cel)
                .where(column("id") > after_id, column("eventtype") == "LINKEDID_END")
                .order_by(column("id")).limit(limit))
        return [(int(r[0]), str(r[1] or "")) for r in self._all(stmt, "reading LINKEDID_END")]

    def cel_range(self, after_id: int, before_id: int, limit: int) -> list[CelEvent]:
        """Every cel event with after_id < id < before_id, by id, at most `limit`: a primary-key
        range scan (backfill reads the table this way instead of call by call). Fetched at once,
        not streamed: `limit` bounds it, and a server-side cursor costs the driver a few Python
        calls more a row."""
        if not self.schema.has_cel:
            return []
        stmt = (self._cel_select().where(column("id") > after_id, column("id") < before_id)
                .order_by(column("id")).limit(limit))
        return self._decode(self._all(stmt, "reading cel by id"), cel_decoder)

    def cel_for_linkedids(self, linkedids: Iterable[str]) -> list[CelEvent]:
        """Every cel event of these linkedids, ordered by id (the true event order)."""
        if not self.schema.has_cel:
            return []
        events: dict[int, CelEvent] = {}
        for part in _chunks(sorted(set(linkedids))):
            stmt = self._cel_select().where(column("linkedid").in_(part))
            for event in self._decode(self._all(stmt, "reading cel by linkedid"), cel_decoder):
                events[event.id] = event
        return [events[i] for i in sorted(events)]

    def linkedids_for_uniqueids(self, uniqueids: Iterable[str]) -> set[str]:
        """Linkedids in which any of these channels appears in cel."""
        if not self.schema.has_cel:
            return set()
        found: set[str] = set()
        for part in _chunks(sorted(set(uniqueids))):
            stmt = (select(column("linkedid")).select_from(self._cel).distinct()
                    .where(column("uniqueid").in_(part)))
            found.update(str(r[0]) for r in self._all(stmt, "reading cel by uniqueid") if r[0])
        return found

    def cel_id_at(self, local: datetime) -> int:
        """The smallest cel.id whose eventtime is >= `local` (max id + 1 if none): a binary
        search over the primary key, since ids grow with time and eventtime has no index."""
        if not self.schema.has_cel:
            return 0
        lo_rows = self._all(select(func.min(column("id"))).select_from(self._cel), "min(cel.id)")
        lo, hi = int(lo_rows[0][0] or 0), self._max_id() + 1
        # events whose time no clock wrote (zero dates, 9999-12-31) say nothing about where a
        # time lies: probed as "earlier", one at the end of the table sent the search past
        # every call of the look-back window
        first, end = (self._param_time(t) for t in USABLE_TIMES)
        when_known = (column("eventtime") >= first) & (column("eventtime") < end)
        while lo < hi:
            mid = (lo + hi) // 2
            stmt = (select(column("id"), column("eventtime")).select_from(self._cel)
                    .where(column("id") >= mid, when_known).order_by(column("id")).limit(1))
            rows = self._all(stmt, "searching cel by time")
            if not rows:
                hi = mid
                continue
            found_id, when = int(rows[0][0]), decode_time(rows[0][1])
            if when is not None and when >= local:
                hi = mid
            else:
                lo = found_id + 1
        stmt = (select(column("id")).select_from(self._cel).where(column("id") >= lo)
                .order_by(column("id")).limit(1))
        rows = self._all(stmt, "searching cel by time")
        return int(rows[0][0]) if rows else lo

    # ---- CDR --------------------------------------------------------------------------------

    def cdr_for_linkedids(
        self,
        linkedids: Iterable[str],
        uniqueids: Iterable[str] = (),
        since_local: Optional[datetime] = None,
        until_local: Optional[datetime] = None,
    ) -> list[CdrRow]:
        """cdr rows whose linkedid is one of `linkedids`, plus rows whose uniqueid (Party A) is
        one of `uniqueids`. The linkedid lookup is bounded by calldate >= `since_local` (and <
        `until_local`) because FreePBX does not index cdr.linkedid; pass the call's start."""
        linked = sorted(set(linkedids))
        rows: dict[tuple, CdrRow] = {}

        def keep(found: list[CdrRow]) -> None:
            for row in found:
                rows[(row.key, row.linkedid, row.duration, row.billsec, row.disposition)] = row

        def bounded(stmt: Any) -> Any:
            if since_local is not None:
                stmt = stmt.where(column("calldate") >= self._param_time(since_local))
            if until_local is not None:
                stmt = stmt.where(column("calldate") < self._param_time(until_local))
            return stmt

        if self.schema.has_linkedid:
            for part in _chunks(linked):
                stmt = bounded(self._cdr_select().where(column("linkedid").in_(part)))
                keep(self._decode(self._all(stmt, "reading cdr by linkedid"), cdr_decoder))
        wanted = set(uniqueids) | (set() if self.schema.has_linkedid else set(linked))
        for part in _chunks(sorted(wanted)):
            stmt = self._cdr_select().where(column("uniqueid").in_(part))
            keep(self._decode(self._all(stmt, "reading cdr by uniqueid"), cdr_decoder))
        return list(rows.values())

    def cdr_undated(self) -> list[CdrRow]:
        """cdr rows of a channel whose calldate no clock wrote (NULL, zero, 1000-01-01,
        9999-12-31): no calldate window ever holds them, so a backfill reads them once, through
        the calldate index, to join each to its call by uniqueid (its CEL then dates it)."""
        first, end = (self._param_time(t) for t in USABLE_TIMES)
        when = column("calldate")
        stmt = self._cdr_select().where(or_(when.is_(None), when < first, when >= end),
                                        column("uniqueid") != "")
        return self._decode(self._all(stmt, "reading cdr rows without a usable calldate"),
                            cdr_decoder)

    def _calldate_range(self, stmt: Any, start_local: datetime, end_local: Optional[datetime]
                        ) -> Any:
        stmt = stmt.where(column("calldate") >= self._param_time(start_local))
        if end_local is not None:
            stmt = stmt.where(column("calldate") < self._param_time(end_local))
        return stmt

    def next_calldate(self, start_local: datetime, end_local: Optional[datetime] = None
                      ) -> Optional[datetime]:
        """The first calldate with start <= calldate (< end) that is a time, None if there is
        none: one probe of the calldate index, so that a walk over the calendar jumps over empty
        stretches. Placeholder dates (`1000-01-01`, no call) cost one more probe per value."""
        base = self._calldate_range(select(column("calldate")).select_from(self._cdr),
                                    start_local, end_local)
        stmt = base
        while True:
            rows = self._all(stmt.order_by(column("calldate")).limit(1),
                             "probing cdr by calldate")
            if not rows:
                return None
            found = decode_time(rows[0][0])
            if found is not None:
                return found
            stmt = base.where(column("calldate") > rows[0][0])

    def cdr_count(self, start_local: datetime, end_local: datetime) -> int:
        """How many cdr rows have start <= calldate < end (a count over the calldate index):
        how much of a backfill's range is done, and how much is left."""
        stmt = self._calldate_range(select(func.count()).select_from(self._cdr), start_local,
                                    end_local)
        return int(self._all(stmt, "counting cdr by calldate")[0][0] or 0)

    def cdr_window(self, start_local: datetime, end_local: Optional[datetime] = None
                   ) -> Iterator[CdrRow]:
        """Stream cdr rows with start <= calldate (< end), by calldate, without holding them
        all in memory (server-side cursor)."""
        stmt = self._calldate_range(self._cdr_select(), start_local, end_local)
        return self._stream(stmt.order_by(column("calldate")), cdr_decoder,
                            "reading cdr by calldate")

    def newest_cdr(self, limit: int) -> list[CdrRow]:
        """The `limit` newest cdr rows by calldate (indexed), however old they are: the sample
        cdrsync learns the PBX from at start (cdrsync.pbx.keeper)."""
        stmt = self._cdr_select().order_by(column("calldate").desc()).limit(limit)
        return self._decode(self._all(stmt, "reading the newest cdr rows"), cdr_decoder)
