"""The admin console through the WSGI app: every action, guard, audit event and escape."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from sqlalchemy import select
from webtest import TestApp

from authgate.models import (
    AuditLog,
    OAuthClient,
    OAuthConnection,
    Token,
    User,
    UserAuthorization,
    utcnow,
)
from authgate.services import admin as svc
from authgate.services.passwords import hash_password
from authgate.services.secrets import sha256_hex, verify_client_secret
from authgate.services.users import DISABLED_MESSAGE
from authgate.testing import form

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PASSWORD = "user-password-123"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def app(make_app):
    handle = make_app()
    handle.login()
    return handle


def browser(app, username=None, password=PASSWORD) -> TestApp:
    """A second, independent browser (its own cookies), signed in as ``username``."""
    other = TestApp(app.testapp.app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    if username:
        page = form(other.get("/login"), "/login")
        page["username"], page["password"] = username, password
        assert page.submit().status_int == 302
    return other


def token_of(testapp, path="/account/sessions") -> str:
    page = testapp.get(path)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def post(app, path, data=None, status=303, testapp=None, csrf_from="/admin"):
    testapp = testapp or app.testapp
    params = dict(data or {})
    params["csrf_token"] = token_of(testapp, csrf_from)
    return testapp.post(path, params, status=status)


def make_user(app, username, *, role="user", active=True, source="local", email=None):
    with app.db() as db:
        user = User(username=username, email=email, role=role, is_active=active,
                    password_hash=hash_password(PASSWORD), auth_source=source)
        db.add(user)
        db.flush()
        return user.id


def make_client(app, name="Client", *, status="active", owner=None, client_type="public"):
    with app.db() as db:
        client = OAuthClient(client_id=str(uuid.uuid4()), name=name, status=status,
                             user_id=owner or "", client_type=client_type, scopes="email profile")
        client.refresh_grant_types()
        db.add(client)
        db.flush()
        return client.client_id


def make_token(app, user_id, client_id, *, category="access", status="active", parent=None,
               family="", authorization_id=None, expires_in=3600, scopes="email profile"):
    with app.db() as db:
        token = Token(token_hash=sha256_hex(str(uuid.uuid4())), token_category=category,
                      status=status, user_id=user_id, client_id=client_id, scopes=scopes,
                      expires_at=utcnow() + dt.timedelta(seconds=expires_in),
                      parent_token_id=parent, token_family_id=family,
                      authorization_id=authorization_id)
        db.add(token)
        db.flush()
        return token.id


def make_consent(app, user_id, client_id, scopes="email profile"):
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one()
        consent = UserAuthorization(user_id=user_id, application_id=client.id,
                                    client_id=client_id, scopes=scopes)
        db.add(consent)
        db.flush()
        return consent.id, consent.uuid


def token_status(app, token_id):
    with app.db() as db:
        return db.get(Token, token_id).status


def events(app, event_type=None):
    with app.db() as db:
        stmt = select(AuditLog).order_by(AuditLog.event_time)
        if event_type:
            stmt = stmt.where(AuditLog.event_type == event_type)
        rows = db.scalars(stmt).all()
        db.expunge_all()
        return rows


def admin_id(app):
    with app.db() as db:
        return db.scalars(select(User.id).where(User.username == "admin")).one()


# ---------------------------------------------------------------------------
# Access
# ---------------------------------------------------------------------------

ADMIN_PAGES = ["/admin", "/admin/users", "/admin/users/new", "/admin/clients",
               "/admin/clients/new", "/admin/tokens", "/admin/audit", "/admin/audit/export"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_anonymous_is_sent_to_sign_in(app, path):
    response = browser(app).get(path, status=302)
    assert response.location.endswith("/login?redirect=" + path.replace("/", "%2F"))


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_regular_user_gets_a_real_403_page(app, path):
    make_user(app, "bob")
    response = browser(app, "bob").get(path, status=403)
    assert response.content_type == "text/html"
    assert "Error 403" in response.text and "Administrator access is required" in response.text
    assert 'href="/admin"' not in response.text  # no Admin link in the top bar for bob


def test_regular_user_cannot_post_admin_actions(app):
    make_user(app, "bob")
    target = make_user(app, "carol")
    bob = browser(app, "bob")
    post(app, f"/admin/users/{target}/disable", testapp=bob, status=403,
         csrf_from="/account/sessions")
    with app.db() as db:
        assert db.get(User, target).is_active


def test_admin_sees_admin_link_and_pages_are_not_cached(app):
    page = app.testapp.get("/admin")
    assert 'href="/admin"' in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "Dashboard" in page.text


def test_post_without_csrf_token_is_refused(app):
    user_id = make_user(app, "bob")
    response = app.testapp.post(f"/admin/users/{user_id}/disable", status=400)
    assert "Form expired" in response.text
    wrong = app.testapp.post(f"/admin/users/{user_id}/disable", {"csrf_token": "nope"},
                             status=400)
    assert wrong.status_int == 400
    header = app.testapp.post(f"/admin/users/{user_id}/disable",
                              headers={"X-CSRF-Token": "forged"}, status=400)
    assert header.status_int == 400
    with app.db() as db:
        assert db.get(User, user_id).is_active
    assert not events(app, "USER_DISABLED")


def test_disabled_admin_loses_the_console_at_the_next_request(app):
    other_admin = make_user(app, "root2", role="admin")
    second = browser(app, "root2")
    assert second.get("/admin").status_int == 200
    post(app, f"/admin/users/{other_admin}/disable")
    assert second.get("/admin", status=302).location.endswith("/login?redirect=%2Fadmin")


# ---------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------


def test_dashboard_counts(app):
    bob = make_user(app, "bob")
    make_user(app, "root2", role="admin")
    make_user(app, "gone", active=False)
    client = make_client(app, "Pending one", status="pending")
    make_client(app, "Off", status="inactive")
    make_token(app, bob, client)
    make_token(app, bob, client, category="refresh")
    make_token(app, bob, client, status="revoked")
    make_token(app, bob, client, expires_in=-10)
    with app.db() as db:
        stats = svc.dashboard(db)
    assert stats["users_total"] == 4 and stats["users_admins"] == 2
    assert stats["users_regular"] == 2 and stats["users_disabled"] == 1
    assert stats["clients_active"] == 1 and stats["clients_pending"] == 1
    assert stats["clients_inactive"] == 1
    assert stats["access_tokens"] == 1 and stats["refresh_tokens"] == 1
    page = app.testapp.get("/admin")
    assert "1 client waiting for approval" in page.text
    assert 'href="/admin/clients?status=pending"' in page.text
    assert "AUTHENTICATION_SUCCESS" in page.text  # latest audit events


# ---------------------------------------------------------------------------
# Users: list, create, edit
# ---------------------------------------------------------------------------


def test_user_list_search_filters_and_pagination(app):
    for n in range(12):
        make_user(app, f"member{n:02d}", email=f"m{n}@example.com")
    make_user(app, "root2", role="admin")
    make_user(app, "sleeper", active=False)
    make_user(app, "remote", source="http_api")

    page = app.testapp.get("/admin/users?page_size=10")
    assert "Showing 1–10 of 16 users" in page.text and "Page 1 of 2" in page.text
    second = app.testapp.get("/admin/users?page_size=10&page=2")
    assert "Showing 11–16 of 16 users" in second.text
    clamped = app.testapp.get("/admin/users?page_size=10&page=99")
    assert "Page 2 of 2" in clamped.text

    assert "member03" in app.testapp.get("/admin/users?search=m3%40example").text
    found = app.testapp.get("/admin/users?search=member1")
    assert "member10" in found.text and "member02" not in found.text
    admins = app.testapp.get("/admin/users?role=admin")
    assert "root2" in admins.text and "member01" not in admins.text
    disabled = app.testapp.get("/admin/users?status=disabled")
    assert "sleeper" in disabled.text and "root2" not in disabled.text
    remote = app.testapp.get("/admin/users?auth_source=http_api")
    assert "remote" in remote.text and "sleeper" not in remote.text
    assert 'value="http_api"' in remote.text  # offered as a filter


def test_create_user_shows_generated_password_once(app):
    page = form(app.testapp.get("/admin/users/new"), "/admin/users")
    page["username"] = "newbie"
    page["email"] = "newbie@example.com"
    page["full_name"] = "New <b>Bie</b>"
    created = page.submit(status=200)
    assert created.headers["Cache-Control"] == "no-store"
    password = re.search(r'id="one-time-password">([^<]+)<', created.text).group(1)
    assert len(password) == 16
    assert "shown only once" in created.text
    with app.db() as db:
        user = db.scalars(select(User).where(User.username == "newbie")).one()
        assert user.role == "user" and user.auth_source == "local" and user.is_active
        assert password not in user.password_hash
        user_id = user.id
    detail = app.testapp.get(f"/admin/users/{user_id}")
    assert password not in detail.text
    assert "New &lt;b&gt;Bie&lt;/b&gt;" in detail.text
    browser(app, "newbie", password)  # the password works
    (event,) = events(app, "USER_CREATED")
    assert event.resource_id == user_id and event.actor_username == "admin"
    assert event.details["password_generated"] is True and "password" not in event.details


def test_create_user_with_chosen_password_does_not_echo_it(app):
    page = form(app.testapp.get("/admin/users/new"), "/admin/users")
    page["username"] = "chosen"
    page["password"] = "a-chosen-password"
    page["role"] = "admin"
    created = page.submit(status=200)
    assert "a-chosen-password" not in created.text
    assert browser(app, "chosen", "a-chosen-password").get("/admin").status_int == 200


@pytest.mark.parametrize(("field", "value", "message"), [
    ("username", "", "Enter a username."),
    ("username", "admin", "This username is taken."),
    ("username", "<script>", "Use up to 100 letters"),
    ("email", "not-an-email", "Enter a valid email address"),
    ("email", "admin@localhost", "Another user already has this email address."),
    ("password", "short", "Use at least 8 characters"),
])
def test_create_user_validation(app, field, value, message):
    data = {"username": "valid", "email": "", "full_name": "", "role": "user", "password": ""}
    data[field] = value
    response = post(app, "/admin/users", data, status=400)
    assert message in response.text
    assert "Please correct the highlighted fields." in response.text
    with app.db() as db:
        assert db.scalar(select(User).where(User.username == "valid")) is None


def test_edit_user_profile_and_role(app):
    user_id = make_user(app, "bob", email="bob@example.com")
    with app.db() as db:
        db.get(User, user_id).email_verified = True
    page = form(app.testapp.get(f"/admin/users/{user_id}/edit"), f"/admin/users/{user_id}")
    assert page["email"].value == "bob@example.com"
    page["email"] = "robert@example.com"
    page["full_name"] = "Robert"
    page["role"] = "admin"
    response = page.submit(status=303)
    assert response.location.endswith(f"/admin/users/{user_id}")
    assert "Saved bob." in response.follow().text
    with app.db() as db:
        user = db.get(User, user_id)
        assert (user.email, user.full_name, user.role) == ("robert@example.com", "Robert",
                                                           "admin")
        assert user.email_verified is False
    (role_event,) = events(app, "USER_ROLE_CHANGED")
    assert role_event.severity == "WARNING" and role_event.details["new_role"] == "admin"
    (updated,) = events(app, "USER_UPDATED")
    assert updated.details["changes"]["email"] == ["bob@example.com", "robert@example.com"]


def test_edit_refuses_duplicate_email(app):
    user_id = make_user(app, "bob")
    response = post(app, f"/admin/users/{user_id}",
                    {"email": "ADMIN@localhost", "full_name": "", "role": "user"}, status=400)
    assert "Another user already has this email address." in response.text


def test_cannot_change_own_role(app):
    me = admin_id(app)
    page = app.testapp.get(f"/admin/users/{me}/edit")
    assert "You cannot change your own role." in page.text
    assert re.search(r'<select id="role" name="role" disabled', page.text)
    # The locked field is not submitted: saving the rest keeps the role.
    post(app, f"/admin/users/{me}", {"email": "admin@localhost", "full_name": "Boss"})
    response = post(app, f"/admin/users/{me}",
                    {"email": "admin@localhost", "full_name": "Boss", "role": "user"},
                    status=400)
    assert "You cannot change your own role." in response.text
    with app.db() as db:
        me_row = db.get(User, me)
        assert me_row.role == "admin" and me_row.full_name == "Boss"


def test_last_active_admin_guards_in_the_service(app):
    """Only reachable through a race (the acting admin is always another active admin),
    so exercised on the service directly."""
    me = admin_id(app)
    bob = make_user(app, "bob")
    with app.db() as db:
        actor, admin = db.get(User, bob), db.get(User, me)
        assert svc.is_last_active_admin(db, admin)
        with pytest.raises(svc.Conflict, match="last active administrator"):
            svc.disable_user(db, actor, admin)
        with pytest.raises(svc.Conflict, match="last active administrator"):
            svc.delete_user(db, actor, admin)
        with pytest.raises(svc.ValidationError) as info:
            svc.update_user(db, actor, admin, email="", full_name="", role="user")
        assert "last active administrator" in info.value.errors["role"]


def test_a_second_admin_can_be_demoted_and_disabled(app):
    other = make_user(app, "root2", role="admin")
    post(app, f"/admin/users/{other}", {"email": "", "full_name": "", "role": "user"})
    with app.db() as db:
        assert db.get(User, other).role == "user"


# ---------------------------------------------------------------------------
# Users: reset password, disable, enable, delete
# ---------------------------------------------------------------------------


def test_reset_password_revokes_tokens_and_shows_new_password_once(app):
    user_id = make_user(app, "bob")
    client = app.default_client_id
    token = make_token(app, user_id, client)
    response = post(app, f"/admin/users/{user_id}/reset-password", status=200)
    assert response.headers["Cache-Control"] == "no-store"
    password = re.search(r'id="one-time-password">([^<]+)<', response.text).group(1)
    assert "1 token of this user was revoked" in response.text
    assert token_status(app, token) == "revoked"
    page = form(browser(app).get("/login"), "/login")
    page["username"], page["password"] = "bob", PASSWORD
    assert page.submit(status=401)
    browser(app, "bob", password)
    (event,) = events(app, "USER_PASSWORD_RESET")
    assert event.severity == "WARNING" and event.details["tokens_revoked"] == 1
    assert password not in str(event.details)


def test_reset_password_only_for_local_users(app):
    user_id = make_user(app, "remote", source="http_api")
    response = post(app, f"/admin/users/{user_id}/reset-password", status=400)
    assert "signs in through http_api" in response.text
    (event,) = events(app, "USER_PASSWORD_RESET")
    assert event.success is False


def test_disable_user_ends_session_revokes_tokens_and_blocks_login(app):
    user_id = make_user(app, "bob")
    bob = browser(app, "bob")
    assert bob.get("/account/sessions").status_int == 200
    client = app.default_client_id
    access = make_token(app, user_id, client)
    refresh = make_token(app, user_id, client, category="refresh", status="disabled")
    other = make_token(app, admin_id(app), client)

    response = post(app, f"/admin/users/{user_id}/disable")
    assert "Disabled bob: signed out everywhere, 2 tokens revoked." in response.follow().text

    with app.db() as db:
        assert db.get(User, user_id).is_active is False
        rows = db.scalars(select(Token).where(Token.user_id == user_id)).all()
        assert len(rows) == 2 and {t.status for t in rows} == {"revoked"}  # kept, revoked
    assert token_status(app, access) == token_status(app, refresh) == "revoked"
    assert token_status(app, other) == "active"

    # Bob's very next request: back to the sign-in page; signing in says why.
    assert bob.get("/account/sessions", status=302).location.endswith(
        "/login?redirect=%2Faccount%2Fsessions")
    page = form(bob.get("/login"), "/login")
    page["username"], page["password"] = "bob", PASSWORD
    refused = page.submit(status=401)
    assert DISABLED_MESSAGE in refused.text

    (event,) = events(app, "USER_DISABLED")
    assert event.severity == "WARNING" and event.resource_id == user_id
    assert event.details["tokens_revoked"] == 2
    # The troubleshooting guide's query finds it.
    found = app.testapp.get(f"/admin/audit/api?user_id={user_id}&event_type=USER_DISABLED")
    assert [log["id"] for log in found.json["logs"]] == [event.id]


def test_enable_with_x_csrf_token_header_as_in_the_guide(app):
    user_id = make_user(app, "bob", active=False)
    token = make_token(app, user_id, app.default_client_id, status="revoked")
    csrf = token_of(app.testapp, "/admin")
    response = app.testapp.post(f"/admin/users/{user_id}/enable",
                                headers={"X-CSRF-Token": csrf}, status=303)
    assert response.location.endswith(f"/admin/users/{user_id}")
    with app.db() as db:
        assert db.get(User, user_id).is_active
    assert token_status(app, token) == "revoked"  # re-enabling restores no token
    browser(app, "bob")
    assert len(events(app, "USER_ENABLED")) == 1


def test_disable_and_enable_guards(app):
    me = admin_id(app)
    response = post(app, f"/admin/users/{me}/disable", status=400)
    assert "You cannot disable your own account." in response.text
    assert f'href="/admin/users/{me}"' in response.text  # a way back
    post(app, f"/admin/users/{me}/enable", status=400)
    user_id = make_user(app, "bob")
    post(app, f"/admin/users/{user_id}/enable", status=409)
    post(app, f"/admin/users/{user_id}/disable")
    again = post(app, f"/admin/users/{user_id}/disable", status=409)
    assert "bob is already disabled." in again.text
    refused = [e for e in events(app, "USER_DISABLED") if not e.success]
    assert len(refused) == 2 and refused[0].error_message


def test_unknown_user_is_404(app):
    assert app.testapp.get("/admin/users/nope", status=404)
    post(app, "/admin/users/nope/disable", status=404)


def test_delete_user(app):
    user_id = make_user(app, "bob")
    client = app.default_client_id
    token = make_token(app, user_id, client)
    make_consent(app, user_id, client)
    with app.db() as db:
        db.add(OAuthConnection(user_id=user_id, provider="github", provider_user_id="42"))
    response = post(app, f"/admin/users/{user_id}/delete")
    assert response.location.endswith("/admin/users")
    assert "Deleted bob." in response.follow().text
    with app.db() as db:
        assert db.get(User, user_id) is None
        assert not db.scalars(select(OAuthConnection)).all()
        assert not db.scalars(select(UserAuthorization)).all()
    assert token_status(app, token) == "revoked"
    (event,) = events(app, "USER_DELETED")
    assert event.details == {"tokens_revoked": 1, "connections_deleted": 1,
                             "authorizations_removed": 1}
    me = admin_id(app)
    assert "You cannot delete your own account." in post(
        app, f"/admin/users/{me}/delete", status=400).text


def test_user_detail_links_and_danger_zone(app):
    user_id = make_user(app, "bob")
    make_token(app, user_id, app.default_client_id)
    page = app.testapp.get(f"/admin/users/{user_id}")
    assert f'href="/admin/tokens?user_id={user_id}"' in page.text
    assert f'action="/admin/users/{user_id}/disable"' in page.text
    assert f'action="/admin/users/{user_id}/reset-password"' in page.text
    mine = app.testapp.get(f"/admin/users/{admin_id(app)}")
    assert "/disable" not in mine.text and "/delete" not in mine.text


# ---------------------------------------------------------------------------
# Users: connections and authorizations
# ---------------------------------------------------------------------------


def test_connections_unlink(app):
    user_id = make_user(app, "bob")
    other = make_user(app, "carol")
    with app.db() as db:
        mine = OAuthConnection(user_id=user_id, provider="github", provider_user_id="1",
                               provider_username=XSS)
        theirs = OAuthConnection(user_id=other, provider="github", provider_user_id="2")
        db.add_all([mine, theirs])
        db.flush()
        mine_id, theirs_id = mine.id, theirs.id
    page = app.testapp.get(f"/admin/users/{user_id}/connections")
    assert "github" in page.text and XSS_ESCAPED in page.text and XSS not in page.text
    post(app, f"/admin/users/{user_id}/connections/{theirs_id}/delete", status=404)
    post(app, f"/admin/users/{user_id}/connections/{mine_id}/delete")
    with app.db() as db:
        assert db.get(OAuthConnection, mine_id) is None
        assert db.get(OAuthConnection, theirs_id) is not None
    (event,) = events(app, "OAUTH_CONNECTION_DELETED")
    assert event.severity == "WARNING" and event.details["provider"] == "github"


def test_user_authorizations_revoke(app):
    user_id = make_user(app, "bob")
    client = make_client(app, "Consented app")
    consent_id, consent_uuid = make_consent(app, user_id, client)
    linked = make_token(app, user_id, client, authorization_id=consent_id)
    device = make_token(app, user_id, client)  # same user and client, no consent link
    unrelated = make_token(app, user_id, app.default_client_id)
    page = app.testapp.get(f"/admin/users/{user_id}/authorizations")
    assert "Consented app" in page.text
    post(app, f"/admin/users/{user_id}/authorizations/{consent_uuid}/revoke")
    with app.db() as db:
        consent = db.get(UserAuthorization, consent_id)
        assert consent.is_active is False and consent.revoked_at is not None
    assert token_status(app, linked) == token_status(app, device) == "revoked"
    assert token_status(app, unrelated) == "active"
    (event,) = events(app, "USER_AUTHORIZATION_REVOKED")
    assert event.details["tokens_revoked"] == 2
    assert "No authorized apps." in app.testapp.get(
        f"/admin/users/{user_id}/authorizations").text
    post(app, f"/admin/users/{user_id}/authorizations/{consent_uuid}/revoke", status=404)


# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------


def client_form(app, **fields):
    data = {"name": "Service", "description": "", "client_type": "confidential",
            "redirect_uris": "", "scopes": "email profile", "token_profile": "standard",
            "status": "active", "project": "", "service_account": ""}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def test_create_confidential_client_shows_secret_once(app):
    page = form(app.testapp.get("/admin/clients/new"), "/admin/clients")
    page["name"] = "Billing service"
    page["client_type"] = "confidential"
    page["enable_device_flow"] = False
    page["enable_client_credentials_flow"] = True
    page["scopes"] = "read write"
    page["token_profile"] = "short"
    created = page.submit(status=200)
    assert created.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="client-secret">([^<]+)<', created.text).group(1)
    client_id = re.search(r'id="created-client-id">([^<]+)<', created.text).group(1)
    assert secret.startswith("ags_")
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one()
        assert secret not in client.client_secret_hash
        assert verify_client_secret(client.client_secret_hash, secret)
        assert client.grant_types == "client_credentials" and client.status == "active"
        assert (client.scopes, client.token_profile) == ("read write", "short")
        assert client.user_id == admin_id(app)
    detail = app.testapp.get(f"/admin/clients/{client_id}")
    assert secret not in detail.text and "set, stored hashed" in detail.text
    (event,) = events(app, "CLIENT_CREATED")
    assert event.resource_id == client_id and "secret" not in str(event.details).lower()


def test_create_public_client_has_no_secret(app):
    created = post(app, "/admin/clients",
                   client_form(app, client_type="public", enable_device_flow="1"), status=200)
    assert 'id="client-secret"' not in created.text and "public client" in created.text
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(OAuthClient.name == "Service")).one()
        assert client.client_secret_hash == ""


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": ""}, "Enter a name."),
    ({}, "Enable at least one flow."),
    ({"client_type": "public", "enable_client_credentials_flow": "1"},
     "Client credentials needs a confidential client"),
    ({"enable_auth_code_flow": "1"}, "needs at least one redirect URI"),
    ({"enable_device_flow": "1", "redirect_uris": "/relative"}, "must be an absolute"),
    ({"enable_device_flow": "1", "redirect_uris": "javascript:alert(1)"}, "must be an absolute"),
    ({"enable_device_flow": "1", "redirect_uris": "https://app.example/cb#frag"},
     "must not contain a #fragment"),
    ({"enable_device_flow": "1", "scopes": 'bad"scope'}, "Scopes are words"),
    ({"enable_device_flow": "1", "token_profile": "forever"}, "Choose short, standard or long."),
    ({"enable_device_flow": "1", "status": "weird"}, "Choose active, pending or inactive."),
    ({"enable_device_flow": "1", "service_account": "-bad"}, "Use letters, digits"),
])
def test_client_validation(app, fields, message):
    response = post(app, "/admin/clients", client_form(app, **fields), status=400)
    assert message in response.text
    with app.db() as db:
        assert db.scalar(select(OAuthClient).where(OAuthClient.name == "Service")) is None


def test_redirect_uris_accept_lines_and_commas(app):
    post(app, "/admin/clients", client_form(
        app, client_type="public", enable_auth_code_flow="1",
        redirect_uris="https://a.example/cb\nhttp://localhost:8888/callback, https://a.example/cb"),
        status=200)
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(OAuthClient.name == "Service")).one()
        assert client.redirect_uris == ["https://a.example/cb", "http://localhost:8888/callback"]
        assert client.grant_types == "authorization_code"


def test_edit_client_and_profile_change_is_a_warning(app):
    client_id = app.default_client_id
    page = form(app.testapp.get(f"/admin/clients/{client_id}/edit"),
                f"/admin/clients/{client_id}")
    assert page["name"].value == "AuthGate CLI"
    assert page["redirect_uris"].value == "http://localhost:8888/callback"
    page["description"] = "Updated"
    page["token_profile"] = "long"
    page["status"] = "inactive"
    response = page.submit(status=303)
    assert "Saved AuthGate CLI." in response.follow().text
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one()
        assert (client.description, client.token_profile, client.status) == (
            "Updated", "long", "inactive")
        assert client.client_type == "public" and client.enable_auth_code_flow
    (event,) = events(app, "CLIENT_UPDATED")
    assert event.severity == "WARNING" and event.details["previous_token_profile"] == "standard"
    assert event.details["changes"]["status"] == ["active", "inactive"]


def test_public_to_confidential_creates_a_secret_and_back_clears_it(app):
    client_id = app.default_client_id
    page = form(app.testapp.get(f"/admin/clients/{client_id}/edit"),
                f"/admin/clients/{client_id}")
    page["client_type"] = "confidential"
    shown = page.submit(status=200)
    secret = re.search(r'id="client-secret">([^<]+)<', shown.text).group(1)
    with app.db() as db:
        stored = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one()
        assert verify_client_secret(stored.client_secret_hash, secret)
    page = form(app.testapp.get(f"/admin/clients/{client_id}/edit"),
                f"/admin/clients/{client_id}")
    page["client_type"] = "public"
    page.submit(status=303)
    with app.db() as db:
        stored = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one()
        assert stored.client_secret_hash == ""


def test_regenerate_secret(app):
    created = post(app, "/admin/clients", client_form(app, enable_device_flow="1"), status=200)
    old = re.search(r'id="client-secret">([^<]+)<', created.text).group(1)
    client_id = re.search(r'id="created-client-id">([^<]+)<', created.text).group(1)
    again = post(app, f"/admin/clients/{client_id}/regenerate-secret", status=200)
    new = re.search(r'id="client-secret">([^<]+)<', again.text).group(1)
    assert new != old and again.headers["Cache-Control"] == "no-store"
    with app.db() as db:
        stored = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one()
        assert verify_client_secret(stored.client_secret_hash, new)
        assert not verify_client_secret(stored.client_secret_hash, old)
    assert events(app, "CLIENT_SECRET_REGENERATED")[0].severity == "WARNING"
    public = post(app, f"/admin/clients/{app.default_client_id}/regenerate-secret", status=400)
    assert "Public clients have no secret" in public.text


def test_approve_and_reject_pending_clients(app):
    first = make_client(app, "First", status="pending")
    second = make_client(app, "Second", status="pending")
    listing = app.testapp.get("/admin/clients?status=pending")
    assert "First" in listing.text and "Second" in listing.text
    assert "AuthGate CLI" not in listing.text
    response = post(app, f"/admin/clients/{first}/approve", {"back": "list"})
    assert response.location.endswith("/admin/clients?status=pending")
    post(app, f"/admin/clients/{second}/reject")
    with app.db() as db:
        statuses = dict(db.execute(select(OAuthClient.client_id, OAuthClient.status)).all())
    assert statuses[first] == "active" and statuses[second] == "inactive"
    assert len(events(app, "CLIENT_APPROVED")) == len(events(app, "CLIENT_REJECTED")) == 1
    refused = post(app, f"/admin/clients/{first}/approve", status=409)
    assert "is not pending approval" in refused.text


def test_revoke_all_tokens_and_consents_of_a_client(app):
    client = make_client(app, "Leaky")
    bob = make_user(app, "bob")
    tokens = [make_token(app, bob, client), make_token(app, bob, client, status="disabled")]
    keep = make_token(app, bob, app.default_client_id)
    consent_id, _ = make_consent(app, bob, client)
    detail = app.testapp.get(f"/admin/clients/{client}")
    assert 'id="client-active-tokens">1<' in detail.text and "bob" in detail.text
    response = post(app, f"/admin/clients/{client}/revoke-all")
    assert "Revoked 2 tokens and 1 authorization of Leaky." in response.follow().text
    assert {token_status(app, t) for t in tokens} == {"revoked"}
    assert token_status(app, keep) == "active"
    with app.db() as db:
        assert db.get(UserAuthorization, consent_id).is_active is False
    (event,) = events(app, "CLIENT_TOKENS_REVOKED_ALL")
    assert event.severity == "CRITICAL"
    assert event.details["tokens_revoked"] == 2 and event.details["authorizations_revoked"] == 1


def test_client_authorizations_page(app):
    client = make_client(app, "Popular")
    bob, carol = make_user(app, "bob"), make_user(app, "carol")
    make_consent(app, bob, client)
    make_consent(app, carol, client, scopes="openid")
    page = app.testapp.get(f"/admin/clients/{client}/authorizations")
    assert "bob" in page.text and "carol" in page.text and "openid" in page.text


def test_delete_client(app):
    client = make_client(app, "Doomed")
    response = post(app, f"/admin/clients/{client}/delete")
    assert "Deleted Doomed." in response.follow().text
    with app.db() as db:
        assert db.scalar(select(OAuthClient).where(OAuthClient.client_id == client)) is None
    assert events(app, "CLIENT_DELETED")[0].severity == "WARNING"
    app.testapp.get(f"/admin/clients/{client}", status=404)


def test_client_list_search(app):
    make_client(app, "Payments API")
    make_client(app, "Reporting")
    found = app.testapp.get("/admin/clients?search=payments")
    assert "Payments API" in found.text and "Reporting" not in found.text
    by_id = app.testapp.get(f"/admin/clients?search={app.default_client_id}")
    assert "AuthGate CLI" in by_id.text and "Payments API" not in by_id.text


def test_script_client_name_is_text_on_every_page(app):
    client = make_client(app, XSS, status="pending", owner=admin_id(app))
    bob = make_user(app, "bob")
    make_token(app, bob, client)
    make_token(app, admin_id(app), client)
    make_consent(app, bob, client)
    make_consent(app, admin_id(app), client)
    post(app, f"/admin/clients/{client}/approve")
    pages = ["/admin", "/admin/clients", f"/admin/clients/{client}",
             f"/admin/clients/{client}/edit", f"/admin/clients/{client}/authorizations",
             "/admin/tokens", f"/admin/tokens?client_id={client}", "/admin/audit",
             f"/admin/users/{bob}/authorizations", "/account/sessions",
             "/account/authorizations", "/apps", f"/apps/{client}", f"/apps/{client}/edit"]
    for path in pages:
        text = app.testapp.get(path).text
        assert XSS not in text, path
        assert XSS_ESCAPED in text, path
    csv_text = app.testapp.get("/admin/audit/export").text
    assert XSS in csv_text  # CSV is data, not HTML: kept verbatim


# ---------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------


def test_token_list_filters(app):
    bob = make_user(app, "bob", email="bob@example.com")
    client = make_client(app, "Scanner")
    access = make_token(app, bob, client, scopes="read")
    refresh = make_token(app, bob, client, category="refresh")
    revoked = make_token(app, admin_id(app), app.default_client_id, status="revoked")
    expired = make_token(app, bob, app.default_client_id, expires_in=-5)

    def ids(query):
        text = app.testapp.get("/admin/tokens" + query).text
        return {t for t in (access, refresh, revoked, expired) if f'id="token-{t}"' in text}

    assert ids("") == {access, refresh}  # default: live (active and disabled, unexpired)
    assert ids("?status=all") == {access, refresh, revoked, expired}
    assert ids("?status=revoked") == {revoked}
    assert ids("?status=expired") == {expired}
    assert ids("?status=active") == {access, refresh}
    assert ids("?status=disabled") == set()
    assert ids("?category=refresh") == {refresh}
    assert ids("?search=bob%40example") == {access, refresh}
    assert ids("?search=Scanner") == {access, refresh}
    assert ids("?search=read") == {access}
    assert ids(f"?user_id={admin_id(app)}&status=all") == {revoked}
    page = app.testapp.get(f"/admin/tokens?user_id={bob}")
    assert "Tokens of" in page.text and ">bob<" in page.text


def test_token_revoke_disable_enable(app):
    bob = make_user(app, "bob")
    client = app.default_client_id
    refresh = make_token(app, bob, client, category="refresh")
    with app.db() as db:
        db.get(Token, refresh).token_family_id = refresh
    child = make_token(app, bob, client, parent=refresh, family=refresh)
    single = make_token(app, bob, client)

    here = "/admin/tokens?status=all"
    response = post(app, f"/admin/tokens/{single}/disable", {"next": here})
    assert response.location.endswith(here)
    assert token_status(app, single) == "disabled"
    post(app, f"/admin/tokens/{single}/disable", status=409)
    post(app, f"/admin/tokens/{single}/enable")
    assert token_status(app, single) == "active"
    post(app, f"/admin/tokens/{single}/enable", status=409)

    response = post(app, f"/admin/tokens/{refresh}/revoke", {"next": "https://evil.example/"})
    assert response.location.endswith("/admin/tokens")  # no open redirect
    assert "and 1 token issued from it" in response.follow().text
    assert token_status(app, refresh) == token_status(app, child) == "revoked"
    assert token_status(app, single) == "active"
    post(app, f"/admin/tokens/{refresh}/revoke", status=409)
    post(app, f"/admin/tokens/{refresh}/enable", status=409)
    with app.db() as db:
        assert db.get(Token, refresh) is not None  # revoked, not deleted
    kinds = [e.event_type for e in events(app) if e.resource_type == "TOKEN"]
    assert kinds == ["TOKEN_DISABLED", "TOKEN_ENABLED", "TOKEN_REVOKED"]
    (revoke_event,) = events(app, "TOKEN_REVOKED")
    assert revoke_event.resource_id == refresh and revoke_event.details["tokens_revoked"] == 2
    assert revoke_event.details["token_category"] == "refresh"


def test_unknown_token_is_404(app):
    post(app, "/admin/tokens/nope/revoke", status=404)


def test_csrf_token_endpoint_for_scripts(app):
    """The guide's curl flow: read the token with the session cookie, then POST with it."""
    user_id = make_user(app, "bob", active=False)
    body = app.testapp.get("/admin/csrf-token").json
    assert body["header"] == "X-CSRF-Token"
    app.testapp.post(f"/admin/users/{user_id}/enable", headers={"X-CSRF-Token": body["csrf_token"]},
                     status=303)
    with app.db() as db:
        assert db.get(User, user_id).is_active
    assert browser(app).get("/admin/csrf-token", status=401).json["error"] == "unauthorized"
    make_user(app, "carol")
    assert browser(app, "carol").get("/admin/csrf-token", status=403)
