"""The refresh-token grant (RFC 6749 §6) in fixed and rotation modes.

Two steps, so the race between two refreshes of one token is visible and
testable:

``load``
    Find and check the presented refresh token (read-only, except for reuse
    detection: in rotation mode a revoked or disabled refresh token revokes its
    whole family and raises :class:`RefreshTokenReused`).
``exchange``
    Decide with ONE conditional UPDATE (``WHERE id = ? AND status = 'active'``)
    and mint the new tokens.  Of two concurrent refreshes of the same token in
    rotation mode, exactly one sees its UPDATE change a row; the other gets
    ``invalid_grant`` and — being a second use of the same refresh token — is
    treated as reuse like any later replay (family revoked, RefreshTokenReused),
    so detection does not depend on how close together the two uses were.

Neither step commits: the caller's transaction stores everything or nothing.
The caller must turn an OAuthError into a response (not let it propagate), so
that a family revocation is committed together with the error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jwt
from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from authgate.models import OAuthClient, Token, User, utcnow
from authgate.models.token import ACTIVE, DISABLED, REVOKED
from authgate.services import scopes as scope_rules
from authgate.services.errors import OAuthError
from authgate.services.tokens import (
    ACCESS,
    REFRESH,
    IssuedTokens,
    SignatureInvalid,
    access_lifetime,
    family_of,
    find,
    lifetimes,
    mint,
    revoke_family,
    store,
    verify_jwt,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from authgate.interfaces import ISigner
    from authgate.settings import Settings

GRANT_TYPE = "refresh_token"
INVALID = "Refresh token is invalid or expired"


def _invalid(description: str = INVALID) -> OAuthError:
    return OAuthError("invalid_grant", description)


class RefreshTokenReused(OAuthError):
    """A revoked or disabled refresh token was presented in rotation mode.

    The family has already been revoked (in the caller's transaction) when this
    is raised; the caller records SUSPICIOUS_ACTIVITY and answers invalid_grant.
    """

    def __init__(self, row: Token, family_id: str, revoked: int, previous_status: str):
        super().__init__("invalid_grant", INVALID)
        self.row = row
        self.family_id = family_id
        self.revoked = revoked
        self.previous_status = previous_status


def _reused(db: Session, row: Token) -> RefreshTokenReused:
    """Revoke the family of a reused refresh token; the error to raise."""
    family, previous = family_of(row), row.status
    count = revoke_family(db, family, also_children_of=row.id)
    return RefreshTokenReused(row, family, count, previous)


def load(db: Session, signer: ISigner, settings: Settings, *, client: OAuthClient,
         token_text: str) -> Token:
    """The presented refresh token's row, checked; or raise OAuthError.

    The token must exist, be a refresh token issued to ``client`` (a token of
    another client is simply invalid_grant: RFC 6749 §6 "ensure that the refresh
    token was issued to the authenticated client"), be active and unexpired,
    carry a valid signature with ``type=refresh``, and its user must still be
    active.
    """
    row = find(db, token_text)
    if row is None or row.token_category != REFRESH or row.client_id != client.client_id:
        raise _invalid()
    if row.status != ACTIVE:
        if settings.enable_token_rotation and row.status in (REVOKED, DISABLED):
            raise _reused(db, row)
        raise _invalid()
    if row.expires_at <= utcnow():
        raise _invalid()
    try:
        claims = verify_jwt(signer, token_text, REFRESH)
    except (jwt.InvalidTokenError, SignatureInvalid):
        raise _invalid() from None
    if claims.get("client_id") != client.client_id or claims.get("sub") != row.user_id:
        raise _invalid()
    if not row.user_id.startswith("client:"):
        user = db.get(User, row.user_id)
        if user is None or not user.is_active:
            raise _invalid()
    return row


def narrowed_scopes(requested: str | None, row: Token) -> list[str]:
    """RFC 6749 §6: ``scope`` may only narrow the original grant; empty = unchanged."""
    original = row.scopes.split()
    wanted = scope_rules.parse(requested)
    if not wanted:
        return original
    if any(s not in original for s in wanted):
        raise OAuthError("invalid_scope", "Requested scope exceeds original grant")
    return wanted


def exchange(db: Session, signer: ISigner, settings: Settings, *, client: OAuthClient,
             row: Token, token_text: str, scope: str | None = None) -> IssuedTokens:
    """New tokens for a loaded refresh token (see the module docstring).

    Fixed mode: a new access token; the response repeats the same refresh token
    and its ``last_used_at`` is updated.  Rotation mode: a new access token and a
    new refresh token in the same family (parent = the old refresh token); the
    old one is revoked.  A narrowed ``scope`` applies to the new access token; a
    new refresh token keeps the original scope (§6).  Lifetimes come from the
    client's token profile as it is now.
    """
    granted = narrowed_scopes(scope, row)
    now = utcnow()
    rotation = settings.enable_token_rotation
    values = {"status": REVOKED, "last_used_at": now} if rotation else {"last_used_at": now}
    won = db.execute(
        update(Token)
        .where(Token.id == row.id, Token.status == ACTIVE, Token.expires_at > now)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not won:
        # Another request rotated, revoked or disabled it between load() and here.
        # In rotation mode that is the same token used twice — reuse, whoever was
        # first — so the outcome does not depend on timing: the family is revoked.
        db.refresh(row)
        if rotation and row.status in (REVOKED, DISABLED):
            raise _reused(db, row)
        raise _invalid()

    life = lifetimes(settings, client)
    family = family_of(row)
    links = {"authorization_id": row.authorization_id,
             "authorization_code_id": row.authorization_code_id,
             "token_family_id": family}
    refresh_text, refresh_row = token_text, row
    if rotation:
        refresh_text, refresh_row = mint(
            db, signer, settings, subject=row.user_id, client=client, scopes=row.scopes,
            kind=REFRESH, lifetime=life.refresh, grant_type=row.grant_type or GRANT_TYPE,
            parent_token_id=row.id, **links)
    # The access token's parent is the refresh token the client now holds, so
    # revoking that refresh token takes this access token with it.
    access_text, access = mint(
        db, signer, settings, subject=row.user_id, client=client, scopes=" ".join(granted),
        kind=ACCESS, lifetime=access_lifetime(settings, life),
        grant_type=row.grant_type or GRANT_TYPE, parent_token_id=refresh_row.id, **links)
    store(db, [refresh_row, access] if rotation else [access])
    # The UPDATE above bypassed the session; record its values on the loaded row
    # instead of expiring it (which costs a SELECT when the caller reads row.id).
    for key, value in values.items():
        set_committed_value(row, key, value)
    return IssuedTokens(access_text, access, refresh_text, refresh_row)


def refresh(db: Session, signer: ISigner, settings: Settings, *, client: OAuthClient,
            token_text: str, scope: str | None = None) -> IssuedTokens:
    """``load`` then ``exchange``."""
    row = load(db, signer, settings, client=client, token_text=token_text)
    return exchange(db, signer, settings, client=client, row=row, token_text=token_text,
                    scope=scope)
