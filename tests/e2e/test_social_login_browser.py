"""Social login in Chromium against a real `authgate server` and a fake provider.

The fake provider (:mod:`authgate.testing.fake_oauth_provider`) runs on
127.0.0.1 in this process and shows a small consent page ("Continue as …",
"Deny") that the browser clicks; the server finds it through the endpoint
settings (GITHUB_URL, GITEA_URL, GITLAB_URL, MICROSOFT_LOGIN_URL, …) and talks
to it over HTTP.  Nothing of AuthGate is mocked.

Screenshots: artifacts/screenshots/social-*.png.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import requests
from e2e_support import ADMIN_PASSWORD, screenshot

from authgate.testing.fake_oauth_provider import KINDS, FakeOAuthProvider

pytestmark = pytest.mark.e2e

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DISABLED = "Your account has been disabled. Please contact an administrator."
AUTHGATE = str(Path(sys.executable).with_name("authgate"))


@pytest.fixture
def fake():
    with FakeOAuthProvider() as provider:
        provider.auto_approve = False  # the browser clicks the consent page
        yield provider


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> dict[str, str]:
    """Make the live server find the plugin through its entry point.

    Until pyproject.toml declares ``auth_oauth = "authgate_plugins.auth_oauth"``
    (and the package is reinstalled), a dist-info directory on the server's
    PYTHONPATH declares it, for the server processes only.
    """
    if any(ep.name == "auth_oauth" for ep in entry_points(group="authgate")):
        return {}
    root = tmp_path_factory.mktemp("plugin-path")
    info = root / "authgate_auth_oauth_e2e-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: authgate-auth-oauth-e2e\n"
                                   "Version: 0.0.0\n")
    (info / "entry_points.txt").write_text(
        "[authgate]\nauth_oauth = authgate_plugins.auth_oauth\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(root),
                                                         os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def social_server(live_server, fake, plugin_path):
    def factory(**env: str):
        # SQLite whatever --authgate-store says: db_rows() reads the server's file;
        # PostgreSQL coverage is tests/functional/test_auth_oauth.py.
        return live_server(AUTHGATE_AUTH_SOURCES="local oauth", DATABASE_DRIVER="sqlite",
                           **fake.environ(),
                           **plugin_path, **env)
    return factory


def new_page(browser, viewport=None):
    context = browser.new_context(viewport=viewport or {"width": 390, "height": 844})
    return context, context.new_page()


def through_provider(page, kind: str, login: str, *, shot: str | None = None) -> None:
    """On AuthGate's login page: click "Sign in with …", then "Continue as <login>"."""
    page.click(f"#social-{kind}")
    page.wait_for_selector("#fake-title")
    if shot:
        screenshot(page, shot)
    page.click(f"#fake-continue-{login}")
    page.wait_for_load_state()


def nav_user(page) -> str:
    page.wait_for_selector(".nav-username")
    return page.inner_text(".nav-username")


