"""The device authorization grant through the WSGI app (webtest)."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select, update

from authgate.models import AuditLog, DeviceCode, Token, utcnow
from authgate.services.secrets import sha256_hex
from authgate.testing import form

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def request_code(app, client_id=None, **extra):
    params = {"client_id": client_id or app.default_client_id, **extra}
    return app.testapp.post("/oauth/device/code", params)


def poll(app, device_code, client_id=None, status=None):
    return app.testapp.post("/oauth/token", {
        "grant_type": GRANT, "device_code": device_code,
        "client_id": client_id or app.default_client_id}, status=status or "*")


def approve(app, user_code, action="approve"):
    page = app.testapp.get(f"/device?user_code={user_code}")
    return form(page, "/device/verify").submit("action", value=action)


def test_full_flow_issues_tokens_once(app):
    code = request_code(app).json
    assert re.fullmatch(r"[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}", code["user_code"])
    assert code["verification_uri"] == "http://localhost:8080/device"
    assert code["verification_uri_complete"].endswith(f"?user_code={code['user_code']}")
    assert code["expires_in"] == 1800 and code["interval"] == 5

    pending = poll(app, code["device_code"], status=400)
    assert pending.json["error"] == "authorization_pending"
    assert pending.headers["Cache-Control"] == "no-store"

    app.login()
    page = app.testapp.get(f"/device?user_code={code['user_code'].lower().replace('-', '')}")
    assert "AuthGate CLI" in page.text and code["user_code"] in page.text
    result = form(page, "/device/verify").submit("action", value="approve")
    assert "Device authorized" in result.text

    app.rewind_poll(code["device_code"])  # the client waited its interval
    tokens = poll(app, code["device_code"], status=200).json
    assert tokens["token_type"] == "Bearer" and tokens["access_token"] and tokens["refresh_token"]
    assert tokens["scope"] == "email profile"

    app.rewind_poll(code["device_code"])
    again = poll(app, code["device_code"], status=400)
    assert again.json["error"] == "invalid_grant"

    with app.db() as db:
        stored = db.scalars(select(Token.token_hash)).all()
        assert sha256_hex(tokens["access_token"]) in stored
        assert tokens["access_token"] not in stored
        row = db.scalars(select(DeviceCode)).one()
        assert row.device_code != code["device_code"]  # only the hash is stored
        events = set(db.scalars(select(AuditLog.event_type)).all())
    assert {"DEVICE_CODE_GENERATED", "DEVICE_CODE_AUTHORIZED", "AUTHENTICATION_SUCCESS",
            "ACCESS_TOKEN_ISSUED", "REFRESH_TOKEN_ISSUED"} <= events


def test_deny_gives_access_denied(app):
    code = request_code(app).json
    app.login()
    result = approve(app, code["user_code"], action="deny")
    assert "Request denied" in result.text
    assert poll(app, code["device_code"], status=400).json["error"] == "access_denied"


def test_fast_polling_gets_slow_down_and_interval_grows(app):
    code = request_code(app).json
    assert poll(app, code["device_code"]).json["error"] == "authorization_pending"
    slow = poll(app, code["device_code"], status=400).json
    assert slow["error"] == "slow_down"
    with app.db() as db:
        assert db.scalars(select(DeviceCode.interval)).one() == 10


def test_expired_code(app):
    code = request_code(app).json
    with app.db() as db:
        db.execute(update(DeviceCode).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert poll(app, code["device_code"], status=400).json["error"] == "expired_token"
    app.login()
    page = app.testapp.get(f"/device?user_code={code['user_code']}", status=400)
    assert "This code has expired." in page.text


def test_unknown_client_matches_troubleshooting_guide(app):
    response = app.testapp.post("/oauth/device/code", {"client_id": "nope"}, status=400)
    assert response.json == {"error": "invalid_client", "error_description": "Client not found"}


def test_unknown_device_code_is_invalid_grant(app):
    assert poll(app, "made-up", status=400).json["error"] == "invalid_grant"


def test_bad_scope_is_invalid_scope(app):
    response = app.testapp.post("/oauth/device/code", {
        "client_id": app.default_client_id, "scope": "email admin:everything"}, status=400)
    assert response.json["error"] == "invalid_scope"


def test_device_page_requires_login_and_comes_back(app):
    response = app.testapp.get("/device?user_code=ABCD-EFGH", status=302)
    assert response.location.endswith("/login?redirect=%2Fdevice%3Fuser_code%3DABCD-EFGH")
    page = app.testapp.get(response.location)
    login = form(page, "/login")
    login["username"] = "admin"
    login["password"] = "admin-password-for-tests"
    done = login.submit(status=302)
    assert done.location.endswith("/device?user_code=ABCD-EFGH")


def test_login_rejects_open_redirect(app):
    page = app.testapp.get("/login?redirect=https://evil.example/x")
    login = form(page, "/login")
    login["username"] = "admin"
    login["password"] = "admin-password-for-tests"
    done = login.submit(status=302)
    assert done.location.endswith("/device")


def test_login_failure_is_generic(app):
    page = app.testapp.get("/login")
    login = form(page, "/login")
    login["username"] = "admin"
    login["password"] = "wrong"
    response = login.submit(status=401)
    assert "Invalid username or password" in response.text


def test_login_form_needs_csrf(app):
    app.testapp.get("/login")
    response = app.testapp.post("/login", {"username": "admin", "password": "x"}, status=400)
    assert "Form expired" in response.text
