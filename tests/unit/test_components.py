"""Component selection: the ini picks from what plugins offer, and mistakes stop start-up
with a message that says what is available and who offers it."""

from __future__ import annotations

import pytest
from authgate_plugins.store_sqlite import SQLiteStore

from authgate import hookimpl
from authgate.components import ComponentSpec
from authgate.errors import ConfigurationError
from authgate.interfaces import Identity
from authgate.plugins import installed_plugin_names


class Source:
    def __init__(self, name):
        self.name = name

    def authenticate(self, username, password, ctx):
        return Identity(username=username, auth_source=self.name) if username == self.name \
            else None


class TwoSources:
    __name__ = "two_sources"

    @hookimpl
    def authgate_register_auth_sources(self):
        return [ComponentSpec("alpha", lambda ctx: Source("alpha")),
                ComponentSpec("beta", lambda ctx: Source("beta"))]


class SecondSQLite:
    __name__ = "second_sqlite"

    @hookimpl
    def authgate_register_stores(self):
        return [ComponentSpec("sqlite", lambda ctx: SQLiteStore(ctx.settings.database_path))]


class NotAStore:
    name = "hollow"


class HollowStorePlugin:
    __name__ = "hollow_store"

    @hookimpl
    def authgate_register_stores(self):
        return [ComponentSpec("hollow", lambda ctx: NotAStore())]


class ReturnsDicts:
    __name__ = "returns_dicts"

    @hookimpl
    def authgate_register_signers(self):
        return [{"name": "hs999", "factory": None}]


def test_unknown_store_lists_available_names_and_distributions(make_app):
    with pytest.raises(ConfigurationError) as info:
        make_app(settings={"authgate.store": "mongodb"})
    message = str(info.value)
    assert "Unknown store 'mongodb' in authgate.store" in message
    assert "sqlite (from authgate " in message  # name and the distribution offering it
    assert "plugin store_sqlite" in message


def test_unknown_store_from_database_driver(make_app):
    with pytest.raises(ConfigurationError, match=r"Unknown store 'oracle'.*DATABASE_DRIVER"):
        make_app(environ={"DATABASE_DRIVER": "oracle"})


def test_two_plugins_offering_the_same_name(make_app):
    with pytest.raises(ConfigurationError) as info:
        make_app(plugins=[SecondSQLite()])
    message = str(info.value)
    assert "Two plugins offer a store named 'sqlite'" in message
    assert "store_sqlite" in message and "second_sqlite" in message


def test_factory_returning_the_wrong_thing(make_app):
    with pytest.raises(ConfigurationError) as info:
        make_app(settings={"authgate.store": "hollow"}, plugins=[HollowStorePlugin()])
    message = str(info.value)
    assert "does not provide IStore" in message
    assert "hollow_store" in message
    assert "create_engine" in message and "describe" in message


def test_hook_returning_something_that_is_not_a_component_spec(make_app):
    with pytest.raises(ConfigurationError, match="expected authgate.components.ComponentSpec"):
        make_app(plugins=[ReturnsDicts()])


def test_auth_sources_order_is_the_ini_order(make_app):
    handle = make_app(settings={"authgate.auth_sources": "beta local alpha"},
                      plugins=[TwoSources()])
    assert [s.name for s in handle.runtime.auth.sources] == ["beta", "local", "alpha"]
    handle = make_app(settings={"authgate.auth_sources": "alpha, beta"},
                      plugins=[TwoSources()])
    assert [s.name for s in handle.runtime.auth.sources] == ["alpha", "beta"]


def test_unknown_auth_source_lists_available(make_app):
    with pytest.raises(ConfigurationError) as info:
        make_app(settings={"authgate.auth_sources": "local ldap"}, plugins=[TwoSources()])
    message = str(info.value)
    assert "Unknown auth source 'ldap'" in message
    for name in ("alpha", "beta", "local"):
        assert f"{name} (from " in message


def test_allow_list_with_a_plugin_that_is_not_installed(make_app):
    with pytest.raises(ConfigurationError) as info:
        make_app(settings={"authgate.plugins": "store_sqlite authgate_ldap"})
    message = str(info.value)
    assert "'authgate_ldap' listed in authgate.plugins is not installed" in message
    for name in ("store_sqlite", "signer_hs256", "auth_local", "audit_database", "audit_log"):
        assert name in message
    assert set(installed_plugin_names()) >= {"store_sqlite", "auth_local"}


def test_allow_list_limits_what_is_offered(make_app):
    with pytest.raises(ConfigurationError) as info:
        make_app(settings={"authgate.plugins": "store_sqlite signer_hs256 auth_local",
                           "authgate.audit_sinks": "database"})
    assert "Unknown audit sink 'database'" in str(info.value)
    assert "none is installed" in str(info.value)


def test_allow_list_from_the_environment_wins(make_app):
    pinned = "store_sqlite signer_hs256 auth_local audit_database"
    handle = make_app(settings={"authgate.plugins": "store_sqlite"},
                      environ={"AUTHGATE_PLUGINS": pinned})
    assert sorted(name for name, _ in handle.runtime.pm.list_name_plugin()) == sorted(
        pinned.split())


def test_installing_is_not_enabling(make_app):
    handle = make_app(plugins=[TwoSources()])
    assert [s.name for s in handle.runtime.auth.sources] == ["local"]
