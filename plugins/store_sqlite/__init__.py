"""SQLite store: one file, no server; WAL, busy_timeout and foreign keys on."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.settings import Setting

from .serialized_writes import connection_factory


class SQLiteStore:
    name = "sqlite"

    def __init__(self, path: str, busy_timeout_ms: int = 5000):
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms

    @property
    def url(self) -> str:
        if self.path == ":memory:":
            return "sqlite://"
        return f"sqlite:///{os.path.abspath(self.path)}"

    def describe(self) -> str:
        return self.url

    def create_engine(self) -> Engine:
        engine = create_engine(
            self.url,
            # Waitress serves from several threads; SQLAlchemy's pool keeps one
            # connection per thread safe to share across them.
            connect_args={"check_same_thread": False,
                          "timeout": self.busy_timeout_ms / 1000,
                          # In-process writers queue on a lock, not in SQLite's
                          # sleeping busy handler (see serialized_writes).
                          "factory": connection_factory(self.busy_timeout_ms / 1000)},
            pool_size=20, max_overflow=10, pool_pre_ping=False,
            # The most recently used connection first: each SQLite connection keeps
            # its own page cache (up to 2 MB), and handing them out in turn (FIFO)
            # warmed every one of them under a mixed load (resident size); the
            # busiest few stay warm instead.
            pool_use_lifo=True,
        )
        busy = int(self.busy_timeout_ms)

        @event.listens_for(engine, "connect")
        def _tune(dbapi_connection, _record):
            # pysqlite opens a transaction lazily, before the first write
            # statement only: SELECTs run outside one and never block a writer.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine


def _factory(ctx: BuildContext) -> SQLiteStore:
    settings = ctx.settings
    dsn = settings.database_dsn or settings.database_path
    if dsn.startswith("sqlite:///"):
        dsn = dsn[len("sqlite:///"):]
    elif dsn.startswith("file:"):
        dsn = dsn[len("file:"):].split("?", 1)[0]
    return SQLiteStore(dsn, busy_timeout_ms=int(settings.sqlite_busy_timeout.total_seconds()
                                                * 1000))


@hookimpl
def authgate_add_settings(spec):
    import datetime as dt

    spec.add(Setting("sqlite_busy_timeout", "SQLITE_BUSY_TIMEOUT", "duration",
                     dt.timedelta(seconds=5), section="Database",
                     help="How long a SQLite write waits for a lock before failing "
                          "(then the request is retried)."))


@hookimpl
def authgate_register_stores():
    return [ComponentSpec("sqlite", _factory, "SQLite file (DATABASE_DSN or DATABASE_PATH)")]
