"""The learned PBX model's observations in a column that holds a big PBX's model on MySQL.

Revision 0006, after 0005. `pbx_model.observations` was `TEXT`, which MySQL/MariaDB cap at 65,535
bytes: the model of a PBX with a few hundred phones, trunks and groups (each seen with its contexts,
numbers and members) outgrows it, and MySQL refuses the row (strict mode) or cuts it (not strict),
so the model is lost at every restart. On MySQL the column becomes `LONGTEXT` (4 GB); on PostgreSQL
and SQLite `TEXT` has no such cap and nothing changes. The stored row is kept as it is.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    if op.get_bind().dialect.name == "mysql":
        op.alter_column("pbx_model", "observations", existing_type=sa.Text(),
                        type_=mysql.LONGTEXT(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "mysql":
        op.alter_column("pbx_model", "observations", existing_type=mysql.LONGTEXT(),
                        type_=sa.Text(), existing_nullable=False)
