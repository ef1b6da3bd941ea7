"""Issued tokens (claims, storage, profiles), start-up caps and GET /oauth/tokeninfo."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import jwt
import pytest
from sqlalchemy import select, update

from authgate.errors import ConfigurationError
from authgate.models import OAuthClient, Token, User, utcnow
from authgate.services import tokens
from authgate.services.secrets import sha256_hex
from authgate.testing import TEST_JWT_SECRET, form

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def device_flow_tokens(app, client_id=None):
    """Drive the device flow through HTTP, as a CLI would."""
    client_id = client_id or app.default_client_id
    code = app.testapp.post("/oauth/device/code", {"client_id": client_id}).json
    app.login()
    page = app.testapp.get(f"/device?user_code={code['user_code']}")
    form(page, "/device/verify").submit("action", value="approve")
    return app.testapp.post("/oauth/token", {"grant_type": GRANT, "client_id": client_id,
                                             "device_code": code["device_code"]}).json


def issue(app, client_id=None, scopes=("email", "profile"), subject=None):
    """Tokens minted by the service in their own committed transaction."""
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(
            OAuthClient.client_id == (client_id or app.default_client_id))).one()
        if subject is None:
            subject = db.scalars(select(User.id).where(User.username == "admin")).one()
        issued = tokens.issue(db, app.runtime.signer, app.runtime.settings, subject=subject,
                              client=client, scopes=list(scopes), grant_type=GRANT)
        return issued.access_token, issued.refresh_token


def add_client(app, profile="standard", **fields):
    client_id = str(uuid.uuid4())
    with app.db() as db:
        db.add(OAuthClient(client_id=client_id, name=f"{profile} app", token_profile=profile,
                           scopes="email profile", client_type="public", **fields))
    return client_id


def claims_of(token):
    return jwt.decode(token, options={"verify_signature": False})


def set_status(app, token, **values):
    with app.db() as db:
        db.execute(update(Token).where(Token.token_hash == sha256_hex(token)).values(**values))


# ---------------------------------------------------------------------------
# Claims and storage
# ---------------------------------------------------------------------------


def test_device_flow_tokens_carry_the_documented_claims(app):
    body = device_flow_tokens(app)
    access, refresh = claims_of(body["access_token"]), claims_of(body["refresh_token"])
    with app.db() as db:
        admin_id = db.scalars(select(User.id).where(User.username == "admin")).one()
        rows = {r.token_category: r for r in db.scalars(select(Token))}
    assert set(access) == {"iss", "sub", "user_id", "client_id", "scope", "type", "exp", "iat",
                           "jti"}
    assert access["iss"] == "http://localhost:8080"
    assert access["sub"] == access["user_id"] == admin_id
    assert access["client_id"] == app.default_client_id
    assert access["scope"] == "email profile" and access["type"] == "access"
    assert refresh["type"] == "refresh" and refresh["jti"] != access["jti"]
    # standard profile: 10h + jitter in [0, 30m)
    assert 36000 <= access["exp"] - access["iat"] < 36000 + 1800
    assert refresh["exp"] - refresh["iat"] == 720 * 3600
    assert 36000 - 5 <= body["expires_in"] < 36000 + 1800
    # stored by hash, with the JWT's jti; the pair is one family
    assert rows["access"].token_hash == sha256_hex(body["access_token"])
    assert rows["access"].jti == access["jti"] and rows["access"].id != access["jti"]
    assert rows["refresh"].token_family_id == rows["refresh"].id
    assert rows["access"].parent_token_id == rows["refresh"].id
    assert rows["access"].token_family_id == rows["refresh"].id
    assert {r.status for r in rows.values()} == {"active"}
    jwt.decode(body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])  # really signed


@pytest.mark.parametrize(("audience", "expected"), [
    ("api.example.com", "api.example.com"),
    ("api-one, api-two", ["api-one", "api-two"]),
])
def test_audience_claim_when_configured(make_app, audience, expected):
    app = make_app({"authgate.jwt_audience": audience})
    access, _ = issue(app)
    assert claims_of(access)["aud"] == expected


def test_short_profile_lifetimes(app):
    client_id = add_client(app, "short")
    body = device_flow_tokens(app, client_id)
    access, refresh = claims_of(body["access_token"]), claims_of(body["refresh_token"])
    assert access["exp"] - access["iat"] == 15 * 60
    assert refresh["exp"] - refresh["iat"] == 24 * 3600
    assert 895 <= body["expires_in"] <= 900


def test_long_profile_lifetimes(app):
    client_id = add_client(app, "long")
    access, refresh = (claims_of(t) for t in issue(app, client_id))
    assert access["exp"] - access["iat"] == 24 * 3600
    assert refresh["exp"] - refresh["iat"] == 2160 * 3600


def test_profile_settings_override(make_app):
    app = make_app({"authgate.token_profile_short_access_ttl": "5m",
                    "authgate.token_profile_standard_access_ttl": "2h"})
    short = claims_of(issue(app, add_client(app, "short"))[0])
    standard = claims_of(issue(app)[0])
    assert short["exp"] - short["iat"] == 300
    assert standard["exp"] - standard["iat"] == 7200  # diverged standard: exact, no jitter


def test_unknown_profile_is_standard(app, caplog):
    client_id = add_client(app, "turbo")
    access = claims_of(issue(app, client_id)[0])
    assert 36000 <= access["exp"] - access["iat"] < 37800
    assert "unknown token_profile 'turbo'" in caplog.text


@pytest.mark.parametrize(("settings", "message"), [
    ({"authgate.jwt_expiration": "25h"}, "JWT_EXPIRATION (25h"),
    ({"authgate.token_profile_long_refresh_ttl": "3000h"}, "TOKEN_PROFILE_LONG_REFRESH_TTL"),
    ({"authgate.jwt_expiration_jitter": "11h"}, "JWT_EXPIRATION_JITTER (11h)"),
])
def test_bad_caps_stop_startup(make_app, settings, message):
    with pytest.raises(ConfigurationError, match=r"JWT_EXPIRATION|REFRESH_TOKEN") as info:
        make_app(settings)
    assert message in str(info.value)


def test_environment_raises_the_cap(make_app):
    app = make_app(environ={"JWT_EXPIRATION": "30h", "JWT_EXPIRATION_MAX": "48h",
                            "JWT_EXPIRATION_JITTER": "0"})
    access = claims_of(issue(app)[0])
    assert access["exp"] - access["iat"] == 30 * 3600


# ---------------------------------------------------------------------------
# GET /oauth/tokeninfo
# ---------------------------------------------------------------------------


def tokeninfo(app, token=None, status=200, header=None):
    headers = {"Authorization": header or f"Bearer {token}"} if (token or header) else {}
    return app.testapp.get("/oauth/tokeninfo", headers=headers, status=status)


def test_tokeninfo_for_a_user_token(app):
    access, _ = issue(app)
    response = tokeninfo(app, access)
    body = response.json
    with app.db() as db:
        admin_id = db.scalars(select(User.id).where(User.username == "admin")).one()
    assert body == {"active": True, "user_id": admin_id, "client_id": app.default_client_id,
                    "scope": "email profile", "exp": claims_of(access)["exp"],
                    "iss": "http://localhost:8080", "subject_type": "user"}
    assert response.headers["Cache-Control"] == "no-store"


def test_tokeninfo_for_a_machine_token(app):
    access, _ = issue(app, subject=f"client:{app.default_client_id}")
    assert tokeninfo(app, access).json["subject_type"] == "client"


def test_tokeninfo_without_a_token(app):
    response = tokeninfo(app, status=401)
    assert response.json["error"] == "missing_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _assert_invalid(response, description="Token is invalid or expired"):
    assert response.json == {"error": "invalid_token", "error_description": description}
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("state", ["revoked", "disabled"])
def test_tokeninfo_rejects_revoked_and_disabled(app, state):
    access, _ = issue(app)
    tokeninfo(app, access)
    set_status(app, access, status=state)
    _assert_invalid(tokeninfo(app, access, status=401))


def test_tokeninfo_rejects_expired_tokens(app):
    access, _ = issue(app)
    set_status(app, access, expires_at=utcnow() - dt.timedelta(seconds=1))
    _assert_invalid(tokeninfo(app, access, status=401))  # row expired, JWT not yet
    expired = jwt.encode({**claims_of(access), "exp": 1000, "iat": 900}, TEST_JWT_SECRET,
                         algorithm="HS256")
    _assert_invalid(tokeninfo(app, expired, status=401))


def test_tokeninfo_rejects_refresh_tokens_unknown_and_garbage(app):
    _, refresh = issue(app)
    _assert_invalid(tokeninfo(app, refresh, status=401))
    _assert_invalid(tokeninfo(app, "not-a-jwt", status=401))
    unknown = jwt.encode({"type": "access", "exp": 4102444800, "iat": 1}, TEST_JWT_SECRET,
                         algorithm="HS256")
    _assert_invalid(tokeninfo(app, unknown, status=401))


def test_tokeninfo_signature_failures_use_the_guide_text(app):
    access, _ = issue(app)
    claims = claims_of(access)
    other_key = jwt.encode(claims, "another-secret-that-is-long-enough-123456", algorithm="HS256")
    header, payload, signature = access.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "scope": "admin"}).encode())
    tampered = f"{header}.{forged.decode().rstrip('=')}.{signature}"
    none_alg = jwt.encode(claims, None, algorithm="none")
    for bad in (other_key, tampered, none_alg):
        _assert_invalid(tokeninfo(app, bad, status=401), "Token signature verification failed")


def test_tokeninfo_accepts_a_bare_token_like_the_original(app):
    access, _ = issue(app)
    assert tokeninfo(app, header=access).json["active"] is True
    assert tokeninfo(app, header=f"bearer {access}").json["active"] is True


# ---------------------------------------------------------------------------
# Asymmetric signing: only the configured algorithm and keys verify
# ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_rs256_tokens_verify_and_alg_confusion_is_rejected(make_app, tmp_path):
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    app = make_app({"authgate.jwt_signing_algorithm": "RS256",
                    "authgate.jwt_private_key_path": str(path)})
    access, _ = issue(app)
    assert jwt.get_unverified_header(access)["alg"] == "RS256"
    assert tokeninfo(app, access).json["active"] is True

    claims = claims_of(access)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    kid = jwt.get_unverified_header(access)["kid"]
    signing_input = (_b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "."
                     + _b64(json.dumps(claims).encode()))
    confused = signing_input + "." + _b64(
        hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown_kid = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "rogue"})
    wrong_key_same_kid = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": kid})
    for bad in (confused, unknown_kid, wrong_key_same_kid):
        _assert_invalid(tokeninfo(app, bad, status=401), "Token signature verification failed")