def db_rows(server, sql, params=()):
    connection = sqlite3.connect(server.cwd / "oauth.db")
    try:
        with connection:
            return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def create_user(server, username: str, email: str, password: str) -> None:
    result = subprocess.run([AUTHGATE, "create-user", username, "--email", email,
                             "--password-stdin"], input=password + "\n", text=True,
                            cwd=server.cwd, env=server.env, capture_output=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def result_title(page) -> str:
    page.wait_for_selector("#oauth-result-title")
    return page.inner_text("#oauth-result-title")


# ---------------------------------------------------------------------------


def test_sign_in_through_each_provider(social_server, fake, browser):
    server = social_server()
    people = {kind: fake.add_user(kind, login=f"{kind}-person",
                                  email=f"person@{kind}.example", name=f"{kind.title()} Person")
              for kind in KINDS}
    for number, kind in enumerate(KINDS):
        context, page = new_page(browser)
        try:
            page.goto(server.url + "/login")
            for other in KINDS:
                assert page.is_visible(f"#social-{other}")
            if number == 0:
                screenshot(page, "social-01-login-buttons")
                page.set_viewport_size({"width": 1280, "height": 900})
                screenshot(page, "social-02-login-buttons-desktop")
            through_provider(page, kind, people[kind].login,
                             shot="social-03-fake-consent" if number == 0 else None)
            assert page.url == server.url + "/device"
            assert nav_user(page) == f"{kind}-person"
            if number == 0:
                screenshot(page, "social-04-signed-in")
        finally:
            context.close()
    rows = db_rows(server, "SELECT u.username, u.auth_source, u.password_hash, "
                           "u.email_verified, c.provider FROM users u JOIN oauth_connections c "
                           "ON c.user_id = u.id ORDER BY c.provider")
    assert rows == [("gitea-person", "local", "", 0, "gitea"),
                    ("github-person", "local", "", 1, "github"),
                    ("gitlab-person", "local", "", 0, "gitlab"),
                    ("microsoft-person", "local", "", 1, "microsoft")]


def test_device_flow_after_social_sign_in(social_server, fake, page):
    server = social_server(POLLING_INTERVAL="1s")
    person = fake.add_user("gitlab", login="cli-user", email="cli@example.com")
    code = requests.post(server.url + "/oauth/device/code",
                         data={"client_id": server.client_id}, timeout=10).json()

    page.goto(code["verification_uri_complete"])
    assert page.url.startswith(server.url + "/login")
    through_provider(page, "gitlab", person.login)
    page.wait_for_selector("#device-approve")
    assert page.inner_text("#confirm-user-code") == code["user_code"]
    assert nav_user(page) == "cli-user"
    screenshot(page, "social-05-device-confirm")
    page.click("#device-approve")
    page.wait_for_selector("#result-title")
    assert page.inner_text("#result-title") == "Device authorized"

    time.sleep(code["interval"])
    tokens = requests.post(server.url + "/oauth/token", data={
        "grant_type": DEVICE_GRANT, "device_code": code["device_code"],
        "client_id": server.client_id}, timeout=10)
    assert tokens.status_code == 200, tokens.text
    info = requests.get(server.url + "/oauth/tokeninfo", timeout=10, headers={
        "Authorization": "Bearer " + tokens.json()["access_token"]}).json()
    ((user_id,),) = db_rows(server, "SELECT id FROM users WHERE username = 'cli-user'")
    assert info["user_id"] == user_id


def test_existing_account_is_linked_by_verified_email(social_server, fake, page):
    server = social_server()
    create_user(server, "alice", "alice@example.com", "alice-password-123")
    person = fake.add_user("github", login="alice-gh", email="alice@example.com")
    page.goto(server.url + "/login")
    through_provider(page, "github", person.login)
    assert nav_user(page) == "alice"
    assert db_rows(server, "SELECT u.username, c.provider_username, u.email_verified "
                           "FROM oauth_connections c JOIN users u ON u.id = c.user_id") == [
        ("alice", "alice-gh", 1)]
    assert db_rows(server, "SELECT count(*) FROM users") == [(2,)]


def test_unverified_email_collision_is_refused_then_linked(social_server, fake, page):
    server = social_server()
    create_user(server, "bob", "bob@example.com", "bob-password-123")
    person = fake.add_user("gitea", login="bobby", email="bob@example.com")
    page.goto(server.url + "/login")
    through_provider(page, "gitea", person.login)
    assert result_title(page) == "An account with this email already exists"
    assert "Gitea does not confirm that this address belongs to you" in page.inner_text(
        "#oauth-result-message")
    screenshot(page, "social-06-unverified-email-refused")
    assert db_rows(server, "SELECT count(*) FROM oauth_connections") == [(0,)]

    # "Sign in with your password to link": password, then straight back through Gitea.
    page.click("#oauth-link-signin")
    page.wait_for_selector("#username")
    page.fill("#username", "bob")
    page.fill("#password", "bob-password-123")
    page.click("#login-submit")
    page.wait_for_selector("#oauth-link-confirm")
    screenshot(page, "social-12-link-confirm")
    page.click("#oauth-link-confirm")
    page.wait_for_selector("#fake-title")
    page.click("#fake-continue-bobby")
    assert nav_user(page) == "bob"
    assert db_rows(server, "SELECT u.username, c.provider FROM oauth_connections c "
                           "JOIN users u ON u.id = c.user_id") == [("bob", "gitea")]


def test_disabled_user_is_refused(social_server, fake, page):
    server = social_server()
    person = fake.add_user("microsoft", login="mallory", email="mallory@example.com")
    page.goto(server.url + "/login")
    through_provider(page, "microsoft", person.login)
    assert nav_user(page) == "mallory"

    db_rows(server, "UPDATE users SET is_active = 0 WHERE username = 'mallory'")
    page.goto(server.url + "/device")
    assert page.url.startswith(server.url + "/login")  # signed out at once
    through_provider(page, "microsoft", person.login)
    assert result_title(page) == "Account disabled"
    assert DISABLED in page.inner_text("#oauth-result-message")
    screenshot(page, "social-07-disabled-refused")
    page.goto(server.url + "/device")
    assert page.url.startswith(server.url + "/login")


def test_admin_lists_and_unlinks_connections(social_server, fake, browser):
    server = social_server()
    person = fake.add_user("gitea", login="nina", email="nina@example.com")
    user_ctx, user = new_page(browser)
    admin_ctx, admin = new_page(browser, {"width": 1280, "height": 900})
    try:
        user.goto(server.url + "/login")
        through_provider(user, "gitea", person.login)
        assert nav_user(user) == "nina"
        ((user_id,),) = db_rows(server, "SELECT id FROM users WHERE username = 'nina'")

        admin.goto(server.url + "/login")
        admin.fill("#username", "admin")
        admin.fill("#password", ADMIN_PASSWORD)
        admin.click("#login-submit")
        admin.wait_for_load_state()
        admin.goto(f"{server.url}/admin/users/{user_id}/connections")
        table = admin.inner_text("table")
        assert "gitea" in table and "nina" in table and "nina@example.com" in table
        screenshot(admin, "social-08-admin-linked-accounts")
        admin.click("details.confirm > summary")
        admin.click("details.confirm button[type=submit]")
        admin.wait_for_load_state()
        assert "No linked accounts." in admin.inner_text("table")
        assert db_rows(server, "SELECT count(*) FROM oauth_connections") == [(0,)]
    finally:
        user_ctx.close()
        admin_ctx.close()


def test_tampered_state_and_provider_denial_are_refused(social_server, fake, page):
    server = social_server()
    fake.add_user("github", login="trudy", email="trudy@example.com")
    page.goto(server.url + "/login")
    page.click("#social-github")
    page.wait_for_selector("#fake-title")
    # Someone changes the state on the way back.
    page.eval_on_selector_all("input[name=state]", "els => els.forEach(e => e.value += 'x')")
    page.click("#fake-continue-trudy")
    assert result_title(page) == "Sign-in could not be verified"
    screenshot(page, "social-09-state-refused")
    assert db_rows(server, "SELECT count(*) FROM users WHERE username = 'trudy'") == [(0,)]

    page.goto(server.url + "/login")
    page.click("#social-github")
    page.wait_for_selector("#fake-title")
    page.click("#fake-deny")
    assert result_title(page) == "Sign-in cancelled"
    screenshot(page, "social-10-provider-denied")
    page.click("text=Back to sign in")
    page.wait_for_selector("#social-github")


def test_registration_off_is_refused(social_server, fake, page):
    server = social_server(OAUTH_AUTO_REGISTER="false")
    fake.add_user("gitlab", login="newcomer", email="newcomer@example.com")
    page.goto(server.url + "/login")
    through_provider(page, "gitlab", "newcomer")
    assert result_title(page) == "Registration disabled"
    screenshot(page, "social-11-registration-disabled")
    assert db_rows(server, "SELECT count(*) FROM users") == [(1,)]
