"""Database wiring: engine from the selected store, one transaction per request.

The cookiecutter pattern: ``request.dbsession`` is a session joined to the
request's transaction manager (pyramid_tm, explicit mode), so a view never
commits by hand and an exception rolls everything back.  pyramid_retry
re-runs a request that hit a serialization conflict or a locked SQLite file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import zope.sqlalchemy
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.request import Request
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

ALEMBIC_DIR = Path(__file__).parent / "alembic"


def get_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def get_tm_session(session_factory: sessionmaker[Session], transaction_manager) -> Session:
    """A session whose commit/rollback follows ``transaction_manager``."""
    dbsession = session_factory()
    zope.sqlalchemy.register(dbsession, transaction_manager=transaction_manager)
    return dbsession


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


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def is_empty(engine: Engine) -> bool:
    return not inspect(engine).get_table_names()
