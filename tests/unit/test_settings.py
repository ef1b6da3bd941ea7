"""Settings: parsing, precedence (default < ini < .env < environment), error messages,
secrets, and how the original's environment names select components."""

from __future__ import annotations

import datetime as dt

import pytest

from authgate.app import resolve_selection
from authgate.errors import ConfigurationError
from authgate.settings import (
    Setting,
    SettingsSpec,
    core_spec,
    format_duration,
    parse_bool,
    parse_duration,
    parse_list,
    read_environ,
)


def load(ini=None, environ=None):
    return core_spec().load(ini or {}, environ or {})


def load_error(ini=None, environ=None) -> str:
    with pytest.raises(ConfigurationError) as info:
        load(ini, environ)
    return str(info.value)


# ---------------------------------------------------------------------------
# Value types
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", dt.timedelta(seconds=30)),
    ("10m", dt.timedelta(minutes=10)),
    ("720h", dt.timedelta(hours=720)),
    ("1h30m", dt.timedelta(hours=1, minutes=30)),
    ("1h30m15s", dt.timedelta(hours=1, minutes=30, seconds=15)),
    ("1.5h", dt.timedelta(minutes=90)),
    ("250ms", dt.timedelta(milliseconds=250)),
    ("0", dt.timedelta(0)),
    (" 5s ", dt.timedelta(seconds=5)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "10 minutes", "1d", "m", "-5s", "5s5", "s30"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="a duration such as 30s"):
        parse_duration(text)


@pytest.mark.parametrize("value", [dt.timedelta(0), dt.timedelta(seconds=5),
                                   dt.timedelta(hours=720), dt.timedelta(seconds=5400)])
def test_format_duration_round_trips(value):
    assert parse_duration(format_duration(value)) == value


def test_bad_duration_names_the_variable_the_value_and_the_syntax():
    message = load_error(environ={"JWT_EXPIRATION": "10 minutes"})
    assert "JWT_EXPIRATION" in message
    assert "authgate.jwt_expiration" in message
    assert "'10 minutes'" in message
    assert "a duration such as 30s" in message


def test_zero_duration_where_it_must_be_positive():
    message = load_error(ini={"authgate.polling_interval": "0"})
    assert "POLLING_INTERVAL" in message and "greater than 0" in message


def test_durations_from_ini_and_env():
    settings = load({"authgate.device_code_expiration": "10m"},
                    {"REFRESH_TOKEN_EXPIRATION": "1h30m"})
    assert settings.device_code_expiration == dt.timedelta(minutes=10)
    assert settings.refresh_token_expiration == dt.timedelta(hours=1, minutes=30)
    assert settings.jwt_expiration == dt.timedelta(hours=10)  # default


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("off", False),
])
def test_bools(text, expected):
    assert parse_bool(text) is expected
    assert load(environ={"ENABLE_TOKEN_ROTATION": text}).enable_token_rotation is expected


def test_bad_bool():
    message = load_error(environ={"ENABLE_REFRESH_TOKENS": "maybe"})
    assert "ENABLE_REFRESH_TOKENS" in message and "'maybe'" in message
    assert "true or false" in message


def test_ints():
    assert load(environ={"SERVER_THREADS": " 16 "}).server_threads == 16
    assert "a whole number" in load_error(environ={"SERVER_THREADS": "eight"})
    assert "at least 1" in load_error(environ={"SERVER_THREADS": "0"})


@pytest.mark.parametrize(("text", "expected"), [
    ("local httpapi", ("local", "httpapi")),
    ("local,httpapi", ("local", "httpapi")),
    (" local ,  httpapi\n", ("local", "httpapi")),
    ("", ()),
])
def test_lists(text, expected):
    assert parse_list(text) == expected


def test_list_setting():
    settings = load(environ={"JWT_AUDIENCE": "api-1, api-2"})
    assert settings.jwt_audience == ("api-1", "api-2")


def test_choices_are_case_insensitive_and_normalised():
    assert load(environ={"JWT_SIGNING_ALGORITHM": "rs256"}).jwt_signing_algorithm == "RS256"
    message = load_error(environ={"JWT_SIGNING_ALGORITHM": "HS999"})
    assert "'HS999'" in message and "one of HS256, RS256, ES256" in message


def test_custom_check():
    message = load_error(environ={"BASE_URL": "auth.example.com"})
    assert "BASE_URL" in message and "absolute http:// or https:// URL" in message


# ---------------------------------------------------------------------------
# Precedence
# ---------------------------------------------------------------------------


def test_default_ini_env_precedence():
    assert load().base_url == "http://localhost:8080"
    settings = load({"authgate.base_url": "https://ini.example.com"})
    assert (settings.base_url, settings.source("base_url")) == ("https://ini.example.com", "ini")
    settings = load({"authgate.base_url": "https://ini.example.com"},
                    {"BASE_URL": "https://env.example.com"})
    assert (settings.base_url, settings.source("base_url")) == ("https://env.example.com", "env")


def test_blank_values_do_not_override():
    settings = load({"authgate.base_url": "https://ini.example.com"}, {"BASE_URL": "  "})
    assert settings.base_url == "https://ini.example.com"
    assert load({"authgate.server_threads": ""}).server_threads == 8


