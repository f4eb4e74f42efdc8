"""Alembic's entry point: runs the revisions on the connection cdrsync hands over.

There is no alembic.ini and no URL here: `cdrsync.state.migrations` builds the configuration and
puts an open connection, inside its exclusive transaction, into `config.attributes`. The
transaction is the caller's, so Alembic adds none of its own.
"""

from __future__ import annotations

import importlib

from alembic import context

from cdrsync.state.db import TABLE_MODULES, metadata
from cdrsync.state.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the state store's revisions through cdrsync (open_store, or "
                       "python -m cdrsync.state.migrations), not the alembic command")
for module in TABLE_MODULES:  # what autogenerate compares the store with
    importlib.import_module(module)
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
