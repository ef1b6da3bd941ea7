"""Attacks on the authorization code flow: code injection, PKCE downgrade and open
redirects (through ``redirect_uri`` and through the login page's ``redirect``)."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
from security_support import (
    REDIRECT,
    add_user,
    authorize_url,
    exchange,
    get_code,
    make_client,
    pkce_pair,
    query_of,
)

from authgate.testing import ADMIN_PASSWORD, form

EVIL = "https://evil.example.com/steal"


@pytest.fixture
def signed_in(app):
    app.login()
    return app


# ---------------------------------------------------------------------------
# Code injection
# ---------------------------------------------------------------------------


def test_authorization_code_injection_with_another_clients_code(signed_in):
    """A code stolen from client A's redirect, replayed by client B (or injected
    into B's session), is refused: a code is bound to the client it was issued to."""
    app = signed_in
    victim_id, victim_secret = make_client(app, confidential=True, name="Victim App")
    attacker_id, attacker_secret = make_client(app, confidential=True, name="Attacker App")
    verifier, challenge = pkce_pair()
    code = get_code(app, victim_id, challenge=challenge)

    stolen = exchange(app, attacker_id, code, verifier, secret=attacker_secret)
    assert stolen.status_int == 400 and stolen.json["error"] == "invalid_grant"
    # Public attacker client without a secret: refused the same way.
    public_id, _ = make_client(app, name="Public Attacker")
    assert exchange(app, public_id, code, verifier).json["error"] == "invalid_grant"
    # The attempt did not burn the code for its rightful owner.
    mine = exchange(app, victim_id, code, verifier, secret=victim_secret)
    assert mine.status_int == 200, mine.text


def test_authorization_code_injection_into_the_right_client_needs_the_verifier(signed_in):
    """The attacker injects a code obtained with *their* PKCE verifier into the
    victim's session: the victim's client sends its own verifier, which does not
    match, so the injected code is worthless (RFC 9700 §4.5)."""
    app = signed_in
    client_id, _ = make_client(app)
    _, attacker_challenge = pkce_pair()
    injected = get_code(app, client_id, challenge=attacker_challenge)
    victims_verifier, _ = pkce_pair()
    response = exchange(app, client_id, injected, victims_verifier)
    assert response.status_int == 400 and response.json["error"] == "invalid_grant"


def test_authorization_code_with_another_redirect_uri_is_refused(signed_in):
    app = signed_in
    other = "https://app.example.com/other"
    client_id, _ = make_client(app, redirect_uris=(REDIRECT, other))
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    response = exchange(app, client_id, code, verifier, redirect_uri=other)
    assert response.status_int == 400 and response.json["error"] == "invalid_grant"


# ---------------------------------------------------------------------------
# PKCE downgrade
# ---------------------------------------------------------------------------


def test_pkce_downgrade_by_dropping_the_verifier(signed_in):
    """The request carried a challenge; redeeming without the verifier fails, for
    public and confidential clients alike."""
    app = signed_in
    for confidential in (False, True):
        client_id, secret = make_client(app, confidential=confidential)
        verifier, challenge = pkce_pair()
        code = get_code(app, client_id, challenge=challenge)
        response = exchange(app, client_id, code, None, secret=secret)
        assert response.status_int == 400 and response.json["error"] == "invalid_grant"
        assert "code_verifier" in response.json["error_description"]
        # ... and the real verifier still works afterwards (nothing was consumed).
        assert exchange(app, client_id, code, verifier, secret=secret).status_int == 200


def test_pkce_downgrade_to_the_plain_method(signed_in):
    app = signed_in
    client_id, _ = make_client(app)
    verifier, _ = pkce_pair()
    response = app.testapp.get(authorize_url(client_id, code_challenge=verifier,
                                             code_challenge_method="plain"), status=302)
    query = query_of(response.location)
    assert query["error"] == "invalid_request" and "code" not in query
    # A challenge without a method means "plain" (RFC 7636 §4.3): refused too.
    response = app.testapp.get(authorize_url(client_id, code_challenge=verifier), status=302)
    assert query_of(response.location)["error"] == "invalid_request"


def test_pkce_downgrade_by_dropping_the_challenge_for_a_public_client(signed_in):
    app = signed_in
    client_id, _ = make_client(app)
    response = app.testapp.get(authorize_url(client_id), status=302)
    query = query_of(response.location)
    assert query["error"] == "invalid_request" and "code" not in query
    assert "PKCE" in query["error_description"]


def test_pkce_downgrade_by_adding_a_verifier_to_a_code_without_challenge(signed_in):
    """A confidential client may skip PKCE, but a verifier presented for a code
    issued without a challenge is refused (a stripped challenge is detected)."""
    app = signed_in
    client_id, secret = make_client(app, confidential=True)
    code = get_code(app, client_id)
    verifier, _ = pkce_pair()
    response = exchange(app, client_id, code, verifier, secret=secret)
    assert response.status_int == 400 and response.json["error"] == "invalid_grant"


def test_pkce_verifier_of_the_wrong_shape_is_refused(signed_in):
    app = signed_in
    client_id, _ = make_client(app)
    _, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    for bad in ("short", "x" * 129, challenge + "!"):
        assert exchange(app, client_id, code, bad).json["error"] == "invalid_grant"


