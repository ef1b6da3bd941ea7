"""The troubleshooting guide's "Gin debug" and "GORM debug" switches: LOG_LEVEL /
GIN_MODE=debug for request logs, DB_LOG_LEVEL for SQL echo."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from authgate.errors import ConfigurationError

AUTHGATE = str(Path(sys.executable).parent / "authgate")
NAMES = ("", "authgate", "authgate.access", "authgate.audit.events", "sqlalchemy",
         "sqlalchemy.engine")


@pytest.fixture(autouse=True)
def restore_levels():
    saved = {n: logging.getLogger(n).level for n in NAMES}
    handlers = list(logging.getLogger().handlers)
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def sql_records(caplog):
    return [r for r in caplog.records if r.name.startswith("sqlalchemy.engine")]


def test_db_log_level_info_echoes_sql(make_app, caplog):
    app = make_app(environ={"DB_LOG_LEVEL": "info"})
    caplog.set_level(logging.DEBUG, logger="")  # capture whatever the loggers let through
    caplog.clear()
    app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id})
    statements = [r.getMessage() for r in sql_records(caplog) if r.levelno == logging.INFO]
    assert any(s.startswith("SELECT") and "oauth_clients" in s for s in statements)
    assert any(s.startswith("INSERT INTO device_codes") for s in statements)


def test_db_log_level_info_echoes_the_api_lanes_sql_too(make_app, caplog):
    """Device polls, client credentials and introspection run on raw connections
    (authgate.rawsql); their statements are echoed on the same logger."""
    app = make_app(environ={"DB_LOG_LEVEL": "info"})
    client_id = app.default_client_id
    code = app.testapp.post("/oauth/device/code", {"client_id": client_id}).json
    caplog.set_level(logging.DEBUG, logger="")
    caplog.clear()
    app.testapp.post("/oauth/token", {"grant_type": "urn:ietf:params:oauth:grant-type:"
                                      "device_code", "client_id": client_id,
                                      "device_code": code["device_code"]}, status=400)
    statements = [r.getMessage() for r in sql_records(caplog) if r.levelno == logging.INFO]
    assert any(s.startswith("SELECT") and "FROM device_codes" in s for s in statements)


def test_db_log_level_sets_the_sqlalchemy_loggers(make_app):
    make_app(environ={"DB_LOG_LEVEL": "info"})
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.INFO
    make_app(environ={"DB_LOG_LEVEL": "silent"})
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() > logging.CRITICAL
    assert logging.getLogger("sqlalchemy.pool").getEffectiveLevel() > logging.CRITICAL
    make_app(environ={"DB_LOG_LEVEL": "error"})
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.ERROR
    make_app(environ={"DB_LOG_LEVEL": "WARN"})
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.WARNING


def test_db_log_level_left_unset_changes_nothing(make_app):
    logging.getLogger("sqlalchemy").setLevel(logging.ERROR)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.NOTSET)
    make_app()
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.ERROR


def test_bad_db_log_level_stops_start_up(make_app):
    with pytest.raises(ConfigurationError, match="DB_LOG_LEVEL.*silent, error, warn, info"):
        make_app(environ={"DB_LOG_LEVEL": "verbose"})


def test_log_level_is_a_documented_setting():
    from authgate.settings import core_spec

    spec = core_spec()
    for name, env in (("log_level", "LOG_LEVEL"), ("gin_mode", "GIN_MODE"),
                      ("db_log_level", "DB_LOG_LEVEL")):
        assert spec[name].env == env and spec[name].help
    assert spec["db_log_level"].default == "warn"


INI = """\
[app:main]
use = egg:authgate
{app_extra}

[loggers]
keys = root, authgate, sqlalchemy

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[logger_authgate]
level = WARN
handlers =
qualname = authgate

[logger_sqlalchemy]
level = WARN
handlers =
qualname = sqlalchemy

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)s [%(name)s] %(message)s
"""


def write_ini(tmp_path, app_extra=""):
    path = tmp_path / "site.ini"
    path.write_text(INI.format(app_extra=app_extra))
    return str(path)


def test_log_level_overrides_the_ini_logging_sections(tmp_path):
    from authgate.logsetup import configure_logging

    path = write_ini(tmp_path)
    configure_logging(path, {})
    assert logging.getLogger("authgate").getEffectiveLevel() == logging.WARNING
    configure_logging(path, {"LOG_LEVEL": "DEBUG"})
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("authgate.access").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.INFO
    configure_logging(path, {"GIN_MODE": "debug"})
    assert logging.getLogger("authgate").getEffectiveLevel() == logging.DEBUG


def test_levels_from_the_ini_app_section_environment_wins(tmp_path):
    from authgate.logsetup import configure_logging

    path = write_ini(tmp_path, "authgate.log_level = ERROR\nauthgate.db_log_level = info")
    configure_logging(path, {})
    assert logging.getLogger("authgate").getEffectiveLevel() == logging.ERROR
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.INFO
    configure_logging(path, {"LOG_LEVEL": "INFO", "DB_LOG_LEVEL": "silent"})
    assert logging.getLogger("authgate").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() > logging.CRITICAL
    with pytest.raises(ConfigurationError, match="DB_LOG_LEVEL"):
        configure_logging(path, {"DB_LOG_LEVEL": "loud"})


def test_app_start_applies_log_level_over_an_ini_as_under_pserve(make_app):
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("authgate").setLevel(logging.WARNING)
    make_app(environ={"LOG_LEVEL": "DEBUG"})
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("authgate").getEffectiveLevel() == logging.DEBUG


def test_authgate_migrate_with_db_log_level_info_shows_the_sql(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "DB_LOG_LEVEL": "info"}
    result = subprocess.run([AUTHGATE, "migrate"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "INFO    [sqlalchemy.engine.Engine] BEGIN" in result.stderr
    assert "CREATE TABLE oauth_clients" in result.stderr
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    env = {**env, "HOME": str(quiet)}
    del env["DB_LOG_LEVEL"]
    result = subprocess.run([AUTHGATE, "migrate"], cwd=quiet, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE" not in result.stderr
