"""Start-up on an up-to-date database does not import Alembic; an older schema is migrated."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import create_engine

from authgate.db import SCHEMA_HEAD, alembic_config, head_revision, schema_is_current

# A fresh interpreter per start: whether Alembic got imported shows in sys.modules.
START = """
import sys
from pathlib import Path
from authgate.testing import build_app
handle = build_app(Path(sys.argv[1]))
status = handle.testapp.get("/health").status_int
handle.runtime.close()
print(status, "alembic" in sys.modules)
"""


def start(path) -> tuple[int, bool]:
    done = subprocess.run([sys.executable, "-c", START, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    status, imported = done.stdout.split()[-2:]
    return int(status), imported == "True"


def test_schema_head_is_the_newest_migration(app):
    # Adding a migration means updating authgate.db.SCHEMA_HEAD; this says so.
    assert head_revision(app.runtime.engine) == SCHEMA_HEAD
    assert schema_is_current(app.runtime.engine)


def test_alembic_is_imported_only_when_there_is_something_to_migrate(tmp_path):
    from alembic import command

    assert start(tmp_path) == (200, True)  # an empty database: migrated and seeded
    assert start(tmp_path) == (200, False)  # at the head: nothing to import
    engine = create_engine(f"sqlite:///{tmp_path / 'oauth.db'}")
    try:
        config = alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")
        assert not schema_is_current(engine)
        assert start(tmp_path) == (200, True)  # an older schema: migrated at start-up
        assert schema_is_current(engine)
    finally:
        engine.dispose()


def test_no_version_table_is_not_current(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert not schema_is_current(engine)
    finally:
        engine.dispose()
