"""Revision 0006: a big PBX's learned model fits the state store on MySQL / MariaDB too.

`pbx_model.observations` was `TEXT` (MySQL: 65,535 bytes at most). A store at revision 0005 with a
model in it is upgraded: the model is kept, and a model of a few thousand devices (about 200 KB
of JSON, a large PBX) is then stored and read back whole - on MySQL, where revision 0005's
column refuses it, and on PostgreSQL and SQLite, where nothing changes. Real servers, the shared
MariaDB and PostgreSQL (tests/conftest.py).
"""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import DataError, OperationalError

from cdrsync.pbx import PbxModel
from cdrsync.pbx import store as pbx_store
from cdrsync.state import migrations
from cdrsync.state.db import open_store
from cdrsync.state.ledger import transaction

BEFORE = "0005"  # the revision 0006 follows


def _big_model(devices: int = 3000) -> PbxModel:
    """Every device begun in from-internal and named by its cnum, as learn() notes it."""
    return PbxModel({obs: 7 for n in range(devices) for obs in (
        ("dev", f"PJSIP/{6871320000 + n}", "began-internal", "from-internal"),
        ("dev", f"PJSIP/{6871320000 + n}", "ext-cnum", str(6871320000 + n)))}, 60000, 3000)


def _store_at(kind: str, revision: str, tmp_path, store_servers) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}" if kind == "sqlite" else store_servers.empty(kind)
    engine = create_engine(url)
    with engine.connect() as conn:
        command.upgrade(migrations.alembic_config(conn), revision)
        conn.commit()
    engine.dispose()
    return url


def test_the_big_model_does_not_fit_revision_0005_on_mysql(tmp_path, store_servers):
    """What the revision is for: MariaDB in strict mode refuses the row (TEXT is 64 KB)."""
    engine = create_engine(_store_at("mysql", BEFORE, tmp_path, store_servers))
    try:
        with pytest.raises((DataError, OperationalError)), engine.begin() as conn:
            pbx_store.save(conn, _big_model(), 1.0)
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_upgrading_keeps_the_model_and_then_holds_a_big_one(kind, tmp_path, store_servers):
    url = _store_at(kind, BEFORE, tmp_path, store_servers)
    small = PbxModel({("dev", "PJSIP/101", "began-internal", "from-internal"): 3}, 10, 3)
    engine = create_engine(url)
    with engine.begin() as conn:
        pbx_store.save(conn, small, 1.0)
    engine.dispose()
    store = open_store(url)  # upgrades to the head
    try:
        with store.connect() as conn:
            assert migrations.current(conn) == migrations.head()
            assert pbx_store.load(conn) == (small, 1.0)
            column = next(c for c in inspect(conn).get_columns("pbx_model")
                          if c["name"] == "observations")
        assert ("LONGTEXT" in str(column["type"]).upper()) is (kind == "mysql")
        big = _big_model()
        with transaction(store) as conn:
            pbx_store.save(conn, big, 2.0)
        with store.connect() as conn:
            assert pbx_store.load(conn) == (big, 2.0)
    finally:
        store.dispose()
