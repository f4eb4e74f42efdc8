"""A pass that finds nothing new is what `run` does every second, so it must cost next to nothing:
against a real MariaDB PBX read with the SELECT-only login it sends ONE query to the PBX (the
primary-key range of cel after the cursor), which examines no row by MariaDB's own counters of
that session (`Handler_read_*`: one index read positions it), however many rows the tables hold;
and it writes nothing to the state store. Counts, not timings."""

from __future__ import annotations

import time

from sqlalchemy import event

from cdrsync import config as config_mod
from cdrsync import pipeline as pipeline_mod
from tests import synth
from tests.e2e import make_config
from tests.test_e2e_sync import external, recent

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class Statements:
    """Every statement an engine sends, with the DB-API connection it went on."""

    def __init__(self, engine) -> None:
        self.seen: list[tuple[int, str]] = []
        event.listen(engine, "before_cursor_execute", self._note)

    def _note(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.seen.append((id(conn.connection.dbapi_connection), " ".join(statement.split())))

    def clear(self) -> None:
        self.seen.clear()


def handler_reads(engine) -> tuple[int, dict[str, int]]:
    """(the DB-API connection's id, its session Handler_read_* counters); the pool must hold one
    connection so that this is the one the pass used."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Handler_read%%'").all()
        return id(conn.connection.dbapi_connection), {k: int(v) for k, v in rows}


def test_an_idle_pass_is_one_pk_range_query_examining_no_row_and_no_store_write(
        pbx_db, planfix, tmp_path):
    calls = recent(60, seed=71)  # some hundreds of cdr and cel rows behind the cursor
    synth.insert(pbx_db.admin, calls)
    path = make_config(tmp_path, pbx_db.ro_url, planfix)
    pipe = pipeline_mod.Pipeline(config_mod.load(str(path)))
    try:
        now = time.time()
        pipe.sync_pass(now=now)  # the first sync: every call sent, the cursor at the end
        assert len(planfix.received("event")) >= len(external(calls)) > 0
        pbx, store = Statements(pipe.source.engine), Statements(pipe.store)
        pipe.source.engine.dispose()  # one pooled connection: the one counted below
        counted, before = handler_reads(pipe.source.engine)
        _, again = handler_reads(pipe.source.engine)  # what reading the counters costs
        overhead = {k: again[k] - before[k] for k in before}
        pbx.clear()
        store.clear()

        result = pipe.sync_pass(now=now + 1)

        used, after = handler_reads(pipe.source.engine)
        assert result.found == 0 and result.sent == 0
        pass_queries = pbx.seen[:-1]  # the last one is the counters' read
        assert len(pass_queries) == 1, pass_queries
        (conn_id, sql), = pass_queries
        assert conn_id == used == counted
        assert sql.startswith("SELECT id, linkedid FROM cel WHERE id > %(id_1)s AND eventtype = ")
        assert sql.endswith("ORDER BY id LIMIT %(param_1)s")
        examined = {k: after[k] - again[k] - overhead[k] for k in after}
        # positioning on the primary key after the cursor is one index read; no row is past it
        assert sum(examined.values()) <= 1, examined
        assert [s for _, s in store.seen if s.upper().startswith(WRITES)] == []
        # of discovery's state, the cursors and the pending linkedids; not the quiet calls (CEL
        # mode reads them for its orphan scan only), nor the quarantine (every RETRY_EVERY s)
        read = [s.split(" FROM ", 1)[1].split()[0] for _, s in store.seen
                if s.upper().startswith("SELECT") and " FROM " in s]
        assert [t for t in read if t.startswith(("progress_", "quarantine"))] == [
            "progress_cursors", "progress_pending"], read
    finally:
        pipe.close()
