"""The learned PBX model and Planfix's answers about who is responsible for a caller.

Revision 0003, after 0002. Two new tables, empty at first: `pbx_model` (one row, the model
`cdrsync.pbx` learns from the PBX's rows, so a restart does not forget it) and
`responsible_cache` (Planfix's answers to callInfoRespNum, kept `[missed] responsible_ttl`).
No existing row changes. A table already there is left as it is: builds between 0.1.0 and this
revision made them with `create_all`, and a MySQL upgrade stopped half way may have made one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

# db.EPOCH as of this revision, frozen here
EPOCH_TYPE = sa.Double().with_variant(sa.Float(), "sqlite")


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "pbx_model" not in existing:
        op.create_table(
            "pbx_model",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("observations", sa.Text(), nullable=False),
            sa.Column("rows_learned", sa.Integer(), nullable=False),
            sa.Column("calls_learned", sa.Integer(), nullable=False),
            sa.Column("learned_at", EPOCH_TYPE, nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if "responsible_cache" not in existing:
        op.create_table(
            "responsible_cache",
            sa.Column("phone", sa.String(length=64), nullable=False),
            sa.Column("ext", sa.String(length=64), nullable=False),
            sa.Column("numbers", sa.Text(), nullable=False),
            sa.Column("asked_at", EPOCH_TYPE, nullable=False),
            sa.PrimaryKeyConstraint("phone", "ext"),
        )
