"""The PostgreSQL store on the machine's real server."""

from __future__ import annotations

import pytest
from authgate_plugins.store_postgres import dsn_to_url

from authgate.errors import ConfigurationError


def test_seed_style_keyword_dsn_becomes_url():
    url = dsn_to_url("host=localhost user=authgate password=secret dbname=authgate "
                     "port=5432 sslmode=require")
    assert url == "postgresql+psycopg://authgate:secret@localhost:5432/authgate?sslmode=require"


def test_bad_dsn_names_the_setting():
    with pytest.raises(ConfigurationError, match="DATABASE_DSN"):
        dsn_to_url("this is not a dsn")
    with pytest.raises(ConfigurationError, match="DATABASE_DSN is required"):
        dsn_to_url("")


def test_app_runs_on_postgres_selected_by_database_driver(make_app, pg_dsn):
    app = make_app(environ={"DATABASE_DRIVER": "postgres", "DATABASE_DSN": pg_dsn})
    assert app.runtime.store.name == "postgres"
    assert app.runtime.engine.dialect.name == "postgresql"
    assert "password" not in app.runtime.store.describe()
    assert app.testapp.get("/health").json == {"status": "healthy", "database": "connected"}
    code = app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id}).json
    assert code["user_code"]
