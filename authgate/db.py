"""Database wiring: engine from the selected store, one transaction per request.

The cookiecutter pattern: ``request.dbsession`` is a session joined to the
request's transaction manager (pyramid_tm, explicit mode), so a view never
commits by hand and an exception rolls everything back.  pyramid_retry
re-runs a request that hit a serialization conflict or a locked SQLite file.

``DB_LOG_LEVEL`` (the Go original's GORM log level) sets how much SQLAlchemy
logs: ``info`` echoes every SQL statement with its parameters through the
``sqlalchemy.engine`` logger, ``warn`` (the default) and ``error`` only
problems, ``silent`` nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event, inspect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from transaction._transaction import Status as ZopeStatus
from zope.sqlalchemy.datamanager import ZopeTransactionEvents, join_transaction, mark_changed

from authgate.settings import Setting

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.request import Request
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

ALEMBIC_DIR = Path(__file__).parent / "alembic"
# The newest migration's revision (authgate/alembic/versions).  Kept here so that a
# server starting on an up-to-date database need not import Alembic (~11 MB of
# resident memory in every process) to find that out; tests/functional/test_schema_head.py
# fails when a new migration is added without updating it.
SCHEMA_HEAD = "0004"

DB_LOG_LEVELS = ("silent", "error", "warn", "info")

SETTINGS: list[Setting] = [
    Setting("db_log_level", "DB_LOG_LEVEL", "str", "warn", choices=DB_LOG_LEVELS,
            section="Logging",
            help="SQL logging (the Go original's GORM log level): `info` logs every SQL "
                 "statement and its parameters on the `sqlalchemy.engine` logger (can "
                 "expose data in the logs: debugging only); `warn` and `error` only "
                 "problems; `silent` nothing. Left unset, LOG_LEVEL=DEBUG (or "
                 "GIN_MODE=debug) also turns SQL logging on."),
]
_SQLALCHEMY_LEVELS = {"silent": logging.CRITICAL + 10, "error": logging.ERROR,
                      "warn": logging.WARNING, "info": logging.WARNING}


def parse_db_log_level(value: str) -> str:
    """A DB_LOG_LEVEL value, or ConfigurationError naming what is accepted."""
    lowered = str(value).strip().lower()
    if lowered not in DB_LOG_LEVELS:
        from authgate.errors import ConfigurationError

        raise ConfigurationError(f"Invalid value for DB_LOG_LEVEL: {value!r}; expected one "
                                 "of " + ", ".join(DB_LOG_LEVELS))
    return lowered


def apply_db_log_level(level: str) -> None:
    """Set the SQLAlchemy loggers for ``level`` (silent, error, warn, info).

    SQLAlchemy checks the ``sqlalchemy.engine`` logger on every new connection,
    so this takes effect on the running engine without ``echo=True``.
    """
    logging.getLogger("sqlalchemy").setLevel(_SQLALCHEMY_LEVELS[level])
    logging.getLogger("sqlalchemy.engine").setLevel(
        logging.INFO if level == "info" else logging.NOTSET)


_TM_KEY = "authgate.transaction_manager"  # Session.info: the request's manager


def _manager(session: Session):
    return session.info.get(_TM_KEY)


def wrote(session: Session) -> None:
    """Tell the request's transaction that ``session`` wrote with a Core statement.

    ORM flushes and ORM-enabled DML mark the session themselves; a Core
    ``insert(table)`` does not, and an unmarked session is rolled back at the end
    of the request.  Sessions outside a request (no manager) commit themselves.
    """
    if (tm := _manager(session)) is not None:
        mark_changed(session, tm, keep_session=False)  # as the listeners below


class _PerSessionTransactionEvents(ZopeTransactionEvents):
    """zope.sqlalchemy's listeners, registered once on the session factory.

    ``zope.sqlalchemy.register(session)`` attaches seven event listeners to each
    new Session, which costs about as much as a small SELECT on every request.
    Registered on the sessionmaker instead, the same listeners run for every
    session it makes; each finds its session's own transaction manager in
    ``session.info``.  Sessions made outside a request (metrics, the CLI's
    plain ``with session_factory()`` blocks) carry none and are left alone.
    """

    def after_begin(self, session, transaction, connection):
        if (tm := _manager(session)) is not None:
            join_transaction(session, self.initial_state, tm, self.keep_session)

    def after_attach(self, session, instance):
        if (tm := _manager(session)) is not None:
            join_transaction(session, self.initial_state, tm, self.keep_session)

    def after_flush(self, session, flush_context):
        if (tm := _manager(session)) is not None:
            mark_changed(session, tm, self.keep_session)

    def after_bulk_update(self, update_context):
        self.after_flush(update_context.session, None)

    def after_bulk_delete(self, delete_context):
        self.after_flush(delete_context.session, None)

    def before_commit(self, session):
        if (tm := _manager(session)) is not None:
            assert session.in_nested_transaction() or (
                tm.get().status == ZopeStatus.COMMITTING
            ), "Transaction must be committed using the transaction manager"

    def do_orm_execute(self, execute_state):
        if execute_state.is_orm_statement and (
                execute_state.is_update or execute_state.is_insert or execute_state.is_delete):
            self.after_flush(execute_state.session, None)


CLIENT_CACHE_KEY = "authgate.client_cache"  # Session.info: the runtime's ClientCache


def get_session_factory(engine: Engine, client_cache=None) -> sessionmaker[Session]:
    factory = sessionmaker(bind=engine, expire_on_commit=False,
                           info={CLIENT_CACHE_KEY: client_cache} if client_cache else {})
    events = _PerSessionTransactionEvents()
    for name in ("after_begin", "after_attach", "after_flush", "after_bulk_update",
                 "after_bulk_delete", "before_commit", "do_orm_execute"):
        event.listen(factory, name, getattr(events, name))
    return factory


def get_tm_session(session_factory: sessionmaker[Session], transaction_manager) -> Session:
    """A session whose commit/rollback follows ``transaction_manager``.

    ``session_factory`` must come from :func:`get_session_factory` (its
    listeners join the session to the manager on first use).
    """
    return session_factory(info={_TM_KEY: transaction_manager})


def _dbsession(request: Request) -> Session:
    # Tests may hand in a session bound to their own transaction.
    dbsession = request.environ.get("app.dbsession")
    if dbsession is None:
        dbsession = get_tm_session(request.registry.authgate.session_factory, request.tm)
    return dbsession


def _is_retryable(exc: BaseException) -> bool:
    """SQLite's "database is locked" and PostgreSQL serialization failures are transient."""
    if isinstance(exc, OperationalError) and "database is locked" in str(exc):
        return True
    if isinstance(exc, DBAPIError):
        code = getattr(getattr(exc, "orig", None), "sqlstate", None)
        return code in ("40001", "40P01")
    return False


