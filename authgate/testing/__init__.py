"""Test helpers for AuthGate and its plugins (opt in: ``pytest_plugins = ["authgate.testing"]``).

Fixtures:

``make_app(settings=None, environ=None, plugins=())``
    Builds a full application on a fresh SQLite file under ``tmp_path`` and
    returns an :class:`AppHandle` (webtest ``TestApp``, the runtime, a DB
    session helper, ``login``).  ``settings`` are ini-style keys
    (``{"authgate.polling_interval": "1s"}``); ``environ`` plays the process
    environment (the machine's own is never read); ``plugins`` are extra plugin
    objects or module names registered directly.

``app``
    ``make_app()`` with the defaults.

The contract suites live in :mod:`authgate.testing.contracts`; the ``pg_dsn``
fixture (a throwaway PostgreSQL database) in :mod:`authgate.testing.postgres`; the
``redis_prefix`` fixture (a key prefix of the test's own in the machine's Redis) in
:mod:`authgate.testing.redis`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import transaction

from authgate.app import build_runtime, make_app_from_runtime
from authgate.db import get_tm_session
from authgate.runtime import Runtime

ADMIN_PASSWORD = "admin-password-for-tests"
TEST_JWT_SECRET = "test-jwt-secret-that-is-long-enough-0123456789"
TEST_SESSION_SECRET = "test-session-secret-that-is-long-enough-0123456789"


def default_settings(tmp_path: Path) -> dict[str, str]:
    return {
        "authgate.database_path": str(tmp_path / "oauth.db"),
        "authgate.credentials_file": str(tmp_path / "authgate-credentials.txt"),
        "authgate.jwt_secret": TEST_JWT_SECRET,
        "authgate.session_secret": TEST_SESSION_SECRET,
        "authgate.default_admin_password": ADMIN_PASSWORD,
        "authgate.audit_sinks": "database",
    }


def form(page: Any, action: str) -> Any:
    """The form on ``page`` that posts to ``action`` (pages also carry a sign-out form)."""
    for candidate in page.forms.values():
        if candidate.action == action:
            return candidate
    raise AssertionError(f"no form posting to {action} on {page.request.url}")


@dataclass
class AppHandle:
    testapp: Any  # webtest.TestApp
    runtime: Runtime
    tmp_path: Path

    @contextlib.contextmanager
    def db(self) -> Iterator[Any]:
        """A session in its own transaction, committed when the block ends."""
        tm = transaction.TransactionManager(explicit=True)
        with tm:
            yield get_tm_session(self.runtime.session_factory, tm)

    def login(self, username: str = "admin", password: str = ADMIN_PASSWORD,
              redirect: str = "") -> Any:
        page = self.testapp.get("/login" + (f"?redirect={redirect}" if redirect else ""))
        login_form = form(page, "/login")
        login_form["username"] = username
        login_form["password"] = password
        return login_form.submit()

    def rewind_poll(self, device_code: str) -> None:
        """Pretend the device's last poll was long ago (it waited its interval)."""
        from sqlalchemy import select, update

        from authgate.models import DeviceCode
        from authgate.services.secrets import sha256_hex

        where = DeviceCode.device_code == sha256_hex(device_code)
        with self.db() as db:
            db.execute(update(DeviceCode).where(where).values(last_polled_at=None))
            row_id = db.scalar(select(DeviceCode.id).where(where))
        if self.runtime.pacer is not None and row_id is not None:
            self.runtime.pacer.forget(str(row_id))

    def csrf_token(self, path: str = "/device") -> str:
        page = self.testapp.get(path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, f"no csrf_token on {path}"
        return match.group(1)

    @property
    def default_client_id(self) -> str:
        from sqlalchemy import select

        from authgate.models import OAuthClient

        with self.db() as db:
            return db.scalars(select(OAuthClient.client_id).order_by(OAuthClient.id)).first()


def build_app(tmp_path: Path, settings: Mapping[str, Any] | None = None,
              environ: Mapping[str, str] | None = None,
              plugins: Iterable[object] = ()) -> AppHandle:
    from webtest import TestApp

    raw = default_settings(tmp_path)
    raw.update(settings or {})
    runtime = build_runtime(raw, dict(environ or {}), extra_plugins=plugins, cwd=str(tmp_path))
    wsgi = make_app_from_runtime(runtime, raw)
    return AppHandle(TestApp(wsgi, extra_environ={"REMOTE_ADDR": "127.0.0.1"}), runtime,
                     tmp_path)


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--authgate-store", default=os.environ.get("AUTHGATE_TEST_STORE", "sqlite"),
        choices=("sqlite", "postgres"),
        help="store the make_app fixture (and live servers) run on: sqlite (a fresh file per "
             "app) or postgres (a fresh database per app on the server named by "
             "AUTHGATE_TEST_PG)")


@pytest.fixture
def store_environ(request) -> Iterator[Any]:
    """Factory: environment variables that put one app on the selected store."""
    from authgate.testing import postgres

    created: list[str] = []

    def factory() -> dict[str, str]:
        if request.config.getoption("--authgate-store") != "postgres":
            return {}
        name = postgres.create_database()
        created.append(name)
        return {"DATABASE_DRIVER": "postgres",
                "DATABASE_DSN": f"{postgres.server_dsn()} dbname={name}"}

    yield factory
    for name in created:
        postgres.drop_database(name)


@pytest.fixture
def make_app(tmp_path: Path, store_environ):
    handles: list[AppHandle] = []
    counter = iter(range(1000))

    def factory(settings: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None,
                plugins: Iterable[object] = ()) -> AppHandle:
        path = tmp_path / f"app{next(counter)}"
        os.makedirs(path, exist_ok=True)
        env = dict(environ or {})
        if "DATABASE_DRIVER" not in env:
            env.update(store_environ())
        handle = build_app(path, settings, env, plugins)
        handles.append(handle)
        return handle

    yield factory
    for handle in handles:
        handle.runtime.close()


@pytest.fixture
def app(make_app) -> AppHandle:
    return make_app()
