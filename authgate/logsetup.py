"""Logging for the ``authgate`` command.

With an ini file (``-c FILE.ini``) its ``[loggers]``/``[handlers]``/``[formatters]``
sections are used, exactly as ``pserve`` would.  Without one, logs go to stderr in
a readable one-line format: everything at INFO for the server; for the one-shot
commands (migrate, create-user, ...) only AuthGate's own INFO messages (seeding,
generated secrets) and warnings.  ``LOG_LEVEL`` sets one level for everything
(``GIN_MODE=debug``, the Go original's switch, means ``LOG_LEVEL=DEBUG``); at DEBUG
the server also lists its routes and SQLAlchemy logs every SQL statement.
``LOG_LEVEL`` set in the environment (or ``.env``, or ``authgate.log_level``)
also overrides an ini file's levels, under ``authgate server`` and ``pserve``
alike (the app applies it when it starts: ``includeme`` below).  SQL logging on
its own: ``DB_LOG_LEVEL`` (:mod:`authgate.db`).
"""

from __future__ import annotations

import configparser
import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from authgate.settings import Setting

if TYPE_CHECKING:
    from pyramid.config import Configurator

FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Loggers an ini file may pin to a level; LOG_LEVEL makes them follow the root again.
AUTHGATE_LOGGERS = ("authgate", "authgate.access", "authgate.audit.events")

SETTINGS: list[Setting] = [
    Setting("log_level", "LOG_LEVEL", "str", "", section="Logging",
            choices=(*LEVELS, "WARN"),
            help="One level for every logger: DEBUG, INFO, WARNING (WARN), ERROR or "
                 "CRITICAL. Empty: INFO for the server (one line per request on "
                 "`authgate.access`), warnings only for one-shot commands, or the levels "
                 "of the ini file's logging sections. Set, it overrides the ini file's "
                 "levels. DEBUG also lists every route at start-up and logs every SQL "
                 "statement (see DB_LOG_LEVEL)."),
    Setting("gin_mode", "GIN_MODE", "str", "", section="Logging",
            choices=("debug", "release", "test"),
            help="The Go original's switch, kept for its troubleshooting guide: `debug` "
                 "means LOG_LEVEL=DEBUG when LOG_LEVEL is not set; `release` and `test` "
                 "change nothing."),
]


def chosen_level(values: Mapping[str, str]) -> str:
    """The level LOG_LEVEL / GIN_MODE=debug ask for ("" when neither does)."""
    from authgate.errors import ConfigurationError

    chosen = str(values.get("LOG_LEVEL", "") or "").strip().upper()
    if not chosen and str(values.get("GIN_MODE", "") or "").strip().lower() == "debug":
        chosen = "DEBUG"  # the Go original's switch, kept for its troubleshooting guide
    if chosen == "WARN":
        chosen = "WARNING"
    if chosen and chosen not in LEVELS:
        raise ConfigurationError(f"Invalid value for LOG_LEVEL: {chosen!r}; expected one of "
                                 + ", ".join(LEVELS))
    return chosen


def apply_level(level: str) -> None:
    """LOG_LEVEL over whatever configured logging: the root at ``level``, AuthGate's
    loggers following it, SQL statements at DEBUG."""
    logging.getLogger().setLevel(level)
    for name in AUTHGATE_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    if level == "DEBUG":
        logging.getLogger("sqlalchemy.engine").setLevel("INFO")


class _CliHandler(logging.StreamHandler):
    """Marks the handler this module installed, so a second call replaces it."""


def has_logging_sections(path: str) -> bool:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    return parser.has_section("loggers")


