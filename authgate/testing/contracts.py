"""Contract suites: the behaviour every store, signer, auth source and audit sink must have.

A plugin runs a suite against its own component by subclassing it in a test
module and providing the fixtures the suite asks for (Kinto's ``StoreTest``
idea, as plain pytest classes)::

    from authgate.testing.contracts import AuthSourceContract

    class TestMySource(AuthSourceContract):
        @pytest.fixture
        def auth_source(self):
            return MySource(...)

        @pytest.fixture
        def good_credentials(self):
            return ("alice", "secret1")

        ...

The suites' names do not start with ``Test``, so importing one into a test
module does not collect it by itself; only your subclass runs.  Each test's
docstring says which rule of the contract it checks.

=====================  ==============================================================
suite                  fixtures to provide
=====================  ==============================================================
StoreContract          ``store``: an IStore pointing at an empty database
SignerContract         ``signer``: an ISigner
AuthSourceContract     ``auth_source``, ``good_credentials``, ``bad_password_credentials``,
                       ``unknown_username``; ``auth_context`` optional (default: a
                       session on a fresh, migrated SQLite database)
AuditSinkContract      ``sink``, ``read_back`` (a callable: events -> stored records)
=====================  ==============================================================
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authgate.interfaces import (
    AuditEvent,
    AuthContext,
    AuthRejected,
    IAuditSink,
    IAuthSource,
    Identity,
    ISigner,
    IStore,
)

__all__ = [
    "AuditSinkContract",
    "AuthSourceContract",
    "SignerContract",
    "StoreContract",
    "make_audit_event",
    "make_claims",
    "migrated_sqlite_session",
]


def _now() -> dt.datetime:
    # Naive UTC, second precision: what every SQL column type keeps intact.
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


# ---------------------------------------------------------------------------
# Stores
# ---------------------------------------------------------------------------


class StoreContract:
    """Run against a store: ``store`` must point at an empty database.

    The core owns the schema, so the suite migrates the database itself with
    :func:`authgate.db.migrate` and checks that the store's engine keeps the
    promises the core relies on (foreign keys enforced, values round-trip).
    """

    @pytest.fixture
    def store(self) -> IStore:
        pytest.fail("StoreContract needs a `store` fixture returning an IStore "
                    "that points at an empty database")

    @pytest.fixture
    def engine(self, store: IStore) -> Iterator[Any]:
        engine = store.create_engine()
        yield engine
        engine.dispose()

    @pytest.fixture
    def migrated_engine(self, engine: Any) -> Any:
        from authgate.db import migrate

        migrate(engine)
        return engine

    def test_provides_istore(self, store: IStore) -> None:
        """The store provides IStore (``name``, ``create_engine()``, ``describe()``)."""
        assert isinstance(store, IStore)

    def test_name_is_not_empty(self, store: IStore) -> None:
        """``name`` is the non-empty word used in ``authgate.store``."""
        assert isinstance(store.name, str)
        assert store.name.strip() == store.name != ""

    def test_engine_connects(self, engine: Any) -> None:
        """``create_engine()`` returns an engine that can run a query."""
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1

    def test_migrate_builds_every_table(self, migrated_engine: Any) -> None:
        """The core's migrations build every table of the data model on this engine."""
        from authgate.models import Base

        tables = set(inspect(migrated_engine).get_table_names())
        missing = set(Base.metadata.tables) - tables
        assert not missing, f"tables missing after migrate: {sorted(missing)}"

    def test_row_round_trips(self, migrated_engine: Any) -> None:
        """A row written in one session reads back unchanged in another (text and times)."""
        from authgate.models import User

        created = _now()
        with Session(migrated_engine) as session, session.begin():
            session.add(User(id="0b7e5b0c-1a51-4cbb-9f1d-5d1c3e1f0a01", username="zoë",
                             email="zoe@example.com", full_name="Zoë Ünïcode 名前",
                             password_hash="$argon2id$fake", auth_source="local",
                             created_at=created, updated_at=created))
        with Session(migrated_engine) as session:
            user = session.scalars(select(User).where(User.username == "zoë")).one()
            assert user.full_name == "Zoë Ünïcode 名前"
            assert user.email == "zoe@example.com"
            assert user.is_active is True
            assert user.created_at.replace(tzinfo=None) == created

    def test_foreign_keys_are_enforced(self, migrated_engine: Any) -> None:
        """A device code for a client that does not exist is refused by the database."""
        from authgate.models import DeviceCode

        with pytest.raises(IntegrityError), Session(migrated_engine) as session, \
                session.begin():
            session.add(DeviceCode(device_code="0" * 64, user_code="ABCD-EFGH",
                                   client_id="no-such-client",
                                   expires_at=_now() + dt.timedelta(minutes=30)))

    def test_describe_hides_the_password(self, store: IStore, engine: Any) -> None:
        """``describe()`` is a non-empty string for logs that never contains the password."""
        described = store.describe()
        assert isinstance(described, str) and described
        password = engine.url.password
        if password:
            assert str(password) not in described


