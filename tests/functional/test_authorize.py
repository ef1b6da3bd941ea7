"""The authorization code grant with PKCE and consent, through the WSGI app (webtest).

The helpers at the top are shared with test_oidc.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import select, update

from authgate.cli import create_oauth_client
from authgate.models import (
    AuditLog,
    AuthorizationCode,
    OAuthClient,
    Token,
    User,
    UserAuthorization,
    utcnow,
)
from authgate.services import consents
from authgate.services.secrets import sha256_hex
from authgate.testing import form

REDIRECT = "https://app.example.com/callback"
ISSUER = "http://localhost:8080"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_client(app, *, confidential: bool = False, redirect_uris=(REDIRECT,),
                scopes: str = "openid email profile", auth_code: bool = True,
                client_credentials: bool = False, device: bool = False,
                name: str = "Photo Printer", description: str = "Prints your photos",
                status: str = "active") -> tuple[str, str | None]:
    with app.db() as db:
        client, secret = create_oauth_client(
            db, name=name, confidential=confidential, device=device or not (
                auth_code or client_credentials), auth_code=auth_code,
            client_credentials=client_credentials, redirect_uris=list(redirect_uris),
            scopes=scopes, description=description)
        client.enable_device_flow = device
        client.status = status
        return client.client_id, secret


def authorize_url(client_id: str, **params: str) -> str:
    query = {"client_id": client_id, "redirect_uri": REDIRECT, "response_type": "code",
             "state": "xyz", **params}
    return "/oauth/authorize?" + urlencode({k: v for k, v in query.items() if v is not None})


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def decide(app, url: str, action: str = "approve"):
    """Open the consent page at ``url`` and press Approve or Deny; the 302 response."""
    page = app.testapp.get(url, status=200)
    return form(page, "/oauth/authorize").submit("action", value=action, status=302)


def get_code(app, client_id: str, *, challenge: str | None = None, **params: str) -> str:
    """Sign-in must already have happened.  Approves if the consent page appears."""
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    url = authorize_url(client_id, **params)
    response = app.testapp.get(url)
    if response.status_int == 200:
        response = form(response, "/oauth/authorize").submit("action", value="approve",
                                                              status=302)
    assert response.status_int == 302, response.text
    assert response.location.startswith(params.get("redirect_uri") or REDIRECT)
    query = query_of(response.location)
    assert "code" in query, response.location
    return query["code"]


def exchange(app, client_id: str, code: str, verifier: str | None = None, *,
             secret: str | None = None, basic: bool = False, redirect_uri: str = REDIRECT,
             status: int | str = "*", **extra: str):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            **extra}
    headers = {}
    if verifier is not None:
        data["code_verifier"] = verifier
    if basic:
        raw = f"{client_id}:{secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    else:
        data["client_id"] = client_id
        if secret is not None:
            data["client_secret"] = secret
    return app.testapp.post("/oauth/token", data, headers=headers, status=status)


def events(app) -> list[str]:
    with app.db() as db:
        return list(db.scalars(select(AuditLog.event_type).order_by(AuditLog.event_time)))


def token_rows(app, **where) -> list[Token]:
    with app.db() as db:
        rows = db.scalars(select(Token).filter_by(**where)).all()
        db.expunge_all()
        return rows


@pytest.fixture
def public(app):
    """(app, client_id) of a public client; the admin is signed in."""
    client_id, _ = make_client(app)
    app.login()
    return app, client_id


# ---------------------------------------------------------------------------
# The happy path
# ---------------------------------------------------------------------------


def test_consent_page_then_code_then_tokens(public):
    app, client_id = public
    verifier, challenge = pkce_pair()
    url = authorize_url(client_id, scope="openid email profile", nonce="n-1",
                        code_challenge=challenge, code_challenge_method="S256")
    page = app.testapp.get(url, status=200)
    assert "Authorize Photo Printer?" in page.text
    assert "Prints your photos" in page.text
    for text in ("Confirm your identity", "Read your email address",
                 "Read your profile: name and username", "app.example.com"):
        assert text in page.text
    assert page.headers["Cache-Control"] == "no-store"
    response = form(page, "/oauth/authorize").submit("action", value="approve", status=302)
    assert response.location.startswith(REDIRECT + "?")
    query = query_of(response.location)
    assert query["state"] == "xyz" and query["iss"] == ISSUER
    code = query["code"]
    assert len(code) >= 43

    tokens = exchange(app, client_id, code, verifier, status=200).json
    assert tokens["token_type"] == "Bearer"
    assert tokens["access_token"] and tokens["refresh_token"] and tokens["id_token"]
    assert tokens["scope"] == "openid email profile"
    assert 0 < tokens["expires_in"] <= 10 * 3600 + 1800

    with app.db() as db:
        row = db.scalars(select(AuthorizationCode)).one()
        assert row.code_hash == sha256_hex(code) and row.code_prefix == code[:8]
        assert row.used_at is not None and row.nonce == "n-1"
        assert row.code_challenge == challenge and row.code_challenge_method == "S256"
        consent = db.scalars(select(UserAuthorization)).one()
        assert consent.is_active and consent.scopes == "openid email profile"
        access = db.scalars(select(Token).where(
            Token.token_hash == sha256_hex(tokens["access_token"]))).one()
        assert access.authorization_id == consent.id
        assert access.authorization_code_id == row.id
        assert access.grant_type == "authorization_code"
    got = events(app)
    for event in ("USER_AUTHORIZATION_GRANTED", "AUTHORIZATION_CODE_GENERATED",
                  "AUTHORIZATION_CODE_EXCHANGED", "ACCESS_TOKEN_ISSUED", "REFRESH_TOKEN_ISSUED",
                  "ID_TOKEN_ISSUED"):
        assert event in got


def test_code_ttl_follows_setting(make_app):
    app = make_app({"authgate.auth_code_expiration": "90s"})
    client_id, _ = make_client(app)
    app.login()
    get_code(app, client_id, challenge=pkce_pair()[1])
    with app.db() as db:
        row = db.scalars(select(AuthorizationCode)).one()
        assert abs((row.expires_at - row.created_at).total_seconds() - 90) < 1


def test_existing_query_of_redirect_uri_is_kept(app):
    uri = "https://app.example.com/cb?tenant=acme"
    client_id, _ = make_client(app, redirect_uris=[uri])
    app.login()
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge, redirect_uri=uri)
    exchange(app, client_id, code, verifier, redirect_uri=uri, status=200)
    response = app.testapp.get(authorize_url(client_id, redirect_uri=uri,
                                             response_type="token"), status=302)
    assert response.location.startswith(uri + "&")
    assert query_of(response.location)["tenant"] == "acme"


def test_empty_scope_means_every_client_scope(public):
    app, client_id = public
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    assert exchange(app, client_id, code, verifier, status=200).json["scope"] == \
        "openid email profile"


def test_no_refresh_token_when_disabled(make_app):
    app = make_app({"authgate.enable_refresh_tokens": "false"})
    client_id, _ = make_client(app)
    app.login()
    verifier, challenge = pkce_pair()
    body = exchange(app, client_id, get_code(app, client_id, challenge=challenge), verifier,
                    status=200).json
    assert "refresh_token" not in body and body["access_token"]


# ---------------------------------------------------------------------------
# Sign-in
# ---------------------------------------------------------------------------


def test_login_redirect_and_back(app):
    client_id, _ = make_client(app)
    _, challenge = pkce_pair()
    url = authorize_url(client_id, code_challenge=challenge, code_challenge_method="S256")
    response = app.testapp.get(url, status=302)
    assert "/login?redirect=" in response.location
    page = app.testapp.get(response.location)
    login = form(page, "/login")
    login["username"], login["password"] = "admin", "admin-password-for-tests"
    back = login.submit(status=302)
    assert back.location.endswith(url)
    assert "Authorize Photo Printer?" in app.testapp.get(back.location, status=200).text


def test_prompt_none_without_session_is_login_required(app):
    client_id, _ = make_client(app)
    response = app.testapp.get(authorize_url(client_id, prompt="none",
                                             code_challenge=pkce_pair()[1],
                                             code_challenge_method="S256"), status=302)
    query = query_of(response.location)
    assert response.location.startswith(REDIRECT)
    assert query["error"] == "login_required" and query["state"] == "xyz"


def test_prompt_login_signs_out_and_returns_without_it(public):
    app, client_id = public
    _, challenge = pkce_pair()
    response = app.testapp.get(authorize_url(client_id, prompt="login consent",
                                             code_challenge=challenge,
                                             code_challenge_method="S256"), status=302)
    assert "/login?redirect=" in response.location
    target = parse_qs(urlsplit(response.location).query)["redirect"][0]
    assert "prompt=consent" in target and "login" not in parse_qs(
        urlsplit(target).query)["prompt"][0]
    # Signed out: the consent page now asks to log in again.
    assert "/login?redirect=" in app.testapp.get(target, status=302).location


def test_max_age_must_be_a_number(public):
    app, client_id = public
    response = app.testapp.get(authorize_url(client_id, max_age="soon",
                                             code_challenge=pkce_pair()[1],
                                             code_challenge_method="S256"), status=302)
    assert query_of(response.location)["error"] == "invalid_request"
    # A generous max_age is satisfied by the current sign-in.
    app.testapp.get(authorize_url(client_id, max_age="3600", code_challenge=pkce_pair()[1],
                                  code_challenge_method="S256"), status=200)


# ---------------------------------------------------------------------------
# Requests that must never redirect: an error page instead
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "title"), [
    ("no_client", "Invalid request"),
    ("unknown_client", "Unknown application"),
    ("inactive_client", "Application not available"),
    ("flow_disabled", "Sign-in not enabled"),
    ("no_redirect", "Invalid request"),
    ("unregistered_redirect", "Invalid redirect URI"),
    ("prefix_redirect", "Invalid redirect URI"),
    ("other_host_redirect", "Invalid redirect URI"),
    ("case_changed_redirect", "Invalid redirect URI"),
    ("two_redirects", "Invalid request"),
])
def test_untrusted_client_or_redirect_gets_an_error_page(app, case, title):
    client_id, _ = make_client(app)
    inactive_id, _ = make_client(app, status="inactive", name="Old App")
    disabled_id, _ = make_client(app, auth_code=False, device=True, name="CLI",
                                 redirect_uris=[REDIRECT])
    app.login()
    _, challenge = pkce_pair()
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    url = {
        "no_client": authorize_url("", **pkce),
        "unknown_client": authorize_url("no-such-client", **pkce),
        "inactive_client": authorize_url(inactive_id, **pkce),
        "flow_disabled": authorize_url(disabled_id, **pkce),
        "no_redirect": authorize_url(client_id, redirect_uri="", **pkce),
        "unregistered_redirect": authorize_url(client_id, redirect_uri="https://evil.example/cb",
                                               **pkce),
        "prefix_redirect": authorize_url(client_id, redirect_uri=REDIRECT + "/../../steal",
                                         **pkce),
        "other_host_redirect": authorize_url(
            client_id, redirect_uri="https://app.example.com.evil.example/callback", **pkce),
        "case_changed_redirect": authorize_url(client_id, redirect_uri=REDIRECT.upper(),
                                               **pkce),
        "two_redirects": authorize_url(client_id, **pkce) + "&redirect_uri="
                         + "https%3A%2F%2Fevil.example%2Fcb",
    }[case]
    response = app.testapp.get(url, status=400)
    assert "Location" not in response.headers
    assert response.content_type == "text/html"
    assert title in response.text
    assert "evil.example" not in response.text


def test_error_page_needs_no_sign_in(app):
    # A bad client is reported at once: nobody signs in only to see an error.
    response = app.testapp.get(authorize_url("no-such-client"), status=400)
    assert "Unknown application" in response.text


# ---------------------------------------------------------------------------
# Errors sent back to the registered redirect URI
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "error", "description"), [
    ({"response_type": "token"}, "unsupported_response_type", "response_type=code"),
    ({"response_type": ""}, "invalid_request", "response_type is required"),
    ({"scope": "openid admin"}, "invalid_scope", "admin"),
    ({"code_challenge_method": "plain"}, "invalid_request", "S256"),
    ({"code_challenge_method": ""}, "invalid_request", "S256"),
    ({"code_challenge": "", "code_challenge_method": "S256"}, "invalid_request",
     "code_challenge is required"),
    ({"code_challenge": "too-short"}, "invalid_request", "43-character"),
    ({"code_challenge": "", "code_challenge_method": ""}, "invalid_request",
     "PKCE is required for public clients"),
    ({"nonce": "n" * 1025}, "invalid_request", "nonce"),
    ({"response_mode": "fragment"}, "invalid_request", "response_mode"),
    ({"prompt": "none login"}, "invalid_request", "prompt=none"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported", "Request objects"),
])
def test_invalid_request_redirects_with_error_and_state(public, params, error, description):
    app, client_id = public
    _, challenge = pkce_pair()
    query = {"code_challenge": challenge, "code_challenge_method": "S256", **params}
    response = app.testapp.get(authorize_url(client_id, **query), status=302)
    assert response.location.startswith(REDIRECT + "?")
    got = query_of(response.location)
    assert got["error"] == error
    assert description in got["error_description"]
    assert got["state"] == "xyz" and got["iss"] == ISSUER
    assert "code" not in got


def test_state_over_1024_bytes_is_invalid_request_without_state(public):
    app, client_id = public
    response = app.testapp.get(authorize_url(client_id, state="é" * 513,
                                             code_challenge=pkce_pair()[1],
                                             code_challenge_method="S256"), status=302)
    got = query_of(response.location)
    assert got["error"] == "invalid_request" and "state" not in got
    # 1024 bytes exactly is fine.
    ok = app.testapp.get(authorize_url(client_id, state="s" * 1024,
                                       code_challenge=pkce_pair()[1],
                                       code_challenge_method="S256"))
    assert ok.status_int == 200


def test_repeated_parameter_is_invalid_request(public):
    app, client_id = public
    url = authorize_url(client_id, code_challenge=pkce_pair()[1],
                        code_challenge_method="S256") + "&scope=openid&scope=email"
    got = query_of(app.testapp.get(url, status=302).location)
    assert got["error"] == "invalid_request" and "more than once" in got["error_description"]


def test_pkce_required_setting_applies_to_confidential_clients(make_app):
    app = make_app({"authgate.pkce_required": "true"})
    client_id, _ = make_client(app, confidential=True)
    app.login()
    got = query_of(app.testapp.get(authorize_url(client_id), status=302).location)
    assert got["error"] == "invalid_request" and "PKCE is required" in got["error_description"]


def test_confidential_client_may_skip_pkce_by_default(app):
    client_id, secret = make_client(app, confidential=True)
    app.login()
    code = get_code(app, client_id)
    assert exchange(app, client_id, code, secret=secret, status=200).json["access_token"]


# ---------------------------------------------------------------------------
# The consent form
# ---------------------------------------------------------------------------


def test_deny_redirects_access_denied_and_is_audited(public):
    app, client_id = public
    url = authorize_url(client_id, code_challenge=pkce_pair()[1], code_challenge_method="S256")
    response = decide(app, url, "deny")
    got = query_of(response.location)
    assert response.location.startswith(REDIRECT)
    assert got["error"] == "access_denied" and got["state"] == "xyz"
    with app.db() as db:
        assert db.scalars(select(AuthorizationCode)).first() is None
        assert db.scalars(select(UserAuthorization)).first() is None
    assert "AUTHORIZATION_CODE_DENIED" in events(app)


def test_consent_post_needs_csrf(public):
    app, client_id = public
    _, challenge = pkce_pair()
    response = app.testapp.post("/oauth/authorize", {
        "client_id": client_id, "redirect_uri": REDIRECT, "response_type": "code",
        "code_challenge": challenge, "code_challenge_method": "S256", "action": "approve"},
        status=400)
    assert "Form expired" in response.text and "Location" not in response.headers


def test_consent_post_is_validated_again(public):
    app, client_id = public
    url = authorize_url(client_id, code_challenge=pkce_pair()[1], code_challenge_method="S256")
    consent_form = form(app.testapp.get(url), "/oauth/authorize")
    consent_form["redirect_uri"] = "https://evil.example/cb"
    response = consent_form.submit("action", value="approve", status=400)
    assert "Invalid redirect URI" in response.text and "Location" not in response.headers
    consent_form = form(app.testapp.get(url), "/oauth/authorize")
    consent_form["scope"] = "openid admin"
    got = query_of(consent_form.submit("action", value="approve", status=302).location)
    assert got["error"] == "invalid_scope"


def test_remembered_consent_skips_the_page(public):
    app, client_id = public
    get_code(app, client_id, challenge=pkce_pair()[1], scope="openid email")
    # Covered: straight back with a code.
    again = app.testapp.get(authorize_url(client_id, scope="email",
                                          code_challenge=pkce_pair()[1],
                                          code_challenge_method="S256"), status=302)
    assert "code" in query_of(again.location)
    # Wider than the stored grant: ask again.
    app.testapp.get(authorize_url(client_id, scope="openid profile",
                                  code_challenge=pkce_pair()[1],
                                  code_challenge_method="S256"), status=200)
    # prompt=consent always asks.
    app.testapp.get(authorize_url(client_id, scope="email", prompt="consent",
                                  code_challenge=pkce_pair()[1],
                                  code_challenge_method="S256"), status=200)
    with app.db() as db:
        remembered = db.scalars(select(AuditLog).where(
            AuditLog.event_type == "AUTHORIZATION_CODE_GENERATED")
            .order_by(AuditLog.event_time)).all()
        assert [e.details["remembered_consent"] for e in remembered] == [False, True]


def test_prompt_none_answers_from_remembered_consent(public):
    app, client_id = public
    url = authorize_url(client_id, prompt="none", code_challenge=pkce_pair()[1],
                        code_challenge_method="S256")
    got = query_of(app.testapp.get(url, status=302).location)
    assert got["error"] == "consent_required"
    get_code(app, client_id, challenge=pkce_pair()[1])
    got = query_of(app.testapp.get(url, status=302).location)
    assert "code" in got


def test_consent_remember_off_always_asks(make_app):
    app = make_app({"authgate.consent_remember": "false"})
    client_id, _ = make_client(app)
    app.login()
    get_code(app, client_id, challenge=pkce_pair()[1])
    app.testapp.get(authorize_url(client_id, code_challenge=pkce_pair()[1],
                                  code_challenge_method="S256"), status=200)


def test_approving_again_replaces_scopes_in_one_row(public):
    app, client_id = public
    get_code(app, client_id, challenge=pkce_pair()[1], scope="openid email")
    get_code(app, client_id, challenge=pkce_pair()[1], scope="openid profile")
    with app.db() as db:
        consent = db.scalars(select(UserAuthorization)).one()
        assert consent.scopes == "openid profile" and consent.is_active
    assert events(app).count("USER_AUTHORIZATION_GRANTED") == 2


# ---------------------------------------------------------------------------
# Code exchange
# ---------------------------------------------------------------------------


def test_replayed_code_is_refused_and_revokes_its_tokens(public):
    app, client_id = public
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    first = exchange(app, client_id, code, verifier, status=200).json
    # A refresh of the first tokens is revoked with them (same code).
    refreshed = app.testapp.post("/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"],
        "client_id": client_id}, status=200).json
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    app.testapp.get("/oauth/tokeninfo", headers=bearer, status=200)

    again = exchange(app, client_id, code, verifier, status=400)
    assert again.json["error"] == "invalid_grant"
    assert "already been used" in again.json["error_description"]
    assert again.headers["Cache-Control"] == "no-store"

    # The revocation was committed although the answer was an error.
    app.testapp.get("/oauth/tokeninfo", headers=bearer, status=401)
    app.testapp.get("/oauth/tokeninfo", status=401, headers={
        "Authorization": f"Bearer {refreshed['access_token']}"})
    rows = token_rows(app)
    assert rows and {r.status for r in rows} == {"revoked"}
    refresh = app.testapp.post("/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"],
        "client_id": client_id}, status=400)
    assert refresh.json["error"] == "invalid_grant"
    assert "SUSPICIOUS_ACTIVITY" in events(app)


def test_wrong_or_missing_verifier_is_invalid_grant(public):
    app, client_id = public
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    for bad in (pkce_pair()[0], "", "short", verifier + "!"):
        response = exchange(app, client_id, code, bad or None, status=400)
        assert response.json["error"] == "invalid_grant", bad
    # A failed verification does not burn the code: the real client still can use it.
    exchange(app, client_id, code, verifier, status=200)


def test_confidential_client_pkce_is_verified_too(app):
    client_id, secret = make_client(app, confidential=True)
    app.login()
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    wrong = exchange(app, client_id, code, pkce_pair()[0], secret=secret, status=400)
    assert wrong.json["error"] == "invalid_grant"
    missing = exchange(app, client_id, code, None, secret=secret, status=400)
    assert missing.json["error"] == "invalid_grant"
    exchange(app, client_id, code, verifier, secret=secret, status=200)


def test_verifier_without_challenge_is_refused(app):
    """RFC 9700 §2.1.1: a code_verifier for a code issued without a challenge."""
    client_id, secret = make_client(app, confidential=True)
    app.login()
    code = get_code(app, client_id)
    response = exchange(app, client_id, code, pkce_pair()[0], secret=secret, status=400)
    assert response.json["error"] == "invalid_grant"


@pytest.mark.parametrize(("change", "error"), [
    ({"redirect_uri": "https://app.example.com/other"}, "invalid_grant"),
    ({"redirect_uri": ""}, "invalid_request"),
    ({"code": ""}, "invalid_request"),
    ({"code": "made-up-code"}, "invalid_grant"),
])
def test_exchange_checks_code_and_redirect_uri(public, change, error):
    app, client_id = public
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    args = {"code": code, "redirect_uri": REDIRECT, **change}
    response = exchange(app, client_id, args["code"], verifier,
                        redirect_uri=args["redirect_uri"], status=400)
    assert response.json["error"] == error


def test_code_of_another_client_is_invalid_grant(public):
    app, client_id = public
    other_id, _ = make_client(app, name="Other")
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    response = exchange(app, other_id, code, verifier, status=400)
    assert response.json["error"] == "invalid_grant"
    exchange(app, client_id, code, verifier, status=200)


def test_expired_code_is_invalid_grant(public):
    app, client_id = public
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    with app.db() as db:
        db.execute(update(AuthorizationCode).values(
            expires_at=utcnow() - dt.timedelta(seconds=1)))
    response = exchange(app, client_id, code, verifier, status=400)
    assert response.json == {"error": "invalid_grant",
                             "error_description": "Authorization code has expired"}


def test_confidential_client_authenticates_by_basic_or_form(app):
    client_id, secret = make_client(app, confidential=True)
    app.login()
    for basic in (True, False):
        verifier, challenge = pkce_pair()
        code = get_code(app, client_id, challenge=challenge)
        exchange(app, client_id, code, verifier, secret=secret, basic=basic, status=200)
    with app.db() as db:
        methods = [e.details["client_auth"] for e in db.scalars(select(AuditLog).where(
            AuditLog.event_type == "AUTHORIZATION_CODE_EXCHANGED")
            .order_by(AuditLog.event_time))]
    assert methods == ["client_secret_basic", "client_secret_post"]

    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    wrong = exchange(app, client_id, code, verifier, secret="ags_wrong", basic=True, status=401)
    assert wrong.json["error"] == "invalid_client"
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")
    missing = exchange(app, client_id, code, verifier, status=401)
    assert missing.json["error"] == "invalid_client"
    exchange(app, client_id, code, verifier, secret=secret, status=200)


def test_exchange_after_consent_revoked_is_invalid_grant(public):
    app, client_id = public
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    with app.db() as db:
        consent = db.scalars(select(UserAuthorization)).one()
        consents.revoke(db, consent)
    response = exchange(app, client_id, code, verifier, status=400)
    assert response.json["error"] == "invalid_grant"


def test_exchange_for_disabled_user_is_invalid_grant(public):
    app, client_id = public
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    with app.db() as db:
        db.execute(update(User).where(User.username == "admin").values(is_active=False))
    assert exchange(app, client_id, code, verifier, status=400).json["error"] == "invalid_grant"


def test_grant_disabled_for_client_is_unauthorized_client(public):
    app, client_id = public
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    with app.db() as db:
        db.execute(update(OAuthClient).where(OAuthClient.client_id == client_id)
                   .values(enable_auth_code_flow=False))
    response = exchange(app, client_id, code, verifier, status=400)
    assert response.json["error"] == "unauthorized_client"


# ---------------------------------------------------------------------------
# Consents service: revoke, list; the device flow records consents too
# ---------------------------------------------------------------------------


def test_revoking_consent_revokes_its_tokens(public):
    app, client_id = public
    verifier, challenge = pkce_pair()
    tokens = exchange(app, client_id, get_code(app, client_id, challenge=challenge), verifier,
                      status=200).json
    with app.db() as db:
        user = db.scalars(select(User).where(User.username == "admin")).one()
        [(consent, client)] = consents.list_for_user(db, user.id)
        assert client.client_id == client_id
        assert consents.get_for_user(db, user.id, consent.uuid) is consent
        assert consents.get_for_user(db, "someone-else", consent.uuid) is None
        assert consents.revoke(db, consent) == 2
        assert consents.revoke(db, consent) == 0
        assert consent.revoked_at is not None and not consent.is_active
        assert consents.list_for_user(db, user.id) == []
        assert len(consents.list_for_user(db, user.id, active_only=False)) == 1
    app.testapp.get("/oauth/tokeninfo", status=401,
                    headers={"Authorization": f"Bearer {tokens['access_token']}"})
    # Approving again brings the same row back under a new public id.
    get_code(app, client_id, challenge=pkce_pair()[1])
    with app.db() as db:
        again = db.scalars(select(UserAuthorization)).one()
        assert again.is_active and again.revoked_at is None and again.uuid != consent.uuid


def test_device_approval_records_consent_and_links_tokens(app):
    code = app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id}).json
    app.login()
    page = app.testapp.get(f"/device?user_code={code['user_code']}")
    form(page, "/device/verify").submit("action", value="approve")
    tokens = app.testapp.post("/oauth/token", {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": code["device_code"], "client_id": app.default_client_id},
        status=200).json
    with app.db() as db:
        consent = db.scalars(select(UserAuthorization)).one()
        assert consent.client_id == app.default_client_id and consent.scopes == "email profile"
        access = db.scalars(select(Token).where(
            Token.token_hash == sha256_hex(tokens["access_token"]))).one()
        assert access.authorization_id == consent.id
        assert consents.revoke(db, consent) == 2
    assert "USER_AUTHORIZATION_GRANTED" in events(app)


def test_concurrent_exchange_loses_on_the_conditional_update(public, monkeypatch):
    """Two exchanges of one code: the one whose UPDATE ... WHERE used_at IS NULL finds
    the code already used (the other committed after this one read it) is refused."""
    from authgate.services import authorize

    app, client_id = public
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge)
    real_verify = authorize.verify_pkce

    def other_request_wins(row, presented):
        real_verify(row, presented)
        with app.db() as db:  # a concurrent request's transaction, committed first
            db.execute(update(AuthorizationCode).values(used_at=utcnow()))

    monkeypatch.setattr(authorize, "verify_pkce", other_request_wins)
    response = exchange(app, client_id, code, verifier, status=400)
    assert response.json["error"] == "invalid_grant"
    assert "already been used" in response.json["error_description"]
    assert token_rows(app) == []


def test_request_values_are_escaped_on_the_consent_page(public):
    app, client_id = public
    state = '"><script>alert(1)</script>'
    page = app.testapp.get(authorize_url(client_id, state=state, code_challenge=pkce_pair()[1],
                                         code_challenge_method="S256"), status=200)
    assert "<script>alert(1)</script>" not in page.text
    response = form(page, "/oauth/authorize").submit("action", value="approve", status=302)
    assert query_of(response.location)["state"] == state


def test_empty_request_parameter_is_ignored(public):
    app, client_id = public
    app.testapp.get(authorize_url(client_id, request="", code_challenge=pkce_pair()[1],
                                  code_challenge_method="S256"), status=200)
