"""Password hashing: argon2id, with bcrypt hashes from the Go original still accepted.

The argon2id cost is a setting.  The default is OWASP's recommended minimum
(19 MiB of memory, 2 passes, 1 lane) rather than argon2-cffi's RFC 9106
"low-memory" profile (64 MiB, 3 passes, 4 lanes): every sign-in allocates that
memory for the length of the hash, so one process serving 8 sign-ins at once
needs 8 times as much -- 512 MiB at 64 MiB, a memory-exhaustion lever for
anyone who can send login attempts.  Hashes made with other parameters (older
defaults, bcrypt imports) still verify and are re-hashed with the configured
ones at the user's next sign-in.
"""

from __future__ import annotations

import secrets
import string
import threading

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authgate.settings import Setting

SECTION = "Passwords"
SETTINGS: list[Setting] = [
    Setting("password_hash_memory_kib", "PASSWORD_HASH_MEMORY_KIB", "int", 19_456,
            minimum=8_192, section=SECTION,
            help="argon2id memory cost per password hash, in KiB (default 19 MiB, OWASP's "
                 "minimum). Each sign-in holds this much memory while it hashes. Existing "
                 "hashes are re-hashed with the new cost at the user's next sign-in."),
    Setting("password_hash_time_cost", "PASSWORD_HASH_TIME_COST", "int", 2, minimum=1,
            section=SECTION, help="argon2id passes over the memory (default 2)."),
    Setting("password_hash_parallelism", "PASSWORD_HASH_PARALLELISM", "int", 1, minimum=1,
            section=SECTION, help="argon2id lanes (default 1)."),
]

_hasher = PasswordHasher(memory_cost=SETTINGS[0].default, time_cost=SETTINGS[1].default,
                         parallelism=SETTINGS[2].default)
# What an unknown user's password is checked against (burn_time): made by
# configure() at start-up, or at first use, not at import.
_dummy: str | None = None
_lock = threading.Lock()


def configure(settings) -> None:
    """Hash with the configured argon2id cost from now on (called once at start-up)."""
    global _hasher, _dummy
    wanted = (settings.password_hash_memory_kib, settings.password_hash_time_cost,
              settings.password_hash_parallelism)
    with _lock:
        current = (_hasher.memory_cost, _hasher.time_cost, _hasher.parallelism)
        if wanted != current:
            _hasher = PasswordHasher(memory_cost=wanted[0], time_cost=wanted[1],
                                     parallelism=wanted[2])
            _dummy = None
    _dummy_hash()


def _dummy_hash() -> str:
    """The hash an unknown user's password is checked against, with the current cost."""
    global _dummy
    dummy = _dummy
    if dummy is None:
        dummy = _dummy = _hasher.hash(secrets.token_urlsafe(16))
    return dummy


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
    """Spend the time a real verification would (unknown user), against a hash with
    the current parameters, so the response time does not tell which usernames exist."""
    verify_password(_dummy_hash(), password)


def generate_password(length: int = 16) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))
