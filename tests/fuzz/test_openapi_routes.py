"""GET /openapi.json: a valid OpenAPI 3.1 document that matches the live routes.

"Matches" both ways: every documented path is a route of the app answering the
documented methods, and every route that answers JSON (the JSON API) is
documented.  A route is classified by asking it: an anonymous request to each
(route, method) pair; the JSON API answers ``application/json`` (often a 401 or
400), the browser pages answer HTML or redirect to the sign-in page.
"""

from __future__ import annotations

import re

import jsonschema_rs
import pytest
from pyramid.interfaces import IRoutesMapper
from schemathesis.specs.openapi.definitions import OPENAPI_31

from authgate.openapi import build_document

# Pages that happen to live under a JSON-looking prefix but are browser pages.
BROWSER_ROUTES = {"authorize"}
BODY_METHODS = {"POST", "PUT", "PATCH"}


def _methods(value) -> set[str]:
    if value is None:
        return {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
    return {value} if isinstance(value, str) else set(value)


def route_methods(app) -> dict[str, tuple[str, set[str]]]:
    """route name -> (pattern, methods its views accept), from Pyramid's introspector."""
    registry = app.testapp.app.registry
    mapper = registry.queryUtility(IRoutesMapper)
    patterns = {route.name: "/" + route.pattern.lstrip("/") for route in mapper.get_routes()}
    found: dict[str, tuple[str, set[str]]] = {}
    for item in registry.introspector.get_category("views"):
        view = item["introspectable"]
        name = view["route_name"]
        if not name or name.startswith("__static"):
            continue
        methods = _methods(view["request_methods"])
        if "GET" in methods:
            methods.add("HEAD")  # Pyramid answers HEAD with the GET view
        found.setdefault(name, (patterns[name], set()))[1].update(methods)
    return found


def openapi_path(pattern: str) -> str:
    # Pyramid's {name} and {name:regex} placeholders -> OpenAPI's {name}
    return re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", pattern)


def documented(doc) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in doc["paths"].items()
            for method in item if method in ("get", "post", "put", "patch", "delete")}


def test_document_is_valid_openapi_31(app):
    response = app.testapp.get("/openapi.json", status=200)
    assert response.content_type == "application/json"
    doc = response.json
    assert doc["openapi"].startswith("3.1")
    jsonschema_rs.Draft202012Validator(OPENAPI_31).validate(doc)
    assert doc["servers"] == [{"url": "http://localhost:8080"}]
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
    # Every $ref resolves.
    text = response.text
    for ref in set(re.findall(r'"\$ref": ?"#/components/schemas/(\w+)"', text)):
        assert ref in doc["components"]["schemas"], ref
    assert app.testapp.head("/openapi.json", status=200)


def test_every_grant_has_its_own_token_request_schema(app):
    doc = app.testapp.get("/openapi.json").json
    token = doc["components"]["schemas"]["TokenRequest"]
    mapping = token["discriminator"]["mapping"]
    meta = app.testapp.get("/.well-known/openid-configuration").json
    assert set(mapping) == set(meta["grant_types_supported"])
    for grant, ref in mapping.items():
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert schema["properties"]["grant_type"] == {"const": grant}
        assert "grant_type" in schema["required"]


def test_every_documented_operation_is_a_live_route(app):
    doc = app.testapp.get("/openapi.json").json
    routes = {openapi_path(pattern): methods
              for pattern, methods in route_methods(app).values()}
    for path, method in documented(doc):
        assert path in routes, f"{path} is documented but no route has that pattern"
        assert method in routes[path], f"{method} {path} is documented but not served"


def _probe(app, pattern: str, method: str):
    path = re.sub(r"\{[^}]+\}", "x", pattern)
    return app.testapp.request(path, method=method, expect_errors=True)


def test_every_json_route_is_documented(app):
    doc = app.testapp.get("/openapi.json").json
    ops = documented(doc)
    json_routes = set()
    for name, (pattern, methods) in route_methods(app).items():
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            if len(methods) > 4 and method not in ("GET", "POST"):
                continue  # a view without a method predicate: GET and POST tell enough
            answer = _probe(app, pattern, method)
            if answer.content_type != "application/json" or name in BROWSER_ROUTES:
                continue
            json_routes.add(name)
            assert (openapi_path(pattern), method) in ops, (
                f"{method} {pattern} (route {name!r}) answers JSON but is not in "
                "/openapi.json")
    # The classification found the whole JSON API (a sanity check of the probe).
    assert {"device_code", "token", "revoke", "introspect", "tokeninfo", "userinfo", "jwks",
            "openid_configuration", "oauth_authorization_server", "health",
            "admin_audit_api", "admin_audit_api_stats", "admin_csrf_token",
            "openapi"} <= json_routes


def test_browser_pages_are_not_documented(app):
    doc = app.testapp.get("/openapi.json").json
    for page in ("/login", "/device", "/device/verify", "/oauth/authorize", "/admin",
                 "/account/sessions"):
        assert page not in doc["paths"]


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_registration_is_documented_when_the_routes_exist(make_app, enabled):
    """Listed whenever the routes exist: turned off, they still answer (403)."""
    app = make_app({"authgate.enable_dynamic_client_registration": enabled})
    names = {route.name for route in
             app.testapp.app.registry.queryUtility(IRoutesMapper).get_routes()}
    doc = app.testapp.get("/openapi.json").json
    assert ("register" in names) == ("/oauth/register" in doc["paths"])
    if "register" in names:
        operation = doc["paths"]["/oauth/register"]["post"]
        assert set(operation["responses"]) >= {"201", "400", "401", "403"}
    if "register_client" in names:
        assert "get" in doc["paths"]["/oauth/register/{client_id}"]
    test_every_documented_operation_is_a_live_route(app)


def test_document_without_registration_routes():
    doc = build_document("https://auth.example.com", registration_path=None)
    assert not any(path.startswith("/oauth/register") for path in doc["paths"])
    assert doc["servers"] == [{"url": "https://auth.example.com"}]
