"""HS256 signer: one shared secret (JWT_SECRET, at least 32 bytes); JWKS is empty."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.errors import ConfigurationError
from authgate.jwssign import CompactSigner
from authgate.settings import Setting

MIN_SECRET_BYTES = 32
log = logging.getLogger("authgate.signer")


class HS256Signer:
    alg = "HS256"
    kid = None

    def __init__(self, secret: str):
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes for HS256 "
                f"(got {len(secret.encode())}); generate one with: "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'")
        self._key = secret.encode()
        self._signer = CompactSigner("HS256", self._key)

    def sign(self, claims: Mapping[str, Any]) -> str:
        # The bytes jwt.encode(claims, key, algorithm="HS256") gives, with the key
        # prepared once (authgate.jwssign).
        return self._signer.sign(claims)

    def verify(self, token: str, *, audience: str | Sequence[str] | None = None) -> dict:
        return jwt.decode(token, self._key, algorithms=["HS256"], audience=audience,
                          options={"require": ["exp", "iat"],
                                   "verify_aud": audience is not None})

    def jwks(self) -> dict:
        # A symmetric secret is never published.
        return {"keys": []}


def _factory(ctx: BuildContext) -> HS256Signer:
    secret = ctx.settings.jwt_secret
    if not secret:
        raise ConfigurationError("JWT_SECRET is required for HS256 signing (at least "
                                 f"{MIN_SECRET_BYTES} bytes); set it in the environment")
    signer = HS256Signer(secret)
    log.info("Token signing: HS256 (symmetric)")
    return signer


@hookimpl
def authgate_add_settings(spec):
    spec.add(Setting("jwt_secret", "JWT_SECRET", "str", "", secret=True, section="Tokens",
                     help="HS256 signing key, at least 32 bytes. Changing it invalidates "
                          "every issued token."))


@hookimpl
def authgate_register_signers():
    return [ComponentSpec("hs256", _factory, "HMAC-SHA256 with JWT_SECRET")]