# ---------------------------------------------------------------------------
# Signers
# ---------------------------------------------------------------------------

_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge_hs256(claims: Mapping[str, Any], key: bytes, kid: str | None) -> str:
    """An HS256 token made by hand (PyJWT refuses to use a public key as HMAC secret)."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = (_b64url(json.dumps(header).encode()) + "."
                     + _b64url(json.dumps(dict(claims)).encode()))
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def make_claims(**overrides: Any) -> dict[str, Any]:
    """Access-token claims valid for ten minutes (override any with keywords)."""
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {"sub": "user-1", "iss": "https://auth.example.com", "iat": now,
              "exp": now + 600, "jti": str(uuid.uuid4()), "scope": "email profile",
              "type": "access"}
    claims.update(overrides)
    return claims


class SignerContract:
    """Run against a signer: the ``signer`` fixture returns an ISigner."""

    @pytest.fixture
    def signer(self) -> ISigner:
        pytest.fail("SignerContract needs a `signer` fixture returning an ISigner")

    @pytest.fixture
    def claims(self) -> dict[str, Any]:
        return make_claims()

    def test_provides_isigner(self, signer: ISigner) -> None:
        """The signer provides ISigner (``alg``, ``kid``, ``sign``, ``verify``, ``jwks``)."""
        assert isinstance(signer, ISigner)
        assert isinstance(signer.alg, str) and signer.alg

    def test_sign_verify_round_trip(self, signer: ISigner, claims: dict) -> None:
        """``verify(sign(claims))`` returns the claims, and the header names ``alg``."""
        token = signer.sign(claims)
        assert signer.verify(token) == claims
        header = jwt.get_unverified_header(token)
        assert header["alg"] == signer.alg
        if signer.kid is not None:
            assert header.get("kid") == signer.kid

    def test_audience_is_checked(self, signer: ISigner, claims: dict) -> None:
        """With ``audience=`` the ``aud`` claim must match it."""
        token = signer.sign({**claims, "aud": "api-1"})
        assert signer.verify(token, audience="api-1")["aud"] == "api-1"
        with pytest.raises(jwt.InvalidTokenError):
            signer.verify(token, audience="api-2")

    def test_tampered_token_rejected(self, signer: ISigner, claims: dict) -> None:
        """A token whose payload was changed after signing is rejected."""
        header, _, signature = signer.sign(claims).split(".")
        forged = _b64url(json.dumps({**claims, "sub": "admin"}).encode())
        with pytest.raises(jwt.InvalidTokenError):
            signer.verify(f"{header}.{forged}.{signature}")

    def test_tampered_signature_rejected(self, signer: ISigner, claims: dict) -> None:
        """A token with a damaged signature is rejected."""
        header, payload, signature = signer.sign(claims).split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        raw[0] ^= 0x01
        with pytest.raises(jwt.InvalidTokenError):
            signer.verify(f"{header}.{payload}.{_b64url(bytes(raw))}")

    def test_expired_token_rejected(self, signer: ISigner, claims: dict) -> None:
        """``exp`` is enforced: a token that expired is rejected."""
        past = int(dt.datetime.now(dt.UTC).timestamp()) - 3600
        token = signer.sign({**claims, "iat": past - 600, "exp": past})
        with pytest.raises(jwt.InvalidTokenError):
            signer.verify(token)

    @pytest.mark.parametrize("foreign_alg", ["HS256", "HS512", "RS256", "ES256"])
    def test_foreign_key_rejected(self, signer: ISigner, claims: dict, foreign_alg: str) -> None:
        """A token signed with another key (same or other algorithm) is rejected."""
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if foreign_alg.startswith("HS"):
            key: Any = uuid.uuid4().hex * 2
        elif foreign_alg == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        headers = {"kid": signer.kid} if signer.kid else None
        token = jwt.encode(claims, key, algorithm=foreign_alg, headers=headers)
        with pytest.raises(jwt.InvalidTokenError):
            signer.verify(token)

    def test_alg_none_rejected(self, signer: ISigner, claims: dict) -> None:
        """An unsigned token (``"alg": "none"``) is rejected."""
        token = jwt.encode(claims, None, algorithm="none")
        with pytest.raises(jwt.InvalidTokenError):
            signer.verify(token)

    def test_public_key_as_hmac_secret_rejected(self, signer: ISigner, claims: dict) -> None:
        """An HS256 token keyed with a published public key is rejected (alg confusion)."""
        from cryptography.hazmat.primitives import serialization

        for key in signer.jwks()["keys"]:
            pem = jwt.PyJWK(key).key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            for secret in (pem, pem.strip(), json.dumps(key).encode()):
                with pytest.raises(jwt.InvalidTokenError):
                    signer.verify(_forge_hs256(claims, secret, key.get("kid")))

    def test_jwks_shape(self, signer: ISigner) -> None:
        """``jwks()`` is ``{"keys": [...]}``; each key has kty, alg and kid, and no private part."""
        jwks = signer.jwks()
        assert set(jwks) == {"keys"}
        assert isinstance(jwks["keys"], list)
        json.dumps(jwks)  # served as JSON as is
        for key in jwks["keys"]:
            assert {"kty", "alg", "kid"} <= set(key), key
            leaked = _PRIVATE_JWK_MEMBERS & set(key)
            assert not leaked, f"JWKS publishes private key members {sorted(leaked)}"

    def test_symmetric_key_never_published(self, signer: ISigner) -> None:
        """An HMAC signer publishes no keys; an asymmetric one publishes its signing key."""
        keys = signer.jwks()["keys"]
        if signer.alg.startswith("HS"):
            assert keys == []
        else:
            assert signer.kid in {key["kid"] for key in keys}

    def test_jwks_key_verifies_token(self, signer: ISigner, claims: dict) -> None:
        """A client holding only the JWKS can verify a token (asymmetric signers)."""
        if signer.alg.startswith("HS"):
            # Nothing is published, so nothing can verify: checked above.
            assert signer.jwks()["keys"] == []
            return
        token = signer.sign(claims)
        kid = jwt.get_unverified_header(token).get("kid")
        (key,) = [k for k in signer.jwks()["keys"] if k["kid"] == kid]
        assert key["alg"] == signer.alg
        decoded = jwt.decode(token, jwt.PyJWK(key).key, algorithms=[signer.alg])
        assert decoded == claims


# ---------------------------------------------------------------------------
# Authentication sources
# ---------------------------------------------------------------------------


def migrated_sqlite_session(path: Path) -> tuple[Session, Callable[[], None]]:
    """A session on a new SQLite file at ``path`` with the full schema.

    Returns the session and a function that closes it and disposes the engine.
    Foreign keys are switched on, as the bundled SQLite store does.
    """
    from sqlalchemy import event

    from authgate.db import migrate

    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _foreign_keys(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    migrate(engine)
    session = Session(engine)

    def close() -> None:
        session.close()
        engine.dispose()

    return session, close


class AuthSourceContract:
    """Run against an auth source.

    Fixtures: ``auth_source`` (an IAuthSource), ``good_credentials`` and
    ``bad_password_credentials`` (``(username, password)`` tuples for one user
    the source knows), ``unknown_username`` (a name it does not know).
    ``auth_context`` defaults to a session on a fresh migrated SQLite
    database; override it when your source reads the database.
    """

    @pytest.fixture
    def auth_source(self) -> IAuthSource:
        pytest.fail("AuthSourceContract needs an `auth_source` fixture")

    @pytest.fixture
    def good_credentials(self) -> tuple[str, str]:
        pytest.fail("AuthSourceContract needs a `good_credentials` fixture: (username, password)")

    @pytest.fixture
    def bad_password_credentials(self) -> tuple[str, str]:
        pytest.fail("AuthSourceContract needs a `bad_password_credentials` fixture: "
                    "(known username, wrong password)")

    @pytest.fixture
    def unknown_username(self) -> str:
        pytest.fail("AuthSourceContract needs an `unknown_username` fixture")

    @pytest.fixture
    def auth_context(self, tmp_path: Path) -> Iterator[AuthContext]:
        session, close = migrated_sqlite_session(tmp_path / "auth-contract.db")
        yield AuthContext(dbsession=session, client_ip="192.0.2.10",
                          user_agent="authgate-contract-tests")
        close()

    def test_provides_iauthsource(self, auth_source: IAuthSource) -> None:
        """The source provides IAuthSource and has the name used in ``authgate.auth_sources``."""
        assert isinstance(auth_source, IAuthSource)
        assert isinstance(auth_source.name, str) and auth_source.name.strip()

    def test_good_credentials_give_identity(self, auth_source: IAuthSource,
                                            auth_context: AuthContext,
                                            good_credentials: tuple[str, str]) -> None:
        """The right password returns an Identity naming the user and the source."""
        username, password = good_credentials
        identity = auth_source.authenticate(username, password, auth_context)
        assert isinstance(identity, Identity)
        assert identity.username
        assert identity.auth_source

    def test_bad_password_is_rejected(self, auth_source: IAuthSource,
                                      auth_context: AuthContext,
                                      bad_password_credentials: tuple[str, str]) -> None:
        """A known user with a wrong password raises AuthRejected (the chain stops)."""
        username, password = bad_password_credentials
        with pytest.raises(AuthRejected):
            auth_source.authenticate(username, password, auth_context)

    def test_rejection_does_not_echo_the_password(self, auth_source: IAuthSource,
                                                  auth_context: AuthContext,
                                                  bad_password_credentials: tuple[str, str],
                                                  ) -> None:
        """The rejection's message and reason never contain the password tried."""
        username, password = bad_password_credentials
        with pytest.raises(AuthRejected) as info:
            auth_source.authenticate(username, password, auth_context)
        for text_ in (info.value.message, info.value.reason, str(info.value)):
            assert password not in text_

    def test_empty_password_never_authenticates(self, auth_source: IAuthSource,
                                                auth_context: AuthContext,
                                                good_credentials: tuple[str, str]) -> None:
        """An empty password for a known user is refused (AuthRejected) or passed on (None)."""
        username, _ = good_credentials
        try:
            result = auth_source.authenticate(username, "", auth_context)
        except AuthRejected:
            return
        assert result is None

    def test_unknown_user_is_not_mine(self, auth_source: IAuthSource,
                                      auth_context: AuthContext,
                                      unknown_username: str) -> None:
        """A user the source does not know returns None, so the next source is tried."""
        assert auth_source.authenticate(unknown_username, "whatever-password",
                                        auth_context) is None


