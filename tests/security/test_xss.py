"""Stored and reflected XSS: every user-controlled value shown on a page is escaped.

Each field gets its own payload marker (``xss:<field>``), written straight into
the database (so no input validation hides a missing escape) or sent in the
request.  Every page is then checked for two things: no payload appears as
markup (``<script>``, an attribute break-out), and the marker of each field the
page shows is there in escaped form (so the test proves the field was rendered).
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

import pytest
from security_support import (
    REDIRECT,
    authorize_url,
    csrf_of,
    new_browser,
    pkce_pair,
    sign_in,
)
from sqlalchemy import select

from authgate.models import OAuthClient, Token, User, UserAuthorization, utcnow
from authgate.services.passwords import hash_password
from authgate.testing import ADMIN_PASSWORD, form

XSS_PASSWORD = "xss-user-password-1"
RAW = re.compile(r"<script>alert|<svg onload|<img src=x onerror|\" onmouseover=|' autofocus ")


def payload(field: str) -> str:
    return f"<script>alert('xss:{field}')</script>\"><svg onload=alert('xss:{field}')>"


def attribute_payload(field: str) -> str:
    return f"\" onmouseover=\"alert('xss:{field}')\" x=\"' autofocus '"


def assert_escaped(page, *fields: str) -> None:
    text = page.text
    found = RAW.search(text)
    context = text[found.start() - 80:found.end() + 40] if found else ""
    assert not found, f"unescaped payload on {page.request.url}: ...{context}"
    for field in fields:
        assert f"xss:{field}" in text, f"{field} is not shown on {page.request.url}"


@pytest.fixture
def seeded(app):
    """A user, a client, tokens, a consent and a device request, every text field a
    payload.  Returns ids for the pages."""
    client_id = str(uuid.uuid4())
    with app.db() as db:
        user = User(id=str(uuid.uuid4()), username=payload("username"),
                    full_name=payload("full_name"), email=f"{payload('email')}@x.example",
                    password_hash=hash_password(XSS_PASSWORD), role="user")
        db.add(user)
        client = OAuthClient(client_id=client_id, name=payload("client_name"),
                             description=payload("client_description"),
                             client_type="public", status="active", scopes="email profile",
                             enable_device_flow=True, enable_auth_code_flow=True,
                             user_id=user.id)
        client.redirect_uris = [REDIRECT, "https://app.example.com/cb?x=" +
                                payload("redirect_uri")]
        client.refresh_grant_types()
        db.add(client)
        db.flush()
        for owner in (user.id,):
            db.add(Token(token_hash=uuid.uuid4().hex * 2, user_id=owner, client_id=client_id,
                         scopes="email " + payload("token_scope"), token_category="access",
                         expires_at=utcnow().replace(year=2099), grant_type="device_code"))
        db.add(UserAuthorization(user_id=user.id, application_id=client.id,
                                 client_id=client_id, scopes="email profile"))
        user_id = user.id
    return {"user_id": user_id, "client_id": client_id}


def _device_code(app, client_id: str) -> str:
    return app.testapp.post("/oauth/device/code", {"client_id": client_id}).json["user_code"]


def test_xss_in_admin_pages(app, seeded):
    user_id, client_id = seeded["user_id"], seeded["client_id"]
    # Events whose texts carry payloads: a failed sign-in (username, user agent).
    browser = new_browser(app)
    login = form(browser.get("/login"), "/login")
    login["username"], login["password"] = payload("login_username"), "wrong"
    login.submit(status=401, headers={"User-Agent": payload("user_agent")})
    admin = new_browser(app)
    sign_in(admin)
    pages = {
        "/admin": ("login_username",),
        "/admin/users": ("username", "full_name", "email"),
        f"/admin/users/{user_id}": ("username", "full_name", "email"),
        f"/admin/users/{user_id}/edit": ("username", "full_name", "email"),
        f"/admin/users/{user_id}/authorizations": ("username", "client_name"),
        f"/admin/users/{user_id}/connections": ("username",),
        "/admin/clients": ("client_name",),
        f"/admin/clients/{client_id}": ("client_name", "client_description",
                                        "redirect_uri"),
        f"/admin/clients/{client_id}/edit": ("client_name", "client_description",
                                             "redirect_uri"),
        f"/admin/clients/{client_id}/authorizations": ("client_name", "username"),
        "/admin/tokens": ("client_name", "username", "token_scope"),
        "/admin/audit": ("login_username",),
        "/admin/users?search=" + quote(payload("search")): ("search",),
        "/admin/clients?search=" + quote(payload("search")): ("search",),
        "/admin/tokens?search=" + quote(payload("search")): ("search",),
        "/admin/audit?search=" + quote(payload("search")): ("search",),
    }
    for path, fields in pages.items():
        assert_escaped(admin.get(path, status=200), *fields)


def test_xss_in_user_pages(app, seeded):
    client_id = seeded["client_id"]
    person = new_browser(app)
    sign_in(person, payload("username"), XSS_PASSWORD)
    for path, fields in {
        "/account/sessions": ("username", "client_name", "token_scope"),
        "/account/authorizations": ("client_name",),
        "/apps": ("client_name",),
        f"/apps/{client_id}": ("client_name", "client_description", "redirect_uri"),
        f"/apps/{client_id}/edit": ("client_name", "client_description"),
        "/account/sessions?search=" + quote(payload("search")): ("search",),
        "/apps?search=" + quote(payload("search")): ("search",),
    }.items():
        assert_escaped(person.get(path, status=200), *fields)


def test_xss_in_the_device_flow_pages(app, seeded):
    client_id = seeded["client_id"]
    user_code = _device_code(app, client_id)
    person = new_browser(app)
    sign_in(person, payload("username"), XSS_PASSWORD)
    page = person.get(f"/device?user_code={user_code}", status=200)
    assert_escaped(page, "client_name", "client_description", "username")
    result = form(page, "/device/verify").submit("action", value="approve", status=200)
    assert_escaped(result, "client_name", "username")
    # A reflected user code.
    typed = attribute_payload("user_code")[:64]
    assert_escaped(person.get("/device?user_code=" + quote(typed), status=400))
    assert "xss:user_code" in person.get("/device?user_code=" + quote(typed), status=400).text


def test_xss_in_the_consent_page(app, seeded):
    client_id = seeded["client_id"]
    person = new_browser(app)
    sign_in(person, payload("username"), XSS_PASSWORD)
    _, challenge = pkce_pair()
    state, nonce = attribute_payload("state"), attribute_payload("nonce")
    page = person.get(authorize_url(client_id, code_challenge=challenge,
                                    code_challenge_method="S256", state=state,
                                    nonce=nonce, prompt="consent"), status=200)
    assert_escaped(page, "client_name", "client_description", "state", "nonce")


def test_xss_in_the_login_page(app):
    browser = new_browser(app)
    redirect = "/device?x=" + attribute_payload("redirect")
    page = browser.get("/login?redirect=" + quote(redirect, safe=""), status=200)
    assert_escaped(page, "redirect")
    login = form(page, "/login")
    login["username"], login["password"] = attribute_payload("login_echo"), "wrong"
    assert_escaped(login.submit(status=401), "login_echo", "redirect")


def test_xss_in_error_pages(app):
    browser = new_browser(app)
    sign_in(browser)
    evil = payload("client_id")
    for path in (authorize_url(evil), authorize_url(evil, redirect_uri=payload("redir"))):
        assert_escaped(browser.get(path, status=400))
    assert_escaped(browser.get("/admin/users/" + quote(payload("path")), status=404))
    assert_escaped(browser.get("/no-such-page/" + quote(payload("path404")), status=404))


def test_xss_in_a_client_created_through_the_admin_form(app):
    """The whole round trip through the real form, not just rows in the database."""
    admin = new_browser(app)
    sign_in(admin, "admin", ADMIN_PASSWORD)
    page = admin.get("/admin/clients/new")
    new = form(page, "/admin/clients")
    new["name"] = payload("form_name")[:200]
    new["description"] = payload("form_description")
    if "redirect_uris" in new.fields:
        new["redirect_uris"] = REDIRECT
    created = new.submit(status="*")
    assert created.status_int in (200, 303), created.text[:500]
    with app.db() as db:
        client_id = db.scalars(select(OAuthClient.client_id).where(
            OAuthClient.name.contains("xss:form_name"))).one()
    assert_escaped(admin.get(f"/admin/clients/{client_id}"), "form_name", "form_description")
    assert csrf_of(admin.get("/admin/clients").text)
