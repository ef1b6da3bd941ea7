"""One test per hook: a throwaway plugin object, registered through ``make_app``.

Every hook in authgate/hookspecs.py must have a ``test_hook_<hookname>`` here
(tests/unit/test_plugin_docs.py enforces it).  Plugins are plain objects with
``@hookimpl`` methods and a ``__name__``; they live on the per-app plugin
manager, so nothing global needs undoing.
"""

from __future__ import annotations

import datetime as dt
import json

import jwt
import pytest
from authgate_plugins.store_sqlite import SQLiteStore
from cryptography.hazmat.primitives.asymmetric import ec

from authgate import hookimpl
from authgate.components import ComponentSpec
from authgate.errors import ConfigurationError
from authgate.interfaces import AuthContext, AuthRejected, Identity
from authgate.settings import Setting
from authgate.testing.contracts import make_audit_event, make_claims

# ---------------------------------------------------------------------------
# authgate_add_settings
# ---------------------------------------------------------------------------


class WidgetSettings:
    __name__ = "widget_settings"

    @hookimpl
    def authgate_add_settings(self, spec):
        spec.add(Setting("widget_timeout", "WIDGET_TIMEOUT", "duration",
                         dt.timedelta(seconds=30), section="Widgets",
                         help="How long a widget waits."))
        spec.add(Setting("widget_names", "WIDGET_NAMES", "list", ("a",), section="Widgets"))


def test_hook_authgate_add_settings(make_app):
    handle = make_app(settings={"authgate.widget_timeout": "1h30m",
                                "authgate.widget_names": "x y"},
                      environ={"WIDGET_NAMES": "from-env, second"},
                      plugins=[WidgetSettings()])
    settings = handle.runtime.settings
    assert settings.widget_timeout == dt.timedelta(hours=1, minutes=30)
    assert settings.widget_names == ("from-env", "second")  # the environment wins
    assert settings.source("widget_timeout") == "ini"
    assert handle.runtime.spec.owners["widget_timeout"] == "widget_settings"


def test_hook_authgate_add_settings_default(make_app):
    handle = make_app(plugins=[WidgetSettings()])
    assert handle.runtime.settings.widget_timeout == dt.timedelta(seconds=30)
    assert handle.runtime.settings.source("widget_timeout") == "default"


def test_hook_authgate_add_settings_bad_value_stops_start_up(make_app):
    with pytest.raises(ConfigurationError) as info:
        make_app(environ={"WIDGET_TIMEOUT": "soon"}, plugins=[WidgetSettings()])
    message = str(info.value)
    assert "WIDGET_TIMEOUT" in message
    assert "'soon'" in message
    assert "a duration such as 30s" in message


# ---------------------------------------------------------------------------
# authgate_register_stores
# ---------------------------------------------------------------------------


class CopyStore(SQLiteStore):
    name = "sqlite_copy"


class CopyStorePlugin:
    __name__ = "copy_store"

    @hookimpl
    def authgate_register_stores(self):
        return [ComponentSpec("sqlite_copy",
                              lambda ctx: CopyStore(ctx.settings.database_path),
                              "The SQLite store under another name")]


def test_hook_authgate_register_stores(make_app):
    handle = make_app(settings={"authgate.store": "sqlite_copy"}, plugins=[CopyStorePlugin()])
    assert handle.runtime.store.name == "sqlite_copy"
    assert handle.runtime.selected["store"][0].plugin == "copy_store"
    # The core migrated and seeded the database through the selected store.
    assert handle.testapp.get("/health").json["database"] == "connected"
    assert handle.default_client_id


def test_hook_authgate_register_stores_offers_without_selecting(make_app):
    handle = make_app(plugins=[CopyStorePlugin()])
    assert handle.runtime.store.name == "sqlite"  # being loaded switches nothing on


# ---------------------------------------------------------------------------
# authgate_register_signers
# ---------------------------------------------------------------------------


class ES256TestSigner:
    alg = "ES256"
    kid = "test-es256"

    def __init__(self):
        self._private = ec.generate_private_key(ec.SECP256R1())

    def sign(self, claims):
        return jwt.encode(dict(claims), self._private, algorithm="ES256",
                          headers={"kid": self.kid})

    def verify(self, token, *, audience=None):
        return jwt.decode(token, self._private.public_key(), algorithms=["ES256"],
                          audience=audience, options={"verify_aud": audience is not None})

    def jwks(self):
        key = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self._private.public_key()))
        return {"keys": [{**key, "alg": "ES256", "kid": self.kid, "use": "sig"}]}


class ES256SignerPlugin:
    __name__ = "test_es256"

    @hookimpl
    def authgate_register_signers(self):
        return [ComponentSpec("test_es256", lambda ctx: ES256TestSigner())]


def test_hook_authgate_register_signers(make_app):
    handle = make_app(settings={"authgate.signer": "test_es256"},
                      plugins=[ES256SignerPlugin()])
    jwks = handle.testapp.get("/.well-known/jwks.json").json
    assert [(k["kid"], k["alg"], k["kty"]) for k in jwks["keys"]] == [
        ("test-es256", "ES256", "EC")]
    # A token the selected signer signs verifies with the published key.
    token = handle.runtime.signer.sign(make_claims())
    assert jwt.decode(token, jwt.PyJWK(jwks["keys"][0]).key, algorithms=["ES256"])["sub"]


