"""An AuthGate auth source named ``example``: users listed in one setting.

    EXAMPLE_AUTH_USERS="alice:secret1 bob:secret2"

It shows the whole plugin surface a third-party auth source needs:

- ``authgate_add_settings`` declares ``EXAMPLE_AUTH_USERS``
  (ini key ``authgate.example_auth_users``), a secret;
- ``authgate_register_auth_sources`` offers the ``example`` source;
- ``ExampleAuthSource.authenticate`` keeps the auth-source contract: an
  ``Identity`` for the right password, ``None`` for a user it does not know (so
  the next source is tried), ``AuthRejected`` for a known user with the wrong
  password (the chain stops).

Not for production: the passwords sit in the configuration in clear text.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.errors import ConfigurationError
from authgate.interfaces import AuthContext, AuthRejected, Identity
from authgate.settings import Setting

__all__ = ["ExampleAuthSource", "parse_users"]

SOURCE_NAME = "example"


def parse_users(entries: tuple[str, ...]) -> dict[str, str]:
    """``("alice:secret1", "bob:secret2")`` -> ``{"alice": "secret1", "bob": "secret2"}``."""
    users: dict[str, str] = {}
    for entry in entries:
        username, sep, password = entry.partition(":")
        if not sep or not username or not password:
            # Never echo the entry: it holds a password.
            raise ValueError("space-separated username:password pairs such as "
                             "alice:secret1 bob:secret2")
        if username in users:
            raise ValueError(f"each username once ({username!r} is listed twice)")
        users[username] = password
    return users


def _check(entries: tuple[str, ...]) -> None:
    parse_users(entries)


class ExampleAuthSource:
    """Authenticates the users of ``EXAMPLE_AUTH_USERS``."""

    name = SOURCE_NAME

    def __init__(self, users: Mapping[str, str]):
        self._users = {u: p.encode() for u, p in users.items()}

    def authenticate(self, username: str, password: str, ctx: AuthContext) -> Identity | None:
        expected = self._users.get(username)
        if expected is None:
            return None  # not mine: the next source in authgate.auth_sources decides
        # Constant-time comparison: the time taken says nothing about the password.
        if not password or not hmac.compare_digest(password.encode(), expected):
            raise AuthRejected(reason=f"{SOURCE_NAME}: wrong password")
        # No user_id: the core creates or updates a local user row from external_id.
        return Identity(username=username, auth_source=SOURCE_NAME,
                        external_id=f"{SOURCE_NAME}:{username}")


def _factory(ctx: BuildContext) -> ExampleAuthSource:
    users = parse_users(ctx.settings.example_auth_users)
    if not users:
        raise ConfigurationError(
            "The 'example' auth source is selected but EXAMPLE_AUTH_USERS "
            "(authgate.example_auth_users) is empty; list username:password pairs")
    return ExampleAuthSource(users)


@hookimpl
def authgate_add_settings(spec):
    spec.add(Setting(
        "example_auth_users", "EXAMPLE_AUTH_USERS", "list", (), secret=True,
        section="Example auth source", check=_check,
        help="Users of the `example` auth source: space-separated username:password "
             "pairs, e.g. `alice:secret1 bob:secret2`."))


@hookimpl
def authgate_register_auth_sources():
    return [ComponentSpec(SOURCE_NAME, _factory, "Users listed in EXAMPLE_AUTH_USERS")]
