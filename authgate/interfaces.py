"""The four component kinds a plugin can offer, and the values they exchange.

Each kind is a ``typing.Protocol``; :mod:`authgate.components` checks the
selected component against it at start-up, and the contract suites in
:mod:`authgate.testing.contracts` check behaviour.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session


# ---------------------------------------------------------------------------
# Stores
# ---------------------------------------------------------------------------


@runtime_checkable
class IStore(Protocol):
    """Reaches one database.  The core owns the schema and the migrations."""

    name: str  # "sqlite", "postgres", ...

    def create_engine(self) -> Engine:
        """Build the SQLAlchemy engine, tuned for this database."""

    def describe(self) -> str:
        """A human-readable target for logs (no password)."""


# ---------------------------------------------------------------------------
# Signers
# ---------------------------------------------------------------------------


@runtime_checkable
class ISigner(Protocol):
    """Signs and verifies JWTs, and publishes the public keys."""

    alg: str  # "HS256", "RS256", "ES256"
    kid: str | None  # key id of the signing key (None for HS256)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Return a compact JWS of ``claims`` signed with the current key."""

    def verify(self, token: str, *, audience: str | Sequence[str] | None = None) -> dict:
        """Return the claims of a valid token; raise ``jwt.InvalidTokenError`` otherwise.

        Only this signer's algorithm is accepted; ``exp`` is enforced.
        """

    def jwks(self) -> dict:
        """The JSON Web Key Set: ``{"keys": [...]}`` (empty for symmetric keys)."""


# ---------------------------------------------------------------------------
# Authentication sources
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who a source says the person is.

    ``user_id`` is set when the source vouches for an existing local user row;
    otherwise the core syncs a user from ``external_id`` and the other fields.
    """

    username: str
    auth_source: str
    user_id: str | None = None
    external_id: str | None = None
    email: str | None = None
    full_name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class AuthRejected(Exception):
    """The source recognised the user and refuses them (stops the chain).

    ``message`` is shown to the person; keep it free of detail that helps an
    attacker (the generic "Invalid username or password" is the usual choice).
    """

    def __init__(self, message: str = "Invalid username or password", *, reason: str = ""):
        super().__init__(message)
        self.message = message
        self.reason = reason or message


class AuthUnavailable(AuthRejected):
    """The source could not be reached (network error, timeout, 5xx)."""

    def __init__(self, message: str = "The authentication service is unavailable. "
                 "Please try again later.", *, reason: str = ""):
        super().__init__(message, reason=reason)


@dataclass(frozen=True)
class AuthContext:
    """What an auth source may use while deciding."""

    dbsession: Session
    client_ip: str = ""
    user_agent: str = ""


@runtime_checkable
class IAuthSource(Protocol):
    name: str  # the value used in authgate.auth_sources

    def authenticate(self, username: str, password: str, ctx: AuthContext) -> Identity | None:
        """Identity on success, None for "not mine", raise AuthRejected to stop."""


# ---------------------------------------------------------------------------
# Audit sinks
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEvent:
    """One audit record.  ``details`` is already redacted by the dispatcher."""

    id: str
    event_type: str
    event_time: dt.datetime
    severity: str  # INFO, WARNING, ERROR, CRITICAL
    action: str
    success: bool = True
    actor_user_id: str | None = None
    actor_username: str | None = None
    actor_ip: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    resource_name: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    error_message: str | None = None
    user_agent: str | None = None
    request_path: str | None = None
    request_method: str | None = None

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy cost ~0.07 ms per event, per sink,
        # and every field but ``details`` is a str/bool/None/datetime.
        data = {name: getattr(self, name) for name in _AUDIT_EVENT_FIELDS}
        data["event_time"] = self.event_time.isoformat()
        data["details"] = dict(self.details)
        return data


_AUDIT_EVENT_FIELDS = tuple(f.name for f in fields(AuditEvent))


@runtime_checkable
class IAuditSink(Protocol):
    name: str

    def write(self, events: Sequence[AuditEvent]) -> None:
        """Persist or forward a batch of events; raise on failure (the dispatcher logs it)."""
