"""Logging for the ``authgate`` command.

With an ini file (``-c FILE.ini``) its ``[loggers]``/``[handlers]``/``[formatters]``
sections are used, exactly as ``pserve`` would.  Without one, logs go to stderr in
a readable one-line format: everything at INFO for the server; for the one-shot
commands (migrate, create-user, ...) only AuthGate's own INFO messages (seeding,
generated secrets) and warnings.  ``LOG_LEVEL`` sets one level for everything
(``GIN_MODE=debug``, the Go original's switch, means ``LOG_LEVEL=DEBUG``); at DEBUG
the server also lists its routes and SQLAlchemy logs every SQL statement.
"""

from __future__ import annotations

import configparser
import logging
import sys
from collections.abc import Mapping

FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _CliHandler(logging.StreamHandler):
    """Marks the handler this module installed, so a second call replaces it."""


def has_logging_sections(path: str) -> bool:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    return parser.has_section("loggers")


def default_logging(environ: Mapping[str, str] | None = None, *,
                    one_shot: bool = False) -> None:
    """Log to stderr with time, level and logger name (see the module docstring)."""
    from authgate.errors import ConfigurationError

    environ = environ or {}
    chosen = str(environ.get("LOG_LEVEL", "")).strip().upper()
    if not chosen and str(environ.get("GIN_MODE", "")).strip().lower() == "debug":
        chosen = "DEBUG"  # the Go original's switch, kept for its troubleshooting guide
    wanted = chosen or ("WARNING" if one_shot else "INFO")
    if wanted == "WARN":
        wanted = "WARNING"
    if wanted not in LEVELS:
        raise ConfigurationError(f"Invalid value for LOG_LEVEL: {wanted!r}; expected one of "
                                 + ", ".join(LEVELS))
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


def configure_logging(config_path: str | None, environ: Mapping[str, str] | None = None, *,
                      one_shot: bool = False) -> None:
    """The ini file's logging sections when it has them, else :func:`default_logging`."""
    if config_path and has_logging_sections(config_path):
        from pyramid.paster import setup_logging

        setup_logging(config_path)
    else:
        default_logging(environ, one_shot=one_shot)
