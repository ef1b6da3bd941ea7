"""Issuing access and refresh tokens (JWTs stored by their SHA-256 hash)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authgate.models import OAuthClient, Token, utcnow
from authgate.services.secrets import sha256_hex

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from authgate.interfaces import ISigner
    from authgate.settings import Settings


@dataclass
class IssuedTokens:
    access_token: str
    access: Token
    refresh_token: str | None = None
    refresh: Token | None = None

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": max(0, int((self.access.expires_at - utcnow()).total_seconds())),
            "scope": self.access.scopes,
        }
        if self.refresh_token:
            body["refresh_token"] = self.refresh_token
        return body


def _claims(settings: Settings, *, subject: str, client_id: str, scopes: str, kind: str,
            issued: dt.datetime, expires: dt.datetime, jti: str) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": settings.base_url,
        "sub": subject,
        "user_id": subject,
        "client_id": client_id,
        "scope": scopes,
        "type": kind,
        "iat": int(issued.replace(tzinfo=dt.UTC).timestamp()),
        "exp": int(expires.replace(tzinfo=dt.UTC).timestamp()),
        "jti": jti,
    }
    audience = settings.jwt_audience
    if audience:
        claims["aud"] = audience[0] if len(audience) == 1 else list(audience)
    return claims


def _mint(db: Session, signer: ISigner, settings: Settings, *, subject: str,
          client: OAuthClient, scopes: str, kind: str, lifetime: dt.timedelta,
          grant_type: str, **row: Any) -> tuple[str, Token]:
    issued = utcnow().replace(microsecond=0)
    expires = issued + lifetime
    jti = str(uuid.uuid4())
    jwt_text = signer.sign(_claims(settings, subject=subject, client_id=client.client_id,
                                   scopes=scopes, kind=kind, issued=issued, expires=expires,
                                   jti=jti))
    token = Token(token_hash=sha256_hex(jwt_text), jti=jti, token_category=kind,
                  user_id=subject, client_id=client.client_id, scopes=scopes,
                  expires_at=expires, created_at=issued, grant_type=grant_type, **row)
    db.add(token)
    return jwt_text, token


def issue(db: Session, signer: ISigner, settings: Settings, *, subject: str,
          client: OAuthClient, scopes: list[str], grant_type: str,
          with_refresh: bool = True, authorization_id: int | None = None) -> IssuedTokens:
    """An access token, plus a refresh token when enabled; both rows in the caller's
    transaction so they are stored together or not at all."""
    scope_text = " ".join(scopes)
    access_text, access = _mint(db, signer, settings, subject=subject, client=client,
                                scopes=scope_text, kind="access",
                                lifetime=settings.jwt_expiration, grant_type=grant_type,
                                authorization_id=authorization_id)
    issued = IssuedTokens(access_text, access)
    if with_refresh and settings.enable_refresh_tokens:
        refresh_text, refresh = _mint(db, signer, settings, subject=subject, client=client,
                                      scopes=scope_text, kind="refresh",
                                      lifetime=settings.refresh_token_expiration,
                                      grant_type=grant_type,
                                      authorization_id=authorization_id)
        db.flush()
        refresh.token_family_id = refresh.id
        access.parent_token_id = refresh.id
        access.token_family_id = refresh.id
        issued.refresh_token, issued.refresh = refresh_text, refresh
    db.flush()
    return issued
