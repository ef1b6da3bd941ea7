"""Local accounts: users whose password hash AuthGate keeps (argon2id; bcrypt imported)."""

from __future__ import annotations

import logging

from sqlalchemy import select

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.interfaces import AuthContext, AuthRejected, Identity
from authgate.models import User
from authgate.services.passwords import burn_time, hash_password, needs_rehash, verify_password

log = logging.getLogger(__name__)

GENERIC = "Invalid username or password"


class LocalAuthSource:
    name = "local"

    def authenticate(self, username: str, password: str, ctx: AuthContext) -> Identity | None:
        user = ctx.dbsession.scalars(select(User).where(User.username == username)).first()
        if user is None:
            burn_time(password)  # same cost as a real check: usernames stay private
            return None
        if user.auth_source != "local":
            return None  # belongs to another source (http_api, ...)
        if not user.password_hash:
            raise AuthRejected(GENERIC, reason="user has no local password")
        if not verify_password(user.password_hash, password):
            raise AuthRejected(GENERIC, reason="wrong password")
        if needs_rehash(user.password_hash):
            # Imported bcrypt hashes (and old argon2 parameters) move to argon2id.
            user.password_hash = hash_password(password)
            log.info("re-hashed the password of user %s with argon2id", user.id)
        return Identity(username=user.username, auth_source="local", user_id=user.id,
                        email=user.email, full_name=user.full_name)


def _factory(ctx: BuildContext) -> LocalAuthSource:
    return LocalAuthSource()


@hookimpl
def authgate_register_auth_sources():
    return [ComponentSpec("local", _factory, "Users with a password stored by AuthGate")]
