"""OpenID Connect: ID tokens and UserInfo, through the WSGI app."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from test_authorize import events, exchange, get_code, make_client, pkce_pair

from authgate.models import AuditLog, Token, User
from authgate.testing import TEST_JWT_SECRET, form


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def es256_settings(tmp_path) -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "es256.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)
    return {"authgate.jwt_signing_algorithm": "ES256",
            "authgate.jwt_private_key_path": str(path)}


def set_profile(app, **values):
    with app.db() as db:
        db.execute(update(User).where(User.username == "admin").values(**values))


def sign_in_and_get_tokens(app, client_id, scope="openid email profile", nonce="nonce-123",
                           secret=None):
    before = int(time.time())
    app.login()
    after = int(time.time())
    verifier, challenge = pkce_pair()
    code = get_code(app, client_id, challenge=challenge, scope=scope, nonce=nonce)
    tokens = exchange(app, client_id, code, verifier, secret=secret, status=200).json
    return tokens, (before, after)


def hs256_claims(app, id_token, client_id):
    return jwt.decode(id_token, TEST_JWT_SECRET, algorithms=["HS256"], audience=client_id,
                      issuer=app.runtime.settings.base_url.rstrip("/"))


def test_id_token_claims(make_app):
    app = make_app({"authgate.base_url": "http://auth.example.com/"})
    client_id, _ = make_client(app)
    set_profile(app, full_name="Ada Admin", email="ada@example.com", email_verified=True)
    tokens, (before, after) = sign_in_and_get_tokens(app, client_id)
    claims = hs256_claims(app, tokens["id_token"], client_id)
    header = jwt.get_unverified_header(tokens["id_token"])
    assert header["alg"] == "HS256"
    with app.db() as db:
        user = db.scalars(select(User).where(User.username == "admin")).one()
        user_id, updated_at = user.id, user.updated_at
    assert claims["iss"] == "http://auth.example.com"
    assert claims["sub"] == user_id and claims["aud"] == client_id
    assert claims["nonce"] == "nonce-123"
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    assert before <= claims["auth_time"] <= after
    assert claims["iat"] <= claims["exp"] and claims["exp"] - claims["iat"] == 10 * 3600
    assert claims["name"] == "Ada Admin" and claims["preferred_username"] == "admin"
    assert claims["updated_at"] == int(updated_at.replace(tzinfo=dt.UTC).timestamp())
    assert claims["email"] == "ada@example.com" and claims["email_verified"] is True
    assert "picture" not in claims  # empty values are left out
    assert "ID_TOKEN_ISSUED" in events(app)


def test_auth_time_is_the_login_not_the_code(app):
    client_id, _ = make_client(app)
    app.login()
    login_done = int(time.time())
    time.sleep(1.2)
    verifier, challenge = pkce_pair()
    tokens = exchange(app, client_id, get_code(app, client_id, challenge=challenge,
                                               scope="openid"), verifier, status=200).json
    claims = hs256_claims(app, tokens["id_token"], client_id)
    assert claims["auth_time"] <= login_done < claims["iat"]


@pytest.mark.parametrize(("scope", "present", "absent"), [
    ("openid", set(), {"name", "preferred_username", "email", "email_verified"}),
    ("openid email", {"email", "email_verified"}, {"name", "preferred_username"}),
    ("openid profile", {"preferred_username", "updated_at"}, {"email"}),
])
def test_id_token_claims_follow_scopes(app, scope, present, absent):
    client_id, _ = make_client(app)
    set_profile(app, email="ada@example.com")
    tokens, _ = sign_in_and_get_tokens(app, client_id, scope=scope, nonce="")
    claims = hs256_claims(app, tokens["id_token"], client_id)
    assert present <= set(claims) and not absent & set(claims)
    assert "nonce" not in claims


def test_no_openid_no_id_token(app):
    client_id, _ = make_client(app)
    tokens, _ = sign_in_and_get_tokens(app, client_id, scope="email profile")
    assert "id_token" not in tokens
    assert "ID_TOKEN_ISSUED" not in events(app)


def test_es256_id_token_verifies_with_jwks(make_app, tmp_path):
    app = make_app(es256_settings(tmp_path))
    client_id, secret = make_client(app, confidential=True)
    tokens, _ = sign_in_and_get_tokens(app, client_id, secret=secret)
    keys = app.testapp.get("/.well-known/jwks.json").json["keys"]
    header = jwt.get_unverified_header(tokens["id_token"])
    assert header["alg"] == "ES256"
    [jwk] = [k for k in keys if k["kid"] == header["kid"]]
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(tokens["id_token"], key, algorithms=["ES256"], audience=client_id,
                        issuer="http://localhost:8080")
    assert claims["nonce"] == "nonce-123"
    assert claims["at_hash"] == at_hash(tokens["access_token"])


def test_id_token_is_not_an_access_token(app):
    client_id, _ = make_client(app)
    tokens, _ = sign_in_and_get_tokens(app, client_id)
    for path in ("/oauth/userinfo", "/oauth/tokeninfo"):
        app.testapp.get(path, status=401,
                        headers={"Authorization": f"Bearer {tokens['id_token']}"})


# ---------------------------------------------------------------------------
# UserInfo
# ---------------------------------------------------------------------------


def test_userinfo_get_and_post(app):
    client_id, _ = make_client(app)
    set_profile(app, full_name="Ada Admin", email="ada@example.com")
    tokens, _ = sign_in_and_get_tokens(app, client_id)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    got = app.testapp.get("/oauth/userinfo", headers=bearer, status=200)
    assert got.headers["Cache-Control"] == "no-store"
    posted = app.testapp.post("/oauth/userinfo", headers=bearer, status=200)
    assert got.json == posted.json
    body = got.json
    claims = hs256_claims(app, tokens["id_token"], client_id)
    assert body["sub"] == claims["sub"] and body["iss"] == "http://localhost:8080"
    assert body["name"] == "Ada Admin" and body["preferred_username"] == "admin"
    assert body["email"] == "ada@example.com" and body["email_verified"] is False


def test_userinfo_claims_follow_the_token_scope(app):
    client_id, _ = make_client(app)
    set_profile(app, email="ada@example.com")
    tokens, _ = sign_in_and_get_tokens(app, client_id, scope="openid")
    body = app.testapp.get("/oauth/userinfo", status=200, headers={
        "Authorization": f"Bearer {tokens['access_token']}"}).json
    assert set(body) == {"sub", "iss"}


def test_userinfo_without_token_is_a_bare_challenge(app):
    for response in (app.testapp.get("/oauth/userinfo", status=401),
                     app.testapp.post("/oauth/userinfo", status=401),
                     app.testapp.get("/oauth/userinfo", status=401,
                                     headers={"Authorization": "Basic Zm9vOmJhcg=="})):
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer") and "error=" not in challenge
        assert response.json["error"] == "invalid_token"


def test_userinfo_token_only_in_header(app):
    client_id, _ = make_client(app)
    tokens, _ = sign_in_and_get_tokens(app, client_id)
    app.testapp.get(f"/oauth/userinfo?access_token={tokens['access_token']}", status=401)
    app.testapp.post("/oauth/userinfo", {"access_token": tokens["access_token"]}, status=401)


def test_userinfo_rejects_bad_and_revoked_tokens(app):
    client_id, _ = make_client(app)
    tokens, _ = sign_in_and_get_tokens(app, client_id)
    bad = app.testapp.get("/oauth/userinfo", status=401,
                          headers={"Authorization": "Bearer not-a-token"})
    assert bad.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert bad.json["error"] == "invalid_token"
    with app.db() as db:
        db.execute(update(Token).values(status="revoked"))
    revoked = app.testapp.get("/oauth/userinfo", status=401, headers={
        "Authorization": f"Bearer {tokens['access_token']}"})
    assert revoked.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_userinfo_for_disabled_user_is_invalid_token(app):
    client_id, _ = make_client(app)
    tokens, _ = sign_in_and_get_tokens(app, client_id)
    set_profile(app, is_active=False)
    app.testapp.get("/oauth/userinfo", status=401,
                    headers={"Authorization": f"Bearer {tokens['access_token']}"})


def test_device_flow_token_works_at_userinfo(app):
    code = app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id}).json
    app.login()
    page = app.testapp.get(f"/device?user_code={code['user_code']}")
    form(page, "/device/verify").submit("action", value="approve")
    tokens = app.testapp.post("/oauth/token", {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": code["device_code"], "client_id": app.default_client_id}).json
    body = app.testapp.get("/oauth/userinfo", status=200, headers={
        "Authorization": f"Bearer {tokens['access_token']}"}).json
    assert body["preferred_username"] == "admin"


def test_refresh_does_not_reissue_id_token(app):
    client_id, _ = make_client(app)
    tokens, _ = sign_in_and_get_tokens(app, client_id)
    refreshed = app.testapp.post("/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": client_id}, status=200).json
    assert "id_token" not in refreshed
    with app.db() as db:
        assert db.scalars(select(AuditLog).where(
            AuditLog.event_type == "ID_TOKEN_ISSUED")).one()
