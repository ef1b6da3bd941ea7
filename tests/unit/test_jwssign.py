"""authgate.jwssign: the same tokens as jwt.encode, with the key prepared once."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authgate.jwssign import CompactSigner

CLAIMS = {"iss": "https://auth.example.com", "sub": "client:abc", "client_id": "abc",
          "scope": "read write", "type": "access", "iat": 1765000000, "exp": 1765003600,
          "jti": "4bca24bf-71b4-4567-bc75-29e5784e799b", "aud": ["api-1", "api-2"],
          "name": "Zoë \u2603"}
HEADERS = {"kid": "key-2026", "typ": "JWT"}


def test_hs256_tokens_are_byte_for_byte_pyjwts():
    secret = b"s" * 48
    assert CompactSigner("HS256", secret).sign(CLAIMS) == jwt.encode(CLAIMS, secret,
                                                                     algorithm="HS256")


def test_rs256_tokens_are_byte_for_byte_pyjwts():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert (CompactSigner("RS256", key, HEADERS).sign(CLAIMS)
            == jwt.encode(CLAIMS, key, algorithm="RS256", headers=HEADERS))


def test_es256_tokens_have_pyjwts_header_and_verify():
    key = ec.generate_private_key(ec.SECP256R1())
    token = CompactSigner("ES256", key, HEADERS).sign(CLAIMS)
    reference = jwt.encode(CLAIMS, key, algorithm="ES256", headers=HEADERS)
    assert token.split(".")[:2] == reference.split(".")[:2]  # signatures are randomised
    assert jwt.decode(token, key.public_key(), algorithms=["ES256"], audience="api-1",
                      options={"verify_exp": False}) == CLAIMS


def test_payload_rules_match_pyjwt():
    secret = b"s" * 48
    signer = CompactSigner("HS256", secret)
    when = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)
    with_datetimes = {**CLAIMS, "iat": when, "exp": when + dt.timedelta(hours=1)}
    assert signer.sign(with_datetimes) == jwt.encode(with_datetimes, secret, algorithm="HS256")
    with pytest.raises(TypeError):
        signer.sign({**CLAIMS, "iss": 42})
    assert CLAIMS["iat"] == 1765000000  # the caller's claims are left alone
