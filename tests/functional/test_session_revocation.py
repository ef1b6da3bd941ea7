"""Ending browser sessions that live in signed cookies (no server-side session store).

Every user has a ``session_generation``; a session carries the value it was signed
in with and is refused once the value has moved on.  Logout, an administrator's
password reset or disable, and "Revoke all" on /account/sessions move it on.
Migration 0003 adds the column (both stores: run with --authgate-store=postgres too).
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from sqlalchemy import select
from test_authorize import authorize_url, make_client, pkce_pair
from webtest import TestApp

from authgate.models import Token, User, utcnow
from authgate.services.passwords import hash_password
from authgate.testing import ADMIN_PASSWORD, form

PASSWORD = "user-password-123"
LOGIN = "http://localhost/login"


def new_browser(app) -> TestApp:
    """An independent browser (its own cookie jar)."""
    return TestApp(app.testapp.app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})


def sign_in(browser: TestApp, username: str, password: str = PASSWORD) -> TestApp:
    page = form(browser.get("/login"), "/login")
    page["username"], page["password"] = username, password
    assert page.submit().status_int == 302
    return browser


def signed_in(app, username: str, password: str = PASSWORD) -> TestApp:
    return sign_in(new_browser(app), username, password)


def with_cookie(app, cookie: str) -> TestApp:
    """A fresh browser holding a copy of a session cookie."""
    browser = new_browser(app)
    browser.set_cookie("session", cookie)
    return browser


def csrf(browser: TestApp, path: str = "/device") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', browser.get(path).text).group(1)


def log_out(browser: TestApp) -> None:
    browser.post("/logout", {"csrf_token": csrf(browser)}, status=302)


def is_signed_in(browser: TestApp) -> bool:
    response = browser.get("/account/sessions", status=(200, 302))
    if response.status_int == 302:
        assert response.location.startswith(LOGIN), response.location
    return response.status_int == 200


def make_user(app, username: str, *, role: str = "user") -> str:
    with app.db() as db:
        user = User(username=username, role=role, password_hash=hash_password(PASSWORD))
        db.add(user)
        db.flush()
        return user.id


def generation(app, username: str) -> int:
    with app.db() as db:
        return db.scalars(select(User.session_generation)
                          .where(User.username == username)).one()


def admin_post(app, path: str, status: int = 303):
    """POST from the administrator's browser (``app.testapp``, signed in)."""
    return app.testapp.post(path, {"csrf_token": csrf(app.testapp, "/admin")}, status=status)


# ---------------------------------------------------------------------------
# Logout
# ---------------------------------------------------------------------------


def test_copied_cookie_is_anonymous_after_logout(app):
    make_user(app, "bob")
    bob = signed_in(app, "bob")
    copy = bob.cookies["session"]
    assert is_signed_in(with_cookie(app, copy))  # a copy works while bob is signed in

    log_out(bob)

    assert not is_signed_in(bob)
    thief = with_cookie(app, copy)
    assert thief.get("/device", status=302).location == f"{LOGIN}?redirect=%2Fdevice"
    # Anonymous also for the login page itself: it offers the form, no redirect.
    assert "/login" in form(with_cookie(app, copy).get("/login", status=200), "/login").action
    # The refused copy is cleared (a new, anonymous cookie replaces it).
    assert thief.cookies.get("session") != copy


def test_copied_cookie_cannot_act_after_logout(app):
    """The copy still holds its CSRF token, but the action needs a signed-in user."""
    bob_id = make_user(app, "bob")
    with app.db() as db:
        db.add(Token(token_hash="0" * 64, token_category="access", status="active",
                     user_id=bob_id, client_id=app.default_client_id, scopes="email",
                     expires_at=utcnow() + dt.timedelta(hours=1), token_family_id=""))
    bob = signed_in(app, "bob")
    copy, token = bob.cookies["session"], csrf(bob, "/account/sessions")
    log_out(bob)

    response = with_cookie(app, copy).post("/account/sessions/revoke-all",
                                           {"csrf_token": token}, status=303)
    assert response.location.startswith(f"{LOGIN}?redirect=")
    with app.db() as db:
        assert db.scalars(select(Token.status).where(Token.user_id == bob_id)).one() == \
            "active"


def test_logout_signs_the_user_out_of_every_browser(app):
    make_user(app, "bob")
    make_user(app, "carol")
    laptop, phone = signed_in(app, "bob"), signed_in(app, "bob")
    carol = signed_in(app, "carol")
    assert is_signed_in(laptop) and is_signed_in(phone)

    log_out(laptop)

    assert not is_signed_in(phone)  # bob's other browser too
    assert is_signed_in(carol)  # nobody else


