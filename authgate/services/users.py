"""Signing people in through the auth-source chain, and syncing external users."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authgate.auth import AuthChain
from authgate.interfaces import AuthContext, AuthRejected, Identity
from authgate.models import User

DISABLED_MESSAGE = "Your account has been disabled. Please contact an administrator."
CONFLICT_MESSAGE = "Username conflict with existing user. Please contact administrator."


def find_by_username(db: Session, username: str) -> User | None:
    return db.scalars(select(User).where(User.username == username)).first()


def sign_in(db: Session, chain: AuthChain, username: str, password: str,
            ctx: AuthContext) -> User:
    """The user behind these credentials, or AuthRejected with the message to show."""
    username = username.strip()
    if not username or not password:
        raise AuthRejected("Enter your username and password", reason="missing credentials")
    if len(username) > 255 or len(password) > 1024:
        raise AuthRejected(reason="credentials too long")
    existing = find_by_username(db, username)
    if existing is not None and not existing.is_active:
        # Before any password check: the person learns why, not that the password was wrong.
        raise AuthRejected(DISABLED_MESSAGE, reason="account disabled")
    identity = chain.authenticate(username, password, ctx)
    user = sync_identity(db, identity)
    if not user.is_active:
        raise AuthRejected(DISABLED_MESSAGE, reason="account disabled")
    return user


def sync_identity(db: Session, identity: Identity) -> User:
    """The local user row for an identity; external identities are created or updated.

    An external user is matched by (external_id, auth_source).  A username or
    email that belongs to another row is a conflict: the login is refused with
    CONFLICT_MESSAGE and no row is changed (every check runs before any write,
    because the request's transaction still commits after a refused login).
    """
    if identity.user_id:
        user = db.get(User, identity.user_id)
        if user is None:
            raise AuthRejected(reason="identity names a user that does not exist")
        return user
    if not identity.external_id:
        raise AuthRejected(reason=f"source {identity.auth_source} returned no user id")
    user = _find_external(db, identity)
    if user is None:
        user = _create_external(db, identity)
        if user is not None:
            return user
        # Lost a race with a concurrent first login of the same person: update theirs.
        user = _find_external(db, identity)
        if user is None:
            raise AuthRejected(CONFLICT_MESSAGE, reason="username conflict")
    owner = find_by_username(db, identity.username)
    if owner is not None and owner.id != user.id:
        raise AuthRejected(CONFLICT_MESSAGE, reason=f"username conflict: {identity.username!r} "
                           f"belongs to another user ({owner.auth_source})")
    email = identity.email or None
    if email and email != user.email and _email_taken(db, email, but=user.id):
        raise AuthRejected(CONFLICT_MESSAGE, reason="email conflict: the new email belongs to "
                           "another user")
    if user.username != identity.username:
        user.username = identity.username
    if email and email != user.email:
        user.email = email
        user.email_verified = False
    if identity.full_name and identity.full_name != user.full_name:
        user.full_name = identity.full_name
    return user


def _find_external(db: Session, identity: Identity) -> User | None:
    return db.scalars(select(User).where(User.external_id == identity.external_id,
                                         User.auth_source == identity.auth_source)).first()


def _email_taken(db: Session, email: str, *, but: str | None = None) -> bool:
    query = select(User.id).where(User.email == email)
    if but is not None:
        query = query.where(User.id != but)
    return db.scalars(query).first() is not None


def _create_external(db: Session, identity: Identity) -> User | None:
    """A new row for an external identity; None when a concurrent login created it first."""
    owner = find_by_username(db, identity.username)
    if owner is not None:
        raise AuthRejected(CONFLICT_MESSAGE, reason=f"username conflict: {identity.username!r} "
                           f"belongs to another user ({owner.auth_source})")
    email = identity.email or None
    if email and _email_taken(db, email):
        raise AuthRejected(CONFLICT_MESSAGE, reason="email conflict: the email belongs to "
                           "another user")
    user = User(username=identity.username, email=email,
                full_name=identity.full_name or "", role="user", is_active=True,
                auth_source=identity.auth_source, external_id=identity.external_id)
    try:
        with db.begin_nested():
            db.add(user)
    except IntegrityError:
        # Unique username/email: another request inserted the same person meanwhile.
        return None
    return user
