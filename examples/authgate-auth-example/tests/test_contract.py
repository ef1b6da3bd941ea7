"""The example source keeps the auth-source contract, and works inside a real app."""

from __future__ import annotations

import subprocess
import sys

import pytest
from authgate_auth_example import ExampleAuthSource, load_users, parse_users

from authgate.errors import ConfigurationError
from authgate.interfaces import AuthContext, AuthRejected
from authgate.testing.contracts import AuthSourceContract


class TestExampleAuthSource(AuthSourceContract):
    # auth_context: the suite's default (a fresh migrated SQLite database) is
    # enough, because this source never reads the database.

    @pytest.fixture
    def auth_source(self, users_file):
        return ExampleAuthSource(load_users(users_file))

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
        identity = auth_source.authenticate("bob", "secret2", auth_context)  # bcrypt ($2y$)
        assert (identity.auth_source, identity.external_id) == ("example", "example:bob")


def test_selected_in_an_app(make_app, example_plugins, users_file):
    """Loaded (installed, or registered directly), then selected by one ini line."""
    handle = make_app(settings={"authgate.auth_sources": "local example",
                                "authgate.example_auth_users_file": str(users_file)},
                      plugins=example_plugins)
    with handle.db() as dbsession:
        ctx = AuthContext(dbsession=dbsession)
        assert handle.runtime.auth.authenticate("alice", "secret1", ctx).auth_source == \
            "example"
        with pytest.raises(AuthRejected):
            handle.runtime.auth.authenticate("alice", "nope", ctx)


def test_login_form_creates_the_user(make_app, example_plugins, users_file):
    """Through the real /login form: the core syncs a user row for the identity."""
    from sqlalchemy import select

    from authgate.models import User

    handle = make_app(settings={"authgate.auth_sources": "local example"},
                      environ={"EXAMPLE_AUTH_USERS_FILE": str(users_file)},
                      plugins=example_plugins)
    assert handle.login("bob", "secret2").status_int == 302
    with handle.db() as db:
        user = db.scalars(select(User).where(User.username == "bob")).one()
        assert (user.auth_source, user.external_id, user.password_hash) == (
            "example", "example:bob", "")


@pytest.mark.parametrize(("content", "expected"), [
    ("alice-hunter2\n", "line 1: expected username:hash"),
    ("# users\nalice:hunter2\n", "line 2: the password of 'alice' is not an argon2id"),
    ("", "lists no users"),
])
def test_bad_users_file_stops_start_up_without_echoing_it(make_app, example_plugins, tmp_path,
                                                          content, expected):
    path = tmp_path / "bad-users.txt"
    path.write_text(content)
    with pytest.raises(ConfigurationError) as info:
        make_app(settings={"authgate.auth_sources": "local example"},
                 environ={"EXAMPLE_AUTH_USERS_FILE": str(path)}, plugins=example_plugins)
    assert "EXAMPLE_AUTH_USERS_FILE" in str(info.value)
    assert expected in str(info.value)
    assert "hunter2" not in str(info.value)


def test_duplicate_user_is_refused(users_text):
    with pytest.raises(ValueError, match="'alice' is listed twice"):
        parse_users(users_text + users_text)


def test_missing_file_stops_start_up(make_app, example_plugins, tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read .*no-such-file"):
        make_app(settings={"authgate.auth_sources": "local example",
                           "authgate.example_auth_users_file": str(tmp_path / "no-such-file")},
                 plugins=example_plugins)


def test_selected_without_a_file_stops_start_up(make_app, example_plugins):
    with pytest.raises(ConfigurationError, match="EXAMPLE_AUTH_USERS_FILE"):
        make_app(settings={"authgate.auth_sources": "local example"}, plugins=example_plugins)


def test_installed_but_not_selected_needs_no_file(make_app, example_plugins):
    handle = make_app(plugins=example_plugins)
    assert [s.name for s in handle.runtime.auth.sources] == ["local"]


def test_hash_command_prints_a_line_that_verifies(tmp_path):
    result = subprocess.run([sys.executable, "-m", "authgate_auth_example", "carol"],
                            input="s3cret pass\n", capture_output=True, text=True, timeout=60,
                            check=True)
    line = result.stdout.strip()
    assert line.startswith("carol:$argon2id$")
    assert "s3cret" not in line
    source = ExampleAuthSource(parse_users(line))
    assert source.authenticate("carol", "s3cret pass", None).external_id == "example:carol"
    with pytest.raises(AuthRejected):
        source.authenticate("carol", "s3cret", None)
