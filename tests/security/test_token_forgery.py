"""Forged, altered and foreign tokens are refused by every endpoint that reads a token.

Two independent checks protect each endpoint: the JWT must verify with this
server's signer (algorithm pinned, key picked by ``kid``), and the exact token
text must be a live row of this server's database (looked up by its SHA-256).
Each test pins the layer it is about: a refusal "at the signature" carries the
description ``Token signature verification failed``; a refusal by the database
(or by ``exp``) carries ``Token is invalid or expired``.  So removing either
check fails a test here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from security_support import (
    INVALID_OR_EXPIRED,
    SIGNATURE_FAILED,
    add_confidential_client,
    b64json,
    b64url,
    basic,
    claims_of,
    header_of,
    issue,
)
from sqlalchemy import update

from authgate.models import Token, utcnow
from authgate.services.secrets import sha256_hex
from authgate.testing import TEST_JWT_SECRET

OTHER_SECRET = "another-deployments-secret-that-is-long-enough-0123"


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture
def rs256_app(make_app, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(_pem(key))
    path.chmod(0o600)
    app = make_app({"authgate.jwt_signing_algorithm": "RS256",
                    "authgate.jwt_private_key_path": str(path)})
    return app, key


@pytest.fixture
def es256_app(make_app, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(_pem(key))
    path.chmod(0o600)
    app = make_app({"authgate.jwt_signing_algorithm": "ES256",
                    "authgate.jwt_private_key_path": str(path)})
    return app, key


def bearer(app, path: str, token: str, method: str = "GET"):
    return app.testapp.request(path, method=method, expect_errors=True,
                               headers={"Authorization": f"Bearer {token}"})


def assert_refused(app, token: str, description: str) -> None:
    """tokeninfo and userinfo answer 401 invalid_token with ``description``;
    introspection says inactive; the signer itself refuses signature forgeries."""
    for path, method in (("/oauth/tokeninfo", "GET"), ("/oauth/userinfo", "GET"),
                         ("/oauth/userinfo", "POST")):
        response = bearer(app, path, token, method)
        assert response.status_int == 401, (path, response.text)
        assert response.json["error"] == "invalid_token"
        assert response.json["error_description"] == description, (path, response.json)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    client_id, secret = add_confidential_client(app)
    answer = app.testapp.post("/oauth/introspect", {"token": token},
                              headers=basic(client_id, secret), status=200)
    assert answer.json == {"active": False}
    if description == SIGNATURE_FAILED:
        with pytest.raises(jwt.InvalidTokenError):
            app.runtime.signer.verify(token)


def assert_accepted(app, token: str) -> None:
    assert bearer(app, "/oauth/tokeninfo", token).status_int == 200


def refresh_refused(app, refresh: str) -> None:
    response = app.testapp.post("/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": refresh,
        "client_id": app.default_client_id}, status=400)
    assert response.json["error"] == "invalid_grant"


# ---------------------------------------------------------------------------
# Signature attacks
# ---------------------------------------------------------------------------


def test_alg_none_token_is_rejected(app):
    access, refresh = issue(app)
    assert_accepted(app, access)
    claims = claims_of(access)
    for alg in ("none", "None", "NONE", "nOnE"):
        unsigned = f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(claims)}."
        assert_refused(app, unsigned, SIGNATURE_FAILED)
        # Keeping the real signature but claiming alg none does not help either.
        with_signature = f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(claims)}." + \
            access.rsplit(".", 1)[1]
        assert_refused(app, with_signature, SIGNATURE_FAILED)
        refresh_unsigned = f"{b64json({'alg': alg})}.{b64json(claims_of(refresh))}."
        refresh_refused(app, refresh_unsigned)


def test_alg_none_token_is_rejected_by_the_asymmetric_signer(es256_app):
    app, _ = es256_app
    access, _ = issue(app)
    header = {**header_of(access), "alg": "none"}
    assert_refused(app, f"{b64json(header)}.{b64json(claims_of(access))}.", SIGNATURE_FAILED)


def test_hs256_token_signed_with_the_rsa_public_key_is_rejected(rs256_app):
    """Algorithm confusion: the RS256 public key (published in the JWKS) used as an
    HMAC secret.  The signer pins RS256, so the HS256 token never verifies."""
    app, key = rs256_app
    access, _ = issue(app)
    assert header_of(access)["alg"] == "RS256"
    assert_accepted(app, access)
    claims, kid = claims_of(access), header_of(access)["kid"]
    public = key.public_key()
    secrets_tried = [
        public.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        public.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo),
    ]
    for secret in secrets_tried:
        signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}." \
                        f"{b64json({**claims, 'scope': 'admin'})}"
        forged = signing_input + "." + b64url(
            hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
        assert_refused(app, forged, SIGNATURE_FAILED)


def test_tampered_payload_is_rejected(app):
    access, refresh = issue(app)
    header, _, signature = access.split(".")
    for change in ({"scope": "email profile admin"}, {"sub": "someone-else"},
                   {"exp": claims_of(access)["exp"] + 86400}, {"client_id": "other"}):
        forged = f"{header}.{b64json({**claims_of(access), **change})}.{signature}"
        assert_refused(app, forged, SIGNATURE_FAILED)
    # The refresh token likewise (a longer life, another subject).
    r_header, _, r_signature = refresh.split(".")
    refresh_refused(app, f"{r_header}.{b64json({**claims_of(refresh), 'sub': 'x'})}."
                         f"{r_signature}")
    # A flipped bit in the signature.
    flipped = access[:-2] + ("A" if access[-2] != "A" else "B") + access[-1]
    assert_refused(app, flipped, SIGNATURE_FAILED)


def test_token_signed_with_a_guessed_hs256_secret_is_rejected(app):
    access, _ = issue(app)
    forged = jwt.encode(claims_of(access), OTHER_SECRET, algorithm="HS256")
    assert_refused(app, forged, SIGNATURE_FAILED)


# ---------------------------------------------------------------------------
# Expiry: the JWT's exp and the row's expires_at are each enforced
# ---------------------------------------------------------------------------


def test_expired_jwt_is_rejected_even_while_its_row_is_live(app):
    access, _ = issue(app, lifetime=dt.timedelta(seconds=-60))
    assert claims_of(access)["exp"] < utcnow().timestamp() + 1
    with app.db() as db:  # the row says "live for another hour": only exp protects
        db.execute(update(Token).where(Token.token_hash == sha256_hex(access))
                   .values(expires_at=utcnow() + dt.timedelta(hours=1)))
    assert_refused(app, access, INVALID_OR_EXPIRED)


def test_expired_row_is_rejected_even_while_its_jwt_is_live(app):
    access, refresh = issue(app)
    with app.db() as db:
        db.execute(update(Token).where(Token.token_hash.in_(
            [sha256_hex(access), sha256_hex(refresh)]))
            .values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert_refused(app, access, INVALID_OR_EXPIRED)
    refresh_refused(app, refresh)


# ---------------------------------------------------------------------------
# Tokens from another issuer
# ---------------------------------------------------------------------------


def test_token_from_another_issuer_sharing_the_signing_key_is_rejected(make_app):
    """A staging server configured with the production JWT_SECRET (or any other
    deployment that shares a key) issues a perfectly signed token: it is still
    refused here, because it is not a row of this server's database.

    ``iss`` itself is not compared: the database lookup by the token's hash is
    stricter (it also refuses tokens of this issuer that were never issued), and
    a BASE_URL change does not invalidate every issued token.
    """
    here = make_app(environ={"BASE_URL": "https://auth.example.com"})
    staging = make_app(environ={"BASE_URL": "https://staging.example.com"})
    assert here.runtime.settings.jwt_secret == staging.runtime.settings.jwt_secret
    foreign, foreign_refresh = issue(staging)
    assert claims_of(foreign)["iss"] == "https://staging.example.com"
    assert_accepted(staging, foreign)
    here.runtime.signer.verify(foreign)  # the signature is valid here too ...
    assert_refused(here, foreign, INVALID_OR_EXPIRED)  # ... the token is not
    refresh_refused(here, foreign_refresh)


def test_token_minted_with_our_key_for_another_issuer_is_rejected(app):
    access, _ = issue(app)
    claims = {**claims_of(access), "iss": "https://evil.example.com",
              "jti": "forged-jti"}
    forged = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    assert_refused(app, forged, INVALID_OR_EXPIRED)


def test_token_from_another_issuer_with_its_own_key_is_rejected(make_app):
    here = make_app()
    other = make_app(environ={"BASE_URL": "https://other.example.com",
                              "JWT_SECRET": OTHER_SECRET})
    foreign, _ = issue(other)
    assert_accepted(other, foreign)
    assert_refused(here, foreign, SIGNATURE_FAILED)


# ---------------------------------------------------------------------------
# Key ids
# ---------------------------------------------------------------------------


def test_wrong_kid_is_rejected(es256_app):
    app, key = es256_app
    access, _ = issue(app)
    assert_accepted(app, access)
    claims, kid = claims_of(access), header_of(access)["kid"]
    rogue = ec.generate_private_key(ec.SECP256R1())
    forgeries = [
        jwt.encode(claims, rogue, algorithm="ES256", headers={"kid": "rogue"}),
        jwt.encode(claims, rogue, algorithm="ES256", headers={"kid": kid}),
        jwt.encode(claims, rogue, algorithm="ES256"),  # no kid at all
        jwt.encode(claims, key, algorithm="ES256", headers={"kid": "../../etc/passwd"}),
        jwt.encode(claims, key, algorithm="ES256", headers={"kid": "' OR '1'='1"}),
    ]
    for forged in forgeries:
        assert_refused(app, forged, SIGNATURE_FAILED)


def test_embedded_jwk_header_is_not_trusted(es256_app):
    """A token carrying its own key (``jwk``/``jku`` header, CVE-2018-0114 style)
    verifies only with the keys configured on the server."""
    from jwt.algorithms import ECAlgorithm

    app, _ = es256_app
    access, _ = issue(app)
    rogue = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(rogue.public_key(), as_dict=True)
    forged = jwt.encode(claims_of(access), rogue, algorithm="ES256",
                        headers={"kid": header_of(access)["kid"], "jwk": jwk,
                                 "jku": "https://evil.example.com/jwks.json"})
    assert_refused(app, forged, SIGNATURE_FAILED)
