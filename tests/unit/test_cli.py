"""The `authgate` command: version, user/client management, configuration errors,
the ini files, and the device-login example client.

Commands run as real subprocesses of the installed console script, in a fresh
directory (so .env, oauth.db and authgate-credentials.txt land there) with a clean
environment: PATH and HOME only, plus what a test sets.
"""

from __future__ import annotations

import configparser
import http.server
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests

import authgate
from authgate import cli
from authgate.errors import ConfigurationError
from authgate.services.passwords import verify_password
from authgate.services.secrets import verify_client_secret
from authgate.settings import core_spec

REPO = Path(__file__).resolve().parents[2]
AUTHGATE = str(Path(sys.executable).parent / "authgate")
STRONG = "0123456789abcdefghijklmnopqrstuvwxyz-strong-secret"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    env.update(extra)
    return env


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([AUTHGATE, *args], cwd=cwd, env=env or clean_env(cwd), input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def query(db: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


# ---------------------------------------------------------------------------
# authgate -v, usage
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version_flag(tmp_path, flag):
    result = ok(run(tmp_path, flag))
    assert result.stdout == f"authgate {authgate.__version__}\n"
    assert authgate.__version__ != "0.0.0"  # the installed distribution's version


def test_version_in_process(capsys):
    assert cli.main(["-v"]) == 0
    assert capsys.readouterr().out == f"authgate {authgate.__version__}\n"


def test_no_command_prints_usage_and_fails(tmp_path):
    result = run(tmp_path)
    assert result.returncode == 1
    assert "usage: authgate" in result.stderr
    assert "server" in result.stderr and "create-user" in result.stderr


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# create-user
# ---------------------------------------------------------------------------


def test_create_user_generates_password_and_seeds_empty_database(tmp_path):
    result = ok(run(tmp_path, "create-user", "alice", "--email", "alice@example.com",
                    "--full-name", "Alice Liddell"))
    match = re.search(r"^Password: (\S+)$", result.stdout, re.M)
    assert match, result.stdout
    password = match.group(1)
    assert "shown only once" in result.stdout
    assert "Created user 'alice'" in result.stdout

    db = tmp_path / "oauth.db"
    ((pw_hash, role, source, email, name, active),) = query(
        db, "SELECT password_hash, role, auth_source, email, full_name, is_active FROM users "
            "WHERE username = 'alice'")
    assert pw_hash.startswith("$argon2id$")
    assert verify_password(pw_hash, password)
    assert (role, source, email, name, active) == ("user", "local", "alice@example.com",
                                                   "Alice Liddell", 1)
    # The empty database was prepared exactly as `authgate server` would.
    assert query(db, "SELECT username FROM users WHERE username = 'admin'") == [("admin",)]
    assert (tmp_path / "authgate-credentials.txt").exists()
    assert "JWT_SECRET=" in (tmp_path / ".env").read_text()
    # Audit: USER_CREATED by "cli", with no secret in it.
    rows = query(db, "SELECT actor_username, resource_name, severity, details FROM audit_logs "
                     "WHERE event_type = 'USER_CREATED'")
    assert [(r[0], r[1], r[2]) for r in rows] == [("cli", "alice", "INFO")]
    assert password not in rows[0][3]


def test_create_user_with_password_and_role(tmp_path):
    ok(run(tmp_path, "create-user", "root2", "--password", "correct horse battery",
           "--role", "admin"))
    ((pw_hash, role),) = query(tmp_path / "oauth.db",
                               "SELECT password_hash, role FROM users WHERE username='root2'")
    assert role == "admin"
    assert verify_password(pw_hash, "correct horse battery")


def test_create_user_password_from_stdin(tmp_path):
    result = ok(run(tmp_path, "create-user", "carol", "--password-stdin",
                    stdin="s3cret-from-stdin\n"))
    assert "Password:" not in result.stdout
    ((pw_hash,),) = query(tmp_path / "oauth.db",
                          "SELECT password_hash FROM users WHERE username='carol'")
    assert verify_password(pw_hash, "s3cret-from-stdin")


def test_create_user_errors(tmp_path):
    ok(run(tmp_path, "create-user", "dave", "--email", "dave@example.com"))

    dup = run(tmp_path, "create-user", "dave")
    assert dup.returncode == 1
    assert "already exists" in dup.stderr and "--reset" in dup.stderr
    assert "Traceback" not in dup.stderr

    dup_email = run(tmp_path, "create-user", "dave2", "--email", "DAVE@example.com")
    assert dup_email.returncode == 1
    assert "email" in dup_email.stderr

    short = run(tmp_path, "create-user", "erin", "--password", "short")
    assert short.returncode == 1
    assert "at least 8 characters" in short.stderr

    assert run(tmp_path, "create-user", "frank", "--email", "not-an-email").returncode == 1
    assert run(tmp_path, "create-user", "with space").returncode == 1
    users = {u for (u,) in query(tmp_path / "oauth.db", "SELECT username FROM users")}
    assert users == {"admin", "dave"}


def test_reset_password_of_local_user(tmp_path):
    env = clean_env(tmp_path, DEFAULT_ADMIN_PASSWORD="initial-admin-password")
    ok(run(tmp_path, "migrate", env=env))
    ok(run(tmp_path, "create-user", "seedtrigger", "--password", "whatever-123", env=env))
    db = tmp_path / "oauth.db"
    ((old_hash, generation),) = query(
        db, "SELECT password_hash, session_generation FROM users WHERE username='admin'")
    assert verify_password(old_hash, "initial-admin-password")

    # The command the seed module tells operators to run.
    result = ok(run(tmp_path, "create-user", "admin", "--password", "brand-new-password",
                    "--reset", env=env))
    assert "Password reset for user 'admin'" in result.stdout
    ((new_hash,),) = query(db, "SELECT password_hash FROM users WHERE username='admin'")
    assert verify_password(new_hash, "brand-new-password")
    assert not verify_password(new_hash, "initial-admin-password")
    # Browsers signed in with the old password are signed out (authgate.security).
    ((after,),) = query(db, "SELECT session_generation FROM users WHERE username='admin'")
    assert after == generation + 1
    rows = query(db, "SELECT actor_username, severity FROM audit_logs "
                     "WHERE event_type = 'USER_PASSWORD_RESET'")
    assert rows == [("cli", "WARNING")]

    generated = ok(run(tmp_path, "create-user", "admin", "--reset", env=env))
    password = re.search(r"^Password: (\S+)$", generated.stdout, re.M).group(1)
    ((latest,),) = query(db, "SELECT password_hash FROM users WHERE username='admin'")
    assert verify_password(latest, password)


def test_reset_errors(tmp_path):
    ok(run(tmp_path, "create-user", "ext", "--password", "whatever-123"))
    db = tmp_path / "oauth.db"

    unknown = run(tmp_path, "create-user", "nobody", "--password", "whatever-123", "--reset")
    assert unknown.returncode == 1
    assert "no user named 'nobody'" in unknown.stderr

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE users SET auth_source='http_api', external_id='x-1' "
                     "WHERE username='ext'")
    external = run(tmp_path, "create-user", "ext", "--password", "whatever-123", "--reset")
    assert external.returncode == 1
    assert "http_api" in external.stderr

    mixed = run(tmp_path, "create-user", "ext", "--reset", "--role", "admin")
    assert mixed.returncode == 1
    assert "--reset only sets a new password" in mixed.stderr


# ---------------------------------------------------------------------------
# create-client
# ---------------------------------------------------------------------------


def test_create_confidential_client(tmp_path):
    result = ok(run(tmp_path, "create-client", "Billing Service", "--confidential",
                    "--client-credentials", "--no-device", "--scopes", "read write",
                    "--description", "nightly jobs"))
    client_id = re.search(r"^Client ID:\s+(\S+)$", result.stdout, re.M).group(1)
    secret = re.search(r"^Client Secret: (\S+)$", result.stdout, re.M).group(1)
    assert "cannot be shown again" in result.stdout

    ((stored, ctype, grants, scopes, device, cc, status, desc),) = query(
        tmp_path / "oauth.db",
        "SELECT client_secret_hash, client_type, grant_types, scopes, enable_device_flow, "
        "enable_client_credentials_flow, status, description FROM oauth_clients "
        "WHERE client_id = ?", client_id)
    assert stored.startswith("hmac-sha256$") and secret not in stored
    assert verify_client_secret(stored, secret)
    assert (ctype, grants, scopes, device, cc, status, desc) == (
        "confidential", "client_credentials", "read write", 0, 1, "active", "nightly jobs")
    rows = query(tmp_path / "oauth.db", "SELECT actor_username, resource_id, details "
                 "FROM audit_logs WHERE event_type = 'CLIENT_CREATED'")
    assert [(r[0], r[1]) for r in rows] == [("cli", client_id)]
    assert secret not in rows[0][2]


def test_create_public_auth_code_client(tmp_path):
    result = ok(run(tmp_path, "create-client", "Web App", "--auth-code",
                    "--redirect-uri", "https://app.example.com/callback",
                    "--redirect-uri", "http://127.0.0.1:9000/cb"))
    assert "Client Secret" not in result.stdout
    assert "PKCE" in result.stdout
    client_id = re.search(r"^Client ID:\s+(\S+)$", result.stdout, re.M).group(1)
    ((secret_hash, ctype, grants, uris),) = query(
        tmp_path / "oauth.db", "SELECT client_secret_hash, client_type, grant_types, "
        "redirect_uris FROM oauth_clients WHERE client_id = ?", client_id)
    assert (secret_hash, ctype, grants) == ("", "public", "device_code authorization_code")
    assert json.loads(uris) == ["https://app.example.com/callback", "http://127.0.0.1:9000/cb"]


@pytest.mark.parametrize("args, message", [
    (["--client-credentials"], "needs --confidential"),
    (["--auth-code"], "needs at least one --redirect-uri"),
    (["--auth-code", "--redirect-uri", "https://a.example/cb#frag"], "fragment"),
    (["--auth-code", "--redirect-uri", "/relative/cb"], "absolute"),
    (["--auth-code", "--redirect-uri", "ftp://a.example/cb"], "absolute"),
    (["--no-device"], "at least one grant"),
    (["--scopes", 'bad"scope'], "not a valid scope"),
])
def test_create_client_validation(tmp_path, args, message):
    result = run(tmp_path, "create-client", "Bad", *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stderr.startswith("authgate: ")
    assert "Traceback" not in result.stderr
    # Rejected before the database was touched.
    assert not (tmp_path / "oauth.db").exists()


def test_public_and_confidential_are_exclusive(tmp_path):
    result = run(tmp_path, "create-client", "X", "--public", "--confidential")
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


def test_commands_read_settings_from_an_ini_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    ini = tmp_path / "site.ini"
    ini.write_text("[app:main]\nuse = egg:authgate\n"
                   "authgate.database_path = %(here)s/data/site.db\n"
                   "authgate.credentials_file = %(here)s/data/creds.txt\n")
    ok(run(tmp_path, "create-client", "From Ini", "-c", str(ini)))
    assert query(data / "site.db", "SELECT name FROM oauth_clients WHERE name='From Ini'")
    assert (data / "creds.txt").exists()
    assert not (tmp_path / "oauth.db").exists()


# ---------------------------------------------------------------------------
# migrate
# ---------------------------------------------------------------------------


def test_migrate_fresh_then_up_to_date(tmp_path):
    first = ok(run(tmp_path, "migrate"))
    assert "Current revision: (none" in first.stdout
    assert "Migrated: (none) -> " in first.stdout
    assert "run `authgate server` to seed" in first.stdout
    # migrate only migrates: nothing is seeded.
    assert query(tmp_path / "oauth.db", "SELECT count(*) FROM users") == [(0,)]
    assert not (tmp_path / "authgate-credentials.txt").exists()

    second = ok(run(tmp_path, "migrate"))
    assert "up to date" in second.stdout


# ---------------------------------------------------------------------------
# Configuration errors: exit 2, one line, no traceback
# ---------------------------------------------------------------------------


def test_short_jwt_secret_is_a_configuration_error(tmp_path):
    result = run(tmp_path, "server", env=clean_env(tmp_path, JWT_SECRET="short"))
    assert result.returncode == 2
    assert "authgate: configuration error:" in result.stderr
    assert "JWT_SECRET" in result.stderr and "32 bytes" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_store_lists_the_available_ones(tmp_path):
    ini = tmp_path / "bad.ini"
    ini.write_text("[app:main]\nuse = egg:authgate\nauthgate.store = nosuch\n")
    result = run(tmp_path, "server", "-c", str(ini))
    assert result.returncode == 2
    assert "authgate: configuration error:" in result.stderr
    assert "nosuch" in result.stderr and "sqlite" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_duration_names_setting_value_and_accepted_form(tmp_path):
    result = run(tmp_path, "migrate", env=clean_env(tmp_path, JWT_EXPIRATION="ten minutes"))
    assert result.returncode == 2
    assert "JWT_EXPIRATION" in result.stderr and "'ten minutes'" in result.stderr
    assert "30s" in result.stderr


def test_bad_server_addr(tmp_path):
    result = run(tmp_path, "server", env=clean_env(tmp_path, SERVER_ADDR="8080"))
    assert result.returncode == 2
    assert "SERVER_ADDR" in result.stderr and ":8080" in result.stderr


def test_bad_log_level(tmp_path):
    result = run(tmp_path, "migrate", env=clean_env(tmp_path, LOG_LEVEL="loud"))
    assert result.returncode == 2
    assert "LOG_LEVEL" in result.stderr and "DEBUG" in result.stderr


@pytest.fixture
def restore_logging():
    import logging

    names = ["", "authgate", "authgate.audit.events", "sqlalchemy", "sqlalchemy.engine",
             "alembic.runtime.plugins"]
    saved = {n: logging.getLogger(n).level for n in names}
    handlers = list(logging.getLogger().handlers)
    yield logging
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)


def test_default_logging_levels(restore_logging):
    from authgate.logsetup import default_logging

    logging = restore_logging
    default_logging({})
    assert logging.getLogger().level == logging.INFO
    assert logging.getLogger("sqlalchemy").level == logging.WARNING
    default_logging({}, one_shot=True)
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("authgate.seed").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("authgate.audit.events").getEffectiveLevel() == logging.WARNING
    # The Go original's GIN_MODE=debug: everything at DEBUG, SQL statements logged.
    default_logging({"GIN_MODE": "debug"})
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.INFO
    default_logging({"LOG_LEVEL": "warn"}, one_shot=True)
    assert logging.getLogger("authgate.seed").getEffectiveLevel() == logging.WARNING
    # Installed once: a second call replaces the handler instead of adding another.
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_CliHandler"]
    assert len(ours) == 1
    with pytest.raises(ConfigurationError, match="LOG_LEVEL"):
        default_logging({"LOG_LEVEL": "loud"})


def test_missing_ini_file(tmp_path):
    result = run(tmp_path, "server", "-c", "nowhere.ini")
    assert result.returncode == 2
    assert "config file not found: nowhere.ini" in result.stderr


def test_production_ini_refuses_to_start_without_environment_secrets(tmp_path):
    result = run(tmp_path, "server", "-c", str(REPO / "production.ini"))
    assert result.returncode == 2
    assert "SESSION_SECRET" in result.stderr
    assert not (tmp_path / ".env").exists()  # nothing generated in production


def test_production_ini_refuses_secrets_in_the_file(tmp_path):
    ini = tmp_path / "prod.ini"
    text = (REPO / "production.ini").read_text()
    ini.write_text(text.replace("[app:main]\n", f"[app:main]\nauthgate.jwt_secret = {STRONG}\n"))
    result = run(tmp_path, "migrate", "-c", str(ini),
                 env=clean_env(tmp_path, JWT_SECRET=STRONG, SESSION_SECRET=STRONG))
    assert result.returncode == 2
    assert "JWT_SECRET is a secret" in result.stderr


# ---------------------------------------------------------------------------
# The ini files
# ---------------------------------------------------------------------------


def read_ini(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / name, encoding="utf-8")
    return parser


def bundled_plugins() -> list[str]:
    with open(REPO / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    return sorted(project["entry-points"]["authgate"])


def test_production_ini_pins_every_bundled_plugin():
    pinned = read_ini("production.ini")["app:main"]["authgate.plugins"].split()
    assert "*" not in pinned
    assert sorted(pinned) == bundled_plugins(), (
        "production.ini's authgate.plugins must list exactly the plugins bundled in "
        "pyproject.toml [project.entry-points.authgate]; update it when adding a plugin")
    # ... and every one of them is installed, or start-up would stop.
    from authgate.plugins import installed_plugin_names

    assert set(pinned) <= set(installed_plugin_names())


def test_production_ini_settings():
    app = read_ini("production.ini")["app:main"]
    assert app["use"] == "egg:authgate"
    assert app["authgate.secrets_from_env_only"] == "true"
    assert app["authgate.audit_sinks"].split() == ["database", "log"]
    assert app["pyramid.reload_templates"] == "false"
    server = read_ini("production.ini")["server:main"]
    assert server["use"] == "egg:waitress#main"
    assert server["threads"] == "8"
    for key in ("connection_limit", "channel_timeout", "listen"):
        assert server[key]


@pytest.mark.parametrize("name", ["development.ini", "production.ini"])
def test_ini_files_hold_no_secrets_and_no_default_section(name):
    parser = read_ini(name)
    assert parser.defaults() == {}  # [DEFAULT] would override pserve's variables
    secret_keys = {s.ini_key for s in core_spec() if s.secret} | {"authgate.jwt_secret"}
    assert not secret_keys & set(parser["app:main"])
    loggers = parser["loggers"]["keys"].replace(",", " ").split()
    qualnames = {parser[f"logger_{key}"].get("qualname", "") for key in loggers}
    assert {"authgate", "authgate.access", "authgate.audit.events", "sqlalchemy",
            "alembic"} <= qualnames


def test_development_ini_settings():
    app = read_ini("development.ini")["app:main"]
    assert app["authgate.plugins"] == "*"
    assert app["authgate.auth_sources"] == "local"
    assert app["authgate.audit_sinks"] == "database log"
    assert app["authgate.database_path"] == "oauth.db"
    assert app["retry.attempts"] == "3"
    assert read_ini("development.ini")["server:main"]["listen"] == "localhost:8080"
    # The debug toolbar runs code from the browser: development only, local hosts only.
    assert app["pyramid.includes"].split() == ["pyramid_debugtoolbar"]
    assert app["debugtoolbar.hosts"].split() == ["127.0.0.1", "::1"]
    production = read_ini("production.ini")["app:main"]
    assert not any("debugtoolbar" in key or "debugtoolbar" in value
                   for key, value in production.items())


# ---------------------------------------------------------------------------
# Listen address and waitress options
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (":8080", "localhost:8080"),
    ("0.0.0.0:9000", "0.0.0.0:9000"),
    ("127.0.0.1:8080", "127.0.0.1:8080"),
    ("auth.internal:80", "auth.internal:80"),
    ("[::1]:8443", "[::1]:8443"),
    (" :8080 ", "localhost:8080"),
])
def test_listen_address(value, expected):
    assert cli.listen_address(value) == expected