# ---------------------------------------------------------------------------
# Audit sinks
# ---------------------------------------------------------------------------

_EVENT_FIELDS = tuple(AuditEvent.__dataclass_fields__)


def make_audit_event(**fields: Any) -> AuditEvent:
    """An AuditEvent with every field filled in (override any with keywords)."""
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "event_type": "AUTHENTICATION_SUCCESS",
        "event_time": _now(),
        "severity": "INFO",
        "action": "User logged in",
        "success": True,
        "actor_user_id": "7d3c2a9e-1111-4c4c-9c9c-000000000001",
        "actor_username": "zoë",
        "actor_ip": "2001:db8::1",
        "resource_type": "USER",
        "resource_id": "7d3c2a9e-1111-4c4c-9c9c-000000000001",
        "resource_name": "Zoë Ünïcode",
        "details": {"method": "password", "attempt": 2, "mfa": False, "note": None,
                    "scopes": ["email", "profile"], "client": {"id": "c-1", "name": "CLI ✓"}},
        "error_message": None,
        "user_agent": "Mozilla/5.0 (contract tests)",
        "request_path": "/login",
        "request_method": "POST",
    }
    values.update(fields)
    return AuditEvent(**values)


def _normalise(record: Mapping[str, Any]) -> dict[str, Any]:
    data = {name: record.get(name) for name in _EVENT_FIELDS}
    when = data["event_time"]
    if isinstance(when, str):
        when = dt.datetime.fromisoformat(when)
    if isinstance(when, dt.datetime) and when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    data["event_time"] = when
    if isinstance(data["details"], str):
        data["details"] = json.loads(data["details"])
    data["details"] = dict(data["details"] or {})
    data["success"] = bool(data["success"])
    return data


