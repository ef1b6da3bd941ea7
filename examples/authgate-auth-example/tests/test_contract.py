"""The example source keeps the auth-source contract, and works inside a real app."""

from __future__ import annotations

import pytest
from authgate_auth_example import ExampleAuthSource, parse_users

from authgate.errors import ConfigurationError
from authgate.interfaces import AuthContext, AuthRejected
from authgate.testing.contracts import AuthSourceContract

USERS = "alice:secret1 bob:secret2"


class TestExampleAuthSource(AuthSourceContract):
    # auth_context: the suite's default (a fresh migrated SQLite database) is
    # enough, because this source never reads the database.

    @pytest.fixture
    def auth_source(self):
        return ExampleAuthSource(parse_users(tuple(USERS.split())))

    @pytest.fixture
    def good_credentials(self):
        return ("alice", "secret1")

    @pytest.fixture
    def bad_password_credentials(self):
        return ("alice", "secret2")  # bob's password is not alice's

    @pytest.fixture
    def unknown_username(self):
        return "carol"

    def test_identity_is_external(self, auth_source, auth_context):
        identity = auth_source.authenticate("bob", "secret2", auth_context)
        assert (identity.auth_source, identity.external_id) == ("example", "example:bob")


def test_selected_in_an_app(make_app, example_plugins):
    """Loaded (installed, or registered directly), then selected by one ini line."""
    handle = make_app(settings={"authgate.auth_sources": "local example",
                                "authgate.example_auth_users": USERS},
                      plugins=example_plugins)
    with handle.db() as dbsession:
        ctx = AuthContext(dbsession=dbsession)
        assert handle.runtime.auth.authenticate("alice", "secret1", ctx).auth_source == \
            "example"
        with pytest.raises(AuthRejected):
            handle.runtime.auth.authenticate("alice", "nope", ctx)


def test_malformed_users_stop_start_up_without_echoing_passwords(make_app, example_plugins):
    with pytest.raises(ConfigurationError) as info:
        make_app(environ={"EXAMPLE_AUTH_USERS": "alice-hunter2"}, plugins=example_plugins)
    assert "EXAMPLE_AUTH_USERS" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_selected_without_users_stops_start_up(make_app, example_plugins):
    with pytest.raises(ConfigurationError, match="EXAMPLE_AUTH_USERS"):
        make_app(settings={"authgate.auth_sources": "local example"}, plugins=example_plugins)
