"""The client credentials grant (RFC 6749 §4.4): a service acting on its own behalf.

Only confidential clients with the flow enabled; the token's subject is
``client:<client_id>``; no refresh token, no ID token; its lifetime is
CLIENT_CREDENTIALS_TOKEN_EXPIRATION, whatever the client's token profile.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from authgate.services import scopes as scope_rules
from authgate.services import tokens
from authgate.services.errors import OAuthError
from authgate.settings import Setting

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from authgate.interfaces import ISigner
    from authgate.models import OAuthClient
    from authgate.settings import Settings

GRANT_TYPE = "client_credentials"
# Scopes about a person; a machine token cannot carry them.
USER_ONLY_SCOPES = ("openid", "offline_access")

SETTINGS: list[Setting] = [
    Setting("client_credentials_token_expiration", "CLIENT_CREDENTIALS_TOKEN_EXPIRATION",
            "duration", dt.timedelta(hours=1), minimum=dt.timedelta(seconds=1),
            section="Tokens",
            help="Lifetime of access tokens from the client credentials grant (no jitter; "
                 "token profiles do not apply)."),
]


def subject(client: OAuthClient) -> str:
    return f"client:{client.client_id}"


def resolve_scopes(requested: str | None, client: OAuthClient) -> list[str]:
    """The scopes of a machine token: a subset of the client's, never ``openid`` or
    ``offline_access``.  None requested -> the client's scopes minus those two."""
    wanted = scope_rules.parse(requested)
    if not wanted:
        return [s for s in client.scope_list if s not in USER_ONLY_SCOPES]
    user_only = [s for s in wanted if s in USER_ONLY_SCOPES]
    if user_only:
        raise OAuthError("invalid_scope", f"{' '.join(user_only)} cannot be requested with "
                                          "the client credentials grant")
    return scope_rules.resolve_requested(requested, client.scope_list)


def issue(db: Session, signer: ISigner, settings: Settings, *, client: OAuthClient,
          scope: str | None) -> tokens.IssuedTokens:
    """An access token for an authenticated, active, flow-enabled client."""
    granted = resolve_scopes(scope, client)
    return tokens.issue(db, signer, settings, subject=subject(client), client=client,
                        scopes=granted, grant_type=GRANT_TYPE, with_refresh=False,
                        access_ttl=settings.client_credentials_token_expiration)
