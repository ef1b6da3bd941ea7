"""The per-process client cache (authgate.clientcache): clients are read once, and
every change is seen by the next request -- through the admin console, the ORM,
raw SQL, and (PostgreSQL) another process or psql, via LISTEN/NOTIFY.

Runs on the selected store (``--authgate-store=postgres`` too); the
LISTEN/NOTIFY tests always use a PostgreSQL database of their own.
"""

from __future__ import annotations

import base64
import logging
import time
from urllib.parse import quote_plus

import psycopg
import pytest
from sqlalchemy import create_engine, event, select, text

from authgate.cli import create_oauth_client
from authgate.clientcache import ClientCache, PostgresListener
from authgate.models import OAuthClient
from authgate.services.secrets import hash_client_secret
from authgate.testing import form


def confidential(app) -> tuple[str, str, dict[str, str]]:
    with app.db() as db:
        client, secret = create_oauth_client(db, name="Service", confidential=True,
                                             device=False, client_credentials=True)
        client_id = client.client_id
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return client_id, secret, {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def token(app, headers, status=200):
    return app.testapp.post("/oauth/token", {"grant_type": "client_credentials"},
                            headers=headers, status=status)


class ClientSelects:
    """Counts ``SELECT ... FROM oauth_clients`` sent through the app's engine."""

    def __init__(self, engine):
        self.count = 0
        self.engine = engine
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and "oauth_clients" in statement:
            self.count += 1

    def close(self):
        event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.fixture
def selects(app):
    counter = ClientSelects(app.runtime.engine)
    yield counter
    counter.close()


def test_a_client_is_read_once_then_served_from_the_cache(app, selects):
    _, _, basic = confidential(app)
    for _ in range(5):
        token(app, basic)
    assert selects.count == 1


def test_a_regenerated_secret_is_refused_by_the_next_request(app):
    client_id, _, basic = confidential(app)
    token(app, basic)  # cached
    with app.db() as db:
        db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one() \
            .client_secret_hash = hash_client_secret("the-new-secret")
    assert token(app, basic, status=401).json["error"] == "invalid_client"


def test_a_client_disabled_in_the_admin_console_is_refused_at_once(app):
    client_id, _, basic = confidential(app)
    token(app, basic)  # cached
    app.login()
    page = form(app.testapp.get(f"/admin/clients/{client_id}/edit"),
                f"/admin/clients/{client_id}")
    page["status"] = "inactive"
    page.submit(status=303)
    assert token(app, basic, status=401).json["error_description"] == "Client is not active"


def test_raw_sql_written_through_the_app_engine_is_seen_at_once(app):
    client_id, _, basic = confidential(app)
    token(app, basic)
    with app.runtime.engine.begin() as connection:
        connection.execute(text("UPDATE oauth_clients SET status = 'inactive' "
                                "WHERE client_id = :id"), {"id": client_id})
    assert token(app, basic, status=401).json["error_description"] == "Client is not active"


def test_ttl_zero_turns_the_cache_off(make_app):
    app = make_app(environ={"CLIENT_CACHE_TTL": "0"})
    counter = ClientSelects(app.runtime.engine)
    try:
        _, _, basic = confidential(app)
        for _ in range(3):
            token(app, basic)
        assert counter.count == 3
    finally:
        counter.close()


def test_a_change_made_outside_the_process_is_seen_within_the_ttl(make_app):
    """Another process (here: an engine of its own, which the app's write hooks do not
    see; on SQLite nothing else tells the app) -- bounded by CLIENT_CACHE_TTL."""
    app = make_app(environ={"CLIENT_CACHE_TTL": "1s"})
    client_id, _, basic = confidential(app)
    token(app, basic)
    other = create_engine(app.runtime.engine.url)
    try:
        with other.begin() as connection:
            connection.execute(text("UPDATE oauth_clients SET status = 'inactive' "
                                    "WHERE client_id = :id"), {"id": client_id})
    finally:
        other.dispose()
    time.sleep(1.1)
    assert token(app, basic, status=401).json["error_description"] == "Client is not active"


def test_a_read_that_raced_a_write_is_not_cached():
    """A request that read the row before a write must not store it after the write."""
    cache = ClientCache(ttl=60)
    row = OAuthClient(client_id="c1", name="old")
    before = cache.generation
    cache.invalidate()  # the write happens between the read and the store
    cache.put(row, before)
    assert cache.get("c1") is None
    cache.put(row, cache.generation)
    assert cache.get("c1").name == "old"
    cache.suspend()
    assert cache.get("c1") is None and not cache.enabled
    cache.put(row, cache.generation)
    assert cache.get("c1") is None
    cache.resume()
    assert cache.enabled and cache.get("c1") is None


# ---------------------------------------------------------------------------
# PostgreSQL: LISTEN/NOTIFY from migration 0004's trigger
# ---------------------------------------------------------------------------


@pytest.fixture
def pg_app(make_app, pg_dsn):
    app = make_app(environ={"DATABASE_DRIVER": "postgres", "DATABASE_DSN": pg_dsn,
                            "CLIENT_CACHE_TTL": "1h"})
    listener = PostgresListener(app.runtime.engine, app.runtime.client_cache,
                                retry_seconds=0.2, poll_seconds=0.2)
    listener.start()
    yield app, listener, pg_dsn
    listener.stop()


def eventually(check, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds:.0f} s"
        time.sleep(0.02)


def test_psql_by_hand_reaches_the_cache_of_a_serving_process(pg_app):
    """A change the process's own hooks cannot see (another connection: another
    AuthGate process, `authgate` commands, psql) empties the cache on commit."""
    app, _, dsn = pg_app
    client_id, _, basic = confidential(app)
    token(app, basic)
    before = app.runtime.client_cache.generation
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("UPDATE oauth_clients SET status = 'inactive' WHERE client_id = %s",
                      (client_id,))
    eventually(lambda: app.runtime.client_cache.generation != before)
    assert token(app, basic, status=401).json["error_description"] == "Client is not active"


def test_the_cache_is_off_while_the_listen_connection_is_down(pg_app, caplog):
    app, listener, dsn = pg_app
    cache = app.runtime.client_cache
    _, _, basic = confidential(app)
    token(app, basic)
    with caplog.at_level(logging.INFO, logger="authgate.clientcache"), \
            psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE query = 'LISTEN authgate_clients'")
        eventually(lambda: "the LISTEN connection failed" in caplog.text)
        eventually(lambda: "listening for client changes again" in caplog.text)
    assert cache.enabled
    token(app, basic)  # and still served correctly
