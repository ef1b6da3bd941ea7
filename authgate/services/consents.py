"""Consents (table ``user_authorizations``): which clients a user has approved, for
which scopes.

One row per (user, client), reused when the user approves the client again.
Tokens issued under a consent carry its id (``tokens.authorization_id``), so
revoking the consent revokes them.

Functions that change a consent take an optional ``request``: when given, the
audit event (USER_AUTHORIZATION_GRANTED / USER_AUTHORIZATION_REVOKED) is
recorded on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, or_, select, true, update
from sqlalchemy.exc import IntegrityError

from authgate.models import OAuthClient, Token, UserAuthorization, new_uuid, utcnow
from authgate.models.token import ACTIVE, DISABLED, REVOKED
from authgate.rawsql import prebuilt

if TYPE_CHECKING:
    from pyramid.request import Request
    from sqlalchemy.orm import Session

    from authgate.rawsql import RawUnit


def find(db: Session, user_id: str, client_id: str) -> UserAuthorization | None:
    """The consent row of (user, client), active or not."""
    return db.scalars(select(UserAuthorization).where(
        UserAuthorization.user_id == user_id,
        UserAuthorization.client_id == client_id)).first()


_consents = UserAuthorization.__table__.c
# The token endpoint's one question about consents, prebuilt (authgate.rawsql): the
# device grant links its tokens to the consent the approval recorded.
_ACTIVE_ID = prebuilt(select(_consents.id).where(
    _consents.user_id == bindparam("user_id"), _consents.client_id == bindparam("client_id"),
    _consents.is_active == true()))


def active_id(db: Session | RawUnit, user_id: str, client_id: str) -> int | None:
    """The id of the active consent of (user, client), or None."""
    return db.execute(_ACTIVE_ID, {"user_id": user_id, "client_id": client_id}).scalar()


def find_active(db: Session, user_id: str, client_id: str) -> UserAuthorization | None:
    consent = find(db, user_id, client_id)
    return consent if consent is not None and consent.is_active else None


def covers(consent: UserAuthorization | None, scopes: Iterable[str]) -> bool:
    """True when ``consent`` is active and grants every scope in ``scopes``."""
    if consent is None or not consent.is_active:
        return False
    return set(scopes) <= set(consent.scopes.split())


def get_for_user(db: Session, user_id: str, uuid: str) -> UserAuthorization | None:
    """The consent with public id ``uuid`` if it belongs to ``user_id`` (else None)."""
    if not uuid or len(uuid) > 36:
        return None
    consent = db.scalars(select(UserAuthorization)
                         .where(UserAuthorization.uuid == uuid)).first()
    return consent if consent is not None and consent.user_id == user_id else None


def list_for_user(db: Session, user_id: str, *, active_only: bool = True
                  ) -> list[tuple[UserAuthorization, OAuthClient | None]]:
    """(consent, client) pairs of a user, most recently granted first."""
    stmt = (select(UserAuthorization, OAuthClient)
            .outerjoin(OAuthClient, OAuthClient.client_id == UserAuthorization.client_id)
            .where(UserAuthorization.user_id == user_id)
            .order_by(UserAuthorization.granted_at.desc(), UserAuthorization.id.desc()))
    if active_only:
        stmt = stmt.where(UserAuthorization.is_active.is_(True))
    return [(consent, client) for consent, client in db.execute(stmt)]


def upsert(db: Session, *, user_id: str, client: OAuthClient, scopes: Iterable[str],
           request: Request | None = None, via: str = "authorization_code"
           ) -> UserAuthorization:
    """Record that ``user_id`` approved ``client`` for ``scopes``.

    The scopes replace the stored ones (the consent is what the user approved
    last); the row is made active again if it was revoked, with a new public id.
    ``via`` names the flow for the audit event (``authorization_code``,
    ``device``).
    """
    scope_text = " ".join(dict.fromkeys(scopes))
    now = utcnow()
    consent = find(db, user_id, client.client_id)
    if consent is None:
        consent = UserAuthorization(user_id=user_id, application_id=client.id,
                                    client_id=client.client_id, scopes=scope_text,
                                    granted_at=now, is_active=True, created_at=now,
                                    updated_at=now)
        try:
            with db.begin_nested():
                db.add(consent)
        except IntegrityError:
            # Approved at the same moment in another request: update that row.
            consent = find(db, user_id, client.client_id)
            if consent is None:
                raise
    if consent.is_active is False:
        consent.uuid = new_uuid()
    consent.scopes = scope_text
    consent.application_id = client.id
    consent.is_active = True
    consent.revoked_at = None
    consent.granted_at = now
    db.flush()
    if request is not None:
        from authgate.audit import record

        record(request, "USER_AUTHORIZATION_GRANTED", actor_user_id=user_id,
               action=f"Access granted to {client.name}", resource_type="AUTHORIZATION",
               resource_id=consent.uuid, resource_name=client.name,
               details={"client_id": client.client_id, "scopes": scope_text, "via": via})
    return consent


def revoke(db: Session, consent: UserAuthorization, *, request: Request | None = None
           ) -> int:
    """Withdraw a consent: it becomes inactive (``revoked_at`` set) and every live
    token the client holds for the user is revoked -- the tokens issued under the
    consent (``authorization_id``) and any other token of that (user, client) pair,
    since a person who removes an app expects it to lose access whatever flow it
    used.  Returns the number of tokens revoked.  Revoking an inactive consent
    changes nothing and returns 0.

    With ``request``, records USER_AUTHORIZATION_REVOKED (actor: the signed-in
    user, e.g. the owner on /account/authorizations or an admin).
    """
    if not consent.is_active:
        return 0
    consent.is_active = False
    consent.revoked_at = utcnow()
    count = db.execute(
        update(Token).where(
            or_(Token.authorization_id == consent.id,
                (Token.user_id == consent.user_id) & (Token.client_id == consent.client_id)),
            Token.status.in_((ACTIVE, DISABLED)))
        .values(status=REVOKED).execution_options(synchronize_session=False)).rowcount
    db.flush()
    if request is not None:
        from authgate.audit import record

        client = db.scalars(select(OAuthClient)
                            .where(OAuthClient.client_id == consent.client_id)).first()
        name = client.name if client is not None else consent.client_id
        record(request, "USER_AUTHORIZATION_REVOKED",
               action=f"Access of {name} revoked", resource_type="AUTHORIZATION",
               resource_id=consent.uuid, resource_name=name,
               details={"client_id": consent.client_id, "user_id": consent.user_id,
                        "scopes": consent.scopes, "tokens_revoked": count})
    return count
