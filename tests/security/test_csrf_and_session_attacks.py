"""Cross-site request forgery on every browser POST, and session fixation."""

from __future__ import annotations

import re
import time

from pyramid.interfaces import IRoutesMapper
from pyramid.session import JSONSerializer
from security_support import add_user, csrf_of, new_browser, sign_in
from sqlalchemy import select
from webob.cookies import SignedSerializer

from authgate.models import User
from authgate.testing import ADMIN_PASSWORD, TEST_SESSION_SECRET, form
from authgate.testing.fake_oauth_provider import FakeOAuthProvider

FORM_EXPIRED = "Form expired"


def post_routes(app) -> dict[str, str]:
    """route name -> pattern of every route with a view accepting POST."""
    registry = app.testapp.app.registry
    patterns = {r.name: "/" + r.pattern.lstrip("/")
                for r in registry.queryUtility(IRoutesMapper).get_routes()}
    routes = {}
    for item in registry.introspector.get_category("views"):
        view = item["introspectable"]
        methods = view["request_methods"]
        methods = {methods} if isinstance(methods, str) else set(methods or ("POST",))
        if view["route_name"] and "POST" in methods:
            routes[view["route_name"]] = patterns[view["route_name"]]
    return routes


def json_api_paths(app) -> set[str]:
    """The JSON API: the paths /openapi.json documents (token-authenticated, no
    cookies, so no CSRF)."""
    return set(app.testapp.get("/openapi.json").json["paths"])


def browser_post_paths(app) -> list[str]:
    api = json_api_paths(app)
    paths = []
    for pattern in post_routes(app).values():
        concrete = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", pattern)
        if re.sub(r"\{(\w+)[^}]*\}", r"{\1}", pattern) not in api:
            paths.append(concrete)
    return sorted(paths)


def assert_csrf_refused(browser, path: str, data: dict) -> None:
    response = browser.post(path, data, status="*",
                            headers={"Origin": "https://evil.example.com",
                                     "Referer": "https://evil.example.com/attack.html"})
    assert response.status_int == 400, (path, response.status, response.text[:300])
    assert FORM_EXPIRED in response.text, path
    assert "Set-Cookie" not in response.headers or "session=;" not in \
        response.headers["Set-Cookie"]


def test_csrf_on_every_browser_post(app):
    """Every POST that is not the token-authenticated JSON API refuses a request
    without the session's CSRF token, and with a wrong one, even from the signed-in
    administrator whose cookie the forged request carries."""
    paths = browser_post_paths(app)
    # The enumeration found the forms (a sanity check of the introspection).
    for expected in ("/login", "/logout", "/device/verify", "/oauth/authorize",
                     "/admin/users", "/account/sessions/revoke-all", "/apps"):
        assert expected in paths
    assert "/oauth/token" not in paths and "/oauth/revoke" not in paths
    browser = new_browser(app)
    sign_in(browser)
    good = csrf_of(browser.get("/device").text)
    for path in paths:
        for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged-" + good[7:]},
                     {"csrf_token": good + "x"}):
            assert_csrf_refused(browser, path, {"action": "approve", **data})
    # Still signed in and still an administrator: nothing above took effect.
    assert browser.get("/admin", status=200)


def test_csrf_on_login_and_logout(app):
    """Login CSRF (signing the victim into the attacker's account) and forced
    logout both need the token."""
    add_user(app, "mallory", "mallory-password-1")
    victim = new_browser(app)
    victim.get("/login")
    forged = victim.post("/login", {"username": "mallory", "password": "mallory-password-1"},
                         status=400)
    assert FORM_EXPIRED in forged.text
    assert victim.get("/device", status=302).location.endswith(
        "/login?redirect=%2Fdevice")  # not signed in as mallory
    sign_in(victim)
    assert victim.post("/logout", {}, status=400)
    assert victim.get("/device", status=200)  # still signed in


def test_csrf_token_of_another_session_is_refused(app):
    attacker, victim = new_browser(app), new_browser(app)
    sign_in(attacker)
    sign_in(victim)
    attackers_token = csrf_of(attacker.get("/device").text)
    assert attackers_token != csrf_of(victim.get("/device").text)
    response = victim.post("/account/sessions/revoke-all", {"csrf_token": attackers_token},
                           status=400)
    assert FORM_EXPIRED in response.text


def test_csrf_on_the_social_login_link_post(make_app):
    """The plugin's POST (link a provider account) is a browser form as well."""
    with FakeOAuthProvider() as fake:
        app = make_app(settings={**fake.settings("github"),
                                 "authgate.auth_sources": "local oauth"},
                       plugins=["authgate_plugins.auth_oauth"])
        paths = browser_post_paths(app)
        assert "/auth/login/00000000-0000-0000-0000-000000000000" in paths
        browser = new_browser(app)
        sign_in(browser)
        assert_csrf_refused(browser, "/auth/login/github", {})
        assert fake.requests == []  # nothing reached the provider