class AuditSinkContract:
    """Run against an audit sink.

    Fixtures: ``sink`` (an IAuditSink) and ``read_back``, a callable that takes
    the events written and returns the records the sink stored or emitted for
    them: mappings with AuditEvent's field names (``details`` may be a JSON
    string, ``event_time`` an ISO string), in any order.  It may return every
    record the sink stored since the test began.
    """

    @pytest.fixture
    def sink(self) -> IAuditSink:
        pytest.fail("AuditSinkContract needs a `sink` fixture returning an IAuditSink")

    @pytest.fixture
    def read_back(self) -> Callable[[Sequence[AuditEvent]], list[Mapping[str, Any]]]:
        pytest.fail("AuditSinkContract needs a `read_back` fixture: a callable taking the "
                    "events written and returning the stored records")

    def _stored(self, read_back, events: Sequence[AuditEvent]) -> dict[str, dict[str, Any]]:
        records = [_normalise(r) for r in read_back(events)]
        by_id = {r["id"]: r for r in records}
        assert len(by_id) == len(records), "an event was stored more than once"
        return by_id

    def test_provides_iauditsink(self, sink: IAuditSink) -> None:
        """The sink provides IAuditSink and has the name used in ``authgate.audit_sinks``."""
        assert isinstance(sink, IAuditSink)
        assert isinstance(sink.name, str) and sink.name.strip()

    def test_every_field_survives(self, sink: IAuditSink, read_back) -> None:
        """Every field of an event, details JSON included, is stored unchanged."""
        event = make_audit_event()
        sink.write([event])
        stored = self._stored(read_back, [event])
        assert stored == {event.id: _normalise(event.as_dict())}

    def test_failure_event_survives(self, sink: IAuditSink, read_back) -> None:
        """A failed action keeps ``success=False``, its severity and its error message."""
        event = make_audit_event(event_type="AUTHENTICATION_FAILURE", severity="WARNING",
                                 success=False, error_message="Invalid username or password",
                                 details={"reason": "wrong password"})
        sink.write([event])
        assert self._stored(read_back, [event])[event.id] == _normalise(event.as_dict())

    def test_sparse_event_survives(self, sink: IAuditSink, read_back) -> None:
        """An event with only the required fields (no actor, empty details) is stored."""
        event = AuditEvent(id=str(uuid.uuid4()), event_type="SERVER_STARTED",
                           event_time=_now(), severity="INFO", action="started")
        sink.write([event])
        assert self._stored(read_back, [event])[event.id] == _normalise(event.as_dict())

    def test_batch_is_written_whole(self, sink: IAuditSink, read_back) -> None:
        """Every event of a batch is stored, each once, whatever its severity."""
        events = [make_audit_event(severity=severity, success=severity == "INFO")
                  for severity in ("INFO", "WARNING", "ERROR", "CRITICAL")]
        sink.write(events)
        stored = self._stored(read_back, events)
        assert stored == {e.id: _normalise(e.as_dict()) for e in events}

    def test_empty_batch_is_harmless(self, sink: IAuditSink, read_back) -> None:
        """Writing an empty batch stores nothing and raises nothing; the sink still works."""
        sink.write([])
        assert list(read_back([])) == []
        event = make_audit_event()
        sink.write([event])
        assert list(self._stored(read_back, [event])) == [event.id]