@pytest.mark.parametrize("value", ["8080", "localhost", "host:", "host:70000", "a b:80",
                                   "::1:80", "host:port"])
def test_listen_address_rejects(value):
    with pytest.raises(ConfigurationError, match="SERVER_ADDR"):
        cli.listen_address(value)


def settings_from(ini: dict[str, str], environ: dict[str, str]):
    return core_spec().load(ini, environ)


def test_waitress_options_precedence():
    section = {"listen": "0.0.0.0:8080", "threads": "6", "connection_limit": "200"}
    # Nothing set: the ini's [server:main] applies.
    options = cli.waitress_options(settings_from({}, {}), section)
    assert options == {"listen": "0.0.0.0:8080", "threads": 6, "connection_limit": "200",
                       "clear_untrusted_proxy_headers": False,
                       "max_request_body_size": 4194304}
    # SERVER_ADDR / SERVER_THREADS in the environment win.
    options = cli.waitress_options(
        settings_from({}, {"SERVER_ADDR": ":9001", "SERVER_THREADS": "3"}), section)
    assert (options["listen"], options["threads"]) == ("localhost:9001", 3)
    # No ini: the SERVER_ADDR default (:8080 = localhost).
    assert cli.waitress_options(settings_from({}, {}), {}) == {
        "listen": "localhost:8080", "threads": 8, "clear_untrusted_proxy_headers": False,
        "max_request_body_size": 4194304}
    # host/port style sections work too.
    options = cli.waitress_options(settings_from({}, {}), {"host": "127.0.0.1", "port": "7000"})
    assert options["listen"] == "127.0.0.1:7000"


