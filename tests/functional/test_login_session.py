"""Browser sessions: cookie flags, rotation on login, disabled users, logout."""

from __future__ import annotations

from sqlalchemy import select, update

from authgate.models import AuditLog, User
from authgate.services.passwords import hash_password, needs_rehash, verify_password
from authgate.testing import form


def session_cookie(response) -> str:
    cookies = [c for c in response.headers.getall("Set-Cookie") if c.startswith("session=")]
    assert cookies, "no session cookie set"
    return cookies[-1]


def test_cookie_flags_over_http(app):
    cookie = session_cookie(app.testapp.get("/login"))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "secure" not in cookie.lower()


def test_cookie_is_secure_when_base_url_is_https(make_app):
    app = make_app(environ={"BASE_URL": "https://auth.example.com"})
    response = app.testapp.get("/login", extra_environ={"wsgi.url_scheme": "https"})
    assert "; secure" in session_cookie(response).lower()
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_session_is_replaced_on_login(app):
    before = session_cookie(app.testapp.get("/login")).split(";")[0]
    after = session_cookie(app.login()).split(";")[0]
    assert before != after


def test_disabled_user_is_signed_out_at_next_request(app):
    with app.db() as db:
        db.add(User(username="carol", email="carol@example.com",
                    password_hash=hash_password("carol-password")))
    app.login("carol", "carol-password")
    assert app.testapp.get("/device").status_int == 200
    with app.db() as db:
        db.execute(update(User).where(User.username == "carol").values(is_active=False))
    assert app.testapp.get("/device", status=302).location.startswith("http://localhost/login")
    page = app.testapp.get("/login")
    login = form(page, "/login")
    login["username"], login["password"] = "carol", "carol-password"
    refused = login.submit(status=401)
    assert "Your account has been disabled" in refused.text


def test_bcrypt_hash_from_the_go_original_verifies_and_is_upgraded(app):
    import bcrypt

    legacy = bcrypt.hashpw(b"go-password", bcrypt.gensalt(rounds=4)).decode()
    with app.db() as db:
        db.add(User(username="gopher", email="gopher@example.com", password_hash=legacy))
    assert app.login("gopher", "go-password").status_int == 302
    with app.db() as db:
        stored = db.scalars(select(User.password_hash).where(User.username == "gopher")).one()
    assert stored.startswith("$argon2id$")


def _argon2_parameters(stored: str) -> str:
    """``m=19456,t=2,p=1`` from ``$argon2id$v=19$m=19456,t=2,p=1$salt$hash``."""
    return stored.split("$")[3]


def test_passwords_are_hashed_with_owasps_argon2id_minimum_by_default(app):
    with app.db() as db:
        admin = db.scalars(select(User.password_hash).where(User.username == "admin")).one()
    assert admin.startswith("$argon2id$") and _argon2_parameters(admin) == "m=19456,t=2,p=1"


def test_a_hash_with_other_argon2_parameters_is_upgraded_at_sign_in(app):
    from argon2 import PasswordHasher

    # argon2-cffi's own default profile (RFC 9106 low memory: 64 MiB, 3 passes, 4 lanes).
    older = PasswordHasher().hash("older-password")
    with app.db() as db:
        db.add(User(username="olive", email="olive@example.com", password_hash=older))
    assert app.login("olive", "older-password").status_int == 302
    with app.db() as db:
        stored = db.scalars(select(User.password_hash).where(User.username == "olive")).one()
    assert _argon2_parameters(older) == "m=65536,t=3,p=4"
    assert _argon2_parameters(stored) == "m=19456,t=2,p=1"
    assert verify_password(stored, "older-password") and not needs_rehash(stored)


def test_argon2_cost_is_a_setting(make_app):
    app = make_app(environ={"PASSWORD_HASH_MEMORY_KIB": "8192", "PASSWORD_HASH_TIME_COST": "3",
                            "PASSWORD_HASH_PARALLELISM": "2"})
    with app.db() as db:
        admin = db.scalars(select(User.password_hash).where(User.username == "admin")).one()
    assert _argon2_parameters(admin) == "m=8192,t=3,p=2"
    assert app.login().status_int == 302


def test_logout_needs_csrf_and_ends_the_session(app):
    app.login()
    app.testapp.post("/logout", status=400)  # no CSRF token: refused
    token = app.csrf_token("/device")
    app.testapp.post("/logout", {"csrf_token": token}, status=302)
    assert app.testapp.get("/device", status=302).location.startswith("http://localhost/login")
    with app.db() as db:
        assert "LOGOUT" in db.scalars(select(AuditLog.event_type)).all()
