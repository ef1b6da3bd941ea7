"""POST /oauth/introspect (RFC 7662) and POST /oauth/revoke (RFC 7009)."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
import warnings
from urllib.parse import quote_plus

import jwt
import pytest
from sqlalchemy import select, update

from authgate.models import AuditLog, OAuthClient, Token, User, utcnow
from authgate.services import tokens
from authgate.services.secrets import hash_client_secret, sha256_hex
from authgate.testing import TEST_JWT_SECRET

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SECRET = "rs-secret+with/odd=chars&%"
ROTATION = {"authgate.enable_token_rotation": "true"}


def issue(app, client_id=None, scopes=("email", "profile"), subject=None):
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(
            OAuthClient.client_id == (client_id or app.default_client_id))).one()
        if subject is None:
            subject = db.scalars(select(User.id).where(User.username == "admin")).one()
        issued = tokens.issue(db, app.runtime.signer, app.runtime.settings, subject=subject,
                              client=client, scopes=list(scopes), grant_type=GRANT)
        return issued.access_token, issued.refresh_token


def add_client(app, *, secret=None, status="active", name="Resource server"):
    client_id = str(uuid.uuid4())
    with app.db() as db:
        db.add(OAuthClient(
            client_id=client_id, name=name, scopes="email profile",
            client_type="confidential" if secret else "public",
            client_secret_hash=hash_client_secret(secret) if secret else "", status=status))
    return client_id


def basic(client_id, secret):
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def status_of(app, token):
    with app.db() as db:
        return db.scalars(select(Token.status).where(Token.token_hash == sha256_hex(token))).one()


def set_row(app, token, **values):
    with app.db() as db:
        db.execute(update(Token).where(Token.token_hash == sha256_hex(token)).values(**values))


def events(app, event_type):
    with app.db() as db:
        return db.scalars(select(AuditLog).where(AuditLog.event_type == event_type)).all()


@pytest.fixture
def rs(app):
    """A confidential client acting as a resource server."""
    return add_client(app, secret=SECRET)


def introspect(app, rs, token, status=200, **extra):
    return app.testapp.post("/oauth/introspect", {"token": token, **extra},
                            headers=basic(rs, SECRET), status=status)


# ---------------------------------------------------------------------------
# Introspection: caller authentication
# ---------------------------------------------------------------------------


def _assert_401(response, description):
    assert response.json == {"error": "invalid_client", "error_description": description}
    assert response.headers["WWW-Authenticate"] == 'Basic realm="authgate"'
    assert response.headers["Cache-Control"] == "no-store"


def test_introspection_requires_client_authentication(app, rs):
    access, _ = issue(app)
    _assert_401(app.testapp.post("/oauth/introspect", {"token": access}, status=401),
                "Client authentication required")
    # a confidential client id without its secret
    _assert_401(app.testapp.post("/oauth/introspect", {"token": access, "client_id": rs},
                                 status=401), "Client authentication required")
    _assert_401(app.testapp.post("/oauth/introspect", {"token": access}, status=401,
                                 headers=basic(rs, "wrong")), "Client authentication failed")
    _assert_401(app.testapp.post("/oauth/introspect", {
        "token": access, "client_id": rs, "client_secret": "wrong"}, status=401),
        "Client authentication failed")
    _assert_401(app.testapp.post("/oauth/introspect", {"token": access}, status=401,
                                 headers=basic("no-such-client", SECRET)),
                "Client authentication failed")
    assert not events(app, "TOKEN_INTROSPECTED")


def test_public_clients_may_not_introspect(app):
    access, _ = issue(app)
    _assert_401(app.testapp.post("/oauth/introspect", {
        "token": access, "client_id": app.default_client_id}, status=401),
        "Client authentication failed")


def test_inactive_confidential_client_may_not_introspect(app):
    access, _ = issue(app)
    pending = add_client(app, secret=SECRET, status="pending")
    _assert_401(app.testapp.post("/oauth/introspect", {"token": access}, status=401,
                                 headers=basic(pending, SECRET)), "Client authentication failed")


def test_form_credentials_work_and_token_is_required(app, rs):
    access, _ = issue(app)
    body = app.testapp.post("/oauth/introspect", {
        "token": access, "client_id": rs, "client_secret": SECRET}).json
    assert body["active"] is True
    missing = app.testapp.post("/oauth/introspect", {}, headers=basic(rs, SECRET), status=400)
    assert missing.json["error"] == "invalid_request"


# ---------------------------------------------------------------------------
# Introspection: token states
# ---------------------------------------------------------------------------


def test_active_access_token_metadata(app, rs):
    access, _ = issue(app)
    response = introspect(app, rs, access, token_type_hint="access_token")
    body = response.json
    claims = jwt.decode(access, options={"verify_signature": False})
    with app.db() as db:
        admin_id = db.scalars(select(User.id).where(User.username == "admin")).one()
    assert body == {"active": True, "scope": "email profile",
                    "client_id": app.default_client_id, "username": "admin",
                    "token_type": "Bearer", "exp": claims["exp"], "iat": claims["iat"],
                    "sub": admin_id, "iss": "http://localhost:8080", "jti": claims["jti"]}
    assert response.headers["Cache-Control"] == "no-store"
    (event,) = events(app, "TOKEN_INTROSPECTED")
    assert event.actor_user_id == f"client:{rs}"
    assert event.details["active"] is True


def test_refresh_token_metadata(app, rs):
    _, refresh = issue(app)
    body = introspect(app, rs, refresh).json
    assert body["active"] is True and body["token_type"] == "refresh_token"


def test_machine_token_has_no_username_and_aud_is_reported(make_app):
    app = make_app({"authgate.jwt_audience": "https://api.example.com"})
    rs = add_client(app, secret=SECRET)
    access, _ = issue(app, subject=f"client:{app.default_client_id}")
    body = introspect(app, rs, access).json
    assert body["active"] is True and "username" not in body
    assert body["sub"] == f"client:{app.default_client_id}"
    assert body["aud"] == "https://api.example.com"


@pytest.mark.parametrize("state", ["unknown", "revoked", "disabled", "expired_row",
                                   "expired_jwt", "foreign_key", "foreign_alg", "none_alg"])
def test_inactive_states(app, rs, state):
    access, _ = issue(app)
    token = access
    if state == "unknown":
        token = "definitely-not-a-token"
    elif state in ("revoked", "disabled"):
        set_row(app, access, status=state)
    elif state == "expired_row":
        set_row(app, access, expires_at=utcnow() - dt.timedelta(seconds=1))
    else:
        claims = jwt.decode(access, options={"verify_signature": False})
        if state == "expired_jwt":
            token = jwt.encode({**claims, "exp": 1000}, TEST_JWT_SECRET, algorithm="HS256")
        elif state == "foreign_key":
            token = jwt.encode(claims, "an-attacker-secret-that-is-long-enough-99",
                               algorithm="HS256")
        elif state == "foreign_alg":
            with warnings.catch_warnings():  # the short HS512 key is the point here
                warnings.simplefilter("ignore")
                token = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS512")
        else:
            token = jwt.encode(claims, None, algorithm="none")
        # Make the row match the forged text, so only the signature/alg check stands
        # between it and "active".
        set_row(app, access, token_hash=sha256_hex(token))
    body = introspect(app, rs, token).json
    assert body == {"active": False}


def test_disable_then_enable(app, rs):
    access, _ = issue(app)
    set_row(app, access, status="disabled")
    assert introspect(app, rs, access).json == {"active": False}
    set_row(app, access, status="active")
    assert introspect(app, rs, access).json["active"] is True


# ---------------------------------------------------------------------------
# Revocation
# ---------------------------------------------------------------------------


def revoke(app, token, client_id=None, status=200, headers=None, **extra):
    params = {"token": token, **extra}
    if client_id is not False:
        params["client_id"] = client_id or app.default_client_id
    return app.testapp.post("/oauth/revoke", params, headers=headers or {}, status=status)


def test_revoke_access_token(app, rs):
    access, refresh = issue(app)
    response = revoke(app, access, token_type_hint="access_token")
    assert response.body == b""
    assert response.headers["Cache-Control"] == "no-store"
    assert status_of(app, access) == "revoked"  # the row is kept for the audit trail
    assert status_of(app, refresh) == "active"  # revoking an access token leaves the grant
    assert introspect(app, rs, access).json == {"active": False}
    app.testapp.get("/oauth/tokeninfo", headers={"Authorization": f"Bearer {access}"},
                    status=401)
    (event,) = events(app, "TOKEN_REVOKED")
    assert event.actor_user_id == f"client:{app.default_client_id}"
    assert event.details["token_category"] == "access"
    assert "token" not in (event.details or {})


def test_revoke_refresh_token_takes_its_access_tokens(app, rs):
    access, refresh = issue(app)
    refreshed = app.testapp.post("/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": refresh,
        "client_id": app.default_client_id}).json
    _, other_refresh = issue(app)  # another session of the same user
    revoke(app, refresh, token_type_hint="access_token")  # a wrong hint is only a hint
    for token in (refresh, access, refreshed["access_token"]):
        assert status_of(app, token) == "revoked"
        assert introspect(app, rs, token).json == {"active": False}
    assert status_of(app, other_refresh) == "active"
    again = app.testapp.post("/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": refresh,
        "client_id": app.default_client_id}, status=400)
    assert again.json["error"] == "invalid_grant"
    (event,) = events(app, "TOKEN_REVOKED")
    assert event.details["tokens_revoked"] == 3


def test_revoke_in_rotation_mode_takes_the_whole_family(make_app):
    app = make_app(ROTATION)
    first_access, first_refresh = issue(app)
    second = app.testapp.post("/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": first_refresh,
        "client_id": app.default_client_id}).json
    revoke(app, second["refresh_token"])
    # the access token issued before the rotation is of the same grant: gone too
    for token in (first_access, second["access_token"], second["refresh_token"]):
        assert status_of(app, token) == "revoked"


def test_unknown_token_is_200(app):
    assert revoke(app, "never-issued").body == b""
    assert not events(app, "TOKEN_REVOKED")


def test_another_clients_token_is_left_alone(app):
    access, refresh = issue(app)
    intruder = add_client(app, name="Intruder")
    assert revoke(app, access, client_id=intruder).body == b""
    assert revoke(app, refresh, client_id=intruder).body == b""
    assert status_of(app, access) == status_of(app, refresh) == "active"
    assert not events(app, "TOKEN_REVOKED")


def test_revoke_requires_client_identification(app):
    access, _ = issue(app)
    response = revoke(app, access, client_id=False, status=401)
    assert response.json == {"error": "invalid_client",
                             "error_description": "Client authentication required"}
    assert response.headers["WWW-Authenticate"] == 'Basic realm="authgate"'
    unknown = revoke(app, access, client_id="nobody", status=401)
    assert unknown.json["error_description"] == "Client authentication failed"
    assert status_of(app, access) == "active"
    assert revoke(app, "", status=400).json["error"] == "invalid_request"


def test_confidential_client_must_authenticate_to_revoke(app):
    client_id = add_client(app, secret=SECRET, name="Backend")
    access, _ = issue(app, client_id)
    without = revoke(app, access, client_id=client_id, status=401)
    assert without.json["error_description"] == "Client authentication required"
    wrong = revoke(app, access, client_id=client_id, client_secret="nope", status=401)
    assert wrong.json["error_description"] == "Client authentication failed"
    assert status_of(app, access) == "active"
    # HTTP Basic with form-urlencoded special characters (RFC 6749 §2.3.1)
    revoke(app, access, client_id=False, headers=basic(client_id, SECRET))
    assert status_of(app, access) == "revoked"


def test_revoking_a_disabled_token_makes_it_permanent(app, rs):
    access, _ = issue(app)
    set_row(app, access, status="disabled")
    revoke(app, access)
    assert status_of(app, access) == "revoked"