def test_waitress_options_leave_forwarded_headers_to_the_app():
    """waitress would strip X-Forwarded-For; the app checks TRUSTED_PROXIES itself."""
    options = cli.waitress_options(settings_from({}, {}), {})
    assert options["clear_untrusted_proxy_headers"] is False
    # An ini that configures waitress's own proxy support keeps waitress's behaviour.
    options = cli.waitress_options(settings_from({}, {}), {"trusted_proxy": "10.0.0.1"})
    assert "clear_untrusted_proxy_headers" not in options
    options = cli.waitress_options(settings_from({}, {}),
                                   {"clear_untrusted_proxy_headers": "true",
                                    "max_request_body_size": "4096"})
    assert options["clear_untrusted_proxy_headers"] == "true"
    assert options["max_request_body_size"] == "4096"


def test_read_server_section(tmp_path):
    ini = tmp_path / "x.ini"
    ini.write_text("[server:main]\nuse = egg:waitress#main\nlisten = 127.0.0.1:7001\n"
                   "channel_timeout = 30\n")
    assert cli.read_server_section(str(ini)) == {"listen": "127.0.0.1:7001",
                                                 "channel_timeout": "30"}
    # pserve variables cannot be filled in: the section is ignored, not fatal.
    ini.write_text("[server:main]\nuse = egg:waitress#main\nlisten = 127.0.0.1:%(http_port)s\n")
    assert cli.read_server_section(str(ini)) == {}
    ini.write_text("[server:main]\nuse = egg:gunicorn#main\nbind = 0.0.0.0:1\n")
    assert cli.read_server_section(str(ini)) == {}
    assert cli.read_server_section(None) == {}