def includeme(config: Configurator) -> None:
    import pyramid_tm
    runtime = getattr(config.registry, "authgate", None)
    if runtime is not None and runtime.settings.source("db_log_level") != "default":
        # Set explicitly: wins over LOG_LEVEL and the ini file's sqlalchemy logger.
        apply_db_log_level(runtime.settings.db_log_level)
    settings = config.get_settings()
    settings["tm.manager_hook"] = pyramid_tm.explicit_manager
    settings.setdefault("retry.attempts", 3)
    config.include("pyramid_tm")
    config.include("pyramid_retry")
    config.add_request_method(_dbsession, "dbsession", reify=True)

    config.add_tween("authgate.db.retry_marker_tween_factory",
                     under="pyramid_tm.tm_tween_factory")


def retry_marker_tween_factory(handler, registry):
    """pyramid_retry asks the exception whether it is retryable; SQLAlchemy's
    exceptions do not say so themselves, so mark the transient ones here."""
    from pyramid_retry import mark_error_retryable

    def tween(request):
        try:
            return handler(request)
        except Exception as exc:
            if _is_retryable(exc):
                mark_error_retryable(exc)
            raise

    return tween


# ---------------------------------------------------------------------------
# Migrations
# ---------------------------------------------------------------------------


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic)."""
    from alembic import command

    with engine.begin() as connection:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at :data:`SCHEMA_HEAD`: read from Alembic's version
    table with plain SQL, without importing Alembic."""
    from sqlalchemy import text

    if not inspect(engine).has_table("alembic_version"):
        return False
    with engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        return list(versions) == [SCHEMA_HEAD]


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def is_empty(engine: Engine) -> bool:
    return not inspect(engine).get_table_names()