def test_hook_authgate_register_signers_algorithm_must_agree(make_app):
    with pytest.raises(ConfigurationError, match="signs with ES256 but JWT_SIGNING_ALGORITHM"):
        make_app(settings={"authgate.signer": "test_es256"},
                 environ={"AUTHGATE_SIGNER": "test_es256", "JWT_SIGNING_ALGORITHM": "RS256"},
                 plugins=[ES256SignerPlugin()])


# ---------------------------------------------------------------------------
# authgate_register_auth_sources
# ---------------------------------------------------------------------------


class CannedSource:
    """Knows one user: ``admin`` with the password ``canned``."""

    name = "canned"

    def __init__(self):
        self.calls: list[str] = []

    def authenticate(self, username, password, ctx):
        self.calls.append(username)
        if username != "admin":
            return None
        if password != "canned":
            raise AuthRejected()
        return Identity(username="admin", auth_source="canned", external_id="canned-admin")


class CannedSourcePlugin:
    __name__ = "canned_source"

    @hookimpl
    def authgate_register_auth_sources(self):
        return [ComponentSpec("canned", lambda ctx: CannedSource())]


def _authenticate(handle, username, password):
    with handle.db() as dbsession:
        return handle.runtime.auth.authenticate(username, password,
                                                AuthContext(dbsession=dbsession))


def test_hook_authgate_register_auth_sources(make_app):
    from authgate.testing import ADMIN_PASSWORD

    first = make_app(settings={"authgate.auth_sources": "canned local"},
                     plugins=[CannedSourcePlugin()])
    assert _authenticate(first, "admin", "canned").auth_source == "canned"
    # "admin" is canned's: its rejection stops the chain before local is asked.
    with pytest.raises(AuthRejected):
        _authenticate(first, "admin", ADMIN_PASSWORD)

    last = make_app(settings={"authgate.auth_sources": "local canned"},
                    plugins=[CannedSourcePlugin()])
    assert _authenticate(last, "admin", ADMIN_PASSWORD).auth_source == "local"
    with pytest.raises(AuthRejected):
        _authenticate(last, "admin", "canned")  # local rejects; canned is never asked
    (canned,) = [s for s in last.runtime.auth.sources if s.name == "canned"]
    assert canned.calls == []


def test_hook_authgate_register_auth_sources_none_means_next(make_app):
    handle = make_app(settings={"authgate.auth_sources": "canned local"},
                      plugins=[CannedSourcePlugin()])
    with pytest.raises(AuthRejected):
        _authenticate(handle, "stranger", "x")  # nobody claims the user
    canned = handle.runtime.auth.sources[0]
    assert canned.calls == ["stranger"]


# ---------------------------------------------------------------------------
# authgate_register_audit_sinks
# ---------------------------------------------------------------------------


class MemorySink:
    name = "memory"

    def __init__(self):
        self.events = []

    def write(self, events):
        self.events.extend(events)


class BrokenSink:
    name = "broken"

    def write(self, events):
        raise RuntimeError("the audit backend is down")


class SinksPlugin:
    __name__ = "test_sinks"

    @hookimpl
    def authgate_register_audit_sinks(self):
        return [ComponentSpec("memory", lambda ctx: MemorySink()),
                ComponentSpec("broken", lambda ctx: BrokenSink())]


def test_hook_authgate_register_audit_sinks(make_app):
    handle = make_app(settings={"authgate.audit_sinks": "database memory"},
                      plugins=[SinksPlugin()])
    memory = handle.runtime.audit.sinks[1]
    event = make_audit_event()
    handle.runtime.audit.deliver([event])
    assert memory.events == [event]
    # The other selected sink got it too (broadcast).
    from sqlalchemy import select

    from authgate.models import AuditLog

    with handle.db() as db:
        assert db.scalars(select(AuditLog.id)).all() == [event.id]


def test_hook_authgate_register_audit_sinks_isolated(make_app, caplog):
    handle = make_app(settings={"authgate.audit_sinks": "broken memory"},
                      plugins=[SinksPlugin()])
    event = make_audit_event()
    handle.runtime.audit.deliver([event])  # never raises
    assert handle.runtime.audit.sinks[1].events == [event]
    assert handle.runtime.audit.failures == 1
    failure = [r for r in caplog.records if "audit sink 'broken' failed" in r.getMessage()]
    assert failure and event.id in failure[0].getMessage()  # nothing lost silently


# ---------------------------------------------------------------------------
# authgate_pyramid_includes
# ---------------------------------------------------------------------------


class HelloRoutes:
    __name__ = "hello_routes"

    @hookimpl
    def authgate_pyramid_includes(self, settings):
        def includeme(config):
            config.add_route("hello.ping", "/hello/ping")
            config.add_view(lambda request: {"hello": settings.base_url},
                            route_name="hello.ping", renderer="json")

        return [includeme]


def test_hook_authgate_pyramid_includes(make_app):
    handle = make_app(settings={"authgate.base_url": "https://auth.example.com"},
                      plugins=[HelloRoutes()])
    response = handle.testapp.get("/hello/ping")
    assert response.json == {"hello": "https://auth.example.com"}
    # Core behaviour (security headers) applies to plugin routes as well.
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# ---------------------------------------------------------------------------
# Misspelt hooks
# ---------------------------------------------------------------------------


class Misspelt:
    __name__ = "misspelt"

    @hookimpl
    def authgate_register_storez(self):
        return []


def test_misspelt_hook_stops_start_up(make_app):
    with pytest.raises(ConfigurationError) as info:
        make_app(plugins=[Misspelt()])
    assert "authgate_register_storez" in str(info.value)
    assert "Misspelt" in str(info.value)  # names the plugin object
