"""RFC 8628 end to end: a real server, a real client over HTTP, a person in Chromium."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import requests
from e2e_support import ADMIN_PASSWORD, screenshot

pytestmark = pytest.mark.e2e

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def request_code(server, **extra):
    response = requests.post(server.url + "/oauth/device/code",
                             data={"client_id": server.client_id, **extra}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def poll(server, device_code):
    return requests.post(server.url + "/oauth/token", data={
        "grant_type": GRANT, "device_code": device_code, "client_id": server.client_id},
        timeout=10)


def sign_in(page, shot: str | None = None):
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    if shot:
        screenshot(page, shot)
    page.click("#login-submit")


def test_person_approves_device_and_client_gets_tokens(live_server, page):
    server = live_server()
    code = request_code(server)
    assert poll(server, code["device_code"]).json()["error"] == "authorization_pending"

    page.goto(code["verification_uri_complete"])
    assert page.url.startswith(server.url + "/login")
    sign_in(page, shot="01-login")
    page.wait_for_selector("#device-approve")
    assert page.inner_text("#confirm-user-code") == code["user_code"]
    assert page.inner_text("#client-name") == "AuthGate CLI"
    assert "Read your email address" in page.inner_text("#scope-list")
    screenshot(page, "02-device-confirm")
    page.click("#device-approve")
    page.wait_for_selector("#result-title")
    assert page.inner_text("#result-title") == "Device authorized"
    screenshot(page, "03-device-authorized")

    time.sleep(code["interval"])
    tokens = poll(server, code["device_code"])
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["access_token"] and body["refresh_token"]


def test_person_denies_device(live_server, page):
    server = live_server()
    code = request_code(server)
    page.goto(code["verification_uri_complete"])
    sign_in(page)
    page.click("#device-deny")
    page.wait_for_selector("#result-title")
    assert page.inner_text("#result-title") == "Request denied"
    screenshot(page, "04-device-denied")
    response = poll(server, code["device_code"])
    assert response.status_code == 400 and response.json()["error"] == "access_denied"


def test_code_typed_lower_case_without_dash(live_server, page):
    server = live_server()
    code = request_code(server)
    page.goto(server.url + "/device")
    sign_in(page)
    page.wait_for_selector("#user_code")
    screenshot(page, "05-device-entry")
    page.fill("#user_code", code["user_code"].replace("-", "").lower())
    page.click("#device-continue")
    page.wait_for_selector("#device-approve")
    assert page.inner_text("#confirm-user-code") == code["user_code"]
    page.click("#device-approve")
    page.wait_for_selector("#result-title")
    time.sleep(code["interval"])
    assert poll(server, code["device_code"]).status_code == 200


def test_wrong_code_page_says_what_to_do(live_server, page):
    server = live_server()
    page.goto(server.url + "/device?user_code=ZZZZ-ZZZZ")
    sign_in(page)
    page.wait_for_selector("[role=alert]")
    text = page.inner_text("[role=alert]")
    assert "We could not find that code." in text and "Check for typos" in text
    screenshot(page, "06-device-unknown-code")


def test_two_second_expiry_gives_expired_token(live_server, page):
    server = live_server(DEVICE_CODE_EXPIRATION="2s")
    code = request_code(server)
    assert code["expires_in"] == 2
    time.sleep(2.5)
    response = poll(server, code["device_code"])
    assert response.status_code == 400 and response.json()["error"] == "expired_token"
    page.goto(code["verification_uri_complete"])
    sign_in(page)
    page.wait_for_selector("[role=alert]")
    assert "This code has expired." in page.inner_text("[role=alert]")
    screenshot(page, "07-device-expired")


def test_polling_every_second_gets_slow_down(live_server):
    server = live_server()
    code = request_code(server)
    errors = []
    for _ in range(3):
        errors.append(poll(server, code["device_code"]).json()["error"])
        time.sleep(1)
    assert errors[0] == "authorization_pending"
    assert errors[1:] == ["slow_down", "slow_down"]


def test_ten_concurrent_polls_after_approval_exactly_one_wins(live_server, page):
    server = live_server()
    code = request_code(server)
    page.goto(code["verification_uri_complete"])
    sign_in(page)
    page.click("#device-approve")
    page.wait_for_selector("#result-title")
    time.sleep(code["interval"])
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: poll(server, code["device_code"]), range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, [r.text for r in responses]
    assert all(r.json()["error"] in ("slow_down", "invalid_grant")
               for r in responses if r.status_code != 200)
