"""Which AuthGate user a provider identity signs in as (reference 7.3, bugs fixed).

1. An existing connection ``(provider, provider_user_id)`` wins.  Its user must
   be active.
2. Otherwise a user whose email equals the provider's (case-insensitive) is
   linked, but only when the provider verified the address.  An unverified
   address that matches an account is refused with a page that says how to
   link (sign in, then link); the original tried to create a second user with
   the same email and failed with a 500.
3. Otherwise a new user is created (role ``user``, ``auth_source`` ``local``, no
   password) together with the connection, unless ``OAUTH_AUTO_REGISTER`` is
   off.

A person who is already signed in and starts a provider sign-in links that
provider account to themselves (``link_user``).

Every check runs before any write: the request's transaction still commits
after a refusal, so a refusal must leave the database as it was.  Provider
tokens are never stored.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authgate.models import OAuthConnection, User, utcnow
from authgate.services.users import DISABLED_MESSAGE

from .providers import LABELS, Profile

USERNAME_MAX = 40


class Refusal(Exception):
    """The sign-in is refused; ``reason`` is a stable code, the rest is shown."""

    def __init__(self, reason: str, status: int, title: str, message: str, hint: str = ""):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.status = status
        self.title = title
        self.message = message
        self.hint = hint


@dataclass
class Outcome:
    user: User
    result: str  # existing_user | linked_by_email | linked_to_signed_in_user | new_user
    connection: OAuthConnection


def resolve(db: Session, profile: Profile, *, auto_register: bool,
            link_user: User | None = None) -> Outcome:
    """The user this identity signs in as; raises :class:`Refusal`.

    A lost race on the unique indexes (two first sign-ins of the same person at
    once) is retried once, when the other request's rows are visible.
    """
    try:
        return _resolve(db, profile, auto_register=auto_register, link_user=link_user)
    except IntegrityError:
        return _resolve(db, profile, auto_register=auto_register, link_user=link_user)


def _resolve(db: Session, profile: Profile, *, auto_register: bool,
             link_user: User | None) -> Outcome:
    label = LABELS.get(profile.provider, profile.provider)
    connection = db.scalars(select(OAuthConnection).where(
        OAuthConnection.provider == profile.provider,
        OAuthConnection.provider_user_id == profile.provider_user_id)).first()
    owner = db.get(User, connection.user_id) if connection is not None else None

    if link_user is not None:
        return _link_to_signed_in(db, profile, label, link_user, connection, owner)

    # 1. An existing connection wins.
    if connection is not None and owner is not None:
        _require_active(owner)
        _refresh(owner, connection, profile)
        return Outcome(owner, "existing_user", connection)

    email = profile.email.strip()
    if not email:
        raise Refusal("no_email", 400, "No email address",
                      f"Your {label} account did not give AuthGate an email address, so no "
                      "AuthGate account can be found or created for it.",
                      f"Add an email address to your {label} account (or make it visible), "
                      "then try again.")

    # 2. A user with the same email: linked only when the provider verified it.
    matches = list(db.scalars(select(User).where(
        func.lower(func.trim(User.email)) == email.lower()).limit(2)))
    if len(matches) > 1:
        raise Refusal("duplicate_email", 409, "Duplicate account detected",
                      f"More than one AuthGate account uses the email address {email}.",
                      "An administrator must resolve this before you can sign in with "
                      f"{label}.")
    if matches:
        user = matches[0]
        if not profile.email_verified:
            raise Refusal(
                "email_not_verified", 409, "An account with this email already exists",
                f"An AuthGate account already uses the email address {email}, but {label} "
                "does not confirm that this address belongs to you, so signing in with "
                f"{label} cannot open that account.",
                "If it is your account, sign in with your password first; AuthGate then "
                f"links your {label} account to it, and from then on you can sign in with "
                f"{label}.")
        _require_active(user)
        _require_no_other_link(db, user, profile, label)
        connection = _connect(db, user, profile)
        _refresh(user, connection, profile, first=True)
        return Outcome(user, "linked_by_email", connection)

    # 3. Nobody: create the user, unless registration is off.
    if not auto_register:
        raise Refusal("registration_disabled", 403, "Registration disabled",
                      f"There is no AuthGate account for this {label} account, and new "
                      f"accounts cannot be created by signing in with {label}.",
                      "Ask an administrator to create your account, then try again.")
    user = User(username=_unique_username(db, profile), email=email,
                full_name=profile.full_name, avatar_url=profile.avatar_url,
                email_verified=profile.email_verified, role="user", is_active=True,
                auth_source="local", password_hash="")
    with db.begin_nested():
        db.add(user)
        db.flush()
        connection = _connect(db, user, profile, flush=False)
    return Outcome(user, "new_user", connection)


def _link_to_signed_in(db: Session, profile: Profile, label: str, user: User,
                       connection: OAuthConnection | None, owner: User | None) -> Outcome:
    _require_active(user)
    if connection is not None and owner is not None:
        if owner.id != user.id:
            raise Refusal("linked_to_another_user", 409, "Already linked",
                          f"This {label} account is already linked to another AuthGate "
                          "account.",
                          f"Sign in with {label} to use that account, or ask an "
                          "administrator to unlink it.")
        _refresh(user, connection, profile)
        return Outcome(user, "existing_user", connection)
    _require_no_other_link(db, user, profile, label)
    connection = _connect(db, user, profile)
    _refresh(user, connection, profile, first=True)
    return Outcome(user, "linked_to_signed_in_user", connection)


def _require_active(user: User) -> None:
    if not user.is_active:
        raise Refusal("account_disabled", 403, "Account disabled", DISABLED_MESSAGE)


def _require_no_other_link(db: Session, user: User, profile: Profile, label: str) -> None:
    """One link per provider per user (the original answered 500 here)."""
    other = db.scalars(select(OAuthConnection.id).where(
        OAuthConnection.user_id == user.id,
        OAuthConnection.provider == profile.provider)).first()
    if other is not None:
        raise Refusal("provider_already_linked", 409, "Already linked",
                      f"The AuthGate account is already linked to a different {label} "
                      "account.",
                      f"Sign in with that {label} account, or ask an administrator to unlink "
                      "it first.")


def _connect(db: Session, user: User, profile: Profile, *, flush: bool = True
             ) -> OAuthConnection:
    connection = OAuthConnection(
        user_id=user.id, provider=profile.provider,
        provider_user_id=profile.provider_user_id,
        provider_username=profile.username, provider_email=profile.email,
        avatar_url=profile.avatar_url, last_used_at=utcnow())
    if flush:
        with db.begin_nested():
            db.add(connection)
    else:
        db.add(connection)
    return connection


def _refresh(user: User, connection: OAuthConnection, profile: Profile, *,
             first: bool = False) -> None:
    """Keep the connection's metadata current; fill in what the user row lacks."""
    connection.provider_username = profile.username
    connection.provider_email = profile.email
    connection.avatar_url = profile.avatar_url
    connection.last_used_at = utcnow()
    if profile.avatar_url and (first and not user.avatar_url
                               or not first and user.avatar_url != profile.avatar_url):
        user.avatar_url = profile.avatar_url
    if profile.full_name and not user.full_name:
        user.full_name = profile.full_name
    if (profile.email_verified and not user.email_verified and user.email
            and user.email.strip().lower() == profile.email.strip().lower()):
        user.email_verified = True


