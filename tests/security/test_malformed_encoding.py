"""Malformed input that once ended in a 500: bytes that are not UTF-8 in the URL,
NUL characters (PostgreSQL refuses them in text), and bodies over the app's limit.
Each answers a clear 4xx, JSON on the API and a page in the browser."""

from __future__ import annotations

import pytest
from security_support import new_browser, sign_in

from authgate.security import MAX_BODY_BYTES

NOT_UTF8 = "%ED%A0%80"  # an encoded surrogate: never valid UTF-8
JSON_PATHS = ["/oauth/tokeninfo", "/oauth/userinfo", "/health", "/admin/audit/api",
              "/.well-known/openid-configuration"]
PAGES = ["/login", "/oauth/authorize", "/device", "/admin/users", "/admin/clients",
         "/admin/tokens", "/admin/audit", "/account/sessions", "/apps"]


@pytest.fixture
def admin(app):
    browser = new_browser(app)
    sign_in(browser)
    return browser


def test_query_string_that_is_not_utf8_is_a_400_not_a_500(app, admin):
    for path in PAGES:
        for name in ("search", "redirect", "client_id", "user_code", "x"):
            response = admin.get(f"{path}?{name}={NOT_UTF8}", status="*")
            assert response.status_int < 500, (path, name, response.status)
            assert "Traceback" not in response.text
    for path in JSON_PATHS:
        response = app.testapp.get(f"{path}?x={NOT_UTF8}", status="*")
        assert response.status_int < 500, (path, response.status)
        if response.status_int == 400:
            assert response.json["error"] == "invalid_request"
    refused = app.testapp.get(f"/oauth/authorize?client_id={NOT_UTF8}", status=400)
    assert "UTF-8" in refused.text


def test_form_body_that_is_not_utf8_is_not_a_500(app):
    for path in ("/oauth/token", "/oauth/device/code", "/oauth/revoke", "/oauth/introspect"):
        response = app.testapp.post(path, f"grant_type={NOT_UTF8}&client_id=%FF",
                                    content_type="application/x-www-form-urlencoded",
                                    status="*")
        assert response.status_int in (400, 401), (path, response.status)
    raw = app.testapp.post("/oauth/device/code", b'{"client_id": "\xff\xfe"}',
                           content_type="application/json", status=400)
    assert raw.json["error"] == "invalid_request"


def test_nul_character_in_parameters_is_not_a_server_error(app, admin):
    """On PostgreSQL these reach a query and are refused there (400); on SQLite they
    simply match nothing."""
    for path, data in (("/oauth/device/code", {"client_id": "a\x00b"}),
                       ("/oauth/token", {"grant_type": "refresh_token", "client_id": "\x00",
                                         "refresh_token": "x"}),
                       ("/oauth/token", {"grant_type": "client_credentials",
                                         "client_id": "\x00", "client_secret": "\x00"}),
                       ("/oauth/introspect", {"client_id": "\x00", "client_secret": "s",
                                              "token": "\x00"}),
                       ("/oauth/revoke", {"client_id": "\x00", "token": "\x00"})):
        response = app.testapp.post(path, data, status="*")
        assert response.status_int in (400, 401), (path, response.status, response.text)
        assert response.json["error"] in ("invalid_request", "invalid_client",
                                          "invalid_grant")
    json_body = app.testapp.post_json("/oauth/device/code", {"client_id": "\u0000"},
                                      status="*")
    assert json_body.status_int in (400, 401)
    for path in ("/admin/users/%00", "/admin/clients/%00", "/admin/users?search=%00",
                 "/oauth/authorize?client_id=%00", "/device?user_code=%00"):
        assert admin.get(path, status="*").status_int in (200, 400, 404), path


def test_body_over_the_limit_is_refused_before_it_is_read(app):
    body = b"grant_type=client_credentials&pad=" + b"a" * MAX_BODY_BYTES
    response = app.testapp.post("/oauth/token", body, status=413,
                                content_type="application/x-www-form-urlencoded")
    assert response.json["error"] == "invalid_request"
    page = app.testapp.post("/login", body, status=413,
                            content_type="application/x-www-form-urlencoded")
    assert "Request too large" in page.text
    assert MAX_BODY_BYTES == 1024 * 1024


def test_wrong_method_on_an_existing_path_is_405_with_allow(app):
    """RFC 9110 §15.5.6: the path exists, the method does not (not a 404)."""
    for method, path, allowed in (("GET", "/oauth/token", "POST"),
                                  ("PUT", "/oauth/revoke", "POST"),
                                  ("DELETE", "/health", "GET, HEAD"),
                                  ("PATCH", "/oauth/userinfo", "GET, HEAD, POST")):
        response = app.testapp.request(path, method=method, status=405)
        assert response.headers["Allow"] == allowed
        assert response.json["error"] == "method_not_allowed"
    page = app.testapp.request("/login", method="PUT", status=405)
    assert page.content_type == "text/html" and "POST" in page.headers["Allow"]
    assert app.testapp.get("/no-such-path", status=404)
