"""OpenID Connect Discovery 1.0 and RFC 8414 authorization server metadata."""

from __future__ import annotations

import pytest
from test_oidc import es256_settings

DOCS = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")
ISSUER = "http://localhost:8080"


def test_both_documents_are_the_same_and_cacheable(app):
    first, second = (app.testapp.get(path, status=200) for path in DOCS)
    assert first.json == second.json
    for response in (first, second):
        assert response.headers["Cache-Control"] == "public, max-age=3600"
        assert response.content_type == "application/json"
    assert app.testapp.head(DOCS[0], status=200).headers["Cache-Control"] == \
        "public, max-age=3600"


def test_document_lists_every_endpoint_and_capability(app):
    doc = app.testapp.get(DOCS[0]).json
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == f"{ISSUER}/oauth/authorize"
    assert doc["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert doc["device_authorization_endpoint"] == f"{ISSUER}/oauth/device/code"
    assert doc["userinfo_endpoint"] == f"{ISSUER}/oauth/userinfo"
    assert doc["revocation_endpoint"] == f"{ISSUER}/oauth/revoke"
    assert doc["introspection_endpoint"] == f"{ISSUER}/oauth/introspect"
    assert "jwks_uri" not in doc  # HS256: nothing a client could verify with
    assert "registration_endpoint" not in doc
    assert doc["response_types_supported"] == ["code"]
    assert set(doc["grant_types_supported"]) == {
        "authorization_code", "urn:ietf:params:oauth:grant-type:device_code",
        "refresh_token", "client_credentials"}
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post", "none"]
    assert doc["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post"]
    assert "none" in doc["revocation_endpoint_auth_methods_supported"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["HS256"]
    assert {"openid", "profile", "email", "offline_access"} <= set(doc["scopes_supported"])
    assert {"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "name",
            "preferred_username", "email", "email_verified"} <= set(doc["claims_supported"])
    assert doc["request_uri_parameter_supported"] is False


def test_issuer_drops_the_trailing_slash(make_app):
    app = make_app({"authgate.base_url": "http://auth.example.com/"})
    doc = app.testapp.get(DOCS[1]).json
    assert doc["issuer"] == "http://auth.example.com"
    assert doc["token_endpoint"] == "http://auth.example.com/oauth/token"


def test_grant_types_match_the_token_endpoint(app):
    from authgate.views.oauth import GRANTS

    doc = app.testapp.get(DOCS[0]).json
    assert doc["grant_types_supported"] == list(GRANTS)
    for grant in doc["grant_types_supported"]:
        response = app.testapp.post("/oauth/token", {"grant_type": grant}, status="*")
        assert response.json["error"] != "unsupported_grant_type", grant


@pytest.mark.parametrize(("key", "method"), [
    ("token_endpoint", "POST"), ("device_authorization_endpoint", "POST"),
    ("userinfo_endpoint", "GET"), ("revocation_endpoint", "POST"),
    ("introspection_endpoint", "POST"), ("authorization_endpoint", "GET"),
])
def test_every_listed_endpoint_exists(app, key, method):
    path = app.testapp.get(DOCS[0]).json[key].removeprefix(ISSUER)
    response = app.testapp.request(path, method=method, status="*")
    assert response.status_int != 404, (key, response.status)


def test_es256_lists_jwks_uri_and_alg(make_app, tmp_path):
    app = make_app(es256_settings(tmp_path))
    doc = app.testapp.get(DOCS[0]).json
    assert doc["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
    keys = app.testapp.get("/.well-known/jwks.json").json["keys"]
    assert keys and keys[0]["alg"] == "ES256"


def test_registration_endpoint_listed_when_registration_is_enabled(make_app):
    app = make_app(environ={"ENABLE_DYNAMIC_CLIENT_REGISTRATION": "true"})
    doc = app.testapp.get(DOCS[0]).json
    assert doc["registration_endpoint"] == f"{ISSUER}/oauth/register"


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server",
                                  "/.well-known/jwks.json"])
def test_published_documents_answer_like_the_views(make_app, tmp_path, path):
    """JWKS and discovery are served precomputed (before routing and the transaction
    manager): same body, headers and methods as the views would give."""
    handle = make_app(es256_settings(tmp_path))
    app, runtime = handle.testapp, handle.runtime
    first = app.get(path)
    assert first.content_type == "application/json"
    assert first.headers["Cache-Control"] == "public, max-age=3600"
    assert first.headers["X-Content-Type-Options"] == "nosniff"  # security tween still on
    assert first.json == app.get(path).json and first.body == app.get(path).body
    if path.endswith("jwks.json"):
        assert first.json == runtime.signer.jwks()
        assert first.json["keys"][0]["alg"] == "ES256"
    else:
        assert first.json["issuer"] == runtime.settings.base_url
    head = app.head(path)
    assert head.body == b"" and int(head.headers["Content-Length"]) == len(first.body)
    refused = app.post(path, status=405)
    assert "GET" in refused.headers["Allow"]


@pytest.mark.parametrize("https", [False, True])
def test_published_documents_carry_the_same_headers_as_through_pyramid(make_app, https):
    """The precomputed answers are served in front of the Pyramid router; a request the
    fast path does not take (here: sent to the router itself) gets the same headers,
    HSTS included when BASE_URL is https."""
    from webtest import TestApp

    environ = {"BASE_URL": "https://auth.example.com"} if https else {}
    handle = make_app(environ=environ)
    fast, router = handle.testapp, TestApp(handle.testapp.app.app)
    for path in (*DOCS, "/.well-known/jwks.json"):
        quick, slow = fast.get(path), router.get(path)
        assert quick.body == slow.body
        assert dict(quick.headers) == dict(slow.headers)
        assert ("Strict-Transport-Security" in quick.headers) is https