def default_logging(environ: Mapping[str, str] | None = None, *,
                    one_shot: bool = False) -> None:
    """Log to stderr with time, level and logger name (see the module docstring)."""
    environ = environ or {}
    chosen = chosen_level(environ)
    wanted = chosen or ("WARNING" if one_shot else "INFO")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _CliHandler):
            root.removeHandler(handler)
    handler = _CliHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    root.addHandler(handler)
    root.setLevel(wanted)
    # SQL statements only when debugging (INFO = statements; DEBUG would add result rows).
    logging.getLogger("sqlalchemy").setLevel("WARNING")
    logging.getLogger("sqlalchemy.engine").setLevel("INFO" if wanted == "DEBUG"
                                                    else logging.NOTSET)
    # Alembic announces its internal plugins at INFO on every start.
    logging.getLogger("alembic.runtime.plugins").setLevel("WARNING")
    if one_shot and not chosen:
        # Seeding and generated secrets matter; the command prints its own result,
        # so the audit sink's JSON copy of it would only be noise.
        logging.getLogger("authgate").setLevel("INFO")
        logging.getLogger("authgate.audit.events").setLevel("WARNING")
    else:
        logging.getLogger("authgate").setLevel(logging.NOTSET)
        logging.getLogger("authgate.audit.events").setLevel(logging.NOTSET)


def app_section_levels(path: str | None) -> dict[str, str]:
    """LOG_LEVEL, GIN_MODE and DB_LOG_LEVEL from the ini's ``[app:main]``
    (``authgate.log_level`` ...), so the ini can set them too."""
    if not path:
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        return {}  # the app's own settings loader reports a broken file
    if not parser.has_section("app:main"):
        return {}
    found = {}
    for env in ("LOG_LEVEL", "GIN_MODE", "DB_LOG_LEVEL"):
        value = parser.get("app:main", f"authgate.{env.lower()}", fallback="").strip()
        if value:
            found[env] = value
    return found


def configure_logging(config_path: str | None, environ: Mapping[str, str] | None = None, *,
                      one_shot: bool = False) -> None:
    """The ini file's logging sections when it has them, else :func:`default_logging`;
    then LOG_LEVEL and DB_LOG_LEVEL (environment over the ini's app section)."""
    values = {**app_section_levels(config_path), **{
        k: v for k, v in (environ or {}).items() if str(v).strip()}}
    if config_path and has_logging_sections(config_path):
        from pyramid.paster import setup_logging

        chosen = chosen_level(values)
        setup_logging(config_path)
        if chosen:
            apply_level(chosen)
    else:
        default_logging(values, one_shot=one_shot)
    if values.get("DB_LOG_LEVEL"):
        from authgate.db import apply_db_log_level, parse_db_log_level

        apply_db_log_level(parse_db_log_level(values["DB_LOG_LEVEL"]))


def includeme(config: Configurator) -> None:
    """At app start (``pserve`` too): LOG_LEVEL / GIN_MODE=debug set in the environment
    or the ini's app section win over the ini's logging sections."""
    settings = config.registry.authgate.settings
    values = {env: settings[name] for name, env in (("log_level", "LOG_LEVEL"),
                                                     ("gin_mode", "GIN_MODE"))
              if settings.source(name) != "default"}
    chosen = chosen_level(values)
    if chosen:
        apply_level(chosen)


# LogRecord attributes that cost something to collect (Python's logging HOWTO,
# "Optimization"): where the call was made from (a walk up the stack on every
# record) and the process id and name.
_CALLER_FIELDS = ("pathname", "filename", "module", "lineno", "funcName")
_PROCESS_FIELDS = ("process",)  # also matches processName


def _formats_in_use() -> list[str]:
    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handlers.extend(getattr(logger, "handlers", ()))
    formats = []
    for handler in handlers:
        formatter = handler.formatter
        formats.append(getattr(formatter, "_fmt", None) or "%(message)s")
    return formats


def skip_unused_record_fields() -> None:
    """Stop collecting the caller and process of every log record when no configured
    handler's format shows them, as Python's logging HOWTO suggests ("Optimization":
    ``logging._srcfile = None``, ``logging.logProcesses = False``).

    A busy server writes a line per request (``authgate.access``) and one per audit
    event: ~8 us of each record went to a stack walk and a ``getpid`` that no line
    shows.  Called once by serving processes, after logging is configured; a
    format naming ``%(lineno)d``, ``%(pathname)s``, ``%(process)d``, ... keeps them.
    """
    formats = _formats_in_use()
    if not any(field in fmt for fmt in formats for field in _CALLER_FIELDS):
        logging._srcfile = None  # type: ignore[attr-defined]  # documented in the HOWTO
    if not any(field in fmt for fmt in formats for field in _PROCESS_FIELDS):
        logging.logProcesses = False
        logging.logMultiprocessing = False
