"""Password hashing: argon2id, with bcrypt hashes from the Go original still accepted."""

from __future__ import annotations

import secrets
import string

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults
# A hash that verification runs against when the user does not exist, so the
# response time does not tell an attacker which usernames exist.
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def is_bcrypt(stored: str) -> bool:
    return stored.startswith(("$2a$", "$2b$", "$2y$"))


def verify_password(stored: str, password: str) -> bool:
    if not stored:
        return False
    if is_bcrypt(stored):
        try:
            return bcrypt.checkpw(password.encode(), stored.encode())
        except ValueError:
            return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return is_bcrypt(stored) or _hasher.check_needs_rehash(stored)


def burn_time(password: str) -> None:
    """Spend the time a real verification would (unknown user)."""
    verify_password(_DUMMY, password)


def generate_password(length: int = 16) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))
