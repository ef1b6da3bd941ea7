"""Account self-service (/account/sessions, /account/authorizations) and /apps."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from sqlalchemy import select
from webtest import TestApp

from authgate.models import AuditLog, OAuthClient, Token, User, UserAuthorization, utcnow
from authgate.services.passwords import hash_password
from authgate.services.secrets import sha256_hex, verify_client_secret
from authgate.testing import form

PASSWORD = "user-password-123"


@pytest.fixture
def app(make_app):
    return make_app()


def make_user(app, username, *, role="user"):
    with app.db() as db:
        user = User(username=username, role=role, password_hash=hash_password(PASSWORD))
        db.add(user)
        db.flush()
        return user.id


def signed_in(app, username, password=PASSWORD) -> TestApp:
    browser = TestApp(app.testapp.app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    page = form(browser.get("/login"), "/login")
    page["username"], page["password"] = username, password
    assert page.submit().status_int == 302
    return browser


def csrf(browser, path="/account/sessions") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', browser.get(path).text).group(1)


def post(browser, path, data=None, status=303):
    return browser.post(path, {**(data or {}), "csrf_token": csrf(browser)}, status=status)


def make_client(app, name="App", *, status="active", owner="", client_type="public"):
    with app.db() as db:
        client = OAuthClient(client_id=str(uuid.uuid4()), name=name, status=status,
                             user_id=owner, client_type=client_type)
        client.refresh_grant_types()
        db.add(client)
        db.flush()
        return client.client_id


def make_token(app, user_id, client_id, *, category="access", status="active",
               authorization_id=None, scopes="email profile", expires_in=3600):
    with app.db() as db:
        token = Token(token_hash=sha256_hex(str(uuid.uuid4())), token_category=category,
                      status=status, user_id=user_id, client_id=client_id, scopes=scopes,
                      expires_at=utcnow() + dt.timedelta(seconds=expires_in),
                      authorization_id=authorization_id)
        db.add(token)
        db.flush()
        return token.id


def status_of(app, token_id):
    with app.db() as db:
        return db.get(Token, token_id).status


def events(app, event_type):
    with app.db() as db:
        rows = db.scalars(select(AuditLog).where(AuditLog.event_type == event_type)).all()
        db.expunge_all()
        return rows


@pytest.fixture
def bob(app):
    user_id = make_user(app, "bob")
    return user_id, signed_in(app, "bob")


# ---------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/account", "/account/sessions", "/account/authorizations",
                                  "/apps", "/apps/new"])
def test_anonymous_goes_to_sign_in(app, path):
    response = app.testapp.get(path, status=302)
    assert "/login?redirect=" in response.location


def test_account_redirects_to_sessions(app, bob):
    assert bob[1].get("/account", status=303).location.endswith("/account/sessions")


def test_sessions_list_only_own_tokens(app, bob):
    user_id, browser = bob
    carol = make_user(app, "carol")
    client = make_client(app, "Laptop CLI")
    mine = make_token(app, user_id, client, scopes="openid email")
    mine_refresh = make_token(app, user_id, client, category="refresh")
    theirs = make_token(app, carol, client)
    gone = make_token(app, user_id, client, status="revoked")
    page = browser.get("/account/sessions")
    assert page.headers["Cache-Control"] == "no-store"
    assert "Laptop CLI" in page.text and "openid" in page.text
    assert f'id="token-{mine}"' in page.text and f'id="token-{mine_refresh}"' in page.text
    assert f'id="token-{theirs}"' not in page.text and f'id="token-{gone}"' not in page.text
    assert f'id="token-{gone}"' in browser.get("/account/sessions?status=revoked").text
    refresh_only = browser.get("/account/sessions?category=refresh").text
    assert f'id="token-{mine}"' not in refresh_only and f'id="token-{mine_refresh}"' in refresh_only
    # Searching for another user's name finds nothing: the search is not a user lookup.
    assert f'id="token-{theirs}"' not in browser.get("/account/sessions?search=carol").text
    assert "Revoke all" in page.text


def test_sessions_pagination(app, bob):
    user_id, browser = bob
    client = make_client(app)
    for _ in range(12):
        make_token(app, user_id, client)
    page = browser.get("/account/sessions")
    assert "Showing 1–10 of 12 tokens" in page.text
    assert "Showing 11–12 of 12 tokens" in browser.get("/account/sessions?page=2").text


def test_revoke_disable_enable_own_token(app, bob):
    user_id, browser = bob
    token = make_token(app, user_id, make_client(app))
    post(browser, f"/account/sessions/{token}/disable")
    assert status_of(app, token) == "disabled"
    post(browser, f"/account/sessions/{token}/disable", status=409)
    post(browser, f"/account/sessions/{token}/enable")
    assert status_of(app, token) == "active"
    response = post(browser, f"/account/sessions/{token}/revoke",
                    {"next": "/account/sessions?status=all"})
    assert response.location.endswith("/account/sessions?status=all")
    assert status_of(app, token) == "revoked"
    post(browser, f"/account/sessions/{token}/enable", status=409)
    assert [e.actor_username for e in events(app, "TOKEN_REVOKED")] == ["bob"]
    assert len(events(app, "TOKEN_DISABLED")) == len(events(app, "TOKEN_ENABLED")) == 1


def test_cannot_touch_someone_elses_token(app, bob):
    _, browser = bob
    carol = make_user(app, "carol")
    theirs = make_token(app, carol, make_client(app))
    for action in ("revoke", "disable", "enable"):
        response = post(browser, f"/account/sessions/{theirs}/{action}", status=403)
        assert "does not belong to you" in response.text
    assert status_of(app, theirs) == "active"
    post(browser, "/account/sessions/unknown/revoke", status=404)


def test_revoke_all(app, bob):
    user_id, browser = bob
    carol = make_user(app, "carol")
    client = make_client(app)
    mine = [make_token(app, user_id, client), make_token(app, user_id, client,
                                                          status="disabled")]
    theirs = make_token(app, carol, client)
    response = post(browser, "/account/sessions/revoke-all")
    assert "2 tokens revoked" in response.follow().text
    assert {status_of(app, t) for t in mine} == {"revoked"}
    assert status_of(app, theirs) == "active"
    (event,) = events(app, "TOKEN_REVOKED")
    assert event.details["tokens_revoked"] == 2 and event.resource_id == user_id
    assert browser.get("/account/sessions").status_int == 200  # the browser session stays


def test_session_posts_need_csrf(app, bob):
    user_id, browser = bob
    token = make_token(app, user_id, make_client(app))
    browser.post(f"/account/sessions/{token}/revoke", status=400)
    browser.post("/account/sessions/revoke-all", status=400)
    assert status_of(app, token) == "active"


# ---------------------------------------------------------------------------
# Authorizations (consents)
# ---------------------------------------------------------------------------


def make_consent(app, user_id, client_id):
    with app.db() as db:
        row = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one()
        consent = UserAuthorization(user_id=user_id, application_id=row.id,
                                    client_id=client_id, scopes="openid profile")
        db.add(consent)
        db.flush()
        return consent.id, consent.uuid


def test_authorizations_list_and_revoke(app, bob):
    user_id, browser = bob
    client = make_client(app, "Photo app")
    consent_id, consent_uuid = make_consent(app, user_id, client)
    linked = make_token(app, user_id, client, authorization_id=consent_id)
    other_client = make_token(app, user_id, make_client(app, "Other"))
    page = browser.get("/account/authorizations")
    assert "Photo app" in page.text and "openid" in page.text
    response = post(browser, f"/account/authorizations/{consent_uuid}/revoke")
    assert "Photo app can no longer access your account." in response.follow().text
    with app.db() as db:
        consent = db.get(UserAuthorization, consent_id)
        assert consent.is_active is False and consent.revoked_at is not None
    assert status_of(app, linked) == "revoked" and status_of(app, other_client) == "active"
    (event,) = events(app, "USER_AUTHORIZATION_REVOKED")
    assert event.actor_username == "bob" and event.details["tokens_revoked"] == 1
    assert "You have not authorized any app." in browser.get("/account/authorizations").text


def test_cannot_revoke_someone_elses_consent(app, bob):
    _, browser = bob
    carol = make_user(app, "carol")
    consent_id, consent_uuid = make_consent(app, carol, make_client(app))
    post(browser, f"/account/authorizations/{consent_uuid}/revoke", status=404)
    with app.db() as db:
        assert db.get(UserAuthorization, consent_id).is_active


# ---------------------------------------------------------------------------
# Self-service apps
# ---------------------------------------------------------------------------


def register(browser, **fields):
    page = form(browser.get("/apps/new"), "/apps")
    for key, value in fields.items():
        page[key] = value
    return page


def test_register_app_is_pending_with_limited_scopes(app, bob):
    user_id, browser = bob
    page = register(browser, name="My CLI", client_type="confidential")
    page.set("scopes", True, index=3)  # offline_access
    created = page.submit(status=200)
    assert created.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="client-secret">([^<]+)<', created.text).group(1)
    client_id = re.search(r'id="created-client-id">([^<]+)<', created.text).group(1)
    assert "waits for an administrator" in created.text
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one()
        assert client.status == "pending" and client.token_profile == "standard"
        assert client.user_id == user_id
        assert client.scopes == "openid profile email offline_access"
        assert verify_client_secret(client.client_secret_hash, secret)
    (event,) = events(app, "CLIENT_CREATED")
    assert event.details["self_service"] is True and event.details["status"] == "pending"
    listing = browser.get("/apps")
    assert "My CLI" in listing.text and "Pending approval" in listing.text


def test_register_app_ignores_status_profile_and_foreign_scopes(app, bob):
    _, browser = bob
    browser.post("/apps", {"csrf_token": csrf(browser), "name": "Sneaky",
                           "client_type": "public", "enable_device_flow": "1",
                           "scopes": ["email", "admin", "write"], "status": "active",
                           "token_profile": "long"}, status=200)
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(OAuthClient.name == "Sneaky")).one()
        assert (client.status, client.token_profile, client.scopes) == (
            "pending", "standard", "email")
    no_scopes = browser.post("/apps", {"csrf_token": csrf(browser), "name": "Empty",
                                       "client_type": "public", "enable_device_flow": "1",
                                       "scopes": "admin"}, status=400)
    assert "Choose at least one scope." in no_scopes.text


def test_app_detail_is_owner_only(app, bob):
    _, browser = bob
    carol = make_user(app, "carol")
    theirs = make_client(app, "Carol's", owner=carol, status="pending")
    for path in (f"/apps/{theirs}", f"/apps/{theirs}/edit"):
        assert "Only the owner" in browser.get(path, status=403).text
    for action in ("delete", "regenerate-secret"):
        post(browser, f"/apps/{theirs}/{action}", status=403)
    post(browser, f"/apps/{theirs}", {"name": "Hijacked"}, status=403)
    browser.get("/apps/does-not-exist", status=404)
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(OAuthClient.client_id == theirs)).one()
        assert client.name == "Carol's"
    assert "Carol" not in browser.get("/apps").text


def test_edit_own_app_cannot_change_status(app, bob):
    user_id, browser = bob
    client = make_client(app, "Mine", owner=user_id, status="pending")
    page = form(browser.get(f"/apps/{client}/edit"), f"/apps/{client}")
    page["name"] = "Mine v2"
    page["redirect_uris"] = "https://mine.example/cb"
    page["enable_auth_code_flow"] = True
    response = page.submit(status=303)
    assert "Saved." in response.follow().text
    browser.post(f"/apps/{client}", {"csrf_token": csrf(browser), "name": "Mine v3",
                                     "client_type": "public", "enable_device_flow": "1",
                                     "scopes": "email", "status": "active"}, status=303)
    with app.db() as db:
        row = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client)).one()
        assert row.name == "Mine v3" and row.status == "pending"
    assert events(app, "CLIENT_UPDATED")


def test_delete_own_app_only_while_not_active(app, bob):
    user_id, browser = bob
    pending = make_client(app, "Draft", owner=user_id, status="pending")
    active = make_client(app, "Live", owner=user_id, status="active")
    refused = post(browser, f"/apps/{active}/delete", status=400)
    assert "can only be deleted by an administrator" in refused.text
    post(browser, f"/apps/{pending}/delete")
    with app.db() as db:
        remaining = set(db.scalars(select(OAuthClient.client_id)))
    assert active in remaining and pending not in remaining


def test_regenerate_own_secret(app, bob):
    user_id, browser = bob
    client = make_client(app, "Server", owner=user_id, client_type="confidential")
    response = post(browser, f"/apps/{client}/regenerate-secret", status=200)
    secret = re.search(r'id="client-secret">([^<]+)<', response.text).group(1)
    assert f'href="/apps/{client}"' in response.text  # "Done" goes back to the app
    with app.db() as db:
        row = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client)).one()
        assert verify_client_secret(row.client_secret_hash, secret)
    public = make_client(app, "Phone", owner=user_id)
    post(browser, f"/apps/{public}/regenerate-secret", status=400)


def test_admin_approves_a_self_service_app(app, bob):
    _, browser = bob
    created = register(browser, name="Needs approval").submit(status=200)
    client_id = re.search(r'id="created-client-id">([^<]+)<', created.text).group(1)
    app.login()
    pending = app.testapp.get("/admin/clients?status=pending")
    assert "Needs approval" in pending.text
    app.testapp.post(f"/admin/clients/{client_id}/approve",
                     {"csrf_token": csrf(app.testapp, "/admin")}, status=303)
    assert "Active" in browser.get(f"/apps/{client_id}").text