# ---------------------------------------------------------------------------
# device-login against a scripted RFC 8628 server
# ---------------------------------------------------------------------------


class ScriptedServer:
    """A small real HTTP server that answers with queued JSON responses."""

    def __init__(self) -> None:
        self.device_response: tuple[int, dict] = (200, {})
        self.token_responses: list[tuple[int, dict]] = []
        self.requests: list[tuple[str, dict]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                outer.requests.append((self.path, form))
                if self.path == "/oauth/device/code":
                    status, body = outer.device_response
                elif self.path == "/oauth/token" and outer.token_responses:
                    status, body = outer.token_responses.pop(0)
                else:
                    status, body = 404, {"error": "not_found"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.close()


def device_code_body(server: ScriptedServer, **overrides) -> dict:
    body = {"device_code": "dc-123", "user_code": "WDJB-MJHT",
            "verification_uri": f"{server.url}/device",
            "verification_uri_complete": f"{server.url}/device?user_code=WDJB-MJHT",
            "expires_in": 60, "interval": 1}
    body.update(overrides)
    return body


PENDING = (400, {"error": "authorization_pending",
                 "error_description": "The user has not yet authorized"})
TOKEN = (200, {"access_token": "at-xyz", "token_type": "Bearer", "expires_in": 3600,
               "refresh_token": "rt-xyz", "scope": "email profile"})


def test_device_login_happy_path(scripted, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    scripted.device_response = (200, device_code_body(scripted))
    scripted.token_responses = [PENDING, TOKEN]
    code = cli.main(["device-login", "--server", scripted.url + "/", "--client-id", "cid-1",
                     "--scope", "email profile"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out) == TOKEN[1]
    assert "WDJB-MJHT" in err and f"{scripted.url}/device" in err
    assert f"{scripted.url}/device?user_code=WDJB-MJHT" in err
    assert "Waiting for authorization... (authorization_pending)" in err
    path, form = scripted.requests[0]
    assert (path, form) == ("/oauth/device/code", {"client_id": "cid-1",
                                                   "scope": "email profile"})
    assert scripted.requests[1] == ("/oauth/token", {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": "dc-123", "client_id": "cid-1"})


def test_device_login_unknown_client(scripted, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    scripted.device_response = (401, {"error": "invalid_client",
                                      "error_description": "Client not found"})
    assert cli.main(["device-login", "--server", scripted.url, "--client-id", "nope"]) == 1
    err = capsys.readouterr().err
    assert "invalid_client: Client not found" in err


def test_device_login_needs_a_client_id(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLIENT_ID", raising=False)
    assert cli.main(["device-login", "--server", "http://127.0.0.1:9"]) == 1
    assert "--client-id is required" in capsys.readouterr().err


class Clock:
    """Time that passes only when the poller sleeps, to check intervals exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def poll(scripted: ScriptedServer, clock: Clock, *, interval: float = 1,
         expires_in: float = 600) -> dict:
    import io
    out = io.StringIO()
    try:
        return cli.poll_for_token(requests.Session(), f"{scripted.url}/oauth/token",
                                  client_id="cid", device_code="dc", interval=interval,
                                  expires_in=expires_in, sleep=clock.sleep, clock=clock,
                                  out=out)
    finally:
        clock.output = out.getvalue()


def test_slow_down_adds_five_seconds(scripted):
    scripted.token_responses = [(400, {"error": "slow_down"}), PENDING, TOKEN]
    clock = Clock()
    assert poll(scripted, clock, interval=2) == TOKEN[1]
    assert clock.sleeps == [2, 7, 7]
    assert "slow_down" in clock.output


def test_rate_limited_poll_waits_retry_after(scripted):
    scripted.token_responses = [(429, {"error": "rate_limit_exceeded"}), TOKEN]
    clock = Clock()
    assert poll(scripted, clock, interval=1) == TOKEN[1]
    assert clock.sleeps == [1, 1]


@pytest.mark.parametrize("response, message", [
    ((400, {"error": "access_denied"}), "access_denied"),
    ((400, {"error": "expired_token"}), "expired_token"),
    ((400, {"error": "invalid_grant", "error_description": "Unknown device code"}),
     "invalid_grant: Unknown device code"),
    ((401, {"error": "invalid_client", "error_description": "Client not found"}),
     "invalid_client: Client not found"),
])
def test_poll_stops_on_a_final_error(scripted, response, message):
    scripted.token_responses = [PENDING, response]
    with pytest.raises(cli.CommandError, match=message):
        poll(scripted, Clock())


def test_poll_gives_up_at_expires_in(scripted):
    scripted.token_responses = [PENDING] * 10
    clock = Clock()
    with pytest.raises(cli.CommandError, match="expired"):
        poll(scripted, clock, interval=5, expires_in=12)
    assert clock.sleeps == [5, 5]
    assert clock.now <= 12
