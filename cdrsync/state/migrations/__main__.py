"""`python -m cdrsync.state.migrations revision "what it does"`: write the next revision.

It numbers the file after the newest revision and fills it with what Alembic's autogenerate
finds between a store at that revision (a throw-away SQLite file) and the table declarations;
see the package docstring for what to check before committing it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine

from . import FOLDER, alembic_config, head


def new_revision(message: str, location: Path = FOLDER) -> Path:
    """Write revision head()+1 under `location` (the migrations folder); returns its path."""
    from alembic import command

    number = f"{int(head(location)) + 1:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/head.db")
        try:
            with engine.connect() as conn:
                command.upgrade(alembic_config(conn, location), "head")
                conn.commit()
                script = command.revision(alembic_config(conn, location), message,
                                          autogenerate=True, rev_id=number)
        finally:
            engine.dispose()
    return Path(script.path)  # type: ignore[union-attr]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "revision" or not argv[1].strip():
        print('usage: python -m cdrsync.state.migrations revision "what it does"',
              file=sys.stderr)
        return 2
    print(new_revision(argv[1].strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
