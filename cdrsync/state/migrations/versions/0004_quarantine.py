"""The quarantine: calls no step could process, with the step and the reason.

Revision 0004, after 0003. One new table, empty at first: `quarantine` (a call's callid, the step
that failed, the reason, how it is retried, its state and times; see cdrsync/state/quarantine.py),
with an index on `state`. A quarantined call's linkedids go into the existing `call_linkedids`,
so no existing row or column changes. A table or index already there is left as it is: a MySQL
upgrade stopped half way may have made the table without its index.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

# db.EPOCH as of this revision, frozen here
EPOCH_TYPE = sa.Double().with_variant(sa.Float(), "sqlite")
INDEX = "ix_quarantine_state"


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("quarantine"):
        op.create_table(
            "quarantine",
            sa.Column("callid", sa.String(length=64), nullable=False),
            sa.Column("step", sa.String(length=32), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column("origin", sa.String(length=16), nullable=False),
            sa.Column("notify_missed", sa.Boolean(), nullable=False),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("first_at", EPOCH_TYPE, nullable=False),
            sa.Column("last_at", EPOCH_TYPE, nullable=False),
            sa.PrimaryKeyConstraint("callid"),
        )
        inspector = sa.inspect(op.get_bind())
    if INDEX not in {i["name"] for i in inspector.get_indexes("quarantine")}:
        op.create_index(INDEX, "quarantine", ["state"], unique=False)
