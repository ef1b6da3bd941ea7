"""An AuthGate auth source named ``example``: users in a file, with hashed passwords.

The file (``EXAMPLE_AUTH_USERS_FILE``) holds one ``username:hash`` per line, like an
htpasswd file; blank lines and lines starting with ``#`` are ignored::

    # authgate example users
    alice:$argon2id$v=19$m=65536,t=3,p=4$...
    bob:$2y$05$...            <- bcrypt, e.g. from `htpasswd -nbB bob secret`

``python -m authgate_auth_example USERNAME`` reads a password (prompt, or one line
on standard input) and prints the line to add.

It shows the whole plugin surface a third-party auth source needs:

- ``authgate_add_settings`` declares ``EXAMPLE_AUTH_USERS_FILE``
  (ini key ``authgate.example_auth_users_file``);
- ``authgate_register_auth_sources`` offers the ``example`` source; its factory
  reads and checks the file once, at start-up;
- ``ExampleAuthSource.authenticate`` keeps the auth-source contract: an
  ``Identity`` for the right password, ``None`` for a user it does not know (so
  the next source is tried), ``AuthRejected`` for a known user with the wrong
  password (the chain stops).
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Mapping
from pathlib import Path

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.errors import ConfigurationError
from authgate.interfaces import AuthContext, AuthRejected, Identity
from authgate.settings import Setting

__all__ = ["ExampleAuthSource", "hash_password", "load_users", "parse_users"]

SOURCE_NAME = "example"
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")

_hasher = PasswordHasher()  # argon2id with argon2-cffi's defaults (RFC 9106)


def hash_password(password: str) -> str:
    """An argon2id hash for a users-file line."""
    return _hasher.hash(password)


def _verify(stored: str, password: str) -> bool:
    if stored.startswith(BCRYPT_PREFIXES):
        try:
            return bcrypt.checkpw(password.encode(), stored.encode())
        except ValueError:
            return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


# Checked when a username is not in the file, so that an unknown user costs as
# much time as a known one: response times do not tell which usernames exist.
_DUMMY_HASH = hash_password("not a real password")


def parse_users(text: str, *, origin: str = "the users file") -> dict[str, str]:
    """``"alice:$argon2id$..."`` lines -> ``{"alice": "$argon2id$..."}``.

    Raises ValueError naming the line; never echoes a line (a hash is sensitive too).
    """
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        username, sep, stored = line.partition(":")
        username, stored = username.strip(), stored.strip()
        if not sep or not username or not stored:
            raise ValueError(f"{origin}, line {number}: expected username:hash")
        if not stored.startswith(("$argon2id$", *BCRYPT_PREFIXES)):
            raise ValueError(f"{origin}, line {number}: the password of {username!r} is not "
                             "an argon2id or bcrypt hash (make one with "
                             "`python -m authgate_auth_example USERNAME`)")
        if username in users:
            raise ValueError(f"{origin}, line {number}: {username!r} is listed twice")
        users[username] = stored
    return users


def load_users(path: str | Path) -> dict[str, str]:
    """Read and check a users file; ConfigurationError says what to fix."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"EXAMPLE_AUTH_USERS_FILE (authgate.example_auth_users_file): cannot read "
            f"{path}: {exc.strerror}") from None
    try:
        users = parse_users(text, origin=str(path))
    except ValueError as exc:
        raise ConfigurationError(f"EXAMPLE_AUTH_USERS_FILE: {exc}") from None
    if not users:
        raise ConfigurationError(f"EXAMPLE_AUTH_USERS_FILE: {path} lists no users")
    return users


class ExampleAuthSource:
    """Authenticates the users of one users file (read at start-up)."""

    name = SOURCE_NAME

    def __init__(self, users: Mapping[str, str]):
        self._users = dict(users)

    def authenticate(self, username: str, password: str, ctx: AuthContext) -> Identity | None:
        stored = self._users.get(username)
        if stored is None:
            _verify(_DUMMY_HASH, password)  # same cost as a real check
            return None  # not mine: the next source in authgate.auth_sources decides
        if not password or not _verify(stored, password):
            raise AuthRejected(reason=f"{SOURCE_NAME}: wrong password")
        # No user_id: the core creates or updates a local user row from external_id.
        return Identity(username=username, auth_source=SOURCE_NAME,
                        external_id=f"{SOURCE_NAME}:{username}")


def _factory(ctx: BuildContext) -> ExampleAuthSource:
    path = ctx.settings.example_auth_users_file
    if not path:
        raise ConfigurationError(
            "The 'example' auth source is selected but EXAMPLE_AUTH_USERS_FILE "
            "(authgate.example_auth_users_file) is empty; point it at a file of "
            "username:hash lines")
    return ExampleAuthSource(load_users(path))


@hookimpl
def authgate_add_settings(spec):
    spec.add(Setting(
        "example_auth_users_file", "EXAMPLE_AUTH_USERS_FILE", "str", "",
        section="Example auth source",
        help="Users of the `example` auth source: a file of `username:hash` lines "
             "(argon2id or bcrypt). Read at start-up."))


@hookimpl
def authgate_register_auth_sources():
    return [ComponentSpec(SOURCE_NAME, _factory, "Users in EXAMPLE_AUTH_USERS_FILE")]


def main(argv: list[str] | None = None) -> int:
    """``python -m authgate_auth_example USERNAME``: print a users-file line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-") or ":" in args[0]:
        print("usage: python -m authgate_auth_example USERNAME  (password on standard input "
              "or at the prompt)", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args[0]}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("error: empty password", file=sys.stderr)
        return 1
    print(f"{args[0]}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
