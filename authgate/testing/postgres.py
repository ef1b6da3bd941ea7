"""A throwaway PostgreSQL database per test session (the machine's server).

``AUTHGATE_TEST_PG`` names the server as libpq keywords (default
``host=127.0.0.1 port=5432 user=postgres``).  The server must be running: a
test that needs it fails, it never skips.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest

DEFAULT_SERVER = "host=127.0.0.1 port=5432 user=postgres"


def server_dsn() -> str:
    return os.environ.get("AUTHGATE_TEST_PG", DEFAULT_SERVER)


def create_database() -> str:
    name = "authgate_test_" + secrets.token_hex(6)
    try:
        with psycopg.connect(server_dsn() + " dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {server_dsn()!r}: {exc}. Start it "
                    "(.ci/run does: pg_ctlcluster ... main start)")
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(server_dsn() + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """libpq keywords for a fresh, empty database, dropped afterwards."""
    name = create_database()
    try:
        yield f"{server_dsn()} dbname={name}"
    finally:
        drop_database(name)
