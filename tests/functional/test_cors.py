"""CORS on the OAuth API (authgate.cors): preflight answered before routing, exact
origin matching, never credentials, nothing on the browser pages."""

from __future__ import annotations

import logging

import pytest

from authgate.errors import ConfigurationError

APP_ORIGIN = "https://app.example.com"
OTHER_ORIGIN = "https://evil.example"
CORS = {"CORS_ENABLED": "true", "CORS_ALLOWED_ORIGINS": f"{APP_ORIGIN}, http://localhost:3000"}


@pytest.fixture
def cors_app(make_app):
    def factory(**environ):
        return make_app(environ={**CORS, **environ})

    return factory


@pytest.fixture
def app(cors_app):
    return cors_app()


def preflight(app, path, *, origin=APP_ORIGIN, method="POST", headers="", status="*"):
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    return app.testapp.options(path, headers=request_headers, status=status)


def cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("Access-Control-")}


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/device/code", "/oauth/revoke",
                                  "/oauth/introspect", "/oauth/register", "/oauth/userinfo",
                                  "/oauth/tokeninfo", "/oauth/register/some-client-id"])
def test_preflight_is_answered_before_routing(app, path):
    response = preflight(app, path, headers="authorization, content-type", status=204)
    assert cors_headers(response) == {
        "Access-Control-Allow-Origin": APP_ORIGIN,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Max-Age": "43200",
    }
    assert "Origin" in response.headers["Vary"]
    assert response.body == b""
    # The usual security headers and access log still apply.
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_actual_request_from_an_allowed_origin(app):
    response = app.testapp.post("/oauth/token", {"grant_type": "nope"},
                                headers={"Origin": APP_ORIGIN}, status=400)
    assert response.json["error"] == "unsupported_grant_type"
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "Access-Control-Allow-Credentials" not in response.headers
    exposed = response.headers["Access-Control-Expose-Headers"]
    for name in ("WWW-Authenticate", "Retry-After", "X-RateLimit-Remaining"):
        assert name in exposed
    assert response.headers["Vary"] == "Origin"


def test_userinfo_401_is_readable_cross_origin(app):
    response = app.testapp.get("/oauth/userinfo", headers={"Origin": "http://localhost:3000"},
                               status=401)
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "WWW-Authenticate" in response.headers["Access-Control-Expose-Headers"]


def test_origin_match_is_exact(app):
    for origin in (OTHER_ORIGIN, "https://app.example.com.evil.example", "http://app.example.com",
                   "https://app.example.com:8443", "null"):
        refused = preflight(app, "/oauth/token", origin=origin, status=403)
        assert cors_headers(refused) == {}
        actual = app.testapp.post("/oauth/token", {"grant_type": "nope"},
                                  headers={"Origin": origin}, status=400)
        # Processed as usual, but the browser will not let the script read it.
        assert cors_headers(actual) == {}
        assert actual.headers["Vary"] == "Origin"


def test_origin_match_ignores_case_and_a_trailing_slash_in_the_setting(cors_app):
    app = cors_app(CORS_ALLOWED_ORIGINS="https://App.Example.com/")
    response = preflight(app, "/oauth/token", status=204)
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_preflight_refuses_methods_and_headers_not_allowed(app):
    assert preflight(app, "/oauth/token", method="DELETE", status=403).headers.get(
        "Access-Control-Allow-Origin") is None
    refused = preflight(app, "/oauth/token", headers="authorization, x-custom", status=403)
    assert "x-custom" in refused.text
    # Header names are case-insensitive.
    preflight(app, "/oauth/token", headers="AUTHORIZATION,Content-Type", status=204)


def test_browser_pages_and_other_paths_get_no_cors(app):
    # /oauth/authorize is a page people see: no CORS, the preflight is not answered.
    page = preflight(app, "/oauth/authorize", method="GET")
    assert page.status_int != 204 and cors_headers(page) == {}
    get = app.testapp.get("/oauth/authorize", headers={"Origin": APP_ORIGIN}, status="*")
    assert cors_headers(get) == {}
    for path in ("/login", "/health", "/device"):
        response = app.testapp.get(path, headers={"Origin": APP_ORIGIN}, status="*")
        assert cors_headers(response) == {}, path
    assert preflight(app, "/login").status_int != 204


def test_discovery_and_jwks_are_readable_cross_origin(app):
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server",
                 "/.well-known/jwks.json"):
        response = app.testapp.get(path, headers={"Origin": APP_ORIGIN})
        assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
        preflight(app, path, method="GET", status=204)


def test_wildcard_origin_never_allows_credentials(cors_app):
    app = cors_app(CORS_ALLOWED_ORIGINS="*")
    response = preflight(app, "/oauth/token", origin=OTHER_ORIGIN, status=204)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    actual = app.testapp.post("/oauth/revoke", {"token": "x"}, headers={"Origin": OTHER_ORIGIN},
                              status="*")
    assert actual.headers["Access-Control-Allow-Origin"] == "*"
    for r in (response, actual):
        assert "Access-Control-Allow-Credentials" not in r.headers


def test_rate_limited_response_is_readable(cors_app):
    app = cors_app(DEVICE_CODE_RATE_LIMIT="1")
    params = {"client_id": app.default_client_id}
    app.testapp.post("/oauth/device/code", params, headers={"Origin": APP_ORIGIN})
    limited = app.testapp.post("/oauth/device/code", params, headers={"Origin": APP_ORIGIN},
                               status=429)
    assert limited.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "Retry-After" in limited.headers["Access-Control-Expose-Headers"]


def test_settings_for_methods_headers_and_max_age(cors_app):
    app = cors_app(CORS_ALLOWED_METHODS="POST", CORS_ALLOWED_HEADERS="Content-Type, DPoP",
                   CORS_MAX_AGE="1h")
    response = preflight(app, "/oauth/token", headers="dpop", status=204)
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type, DPoP"
    assert response.headers["Access-Control-Max-Age"] == "3600"
    preflight(app, "/oauth/userinfo", method="GET", status=403)
    preflight(app, "/oauth/token", headers="authorization", status=403)


def test_disabled_by_default(make_app):
    app = make_app()
    response = preflight(app, "/oauth/token")
    assert response.status_int != 204 and cors_headers(response) == {}
    actual = app.testapp.post("/oauth/token", {"grant_type": "nope"},
                              headers={"Origin": APP_ORIGIN}, status=400)
    assert cors_headers(actual) == {} and "Vary" not in actual.headers


def test_enabled_without_origins_warns_and_allows_none(make_app, caplog):
    with caplog.at_level(logging.WARNING, logger="authgate.cors"):
        app = make_app(environ={"CORS_ENABLED": "true"})
    assert any("CORS_ALLOWED_ORIGINS is empty" in r.getMessage() for r in caplog.records)
    assert preflight(app, "/oauth/token", status=403).headers.get(
        "Access-Control-Allow-Origin") is None


@pytest.mark.parametrize(("env", "value"), [
    ("CORS_ALLOWED_ORIGINS", "https://app.example.com/callback"),
    ("CORS_ALLOWED_ORIGINS", "app.example.com"),
    ("CORS_ALLOWED_METHODS", "GET,PO ST;"),
    ("CORS_MAX_AGE", "forever"),
])
def test_bad_settings_stop_start_up(make_app, env, value):
    with pytest.raises(ConfigurationError, match=env):
        make_app(environ={**CORS, env: value})
