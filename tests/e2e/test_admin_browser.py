"""The admin console and account pages in Chromium against a real `authgate server`.

One admin browser context and one user browser context, as in the issue's
"done when": create a user, sign them in, disable them from the admin side (their
next page load is the sign-in page, which then says the account is disabled, and
their tokens are dead), find USER_DISABLED in the audit API, re-enable; create a
confidential client and use its secret; approve a pending client; a client named
``<script>alert(1)</script>`` is text everywhere; a regular user gets 403 on
/admin; a POST without the CSRF token is refused.  Screenshots of every page go
to artifacts/screenshots/admin-*.png and account-*.png.
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid

import pytest
import requests
from e2e_support import ADMIN_PASSWORD, screenshot

pytestmark = pytest.mark.e2e

XSS = "<script>alert(1)</script>"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
DISABLED_MESSAGE = "Your account has been disabled. Please contact an administrator."


def new_context(browser, viewport=DESKTOP):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    dialogs: list[str] = []
    # Any alert() would mean user data ran as script.
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return context, page, dialogs


def sign_in(page, url, username, password, *, shot=None):
    page.goto(url)
    page.fill("#username", username)
    page.fill("#password", password)
    if shot:
        screenshot(page, shot)
    page.click("#login-submit")
    page.wait_for_load_state()


def open_confirm(page, details_id):
    """Open a no-JS "are you sure" disclosure and press its confirm button."""
    page.click(f"#{details_id} > summary")
    page.click(f"#{details_id}-confirm")
    page.wait_for_load_state()


# These checks read the server's SQLite file directly (SQLite SQL dialect), so the
# servers here run on SQLite whatever --authgate-store says; the admin console's
# PostgreSQL coverage is tests/functional/test_admin.py under --authgate-store=postgres.
SQLITE = {"DATABASE_DRIVER": "sqlite"}


def db_rows(server, sql, params=()):
    connection = sqlite3.connect(server.cwd / "oauth.db")
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def introspect(server, client_id, secret, token):
    return requests.post(server.url + "/oauth/introspect", data={"token": token},
                         auth=(client_id, secret), timeout=10)


def test_admin_console_end_to_end(live_server, browser):
    server = live_server(POLLING_INTERVAL="1s", ENABLE_RATE_LIMIT="false", **SQLITE)
    base = server.url
    admin_ctx, admin, admin_dialogs = new_context(browser)
    user_ctx, user, user_dialogs = new_context(browser)
    try:
        _run(server, base, browser, admin, user)
    finally:
        admin_ctx.close()
        user_ctx.close()
    assert admin_dialogs == [] and user_dialogs == []


def _run(server, base, browser, admin, user):
    # -- Admin signs in and looks around ------------------------------------------
    sign_in(admin, base + "/admin", "admin", ADMIN_PASSWORD)
    assert admin.url == base + "/admin"
    assert admin.inner_text("h1") == "Dashboard"
    screenshot(admin, "admin-dashboard")

    # -- A confidential client: the secret is shown once and works -----------------
    admin.goto(base + "/admin/clients/new")
    screenshot(admin, "admin-client-new")
    admin.fill("#name", "E2E billing service")
    admin.fill("#description", "Machine-to-machine client made by the browser test")
    admin.check("#type-confidential")
    admin.uncheck("#flow-device")
    admin.check("#flow-client-credentials")
    admin.fill("#scopes", "read write")
    admin.click("#client-save")
    admin.wait_for_selector("#client-secret")
    secret = admin.inner_text("#client-secret").strip()
    service_id = admin.inner_text("#created-client-id").strip()
    assert secret.startswith("ags_")
    screenshot(admin, "admin-client-created")
    admin.click("#secret-done")
    assert secret not in admin.content()  # shown once
    screenshot(admin, "admin-client-detail")

    cc = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials"},
                       auth=(service_id, secret), timeout=10)
    if cc.status_code == 400 and cc.json().get("error") == "unsupported_grant_type":
        # The client-credentials grant is another issue; the secret must still
        # authenticate the client (introspection needs a confidential client).
        known = introspect(server, service_id, secret, "not-a-token")
        assert known.status_code == 200 and known.json() == {"active": False}, known.text
        wrong = introspect(server, service_id, secret + "x", "not-a-token")
        assert wrong.status_code == 401
    else:
        assert cc.status_code == 200 and cc.json()["access_token"], cc.text

    # -- A client whose name is a script, used for the user's device -------------
    admin.goto(base + "/admin/clients/new")
    admin.fill("#name", XSS)
    admin.fill("#description", XSS)
    admin.check("#flow-device")
    admin.click("#client-save")
    admin.wait_for_selector("#created-client-id")
    xss_id = admin.inner_text("#created-client-id").strip()
    assert XSS in admin.inner_text("#secret-title")

    # -- Create a user; the generated password is shown once ----------------------
    admin.goto(base + "/admin/users")
    admin.click("#new-user")
    admin.fill("#username", "e2e-user")
    admin.fill("#email", "e2e-user@example.com")
    admin.fill("#full_name", "E2E User")
    screenshot(admin, "admin-user-new")
    admin.click("#user-save")
    admin.wait_for_selector("#one-time-password")
    password = admin.inner_text("#one-time-password").strip()
    assert len(password) == 16
    screenshot(admin, "admin-user-created")
    admin.click("#secret-done")
    user_url = admin.url
    user_id = user_url.rsplit("/", 1)[1]
    screenshot(admin, "admin-user-detail")

    # -- The user signs in (second browser context) and connects a device --------
    sign_in(user, base + "/account/sessions", "e2e-user", password)
    assert user.url == base + "/account/sessions"
    code = requests.post(base + "/oauth/device/code", data={"client_id": xss_id},
                         timeout=10).json()
    user.goto(code["verification_uri_complete"])
    assert user.inner_text("#client-name") == XSS
    user.click("#device-approve")
    user.wait_for_selector("#result-title")
    time.sleep(code["interval"] + 0.2)
    tokens = requests.post(base + "/oauth/token", data={
        "grant_type": DEVICE_GRANT, "device_code": code["device_code"], "client_id": xss_id},
        timeout=10).json()
    access = tokens["access_token"]
    before = introspect(server, service_id, secret, access)
    has_introspection = before.status_code != 404
    if has_introspection:
        assert before.json()["active"] is True, before.text

    user.goto(base + "/account/sessions")
    assert XSS in user.inner_text("#sessions-table")
    screenshot(user, "account-sessions")
    # Approving the device records a consent; make sure there is one either way.
    application_id = db_rows(server, "SELECT id FROM oauth_clients WHERE client_id = ?",
                             (xss_id,))[0][0]
    db_rows_commit(server, "INSERT OR IGNORE INTO user_authorizations (uuid, user_id, "
                           "application_id, client_id, scopes, granted_at, is_active, "
                           "created_at, updated_at) VALUES (?, ?, ?, ?, 'email profile', "
                           "datetime('now'), 1, datetime('now'), datetime('now'))",
                   (str(uuid.uuid4()), user_id, application_id, xss_id))
    ((consent_uuid,),) = db_rows(server, "SELECT uuid FROM user_authorizations WHERE "
                                         "user_id = ? AND client_id = ?", (user_id, xss_id))
    user.goto(base + "/account/authorizations")
    assert XSS in user.inner_text("#authorizations-table")
    screenshot(user, "account-authorizations")

    # -- The user registers an app; it waits for approval -------------------------
    user.goto(base + "/apps/new")
    screenshot(user, "account-apps-new")
    user.fill("#name", "E2E pending app")
    user.check("#flow-auth-code")
    user.fill("#redirect_uris", "https://app.example/callback")
    user.click("#app-save")
    user.wait_for_selector("#created-client-id")
    pending_id = user.inner_text("#created-client-id").strip()
    screenshot(user, "account-apps-created")
    user.click("#secret-done")
    assert "Pending approval" in user.inner_text("h1")
    screenshot(user, "account-apps-detail")
    user.goto(base + f"/apps/{pending_id}/edit")
    screenshot(user, "account-apps-edit")
    user.goto(base + "/apps")
    screenshot(user, "account-apps")

    # -- A regular user gets a real 403 on /admin ---------------------------------
    response = user.goto(base + "/admin")
    assert response.status == 403
    assert "Administrator access is required" in user.inner_text("main")
    screenshot(user, "account-admin-forbidden")

    # -- Admin approves the pending client ----------------------------------------
    admin.goto(base + "/admin")
    admin.click("#pending-clients")
    assert admin.url.endswith("/admin/clients?status=pending")
    screenshot(admin, "admin-clients-pending")
    row = admin.locator("#clients-table tr", has_text="E2E pending app")
    row.get_by_role("button", name="Approve").click()
    admin.wait_for_load_state()
    assert "Approved E2E pending app." in admin.inner_text("[role=alert]")
    assert db_rows(server, "SELECT status FROM oauth_clients WHERE client_id = ?",
                   (pending_id,)) == [("active",)]

    # -- Every page that lists the script-named client shows it as text ---------
    for path in ["/admin", "/admin/clients", f"/admin/clients/{xss_id}",
                 f"/admin/clients/{xss_id}/edit", f"/admin/clients/{xss_id}/authorizations",
                 "/admin/tokens", f"/admin/users/{user_id}/authorizations", "/admin/audit"]:
        admin.goto(base + path)
        assert XSS in admin.inner_text("main"), path
        assert admin.locator("main script").count() == 0, path
    admin.goto(base + f"/admin/clients/{xss_id}")
    screenshot(admin, "admin-client-detail-script-name")
    admin.goto(base + f"/admin/clients/{xss_id}/edit")
    screenshot(admin, "admin-client-edit")
    admin.goto(base + f"/admin/clients/{xss_id}/authorizations")
    screenshot(admin, "admin-client-authorizations")
    admin.goto(base + "/admin/clients")
    screenshot(admin, "admin-clients")
    admin.goto(base + "/admin/tokens")
    screenshot(admin, "admin-tokens")
    admin.goto(base + f"/admin/users/{user_id}/authorizations")
    screenshot(admin, "admin-user-authorizations")
    admin.goto(base + f"/admin/users/{user_id}/connections")
    screenshot(admin, "admin-user-connections")
    admin.goto(base + f"/admin/users/{user_id}/edit")
    screenshot(admin, "admin-user-edit")

    # -- A POST without the CSRF token is refused ---------------------------------
    forged = admin.request.post(base + f"/admin/users/{user_id}/disable",
                                max_redirects=0)
    assert forged.status == 400, forged.status
    assert db_rows(server, "SELECT is_active FROM users WHERE id = ?", (user_id,)) == [(1,)]

    # -- Disable the user from the admin context ----------------------------------
    admin.goto(user_url)
    admin.click("#user-disable > summary")
    screenshot(admin, "admin-user-disable-confirm")
    admin.click("#user-disable-confirm")
    admin.wait_for_load_state()
    assert "Disabled e2e-user" in admin.inner_text("[role=alert]")
    screenshot(admin, "admin-user-disabled")

    # The user's next page load lands on the sign-in page...
    user.goto(base + "/account/sessions")
    assert user.url.startswith(base + "/login"), user.url
    # ...and signing in says the account is disabled.
    user.fill("#username", "e2e-user")
    user.fill("#password", password)
    user.click("#login-submit")
    user.wait_for_selector("#login-error")
    assert DISABLED_MESSAGE in user.inner_text("#login-error")
    screenshot(user, "account-disabled-login")

    # Their tokens are revoked (rows kept) and introspect inactive.
    statuses = db_rows(server, "SELECT DISTINCT status FROM tokens WHERE user_id = ?",
                       (user_id,))
    assert statuses == [("revoked",)], statuses
    if has_introspection:
        after = introspect(server, service_id, secret, access)
        assert after.status_code == 200 and after.json() == {"active": False}, after.text

    # The audit API (admin's cookies) has the event, as the troubleshooting guide queries it.
    found = admin.request.get(base + f"/admin/audit/api?user_id={user_id}"
                                     "&event_type=USER_DISABLED")
    assert found.status == 200
    logs = found.json()["logs"]
    assert len(logs) == 1 and logs[0]["resource_name"] == "e2e-user"
    assert logs[0]["actor_username"] == "admin" and logs[0]["severity"] == "WARNING"
    by_type = admin.request.get(base + "/admin/audit/api?event_type=USER_DISABLED").json()
    assert [log["resource_id"] for log in by_type["logs"]] == [user_id]
    # Anonymous callers get JSON 401, not a page.
    assert requests.get(base + "/admin/audit/api", timeout=10).status_code == 401

    admin.goto(base + "/admin/audit?event_type=USER_DISABLED")
    assert "Disabled user e2e-user" in admin.inner_text("#audit-table")
    screenshot(admin, "admin-audit")
    export = admin.request.get(base + "/admin/audit/export?event_type=USER_DISABLED")
    assert export.headers["content-type"].startswith("text/csv")
    assert export.text().splitlines()[0] == ("Event Time,Event Type,Severity,Actor Username,"
                                             "Actor IP,Resource Type,Resource Name,Action,"
                                             "Success,Error Message")

    # -- Re-enable: the user can sign in again, old tokens stay revoked -----------
    admin.goto(user_url)
    admin.click("#user-enable")
    admin.wait_for_load_state()
    assert "Enabled e2e-user" in admin.inner_text("[role=alert]")
    sign_in(user, base + "/login?redirect=/account/sessions", "e2e-user", password)
    assert user.url == base + "/account/sessions"
    assert "No device or app is signed in as you." in user.inner_text("#sessions-table")
    if has_introspection:
        assert introspect(server, service_id, secret, access).json() == {"active": False}

    # The user revokes their consent.
    user.goto(base + "/account/authorizations")
    user.click("#authorizations-table details.confirm > summary")
    user.click("#authorizations-table details.confirm button[type=submit]")
    user.wait_for_load_state()
    assert "can no longer access your account" in user.inner_text("[role=alert]")
    assert db_rows(server, "SELECT is_active FROM user_authorizations WHERE uuid = ?",
                   (consent_uuid,)) == [(0,)]

    admin.goto(base + "/admin/users")
    screenshot(admin, "admin-users")
    admin.goto(base + "/admin")
    screenshot(admin, "admin-dashboard-after")

    # -- Small screens ---------------------------------------------------------------
    phone_ctx = browser.new_context(viewport=PHONE,
                                    storage_state=admin.context.storage_state())
    try:
        phone = phone_ctx.new_page()
        for name, path in [("admin-users-phone", "/admin/users"),
                           ("admin-audit-phone", "/admin/audit"),
                           ("account-sessions-phone", "/account/sessions")]:
            phone.goto(base + path)
            screenshot(phone, name)
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (path, width)  # tables scroll inside their box
    finally:
        phone_ctx.close()


def db_rows_commit(server, sql, params=()):
    connection = sqlite3.connect(server.cwd / "oauth.db")
    try:
        with connection:
            connection.execute(sql, params)
    finally:
        connection.close()


def test_regular_user_cannot_use_the_console(live_server, browser):
    server = live_server(ENABLE_RATE_LIMIT="false", **SQLITE)
    base = server.url
    admin_ctx, admin, _ = new_context(browser)
    try:
        sign_in(admin, base + "/admin/users/new", "admin", ADMIN_PASSWORD)
        admin.fill("#username", "plain")
        admin.fill("#password", "plain-password-1")
        admin.click("#user-save")
        admin.wait_for_selector("#secret-done")
    finally:
        admin_ctx.close()
    context, page, _ = new_context(browser)
    try:
        sign_in(page, base + "/login", "plain", "plain-password-1")
        for path in ("/admin", "/admin/users", "/admin/audit"):
            assert page.goto(base + path).status == 403
        api = page.request.get(base + "/admin/audit/api")
        assert api.status == 403 and api.json()["error"] == "forbidden"
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.content()).group(1)
        denied = page.request.post(base + "/admin/users", form={
            "csrf_token": token, "username": "sneaky", "role": "admin"}, max_redirects=0)
        assert denied.status == 403
        assert db_rows(server, "SELECT count(*) FROM users WHERE username = 'sneaky'") == [(0,)]
    finally:
        context.close()
