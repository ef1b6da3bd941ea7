"""Signing people in through the auth-source chain, and syncing external users."""

from __future__ import annotations

from sqlalchemy import select
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
    """The local user row for an identity; external identities are created or updated."""
    if identity.user_id:
        user = db.get(User, identity.user_id)
        if user is None:
            raise AuthRejected(reason="identity names a user that does not exist")
        return user
    if not identity.external_id:
        raise AuthRejected(reason=f"source {identity.auth_source} returned no user id")
    user = db.scalars(select(User).where(User.external_id == identity.external_id,
                                         User.auth_source == identity.auth_source)).first()
    owner = find_by_username(db, identity.username)
    if user is None:
        if owner is not None:
            raise AuthRejected(CONFLICT_MESSAGE, reason="username conflict")
        if identity.email and db.scalars(select(User).where(User.email == identity.email)
                                         ).first() is not None:
            raise AuthRejected(CONFLICT_MESSAGE, reason="email conflict")
        user = User(username=identity.username, email=identity.email or None,
                    full_name=identity.full_name or "", role="user", is_active=True,
                    auth_source=identity.auth_source, external_id=identity.external_id)
        db.add(user)
        db.flush()
        return user
    if user.username != identity.username:
        if owner is not None and owner.id != user.id:
            raise AuthRejected(CONFLICT_MESSAGE, reason="username conflict")
        user.username = identity.username
    if identity.email and identity.email != user.email:
        user.email = identity.email
        user.email_verified = False
    if identity.full_name:
        user.full_name = identity.full_name
    return user
