"""Expired-row cleanup, audit retention and `authgate db copy`."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select, update

from authgate.models import AuditLog, DeviceCode, OAuthClient, Token, User, utcnow
from authgate.services import cleanup
from authgate.testing import TEST_JWT_SECRET, TEST_SESSION_SECRET

AUTHGATE = str(Path(sys.executable).with_name("authgate"))


def device_tokens(app) -> dict:
    code = app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id}).json
    app.login()
    page = app.testapp.get(f"/device?user_code={code['user_code']}")
    from authgate.testing import form

    form(page, "/device/verify").submit("action", value="approve")
    return app.testapp.post("/oauth/token", {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": code["device_code"], "client_id": app.default_client_id}).json


def count(app, model) -> int:
    with app.db() as db:
        return db.scalar(select(func.count()).select_from(model))


def test_cleanup_deletes_only_expired_rows_in_batches(app):
    device_tokens(app)  # two live tokens, one consumed (unexpired) device code
    for _ in range(5):
        app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id})
    with app.db() as db:
        ids = db.scalars(select(DeviceCode.id).order_by(DeviceCode.id)).all()
        db.execute(update(DeviceCode).where(DeviceCode.id.in_(ids[1:]))
                   .values(expires_at=utcnow() - dt.timedelta(minutes=1)))
    report = cleanup.purge_expired(app.runtime.engine, batch=2)
    assert report.deleted == {"tokens": 0, "device_codes": 5, "authorization_codes": 0}
    assert count(app, DeviceCode) == 1 and count(app, Token) == 2


def test_audit_retention(app):
    device_tokens(app)
    total = count(app, AuditLog)
    with app.db() as db:
        oldest = db.scalars(select(AuditLog.id).order_by(AuditLog.created_at)).first()
        db.execute(update(AuditLog).where(AuditLog.id == oldest)
                   .values(created_at=utcnow() - dt.timedelta(days=200)))
    assert cleanup.purge_audit(app.runtime.engine, dt.timedelta(hours=2160)) == 1
    assert cleanup.purge_audit(app.runtime.engine, dt.timedelta(0)) == 0  # 0 = keep forever
    assert count(app, AuditLog) == total - 1


def test_cleanup_command(app):
    with app.db() as db:
        app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id})
        db.execute(update(DeviceCode).values(expires_at=utcnow() - dt.timedelta(minutes=1)))
    env = {"PATH": os.environ["PATH"], "HOME": str(app.tmp_path),
           "DATABASE_PATH": str(app.tmp_path / "oauth.db"), "JWT_SECRET": TEST_JWT_SECRET,
           "SESSION_SECRET": TEST_SESSION_SECRET, **_store_env(app)}
    done = subprocess.run([AUTHGATE, "cleanup"], cwd=app.tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "device_codes: 1" in done.stdout
    assert count(app, DeviceCode) == 0


def _store_env(app) -> dict[str, str]:
    if app.runtime.store.name == "postgres":
        return {"DATABASE_DRIVER": "postgres", "DATABASE_DSN": app.runtime.settings.database_dsn}
    return {}


def test_db_copy_sqlite_to_postgres_round_trip(make_app, pg_dsn, tmp_path):
    source = make_app(environ={"DATABASE_DRIVER": "sqlite"})
    tokens = device_tokens(source)
    with source.db() as db:
        client_id = db.scalars(select(OAuthClient.client_id)).one()
        rows = {m.__tablename__: db.scalar(select(func.count()).select_from(m))
                for m in (User, OAuthClient, Token, DeviceCode, AuditLog)}
    source.runtime.close()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    done = subprocess.run([AUTHGATE, "db", "copy", "--from", str(source.tmp_path / "oauth.db"),
                           "--to", pg_dsn], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "row counts verified" in done.stdout

    # Same secrets, now on PostgreSQL: the admin logs in, the client and tokens are there.
    target = make_app(environ={"DATABASE_DRIVER": "postgres", "DATABASE_DSN": pg_dsn})
    with target.db() as db:
        for name, model in (("users", User), ("oauth_clients", OAuthClient),
                            ("tokens", Token), ("device_codes", DeviceCode),
                            ("audit_logs", AuditLog)):
            assert db.scalar(select(func.count()).select_from(model)) == rows[name]
        assert db.scalars(select(OAuthClient.client_id)).one() == client_id
    assert target.login().status_int == 302
    claims = target.runtime.signer.verify(tokens["access_token"])
    assert claims["client_id"] == client_id
    # A resource server introspecting a token issued before the copy: still active.
    from authgate.services.secrets import hash_client_secret

    with target.db() as db:
        db.add(OAuthClient(client_id="resource-server", name="API", client_type="confidential",
                           client_secret_hash=hash_client_secret("rs-secret"),
                           enable_device_flow=False))
    info = target.testapp.post("/oauth/introspect", {
        "token": tokens["access_token"], "client_id": "resource-server",
        "client_secret": "rs-secret"}).json
    assert info["active"] is True and info["client_id"] == client_id
    # New rows get fresh ids after the copied ones (sequences were moved on).
    code = target.testapp.post("/oauth/device/code", {"client_id": client_id}).json
    assert code["user_code"]

    again = subprocess.run([AUTHGATE, "db", "copy", "--from", str(source.tmp_path / "oauth.db"),
                            "--to", pg_dsn], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "not empty" in again.stderr
