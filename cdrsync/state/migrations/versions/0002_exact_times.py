"""Epoch columns as 8-byte floats on MySQL / MariaDB.

Revision 0002, after 0001. MySQL's FLOAT is single precision: a `next_try` of 1796222407 was
stored as 1796222464 and read back as 1796220000 (a retry a minute late, `status` showing wrong
times). DOUBLE keeps microseconds. Values already written stay as FLOAT rounded them; new ones
are exact. One ALTER TABLE per table: MySQL rebuilds a table for each, and the outbox is the
store's biggest. MODIFY to DOUBLE is harmless to run again after a crash half way.

PostgreSQL's FLOAT is double precision and SQLite keeps every REAL in 8 bytes: nothing to do.
"""

from alembic import op

revision = "0002"
down_revision = "0001"

# table -> its epoch columns, each with whether it may be NULL
EPOCHS = {
    "calls": (("created_at", False),),
    "outbox": (("next_try", False), ("created_at", False), ("last_try", True),
               ("sent_at", True)),
    "delivery_flags": (("since", False),),
    "progress_cursors": (("updated_at", False),),
    "progress_pending": (("first_seen", False),),
    "progress_quiet": (("changed_at", False),),
    "passes": (("started", False), ("finished", False)),
}


def upgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, columns in EPOCHS.items():
        changes = ", ".join(f"MODIFY {name} DOUBLE {'NULL' if nullable else 'NOT NULL'}"
                            for name, nullable in columns)
        op.execute(f"ALTER TABLE {table} {changes}")
