"""A backfill's cost follows the rows it finds, not the calendar it is given: counted in queries
sent to a real MariaDB (SQLAlchemy's `before_cursor_execute` on the Source's engine), never timed.

The table holds two busy days; in the sparse one they lie ten years apart, in the dense one a
day apart. Walking 2000–2030 over the sparse table must cost what walking the dense one does:
the empty years are jumped over (one probe of the calldate index), not read an hour at a time.
Rows are `tests/synth.py`'s (Asterisk 20 / FreePBX 17 shapes of the round A corpus), with their
`cel` rows and without them (a CDR-only PBX).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine, event

from cdrsync import history
from cdrsync.config import from_dict
from cdrsync.source.reader import Source
from cdrsync.state import progress
from cdrsync.state.db import metadata
from tests import synth

DAY_A = datetime(2014, 3, 3, 8, 0)
WIDE = (datetime(2000, 1, 1), datetime(2030, 1, 1))
NOW = datetime(2026, 6, 1).timestamp()  # long after both days (UTC, as the PBX)


def two_days(second_day: datetime, cel: bool) -> list[synth.SynthCall]:
    """The same office day twice (40 calls from 08:00, ~7 h), distinct uniqueids."""
    return (list(synth.generate(40, DAY_A, seed=21, mean_gap=600, cel=cel))
            + list(synth.generate(40, second_day, seed=21, mean_gap=600, cel=cel,
                                  first_uid=10_000)))


def backfill(db, tmp_path, cel: bool, since: datetime, until: datetime
             ) -> tuple[int, list[str]]:
    """(queries the Source sent, callids found in order) of a whole backfill of the range."""
    cfg = from_dict({"source": {"url": db.ro_url, "timezone": "UTC", "use_cel": cel,
                                "batch": 25},
                     "planfix": {"url": "http://127.0.0.1:1/", "token": "t"}}, env={})
    source = Source.from_config(cfg)
    assert source.schema.cel_mode is cel
    store = create_engine(f"sqlite:///{tmp_path / f'state-{len(list(tmp_path.iterdir()))}.db'}")
    metadata.create_all(store, tables=[progress.cursors])
    queries = []
    event.listen(source.engine, "before_cursor_execute",
                 lambda *args: queries.append(args[2]))
    found: list[str] = []
    for discovery in history.find_history(source, store, cfg, since, until, NOW,
                                          lambda ids: set(), batch_calls=25):
        with store.begin() as conn:
            discovery.commit(conn)
        found += [c.callid for c in discovery.calls]
    source.close()
    store.dispose()
    return len(queries), found


@pytest.mark.parametrize("cel", [True, False], ids=["cel", "cdr-only"])
def test_empty_years_cost_no_query(pbx_db, mariadb_server, tmp_path, cel):
    sparse_calls = two_days(DAY_A + timedelta(days=3653), cel)
    synth.insert(pbx_db.admin, sparse_calls)
    sparse, sparse_found = backfill(pbx_db, tmp_path, cel, *WIDE)
    own_a, _ = backfill(pbx_db, tmp_path, cel, DAY_A, DAY_A + timedelta(days=1))
    assert sorted(sparse_found) == sorted(c.truth.linkedid for c in sparse_calls)

    pbx_db.execute("DELETE FROM cdr")
    pbx_db.execute("DELETE FROM cel")
    dense_calls = two_days(DAY_A + timedelta(days=1), cel)
    synth.insert(pbx_db.admin, dense_calls)
    dense, dense_found = backfill(pbx_db, tmp_path, cel, *WIDE)
    assert sorted(dense_found) == sorted(c.truth.linkedid for c in dense_calls)

    # ten empty years cost at most a probe or two more than one night between the two days
    assert sparse <= dense + 2, (sparse, dense)
    # and the wide range costs what two days of their own do (86,000 empty hours: no query)
    assert sparse <= 2 * own_a + 10, (sparse, own_a)
    assert sparse < 400