def test_signing_in_again_after_logout_works_and_old_copies_stay_dead(app):
    make_user(app, "bob")
    bob = signed_in(app, "bob")
    old = bob.cookies["session"]
    before = generation(app, "bob")
    log_out(bob)
    assert generation(app, "bob") == before + 1

    sign_in(bob, "bob")
    new = bob.cookies["session"]
    assert is_signed_in(bob)
    assert is_signed_in(with_cookie(app, new))  # the new session's copies work
    assert not is_signed_in(with_cookie(app, old))  # the old one's do not
    log_out(bob)
    assert not is_signed_in(with_cookie(app, new))


def test_anonymous_logout_changes_nothing(app):
    make_user(app, "bob")
    bob = signed_in(app, "bob")
    before = generation(app, "bob")
    stranger = new_browser(app)
    stranger.post("/logout", {"csrf_token": csrf(stranger, "/login")}, status=302)
    assert generation(app, "bob") == before
    assert is_signed_in(bob)


def test_fresh_login_for_prompt_login_keeps_other_browsers_signed_in(app):
    """``prompt=login`` drops this browser's session only: a client asking for a
    fresh sign-in must not sign the user out everywhere."""
    client_id, _ = make_client(app)
    make_user(app, "bob")
    laptop, phone = signed_in(app, "bob"), signed_in(app, "bob")
    response = laptop.get(authorize_url(client_id, prompt="login", code_challenge=pkce_pair()[1],
                                        code_challenge_method="S256"), status=302)
    assert response.location.startswith(f"{LOGIN}?redirect=")
    assert not is_signed_in(laptop)
    assert is_signed_in(phone)


# ---------------------------------------------------------------------------
# Administrator actions and "Revoke all"
# ---------------------------------------------------------------------------


def test_admin_disable_ends_sessions_for_good(app):
    """Disabling ends bob's sessions; enabling him again does not bring them back."""
    bob_id = make_user(app, "bob")
    bob = signed_in(app, "bob")
    copy = bob.cookies["session"]
    app.login()

    admin_post(app, f"/admin/users/{bob_id}/disable")
    assert not is_signed_in(with_cookie(app, copy))
    admin_post(app, f"/admin/users/{bob_id}/enable")

    assert not is_signed_in(bob)
    assert not is_signed_in(with_cookie(app, copy))
    assert is_signed_in(sign_in(bob, "bob"))  # a new sign-in works


def test_admin_password_reset_ends_sessions(app):
    bob_id = make_user(app, "bob")
    laptop, phone = signed_in(app, "bob"), signed_in(app, "bob")
    app.login()

    response = admin_post(app, f"/admin/users/{bob_id}/reset-password", status=200)
    password = re.search(r'id="one-time-password">([^<]+)<', response.text).group(1)

    assert not is_signed_in(laptop) and not is_signed_in(phone)
    assert is_signed_in(sign_in(laptop, "bob", password))
    assert is_signed_in(app.testapp)  # the administrator's own session is untouched


def test_revoke_all_ends_other_browsers_and_keeps_this_one(app):
    make_user(app, "bob")
    laptop, phone = signed_in(app, "bob"), signed_in(app, "bob")
    copy_of_laptop = laptop.cookies["session"]

    response = laptop.post("/account/sessions/revoke-all",
                           {"csrf_token": csrf(laptop, "/account/sessions")}, status=303)

    assert "Signed out of your other browsers" in response.follow(status=200).text
    assert is_signed_in(laptop)
    assert not is_signed_in(phone)
    assert not is_signed_in(with_cookie(app, copy_of_laptop))  # taken before: ended too
    assert is_signed_in(with_cookie(app, laptop.cookies["session"]))


# ---------------------------------------------------------------------------
# Migration 0003
# ---------------------------------------------------------------------------


def _user_columns(engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns("users")}


def test_migration_0003_up_and_down_keeps_users(make_app):
    from alembic import command

    from authgate.db import alembic_config, current_revision, head_revision, migrate

    app = make_app()
    engine = app.runtime.engine
    assert current_revision(engine) == head_revision(engine)
    assert _user_columns(engine) == {c.name for c in User.__table__.columns}

    with engine.begin() as connection:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0002")
    assert current_revision(engine) == "0002"
    assert "session_generation" not in _user_columns(engine)

    migrate(engine, "0003")
    assert current_revision(engine) == "0003"
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT username, session_generation FROM users")).all()
    assert [tuple(r) for r in rows] == [("admin", 0)]  # existing users start at 0
    assert _user_columns(engine) == {c.name for c in User.__table__.columns}
    assert is_signed_in(signed_in(app, "admin", ADMIN_PASSWORD))