def test_session_cookie_cannot_be_sent_cross_site(app):
    cookie = [c for c in app.testapp.get("/login").headers.getall("Set-Cookie")
              if c.startswith("session=")][0]
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie


# ---------------------------------------------------------------------------
# Session fixation
# ---------------------------------------------------------------------------

def _serializer() -> SignedSerializer:
    # What SignedCookieSessionFactory(SESSION_SECRET, hashalg="sha512") signs with.
    return SignedSerializer(TEST_SESSION_SECRET, "pyramid.session.", "sha512",
                            serializer=JSONSerializer())


def _cookie_value(response) -> str:
    for header in response.headers.getall("Set-Cookie"):
        if header.startswith("session="):
            return header.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError("no session cookie")


def _decode(cookie: str) -> tuple[float, dict]:
    """(creation time, state) of a session cookie."""
    _accessed, created, state = _serializer().loads(cookie.encode())
    return created, state


def _planted_cookie(created: float, **state) -> str:
    """A validly signed session cookie an attacker obtained (or planted through a
    sibling domain) before the victim signs in."""
    return _serializer().dumps((int(created), int(created), state)).decode()


def test_session_fixation(app):
    """A session cookie set before login is not the one after: sign-in starts a new
    session (new cookie, new CSRF token) and keeps nothing of the old one, so a
    cookie planted by an attacker never becomes authenticated."""
    planted = _planted_cookie(time.time() - 600, _csrft_="attacker-known-csrf-token",
                              planted_by_attacker="yes")
    victim = new_browser(app)
    victim.set_cookie("session", planted)
    page = victim.get("/login")
    assert csrf_of(page.text) == "attacker-known-csrf-token"  # the fixed session is in use
    login = form(page, "/login")
    login["username"], login["password"] = "admin", ADMIN_PASSWORD
    before = time.time()
    response = login.submit(status=302)

    after = _cookie_value(response)
    assert after != planted
    created, state = _decode(after)
    assert state.get("user_id"), state
    assert "planted_by_attacker" not in state
    assert state.get("_csrft_") != "attacker-known-csrf-token"
    assert state.get("login_at", 0) >= int(before)
    assert created  # (Pyramid keeps the cookie's creation time; nothing reads it)
    # The attacker's copy of the pre-login cookie is still anonymous.
    attacker = new_browser(app)
    attacker.set_cookie("session", planted)
    assert attacker.get("/account/sessions", status=302).location.startswith(
        "http://localhost/login")
    # And the victim's CSRF token known to the attacker does not work any more.
    refused = victim.post("/account/sessions/revoke-all",
                          {"csrf_token": "attacker-known-csrf-token"}, status=400)
    assert FORM_EXPIRED in refused.text


def test_session_is_ended_on_logout(app):
    browser = new_browser(app)
    sign_in(browser)
    signed_in_cookie = browser.cookies["session"]
    token = csrf_of(browser.get("/device").text)
    browser.post("/logout", {"csrf_token": token}, status=302)
    assert browser.get("/device", status=302)
    assert signed_in_cookie != browser.cookies.get("session")


def test_stolen_session_cookie_replayed_after_logout(app):
    """A copy of the cookie taken before logout is anonymous afterwards: logout moves
    the user's session generation on, and the copy carries the old one."""
    browser = new_browser(app)
    sign_in(browser)
    stolen = browser.cookies["session"]
    thief = new_browser(app)
    thief.set_cookie("session", stolen)
    assert thief.get("/device", status=200)  # the copy works while the victim is signed in
    browser.post("/logout", {"csrf_token": csrf_of(browser.get("/device").text)}, status=302)
    for path in ("/device", "/account/sessions", "/admin"):
        thief = new_browser(app)
        thief.set_cookie("session", stolen)
        assert thief.get(path, status=302).location.startswith("http://localhost/login"), path


def test_forged_session_without_a_generation_is_anonymous(app):
    """A session that names a user but no session generation (as from before the
    column existed) does not sign anyone in, even validly signed."""
    with app.db() as db:
        admin_id = db.scalars(select(User.id).where(User.username == "admin")).one()
    now = time.time()
    thief = new_browser(app)
    thief.set_cookie("session", _planted_cookie(now, user_id=admin_id, username="admin",
                                                login_at=int(now)))
    assert thief.get("/device", status=302).location.startswith("http://localhost/login")
    # The same cookie with the current generation is signed in (the check is that field).
    thief = new_browser(app)
    thief.set_cookie("session", _planted_cookie(now, user_id=admin_id, username="admin",
                                                login_at=int(now), session_generation=0))
    assert thief.get("/device", status=200)
