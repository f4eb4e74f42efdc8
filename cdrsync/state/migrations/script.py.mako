"""${message}

Revision ${up_revision}, after ${down_revision | comma,n}. (Say here why, and what it does to the
rows of a store in use: frozen once released; see cdrsync/state/migrations/__init__.py.)
"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}
