"""The schema of cdrsync 0.1.0, the last release without revisions.

Revision 0001, the first. Stores made by those releases have these tables but no alembic_version:
`create_all` made the tables a store lacked, and a hook added the outbox indexes that came
later. So this revision, too, creates only what a store lacks — a new store gets everything, an
old one is adopted with its rows untouched — and can run again after a crash half way (MySQL
commits each CREATE on its own). Column types are those of 0.1.0: FLOAT epochs (see 0002).
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def _tables(meta: sa.MetaData) -> list[sa.Table]:
    return [
        sa.Table(
            "calls", meta,
            sa.Column("callid", sa.String(64), primary_key=True),
            sa.Column("direction", sa.String(16), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("ext", sa.String(64), nullable=False),
            sa.Column("phone", sa.String(64), nullable=False),
            sa.Column("start_utc", sa.DateTime, nullable=True),
            sa.Column("end_utc", sa.DateTime, nullable=True),
            sa.Column("origin", sa.String(16), nullable=False),
            sa.Column("summary", sa.Text, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Index("ix_calls_phone_start", "phone", "start_utc"),
        ),
        sa.Table(
            "call_linkedids", meta,
            sa.Column("linkedid", sa.String(64), primary_key=True),
            sa.Column("callid", sa.String(64), nullable=False),
            sa.Index("ix_call_linkedids_callid", "callid"),
        ),
        sa.Table(
            "outbox", meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("key", sa.String(255), nullable=False, unique=True),
            sa.Column("callid", sa.String(64), nullable=False),
            sa.Column("target", sa.String(16), nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("next_try", sa.Float, nullable=False),
            sa.Column("last_error", sa.Text, nullable=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("last_try", sa.Float, nullable=True),
            sa.Column("sent_at", sa.Float, nullable=True),
            sa.Index("ix_outbox_callid", "callid"),
            sa.Index("ix_outbox_state_next", "state", "next_try"),
            sa.Index("ix_outbox_state_id", "state", "id"),
        ),
        sa.Table(
            "delivery_flags", meta,
            sa.Column("name", sa.String(32), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
            sa.Column("since", sa.Float, nullable=False),
        ),
        sa.Table(
            "progress_cursors", meta,
            sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("value", sa.String(64), nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "progress_pending", meta,
            sa.Column("linkedid", sa.String(80), primary_key=True),
            sa.Column("first_seen", sa.Float, nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
        ),
        sa.Table(
            "progress_quiet", meta,
            sa.Column("callid", sa.String(80), primary_key=True),
            sa.Column("fingerprint", sa.String(64), nullable=False),
            sa.Column("changed_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "passes", meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("started", sa.Float, nullable=False),
            sa.Column("finished", sa.Float, nullable=False),
            sa.Column("found", sa.Integer, nullable=False),
            sa.Column("sent", sa.Integer, nullable=False),
            sa.Column("error", sa.String(500), nullable=False),
        ),
        sa.Table(
            "late_recordings", meta,
            sa.Column("callid", sa.String(64), primary_key=True),
            sa.Column("candidates", sa.Text, nullable=False),
            sa.Column("uniqueids", sa.Text, nullable=False),
            sa.Column("start", sa.BigInteger, nullable=True),
            sa.Column("until", sa.BigInteger, nullable=False),
        ),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    found = sa.inspect(bind)
    existing = set(found.get_table_names())
    for table in _tables(sa.MetaData()):
        if table.name not in existing:
            table.create(bind)  # with its indexes
            continue
        indexes = {ix["name"] for ix in found.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)