def test_dotenv_is_read_and_the_real_environment_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "BASE_URL=https://dotenv.example.com\n"
        "JWT_EXPIRATION=1h\n"
        "# a comment\n"
        "SESSION_SECRET='quoted value from dotenv'\n")
    monkeypatch.delenv("BASE_URL", raising=False)
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    monkeypatch.setenv("JWT_EXPIRATION", "2h")
    environ = read_environ(str(tmp_path))
    assert environ["BASE_URL"] == "https://dotenv.example.com"
    assert environ["SESSION_SECRET"] == "quoted value from dotenv"
    assert environ["JWT_EXPIRATION"] == "2h"  # the real environment wins
    settings = load({"authgate.base_url": "https://ini.example.com"}, environ)
    assert settings.base_url == "https://dotenv.example.com"  # .env beats the ini file
    assert settings.jwt_expiration == dt.timedelta(hours=2)


def test_no_dotenv_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTHGATE_TEST_MARKER", "1")
    environ = read_environ(str(tmp_path))
    assert environ["AUTHGATE_TEST_MARKER"] == "1"


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------


def test_secret_values_never_appear_in_errors():
    spec = SettingsSpec()
    spec.add(Setting("api_pin", "API_PIN", "int", secret=True))
    with pytest.raises(ConfigurationError) as info:
        spec.load({}, {"API_PIN": "hunter2-secret"})
    message = str(info.value)
    assert "API_PIN" in message and "a whole number" in message
    assert "hunter2" not in message
    assert "<hidden>" in message


def test_secrets_refused_in_the_ini_when_env_only():
    ini = {"authgate.secrets_from_env_only": "true",
           "authgate.session_secret": "value-that-must-not-leak-0123456789"}
    message = load_error(ini)
    assert "SESSION_SECRET is a secret" in message
    assert "set it in the environment" in message
    assert "must-not-leak" not in message


def test_secrets_from_the_environment_when_env_only():
    ini = {"authgate.secrets_from_env_only": "true", "authgate.base_url": "https://a.example"}
    settings = load(ini, {"SESSION_SECRET": "s" * 40})
    assert settings.session_secret == "s" * 40
    assert settings.source("session_secret") == "env"


def test_secrets_allowed_in_the_ini_by_default():
    assert load({"authgate.session_secret": "dev-secret"}).session_secret == "dev-secret"


def test_setting_declared_twice_names_both_owners():
    spec = core_spec()
    with pytest.raises(ConfigurationError) as info:
        spec.add(Setting("base_url", "OTHER_BASE_URL"), owner="my_plugin")
    assert "declared twice" in str(info.value)
    assert "authgate" in str(info.value) and "my_plugin" in str(info.value)


# ---------------------------------------------------------------------------
# Component selection from the original's environment names
# ---------------------------------------------------------------------------


def selected(ini=None, environ=None):
    settings = load(ini, environ)
    resolve_selection(settings)
    return settings.store, settings.signer, settings.auth_sources


def test_selection_defaults():
    assert selected() == ("sqlite", "hs256", ("local",))


def test_ini_component_keys_are_kept():
    ini = {"authgate.store": "postgres", "authgate.signer": "asym",
           "authgate.auth_sources": "local httpapi"}
    assert selected(ini) == ("postgres", "asym", ("local", "httpapi"))


def test_database_driver_in_the_environment_overrides_the_ini_store():
    assert selected({"authgate.store": "sqlite"}, {"DATABASE_DRIVER": "postgres"})[0] == \
        "postgres"


def test_database_driver_in_the_ini_applies_when_no_store_is_named():
    assert selected({"authgate.database_driver": "postgres"})[0] == "postgres"
    # ... but an explicit authgate.store in the same file is more specific.
    ini = {"authgate.database_driver": "postgres", "authgate.store": "sqlite"}
    assert selected(ini)[0] == "sqlite"


def test_explicit_authgate_store_in_the_environment_wins():
    environ = {"AUTHGATE_STORE": "custom", "DATABASE_DRIVER": "postgres"}
    assert selected({"authgate.store": "sqlite"}, environ)[0] == "custom"


@pytest.mark.parametrize(("algorithm", "signer"), [("HS256", "hs256"), ("RS256", "asym"),
                                                   ("ES256", "asym")])
def test_jwt_signing_algorithm_picks_the_signer(algorithm, signer):
    assert selected(environ={"JWT_SIGNING_ALGORITHM": algorithm})[1] == signer
    assert selected({"authgate.signer": "hs256"},
                    {"JWT_SIGNING_ALGORITHM": algorithm})[1] == signer


def test_explicit_authgate_signer_in_the_environment_wins():
    environ = {"AUTHGATE_SIGNER": "hsm", "JWT_SIGNING_ALGORITHM": "RS256"}
    assert selected(environ=environ)[1] == "hsm"


def test_auth_mode_http_api_adds_the_http_api_source():
    assert selected(environ={"AUTH_MODE": "http_api"})[2] == ("local", "httpapi")
    assert selected({"authgate.auth_sources": "local"},
                    {"AUTH_MODE": "http_api"})[2] == ("local", "httpapi")
    assert selected({"authgate.auth_mode": "http_api"})[2] == ("local", "httpapi")


def test_explicit_auth_sources_in_the_environment_win():
    environ = {"AUTHGATE_AUTH_SOURCES": "example local", "AUTH_MODE": "http_api"}
    assert selected(environ=environ)[2] == ("example", "local")


def test_bad_auth_mode():
    message = load_error(environ={"AUTH_MODE": "ldap"})
    assert "AUTH_MODE" in message and "one of local, http_api" in message


def test_dotenv_database_driver_selects_the_store(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("DATABASE_DRIVER=postgres\n")
    monkeypatch.delenv("DATABASE_DRIVER", raising=False)
    monkeypatch.delenv("AUTHGATE_STORE", raising=False)
    assert selected({"authgate.store": "sqlite"}, read_environ(str(tmp_path)))[0] == "postgres"
