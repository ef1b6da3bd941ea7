"""Copy every table between two databases (SQLite <-> PostgreSQL), verifying counts.

The built-in answer to "move from SQLite to PostgreSQL": the target is migrated
to the current schema, must be empty, and receives all rows in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Integer, func, insert, select, text
from sqlalchemy.engine import Engine

from authgate.db import current_revision, head_revision, migrate
from authgate.models import Base

log = logging.getLogger("authgate.dbcopy")

BATCH = 1000


class CopyError(Exception):
    pass


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)


def engine_for(dsn: str) -> Engine:
    """A SQLite file path (or sqlite:/// URL) or a PostgreSQL DSN (keywords or URL)."""
    from authgate_plugins.store_postgres import PostgresStore, dsn_to_url
    from authgate_plugins.store_sqlite import SQLiteStore

    text_dsn = dsn.strip()
    if text_dsn.startswith(("postgres://", "postgresql://", "postgresql+psycopg://")) or (
            "=" in text_dsn and ("dbname=" in text_dsn or "host=" in text_dsn)):
        return PostgresStore(dsn_to_url(text_dsn)).create_engine()
    if text_dsn.startswith("sqlite:///"):
        text_dsn = text_dsn[len("sqlite:///"):]
    return SQLiteStore(text_dsn).create_engine()


def copy(source: Engine, target: Engine) -> CopyReport:
    head = head_revision(source)
    if current_revision(source) != head:
        raise CopyError(f"the source database is at revision {current_revision(source)!r}, "
                        f"not {head!r}: run `authgate migrate` against it first")
    migrate(target)
    tables = Base.metadata.sorted_tables  # parents before children (foreign keys)
    with target.connect() as connection:
        busy = [t.name for t in tables
                if connection.execute(select(func.count()).select_from(t)).scalar()]
    if busy:
        raise CopyError(f"the target database is not empty (rows in: {', '.join(busy)})")
    report = CopyReport()
    with source.connect() as src, target.begin() as dst:
        for table in tables:
            copied = 0
            result = src.execution_options(yield_per=BATCH).execute(select(table))
            for rows in result.mappings().partitions(BATCH):
                dst.execute(insert(table), [dict(r) for r in rows])
                copied += len(rows)
            report.rows[table.name] = copied
            if target.dialect.name == "postgresql":
                _reset_sequence(dst, table)
    with source.connect() as src, target.connect() as dst:
        for table in tables:
            want = src.execute(select(func.count()).select_from(table)).scalar()
            got = dst.execute(select(func.count()).select_from(table)).scalar()
            if want != got:
                raise CopyError(f"{table.name}: {want} rows in the source, {got} copied")
    return report


def _reset_sequence(connection, table) -> None:
    """Explicit ids were inserted: move each serial sequence past them."""
    for column in table.primary_key.columns:
        if isinstance(column.type, Integer) and column.autoincrement is not False:
            # Names come from our own metadata, never from input.
            connection.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "  # noqa: S608
                f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"))
