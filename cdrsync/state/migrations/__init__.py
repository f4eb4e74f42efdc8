"""The state store's schema, as Alembic revisions (`versions/`), applied by `open_store`.

A store is brought to the newest revision when cdrsync opens it: a new store is created, a store
made by an older cdrsync is upgraded in place (one made before revisions existed — tables, no
`alembic_version` — is adopted by revision 0001, which creates only what it lacks). A store at a
revision this cdrsync does not know, written by a newer one, is refused with one line. Processes
starting together upgrade once: the work runs in `locks.exclusive_transaction` and the others,
waiting on the lock, then find it done. A store that is up to date costs one query and no import
of Alembic.

Adding a revision (a new table, a column, an index, a type):

1. Change the declarations: the `Table`s on `cdrsync.state.db.metadata` (a new module that
   declares tables goes into `db.TABLE_MODULES`).
2. Run `python -m cdrsync.state.migrations revision "add the quarantine table"`: it writes
   `versions/NNNN_add_the_quarantine_table.py`, numbered after the newest, with the operations
   Alembic finds between a store at the newest revision (a throw-away SQLite file) and the
   declarations; they are rendered in batch mode, which SQLite needs to change a column.
3. Read and finish it. Revisions are frozen: never import cdrsync's tables into one (use
   `sa.table()` / `op.execute` for data), never edit one that was released. Only `upgrade()`:
   the ledger is never rewound (going back to an older cdrsync means its backup of the store).
   MySQL commits each DDL statement on its own, so a crash half way leaves part of a revision
   done: make each step skip what exists (`sa.inspect(op.get_bind())`: has_table, get_columns,
   get_indexes — `IF NOT EXISTS` is not there for columns and indexes on every backend), and
   write one `ALTER TABLE` per table where a big table (outbox, calls) would be rebuilt once
   per column. A column existing rows must fill gets a `server_default` or an UPDATE.
4. `pytest tests/test_store_migrations.py`: it builds a store from the revisions on SQLite,
   PostgreSQL and MySQL and fails while it differs from the declarations (a forgotten or partial
   revision), and when the history is not one line — two branches that each added revision NNNN:
   renumber yours (file name and `revision`) and point its `down_revision` at the other.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional

from sqlalchemy import Connection, Engine, inspect, text

from ..errors import StoreError
from ..locks import exclusive_transaction

log = logging.getLogger("cdrsync.state")

FOLDER = Path(__file__).resolve().parent
VERSION_TABLE = "alembic_version"  # Alembic's default name, kept: Alembic's tools find it
_FILE = re.compile(r"^(\d{4})_\w+\.py$")
WAIT = 300.0  # s another process may spend upgrading the store before this one gives up


def revisions(location: Path = FOLDER) -> list[str]:
    """Every revision this cdrsync knows, oldest first: numbered like their files."""
    return sorted(m.group(1) for p in (location / "versions").iterdir()
                  if (m := _FILE.match(p.name)))


def head(location: Path = FOLDER) -> str:
    return revisions(location)[-1]


def current(conn: Connection) -> Optional[str]:
    """The store's revision; None for a new store or one made before revisions existed."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(found) > 1:
        raise StoreError(f"state store has several revisions ({', '.join(sorted(found))}): "
                         "not made by cdrsync")
    return found[0] if found else None


def bring_up_to_date(engine: Engine, namespace: str = "") -> None:
    """Create or upgrade the store's schema to `head()`; refuse one newer than this code."""
    with engine.connect() as conn:
        at = current(conn)
        conn.rollback()
        if at == head():
            return
        _refuse_unknown(at)
        with exclusive_transaction(conn, namespace, "migrate", WAIT):
            at = current(conn)  # another process may have done it while this one waited
            _refuse_unknown(at)
            if at != head():
                _upgrade(conn, at)


def _refuse_unknown(at: Optional[str]) -> None:
    if at is not None and at not in revisions():
        from cdrsync import __version__

        raise StoreError(f"its schema is at revision {at}, newer than this cdrsync "
                         f"{__version__} knows (up to {head()}): a newer cdrsync upgraded it; "
                         "install that version again")


def alembic_config(conn: Connection, location: Path = FOLDER):
    """Alembic's configuration, without an alembic.ini: the scripts here, `conn` for env.py."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(location).replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.attributes["connection"] = conn
    return cfg


def _upgrade(conn: Connection, at: Optional[str]) -> None:
    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up chatter
    if at is None and not inspect(conn).has_table("outbox"):
        log.debug("state store: new, creating its schema at revision %s", head())
    else:  # an upgrade is worth a line in the log: it changed an admin's store
        if at is None:
            log.info("state store made before schema revisions: adopting it at revision 0001")
        log.info("state store: upgrading its schema from revision %s to %s", at or "0001",
                 head())
    command.upgrade(alembic_config(conn), "head")
