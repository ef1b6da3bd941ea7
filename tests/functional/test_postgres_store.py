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


def connection_parameters(engine) -> dict[str, str]:
    with engine.connect() as connection:
        return connection.connection.dbapi_connection.info.get_parameters()


def test_connections_give_up_on_an_unreachable_server(make_app, pg_dsn):
    """libpq's own default is to wait as long as the kernel does; the server answers
    polls on its I/O thread, so a new connection must not wait minutes."""
    from authgate_plugins.store_postgres import PostgresStore

    app = make_app(environ={"DATABASE_DRIVER": "postgres", "DATABASE_DSN": pg_dsn})
    assert connection_parameters(app.runtime.engine)["connect_timeout"] == "10"
    # A DSN's own value wins.
    own = PostgresStore(dsn_to_url(pg_dsn + " connect_timeout=3")).create_engine()
    try:
        assert connection_parameters(own)["connect_timeout"] == "3"
    finally:
        own.dispose()