# ---------------------------------------------------------------------------
# Open redirects
# ---------------------------------------------------------------------------

REDIRECT_URI_ATTACKS = [
    EVIL,
    "https://app.example.com/callback.evil.com",
    "https://app.example.com.evil.com/callback",
    "https://app.example.com/callback/../../steal",
    "https://app.example.com/callbackx",
    "https://app.example.com/callback/extra",
    "https://app.example.com@evil.com/callback",
    "https://evil.com#@app.example.com/callback",
    "https://evil.com\\@app.example.com/callback",
    "http://app.example.com/callback",
    "https://APP.example.com/callback",
    "https://app.example.com:444/callback",
    "https://app.example.com/callback#fragment",
    "//evil.example.com/callback",
    "javascript:alert(1)//https://app.example.com/callback",
    "https://app.example.com/%2e%2e/steal",
]


def test_open_redirect_via_redirect_uri(signed_in):
    """Anything but an exact registered redirect URI gets an error page on this
    server: never a redirect, not even for errors (RFC 9700 §4.1)."""
    app = signed_in
    client_id, _ = make_client(app)
    _, challenge = pkce_pair()
    for redirect_uri in REDIRECT_URI_ATTACKS:
        for extra in ({"code_challenge": challenge, "code_challenge_method": "S256"},
                      {"response_type": "token"}, {"prompt": "none"}, {}):
            response = app.testapp.get(authorize_url(client_id, redirect_uri=redirect_uri,
                                                     **extra), status=400)
            assert "Location" not in response.headers, redirect_uri
            assert response.content_type == "text/html"
        # The consent form cannot be used to smuggle the URI in either.
        page = app.testapp.get(authorize_url(client_id, code_challenge=challenge,
                                             code_challenge_method="S256"), status=200)
        consent = form(page, "/oauth/authorize")
        consent["redirect_uri"].force_value(redirect_uri)
        response = consent.submit("action", value="approve", status=400)
        assert "Location" not in response.headers, redirect_uri


def test_open_redirect_via_redirect_uri_of_an_unknown_client(app):
    response = app.testapp.get(authorize_url("no-such-client", redirect_uri=EVIL), status=400)
    assert "Location" not in response.headers


LOGIN_REDIRECT_ATTACKS = [
    "https://evil.example.com/",
    "http://evil.example.com",
    "//evil.example.com",
    "///evil.example.com",
    "/\\evil.example.com",
    "\\\\evil.example.com",
    "\\/evil.example.com",
    "/\t/evil.example.com",
    "/\r\n/evil.example.com",
    "https:evil.example.com",
    "https:/evil.example.com",
    "javascript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "http://localhost:8080@evil.example.com/",
    "http://localhost:8080.evil.example.com/",
    "http://localhost.evil.example.com:8080/",
    "https://localhost:8080/",  # another scheme than BASE_URL's
    "evil.example.com",
    " //evil.example.com",
]


def _login_with(app, redirect: str):
    page = app.testapp.get("/login?redirect=" + quote(redirect, safe=""))
    login = form(page, "/login")
    login["username"], login["password"] = "admin", ADMIN_PASSWORD
    login["redirect"].force_value(redirect)
    return login.submit(status=302)


@pytest.fixture
def unlimited(make_app):
    """An app without rate limits: these tests sign in many times."""
    return make_app({"authgate.enable_rate_limit": "false"})


def test_open_redirect_via_login_redirect(unlimited):
    app = unlimited
    for target in LOGIN_REDIRECT_ATTACKS:
        app.testapp.reset()
        response = _login_with(app, target)
        location = urlsplit(response.location)
        assert location.netloc in ("localhost", "localhost:8080"), (target, response.location)
        assert location.path == "/device", target  # the landing page, not the target
        # Once signed in, GET /login?redirect=... sends the user on: same rule.
        again = app.testapp.get("/login?redirect=" + quote(target, safe=""), status=302)
        assert urlsplit(again.location).netloc in ("localhost", "localhost:8080"), target
        assert urlsplit(again.location).path == "/device", target


def test_login_redirect_keeps_same_site_targets(unlimited):
    for target in ("/device?user_code=ABCD-EFGH", "/admin/users",
                   "http://localhost:8080/account/sessions"):
        unlimited.testapp.reset()
        location = urlsplit(_login_with(unlimited, target).location)
        assert location.path == urlsplit(target).path


def test_open_redirect_after_sign_in_through_an_admin_form(app):
    """Forms that post back to a list (``next``) and the sign-in detour of POSTs
    (Referer) only go to this server."""
    app.login()
    token = app.csrf_token("/admin/users")
    for n, target in enumerate(("//evil.example.com/admin/users",
                                "https://evil.example.com/admin/users",
                                "/admin/users\\evil")):
        user_id = add_user(app, f"bob{n}", "bob-password-123", is_active=False)
        response = app.testapp.post(f"/admin/users/{user_id}/enable",
                                    {"csrf_token": token, "next": target}, status=303)
        assert "evil" not in response.headers["Location"], response.headers["Location"]
    anonymous = app.testapp.__class__(app.testapp.app)
    response = anonymous.post("/admin/users/x/enable", {},
                              headers={"Referer": "https://evil.example.com/"}, status="*")
    assert "evil.example.com" not in response.headers.get("Location", "")
