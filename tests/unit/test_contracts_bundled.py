"""The bundled plugins run the same contract suites a third-party plugin runs.

The last part checks the suites themselves: a correct asymmetric signer passes
(no bundled plugin exercises that branch yet), and deliberately broken
components fail the checks meant to catch them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jwt
import pytest
from authgate_plugins.audit_database import DatabaseSink
from authgate_plugins.audit_log import LOGGER_NAME, LogSink
from authgate_plugins.auth_local import LocalAuthSource
from authgate_plugins.signer_asym import AsymmetricSigner
from authgate_plugins.signer_hs256 import HS256Signer
from authgate_plugins.store_sqlite import SQLiteStore
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import create_engine, select

from authgate.db import migrate
from authgate.interfaces import AuditEvent, AuthContext
from authgate.models import AuditLog, User
from authgate.services.passwords import hash_password
from authgate.testing.contracts import (
    AuditSinkContract,
    AuthSourceContract,
    SignerContract,
    StoreContract,
    make_audit_event,
    make_claims,
    migrated_sqlite_session,
)

# ---------------------------------------------------------------------------
# Bundled plugins
# ---------------------------------------------------------------------------


def _private_key(alg: str) -> Any:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        return SQLiteStore(str(tmp_path / "contract.db"))


class TestHS256Signer(SignerContract):
    @pytest.fixture
    def signer(self):
        return HS256Signer("contract-test-secret-" + "x" * 40)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
class TestAsymmetricSigner(SignerContract):
    @pytest.fixture
    def signer(self, alg):
        return AsymmetricSigner(alg, _private_key(alg))


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
class TestAsymmetricSignerWithRetiredKey(SignerContract):
    """During a key rotation the JWKS holds two keys; the contract still holds."""

    @pytest.fixture
    def signer(self, alg):
        return AsymmetricSigner(alg, _private_key(alg),
                                previous_keys=[_private_key(alg).public_key()])


class TestLocalAuthSource(AuthSourceContract):
    @pytest.fixture
    def auth_context(self, tmp_path) -> Iterator[AuthContext]:
        session, close = migrated_sqlite_session(tmp_path / "local.db")
        session.add(User(username="alice", email="alice@example.com",
                         password_hash=hash_password("correct horse battery"),
                         auth_source="local"))
        # Known to the database but owned by another source: not local's to judge.
        session.add(User(username="remote-bob", auth_source="http_api", external_id="b-1"))
        session.commit()
        yield AuthContext(dbsession=session)
        close()

    @pytest.fixture
    def auth_source(self):
        return LocalAuthSource()

    @pytest.fixture
    def good_credentials(self):
        return ("alice", "correct horse battery")

    @pytest.fixture
    def bad_password_credentials(self):
        return ("alice", "wrong horse battery")

    @pytest.fixture
    def unknown_username(self):
        return "nobody"

    def test_users_of_other_sources_are_not_mine(self, auth_source, auth_context):
        """A user synced from another source is left to that source (None)."""
        assert auth_source.authenticate("remote-bob", "anything", auth_context) is None


class TestDatabaseSink(AuditSinkContract):
    @pytest.fixture
    def engine(self, tmp_path):
        engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
        migrate(engine)
        yield engine
        engine.dispose()

    @pytest.fixture
    def sink(self, engine):
        return DatabaseSink(engine)

    @pytest.fixture
    def read_back(self, engine):
        def read(events: Sequence[AuditEvent]) -> list[Mapping[str, Any]]:
            with engine.connect() as connection:
                rows = connection.execute(select(AuditLog.__table__)).mappings().all()
            return [dict(row) for row in rows]

        return read


class TestLogSink(AuditSinkContract):
    @pytest.fixture
    def sink(self, caplog):
        caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
        return LogSink()

    @pytest.fixture
    def read_back(self, caplog):
        def read(events: Sequence[AuditEvent]) -> list[Mapping[str, Any]]:
            return [json.loads(record.getMessage()) for record in caplog.records
                    if record.name == LOGGER_NAME]

        return read

    def test_level_follows_severity(self, sink, caplog):
        """A WARNING event is logged at WARNING, so log filtering by level works."""
        sink.write([make_audit_event(severity="WARNING")])
        assert [r.levelno for r in caplog.records if r.name == LOGGER_NAME] == [logging.WARNING]


# ---------------------------------------------------------------------------
# The suites themselves
# ---------------------------------------------------------------------------


class ReferenceAsymmetricSigner:
    """A minimal correct RS256/ES256 signer: proves the asymmetric checks can pass."""

    def __init__(self, alg: str):
        self.alg = alg
        self.kid = f"ref-{alg.lower()}"
        if alg == "RS256":
            self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self._algorithm: Any = jwt.algorithms.RSAAlgorithm
        else:
            self._private = ec.generate_private_key(ec.SECP256R1())
            self._algorithm = jwt.algorithms.ECAlgorithm
        self._public = self._private.public_key()

    def sign(self, claims):
        return jwt.encode(dict(claims), self._private, algorithm=self.alg,
                          headers={"kid": self.kid})

    def verify(self, token, *, audience=None):
        return jwt.decode(token, self._public, algorithms=[self.alg], audience=audience,
                          options={"require": ["exp", "iat"],
                                   "verify_aud": audience is not None})

    def jwks(self):
        key = json.loads(self._algorithm.to_jwk(self._public))
        return {"keys": [{**key, "alg": self.alg, "kid": self.kid, "use": "sig"}]}


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
class TestReferenceAsymmetricSigner(SignerContract):
    @pytest.fixture
    def signer(self, alg):
        return ReferenceAsymmetricSigner(alg)


class AcceptsAnything(HS256Signer):
    """Broken on purpose: skips the signature and the expiry check."""

    def verify(self, token, *, audience=None):
        return jwt.decode(token, options={"verify_signature": False})


class LeaksPrivateKey(ReferenceAsymmetricSigner):
    def jwks(self):
        key = json.loads(self._algorithm.to_jwk(self._private))
        return {"keys": [{**key, "alg": self.alg, "kid": self.kid}]}


@pytest.mark.parametrize("check", ["test_alg_none_rejected", "test_tampered_token_rejected",
                                   "test_expired_token_rejected"])
def test_signer_contract_catches_a_signer_that_accepts_anything(check):
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        getattr(SignerContract(), check)(AcceptsAnything("s" * 48), make_claims())


def test_signer_contract_catches_a_leaked_private_key():
    with pytest.raises(AssertionError, match="private key members"):
        SignerContract().test_jwks_shape(LeaksPrivateKey("RS256"))


def test_store_contract_catches_foreign_keys_off(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'nofk.db'}")  # no PRAGMA foreign_keys
    migrate(engine)
    try:
        with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
            StoreContract().test_foreign_keys_are_enforced(engine)
    finally:
        engine.dispose()


def test_auth_source_contract_catches_a_source_that_claims_everyone(tmp_path):
    from authgate.interfaces import Identity

    class ClaimsEveryone:
        name = "everyone"

        def authenticate(self, username, password, ctx):
            return Identity(username=username, auth_source="everyone")

    session, close = migrated_sqlite_session(tmp_path / "a.db")
    try:
        with pytest.raises(AssertionError):
            AuthSourceContract().test_unknown_user_is_not_mine(
                ClaimsEveryone(), AuthContext(dbsession=session), "nobody")
    finally:
        close()


def test_audit_contract_catches_a_sink_that_drops_details():
    stored: list[dict] = []

    class DropsDetails:
        name = "lossy"

        def write(self, events):
            stored.extend({**e.as_dict(), "details": {}} for e in events)

    with pytest.raises(AssertionError):
        AuditSinkContract().test_every_field_survives(DropsDetails(), lambda events: stored)
