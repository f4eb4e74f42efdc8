"""The outbox's lanes: today's calls before history; the sent times indexed for a daily budget.

Revision 0005, after 0004. `outbox.priority` (0 LIVE: the live sync's calls and every call with a
missed-call notice; 1 HISTORY: backfilled calls), filled with 0 for the rows already there — what
they were queued as is not known, and sending them first is safe. The drain reads one lane at
a time in id order, so `ix_outbox_state_id` becomes `ix_outbox_state_priority_id`;
`ix_outbox_sent_at` lets `[planfix] daily_limit` count the last 24 hours' requests without
reading the table. Each step skips what exists: MySQL commits each DDL statement on its own,
so a crash may stop half way.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

LANE_INDEX = "ix_outbox_state_priority_id"
OLD_INDEX = "ix_outbox_state_id"
SENT_INDEX = "ix_outbox_sent_at"


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "priority" not in {c["name"] for c in inspector.get_columns("outbox")}:
        op.add_column("outbox", sa.Column("priority", sa.SmallInteger(), nullable=False,
                                          server_default=sa.text("0")))
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("outbox")}
    if LANE_INDEX not in indexes:
        op.create_index(LANE_INDEX, "outbox", ["state", "priority", "id"], unique=False)
    if SENT_INDEX not in indexes:
        op.create_index(SENT_INDEX, "outbox", ["sent_at"], unique=False)
    if OLD_INDEX in indexes:
        op.drop_index(OLD_INDEX, table_name="outbox")
