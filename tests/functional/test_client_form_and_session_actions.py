"""Exactly what the shared client form (authgate/views/client_form.py) and the account's
token actions say and record: flashes (text and kind), redirects, error pages, audit
actions and details, for the admin console and the self-service apps alike."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from sqlalchemy import select
from webtest import TestApp

from authgate.models import AuditLog, OAuthClient, Token, User, utcnow
from authgate.services.passwords import hash_password
from authgate.services.secrets import sha256_hex
from authgate.testing import form

PASSWORD = "user-password-123"
ALERT = re.compile(
    r'<div class="alert alert-(\w+)" role="alert".*?'
    r'<p class="alert-message">([^<]*)</p>',
    re.S,
)


@pytest.fixture
def app(make_app):
    return make_app()


def signed_in(app, username, *, role="user") -> TestApp:
    with app.db() as db:
        db.add(User(username=username, role=role, password_hash=hash_password(PASSWORD)))
    browser = TestApp(app.testapp.app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    page = form(browser.get("/login"), "/login")
    page["username"], page["password"] = username, PASSWORD
    assert page.submit().status_int == 302
    return browser


@pytest.fixture
def bob(app):
    return signed_in(app, "bob")


@pytest.fixture
def root(app):
    return signed_in(app, "root", role="admin")


def user_id(app, username):
    with app.db() as db:
        return db.scalars(select(User.id).where(User.username == username)).one()


def post(browser, path, data=None, status=303):
    token = re.search(
        r'name="csrf_token" value="([^"]+)"', browser.get("/account/sessions").text
    ).group(1)
    return browser.post(path, {**(data or {}), "csrf_token": token}, status=status)


def flashes(response):
    return ALERT.findall(response.follow().text)


def events(app, event_type):
    with app.db() as db:
        rows = db.scalars(
            select(AuditLog).where(AuditLog.event_type == event_type).order_by(AuditLog.event_time)
        ).all()
        db.expunge_all()
        return rows


def secret_of(page):
    return re.search(r'id="client-secret">([^<]+)<', page.text).group(1)


def created_id(page):
    return re.search(r'id="created-client-id">([^<]+)<', page.text).group(1)


def make_token(app, owner, client_id, category="access"):
    with app.db() as db:
        token = Token(
            token_hash=sha256_hex(str(uuid.uuid4())),
            token_category=category,
            status="active",
            user_id=owner,
            client_id=client_id,
            scopes="email",
            expires_at=utcnow() + dt.timedelta(hours=1),
        )
        db.add(token)
        db.flush()
        return token.id


# ---------------------------------------------------------------------------
# /account/sessions: revoke, disable, enable one token
# ---------------------------------------------------------------------------


def test_token_actions_flash_redirect_and_record(app, bob):
    client_id = app.default_client_id
    token = make_token(app, user_id(app, "bob"), client_id, "refresh")

    disabled = post(bob, f"/account/sessions/{token}/disable")
    assert disabled.location.endswith("/account/sessions")
    assert flashes(disabled) == [
        ("success", "Token disabled. Enable it again to resume that session.")
    ]
    enabled = post(
        bob, f"/account/sessions/{token}/enable", {"next": "/account/sessions?status=all"}
    )
    assert enabled.location.endswith("/account/sessions?status=all")
    assert flashes(enabled) == [("success", "Token enabled.")]
    revoked = post(bob, f"/account/sessions/{token}/revoke", {"next": "https://evil.example/"})
    assert revoked.location.endswith("/account/sessions")
    assert flashes(revoked) == [("success", "Session revoked. That device has to sign in again.")]

    expected = {"token_category": "refresh", "user_id": user_id(app, "bob"), "client_id": client_id}
    for kind, verb, extra in (
        ("TOKEN_DISABLED", "disabled", {}),
        ("TOKEN_ENABLED", "enabled", {}),
        ("TOKEN_REVOKED", "revoked", {"tokens_revoked": 1}),
    ):
        (event,) = events(app, kind)
        assert event.action == f"bob {verb} one of their refresh tokens"
        assert (event.severity, event.resource_type, event.resource_id) == ("INFO", "TOKEN", token)
        assert event.resource_name == "AuthGate CLI"
        assert event.details == {**expected, **extra}


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("enable", "Only a disabled token can be enabled."),
        ("disable", "Only an active token can be disabled."),
    ],
)
def test_token_action_in_the_wrong_state_is_a_409_page(app, bob, action, message):
    token = make_token(app, user_id(app, "bob"), app.default_client_id)
    if action == "enable":
        page = post(bob, f"/account/sessions/{token}/enable", status=409)
    else:
        post(bob, f"/account/sessions/{token}/revoke")
        page = post(bob, f"/account/sessions/{token}/disable", status=409)
    assert message in page.text and "Nothing to do" in page.text
    post(bob, f"/account/sessions/{token}/revoke", status=409 if action == "disable" else 303)


# ---------------------------------------------------------------------------
# The client form: /admin/clients and /apps
# ---------------------------------------------------------------------------


def test_admin_client_create_edit_and_secret_pages(app, root):
    created = post(
        root,
        "/admin/clients",
        {
            "name": "Billing",
            "client_type": "public",
            "enable_device_flow": "1",
            "scopes": "email  read",
            "token_profile": "short",
            "status": "active",
        },
        status=200,
    )
    client_id = created_id(created)
    assert 'id="client-secret"' not in created.text
    assert f'href="/admin/clients/{client_id}"' in created.text
    (event,) = events(app, "CLIENT_CREATED")
    assert event.action == "Created client Billing" and event.severity == "INFO"
    assert (event.resource_type, event.resource_id, event.resource_name) == (
        "CLIENT",
        client_id,
        "Billing",
    )
    assert event.details == {
        "client_id": client_id,
        "client_type": "public",
        "grant_types": "device_code",
        "scopes": "email read",
        "status": "active",
        "token_profile": "short",
    }

    base = {
        "name": "Billing",
        "client_type": "public",
        "enable_device_flow": "1",
        "scopes": "email read",
        "token_profile": "short",
        "status": "active",
    }
    unchanged = post(root, f"/admin/clients/{client_id}", base)
    assert unchanged.location.endswith(f"/admin/clients/{client_id}")
    assert flashes(unchanged) == [("info", "Nothing changed.")]
    saved = post(root, f"/admin/clients/{client_id}", {**base, "name": "Billing 2"})
    assert flashes(saved) == [("success", "Saved Billing 2.")]
    (updated,) = events(app, "CLIENT_UPDATED")
    assert updated.action == "Updated client Billing 2" and updated.severity == "INFO"
    assert updated.details == {
        "client_id": client_id,
        "changes": {"name": ["Billing", "Billing 2"]},
    }

    invalid = post(root, f"/admin/clients/{client_id}", {**base, "name": ""}, status=400)
    assert "Enter a name." in invalid.text and 'name="token_profile"' in invalid.text

    shown = post(
        root,
        f"/admin/clients/{client_id}",
        {**base, "name": "Billing 2", "client_type": "confidential"},
        status=200,
    )
    assert secret_of(shown).startswith("ags_")
    assert f'href="/admin/clients/{client_id}"' in shown.text
    again = post(root, f"/admin/clients/{client_id}/regenerate-secret", status=200)
    assert secret_of(again) != secret_of(shown)
    first, second = events(app, "CLIENT_SECRET_REGENERATED")
    assert first.action == "Created a secret for Billing 2 (now confidential)"
    assert second.action == "Regenerated the secret of Billing 2"
    assert first.severity == second.severity == "WARNING"
    assert first.details == second.details == {"client_id": client_id}


def test_app_create_edit_and_secret_pages(app, bob):
    created = post(
        bob,
        "/apps",
        {
            "name": "My CLI",
            "client_type": "public",
            "enable_device_flow": "1",
            "scopes": ["openid", "email"],
        },
        status=200,
    )
    client_id = created_id(created)
    assert 'id="client-secret"' not in created.text
    assert f'href="/apps/{client_id}"' in created.text and 'href="/admin' not in created.text
    (event,) = events(app, "CLIENT_CREATED")
    assert event.action == "Registered app My CLI (pending approval)"
    assert event.details == {
        "client_id": client_id,
        "self_service": True,
        "client_type": "public",
        "grant_types": "device_code",
        "scopes": "openid email",
        "status": "pending",
    }

    base = {
        "name": "My CLI",
        "client_type": "public",
        "enable_device_flow": "1",
        "scopes": ["openid", "email"],
    }
    unchanged = post(bob, f"/apps/{client_id}", base)
    assert unchanged.location.endswith(f"/apps/{client_id}")
    assert flashes(unchanged) == [("info", "Nothing changed.")]
    saved = post(bob, f"/apps/{client_id}", {**base, "description": "Mine"})
    assert flashes(saved) == [("success", "Saved.")]
    (updated,) = events(app, "CLIENT_UPDATED")
    assert updated.action == "Updated app My CLI" and updated.severity == "INFO"
    assert updated.details == {
        "client_id": client_id,
        "self_service": True,
        "changes": {"description": ["", "Mine"]},
    }

    invalid = post(bob, f"/apps/{client_id}", {**base, "scopes": "admin"}, status=400)
    assert "Choose at least one scope." in invalid.text
    assert 'name="token_profile"' not in invalid.text

    public = post(bob, f"/apps/{client_id}/regenerate-secret", status=400)
    assert "Public clients have no secret" in public.text
    assert f'href="/apps/{client_id}"' in public.text
    shown = post(bob, f"/apps/{client_id}", {**base, "client_type": "confidential"}, status=200)
    assert secret_of(shown).startswith("ags_") and 'href="/admin' not in shown.text
    post(bob, f"/apps/{client_id}/regenerate-secret", status=200)
    first, second = events(app, "CLIENT_SECRET_REGENERATED")
    assert first.action == "Created a secret for My CLI (now confidential)"
    assert second.action == "Regenerated the secret of My CLI"
    assert first.details == second.details == {"client_id": client_id, "self_service": True}
    with app.db() as db:
        row = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one()
        assert (row.status, row.token_profile) == ("pending", "standard")
