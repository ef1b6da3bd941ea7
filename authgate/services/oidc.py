"""OpenID Connect: ID tokens (Core §2, §3.1.3.6), UserInfo claims (§5.3, §5.4) and
the discovery document (Discovery 1.0 §3, RFC 8414 §2)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from authgate.ids import new_uuid
from authgate.models import utcnow
from authgate.services import scopes as scope_rules
from authgate.services.tokens import lifetimes, timestamp

if TYPE_CHECKING:
    from authgate.interfaces import ISigner
    from authgate.models import OAuthClient, User
    from authgate.settings import Settings

OPENID = "openid"

# Claims by scope (Core §5.4); the ID token and UserInfo release the same ones.
SCOPE_CLAIMS = {
    "profile": ("name", "preferred_username", "picture", "updated_at"),
    "email": ("email", "email_verified"),
}
CLAIMS_SUPPORTED = ("sub", "iss", "aud", "exp", "iat", "jti", "auth_time", "nonce", "at_hash",
                    *SCOPE_CLAIMS["profile"], *SCOPE_CLAIMS["email"])


def issuer(settings: Settings) -> str:
    """The issuer identifier: BASE_URL without a trailing slash."""
    return settings.base_url.rstrip("/")


def _hash_for(alg: str):
    # Core §3.1.3.6: the hash of the JWS alg (SHA-256 for HS256/RS256/ES256).
    bits = alg[-3:]
    return getattr(hashlib, f"sha{bits}", hashlib.sha256)


def token_hash(value: str, alg: str) -> str:
    """``at_hash``: base64url of the left half of the hash of the token's ASCII text."""
    digest = _hash_for(alg)(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def scope_claims(user: User, scopes: Iterable[str]) -> dict[str, Any]:
    """The user's claims released by ``scopes`` (empty values left out)."""
    granted = set(scopes)
    claims: dict[str, Any] = {}
    if "profile" in granted:
        if user.full_name:
            claims["name"] = user.full_name
        claims["preferred_username"] = user.username
        if user.avatar_url:
            claims["picture"] = user.avatar_url
        if user.updated_at is not None:
            claims["updated_at"] = timestamp(user.updated_at)
    if "email" in granted and user.email:
        claims["email"] = user.email
        claims["email_verified"] = bool(user.email_verified)
    return claims


def id_token(signer: ISigner, settings: Settings, *, user: User, client: OAuthClient,
             scopes: Iterable[str], access_token: str, nonce: str = "",
             auth_time: int | None = None) -> str:
    """A signed ID token for ``user`` and ``client`` (Core §2).

    It lives as long as the client's access tokens (without jitter); it is
    not stored and not revocable, like the original's.
    """
    now = utcnow().replace(microsecond=0)
    claims: dict[str, Any] = {
        "iss": issuer(settings),
        "sub": user.id,
        "aud": client.client_id,
        "exp": timestamp(now + lifetimes(settings, client).access),
        "iat": timestamp(now),
        "jti": new_uuid(),
        "at_hash": token_hash(access_token, signer.alg),
    }
    if auth_time:
        claims["auth_time"] = int(auth_time)
    if nonce:
        claims["nonce"] = nonce
    claims.update(scope_claims(user, scopes))
    return signer.sign(claims)


def userinfo(settings: Settings, user: User, scopes: Iterable[str]) -> dict[str, Any]:
    """The UserInfo response (Core §5.3.2): ``sub`` plus the claims of the scopes."""
    return {"sub": user.id, "iss": issuer(settings), **scope_claims(user, scopes)}


def metadata(settings: Settings, signer: ISigner, *, grant_types: Iterable[str],
             registration_path: str | None = None) -> dict[str, Any]:
    """The discovery document, for /.well-known/openid-configuration and
    /.well-known/oauth-authorization-server alike (RFC 8414 §2 lets one document
    carry both vocabularies).  Only endpoints this server has are listed:
    ``jwks_uri`` when the signer publishes keys (RS256/ES256), the registration
    endpoint when ``registration_path`` is given."""
    base = issuer(settings)
    client_auth = ["client_secret_basic", "client_secret_post"]
    doc: dict[str, Any] = {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "device_authorization_endpoint": f"{base}/oauth/device/code",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "introspection_endpoint": f"{base}/oauth/introspect",
    }
    if signer.jwks().get("keys"):
        doc["jwks_uri"] = f"{base}/.well-known/jwks.json"
    if registration_path:
        doc["registration_endpoint"] = base + registration_path
    doc.update({
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(grant_types),
        "token_endpoint_auth_methods_supported": [*client_auth, "none"],
        "revocation_endpoint_auth_methods_supported": [*client_auth, "none"],
        "introspection_endpoint_auth_methods_supported": client_auth,
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(scope_rules.DESCRIPTIONS),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [signer.alg],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
    })
    return doc