# ---------------------------------------------------------------------------
# Usernames for new users
# ---------------------------------------------------------------------------

_INVALID = re.compile(r"[^a-z0-9_-]+")


def sanitize_username(raw: str) -> str:
    """Lower-case ``[a-z0-9_-]``: other characters become ``-``; at most 40 characters."""
    name = _INVALID.sub("-", raw.strip().lower()).strip("-_")
    return name[:USERNAME_MAX].strip("-_")


def _unique_username(db: Session, profile: Profile,
                     random_suffix: Callable[[], str] | None = None) -> str:
    """``name``, ``name-<provider>``, ``name-<provider>-1`` … ``-10``, then random suffixes."""
    base = (sanitize_username(profile.username)
            or sanitize_username(profile.email.split("@", 1)[0])
            or f"{profile.provider}-user")

    def taken(name: str) -> bool:
        return db.scalars(select(User.id).where(
            func.lower(User.username) == name.lower())).first() is not None

    candidates = [base, f"{base}-{profile.provider}"]
    candidates += [f"{base}-{profile.provider}-{n}" for n in range(1, 11)]
    for name in candidates:
        if not taken(name):
            return name
    alphabet = string.ascii_lowercase + string.digits
    suffix = random_suffix or (lambda: "".join(secrets.choice(alphabet) for _ in range(6)))
    for _ in range(20):
        name = f"{base}-{suffix()}"
        if not taken(name):
            return name
    raise Refusal("username_exhausted", 409, "Could not choose a username",
                  "AuthGate could not find a free username for this account.",
                  "Ask an administrator to create your account.")
