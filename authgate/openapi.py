"""OpenAPI 3.1 description of AuthGate's JSON API, served at ``GET /openapi.json``.

Covered: the OAuth API (``/oauth/device/code``, ``/oauth/token``,
``/oauth/revoke``, ``/oauth/introspect``, ``/oauth/tokeninfo``,
``/oauth/userinfo``, ``/oauth/register`` and ``/oauth/register/{client_id}``
when the app has those routes),
discovery and JWKS (``/.well-known/*``), ``/health``, the admin audit API
(``/admin/audit/api``, ``/admin/audit/api/stats``, ``/admin/csrf-token``) and
this document itself.  The browser pages (``/login``, ``/device``,
``/oauth/authorize``, ``/account``, ``/admin`` HTML, ``/apps``) are not part
of it: they answer HTML and are protected by CSRF tokens.

The document is built per request from the app's routes and settings: the
``servers`` entry is ``BASE_URL``, and the registration paths are listed only
when their routes are installed (with registration turned off they still
answer, 403 ``registration_not_supported``, so they stay listed).
``tests/fuzz/test_openapi_routes.py`` checks it against the route mapper and
``tests/fuzz/test_fuzz_api.py`` fuzzes a live server with it (schemathesis).

Turn it on with ``config.include("authgate.openapi")``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pyramid.interfaces import IRoutesMapper

if TYPE_CHECKING:
    from pyramid.config import Configurator

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
ROUTE = "/openapi.json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict | None = None) -> dict:
    response: dict[str, Any] = {"description": description,
                                "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str, codes: list[str] | None = None,
           headers: dict | None = None) -> dict:
    schema: dict[str, Any] = _ref("OAuthError")
    if codes:
        schema = {"allOf": [_ref("OAuthError"),
                            {"properties": {"error": {"enum": codes}}}]}
    return _json(schema, description, headers)


_WWW_AUTH = {"WWW-Authenticate": {"description": "The authentication scheme to use "
                                                 "(RFC 6750 §3 / RFC 7235)",
                                  "schema": {"type": "string"}}}
_RATE_LIMITED = {
    "description": "Too many requests from this address (per-endpoint limit per minute)",
    "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}},
    "content": {JSON: {"schema": _ref("RateLimitError")}},
}
_UNAVAILABLE = _error("The database is unreachable; retry after `Retry-After` seconds",
                      ["temporarily_unavailable"],
                      {"Retry-After": {"schema": {"type": "string"}}})
_TOO_LARGE = _error("The request body is larger than the server accepts (1 MiB)",
                    ["invalid_request"])


def _common(*, limited: bool) -> dict[str, Any]:
    responses = {"413": _TOO_LARGE, "503": _UNAVAILABLE}
    if limited:
        responses["429"] = _RATE_LIMITED
    return responses


def _form_body(schema: dict[str, Any], *, json_too: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {FORM: {"schema": schema}}
    if json_too:
        content[JSON] = {"schema": schema}
    return {"required": True, "content": content}


# ---------------------------------------------------------------------------
# Component schemas
# ---------------------------------------------------------------------------

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_CLIENT_AUTH = {
    "client_id": {"type": "string", "description": "Required unless sent with HTTP Basic"},
    "client_secret": {"type": "string", "description": "Confidential clients, when they "
                                                       "do not use HTTP Basic"},
}

SCHEMAS: dict[str, Any] = {
    "OAuthError": {
        "type": "object",
        "description": "RFC 6749 §5.2 error (also used by every other JSON error)",
        "required": ["error"],
        "properties": {"error": _STR, "error_description": _STR},
    },
    "RateLimitError": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": {"const": "rate_limit_exceeded"}, "message": _STR,
                       "error_description": _STR},
    },
    "DeviceAuthorizationRequest": {
        "type": "object",
        "description": "RFC 8628 §3.1",
        "required": ["client_id"],
        "properties": {**_CLIENT_AUTH, "scope": {"type": "string",
                                                 "description": "Space-separated scopes"}},
    },
    "DeviceAuthorizationResponse": {
        "type": "object",
        "description": "RFC 8628 §3.2",
        "required": ["device_code", "user_code", "verification_uri",
                     "verification_uri_complete", "expires_in", "interval"],
        "properties": {"device_code": _STR,
                       "user_code": {"type": "string", "pattern": "^[A-Z0-9]{4}-[A-Z0-9]{4}$"},
                       "verification_uri": {"type": "string", "format": "uri"},
                       "verification_uri_complete": {"type": "string", "format": "uri"},
                       "expires_in": _INT, "interval": _INT},
    },
    "AuthorizationCodeGrant": {
        "type": "object",
        "description": "RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5)",
        "required": ["grant_type", "code", "redirect_uri"],
        "properties": {"grant_type": {"const": "authorization_code"}, "code": _STR,
                       "redirect_uri": _STR, "code_verifier": _STR, **_CLIENT_AUTH},
    },
    "DeviceCodeGrant": {
        "type": "object",
        "description": "RFC 8628 §3.4",
        "required": ["grant_type", "device_code", "client_id"],
        "properties": {"grant_type": {"const": DEVICE_GRANT}, "device_code": _STR,
                       **_CLIENT_AUTH},
    },
    "RefreshTokenGrant": {
        "type": "object",
        "description": "RFC 6749 §6; confidential clients must authenticate",
        "required": ["grant_type", "refresh_token"],
        "properties": {"grant_type": {"const": "refresh_token"}, "refresh_token": _STR,
                       "scope": {"type": "string",
                                 "description": "A subset of the original scopes"},
                       **_CLIENT_AUTH},
    },
    "ClientCredentialsGrant": {
        "type": "object",
        "description": "RFC 6749 §4.4; confidential clients only",
        "required": ["grant_type"],
        "properties": {"grant_type": {"const": "client_credentials"}, "scope": _STR,
                       **_CLIENT_AUTH},
    },
    "TokenRequest": {
        "oneOf": [_ref("AuthorizationCodeGrant"), _ref("DeviceCodeGrant"),
                  _ref("RefreshTokenGrant"), _ref("ClientCredentialsGrant")],
        "discriminator": {"propertyName": "grant_type", "mapping": {
            "authorization_code": "#/components/schemas/AuthorizationCodeGrant",
            DEVICE_GRANT: "#/components/schemas/DeviceCodeGrant",
            "refresh_token": "#/components/schemas/RefreshTokenGrant",
            "client_credentials": "#/components/schemas/ClientCredentialsGrant"}},
    },
    "TokenResponse": {
        "type": "object",
        "description": "RFC 6749 §5.1 (+ id_token for the openid scope, OIDC Core §3.1.3.3)",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {"access_token": _STR, "token_type": {"const": "Bearer"},
                       "expires_in": _INT, "scope": _STR, "refresh_token": _STR,
                       "id_token": _STR},
    },
    "TokenErrorCode": {
        "enum": ["invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                 "unsupported_grant_type", "invalid_scope", "authorization_pending",
                 "slow_down", "access_denied", "expired_token"],
    },
    "RevocationRequest": {
        "type": "object",
        "description": "RFC 7009 §2.1",
        "required": ["token"],
        "properties": {"token": _STR,
                       "token_type_hint": {"type": "string",
                                           "description": "access_token or refresh_token; "
                                                          "only a hint"},
                       **_CLIENT_AUTH},
    },
    "IntrospectionRequest": {
        "type": "object",
        "description": "RFC 7662 §2.1",
        "required": ["token"],
        "properties": {"token": _STR, "token_type_hint": _STR, **_CLIENT_AUTH},
    },
    "IntrospectionResponse": {
        "type": "object",
        "description": "RFC 7662 §2.2: only `active` when the token is not active",
        "required": ["active"],
        "properties": {"active": _BOOL, "scope": _STR, "client_id": _STR,
                       "token_type": {"enum": ["Bearer", "refresh_token"]},
                       "exp": _INT, "iat": _INT, "sub": _STR, "iss": _STR, "jti": _STR,
                       "username": _STR,
                       "aud": {"oneOf": [_STR, {"type": "array", "items": _STR}]}},
    },
    "TokenInfo": {
        "type": "object",
        "required": ["active", "user_id", "client_id", "scope", "exp", "iss",
                     "subject_type"],
        "properties": {"active": {"const": True}, "user_id": _STR, "client_id": _STR,
                       "scope": _STR, "exp": _INT, "iss": _STR,
                       "subject_type": {"enum": ["user", "client"]}},
    },
    "UserInfo": {
        "type": "object",
        "description": "OIDC Core §5.3.2: `sub` plus the claims of the token's scopes",
        "required": ["sub"],
        "properties": {"sub": _STR, "iss": _STR, "name": _STR, "preferred_username": _STR,
                       "picture": _STR, "updated_at": _INT, "email": _STR,
                       "email_verified": _BOOL},
    },
    "ServerMetadata": {
        "type": "object",
        "description": "OpenID Connect Discovery 1.0 §3 and RFC 8414 §2",
        "required": ["issuer", "authorization_endpoint", "token_endpoint",
                     "response_types_supported", "subject_types_supported",
                     "id_token_signing_alg_values_supported"],
        "properties": {
            "issuer": _STR, "authorization_endpoint": _STR, "token_endpoint": _STR,
            "device_authorization_endpoint": _STR, "userinfo_endpoint": _STR,
            "revocation_endpoint": _STR, "introspection_endpoint": _STR,
            "registration_endpoint": _STR,
            "jwks_uri": {"type": "string",
                         "description": "Present with RS256/ES256 signing only"},
            **{name: {"type": "array", "items": _STR} for name in (
                "response_types_supported", "response_modes_supported",
                "grant_types_supported", "token_endpoint_auth_methods_supported",
                "revocation_endpoint_auth_methods_supported",
                "introspection_endpoint_auth_methods_supported",
                "code_challenge_methods_supported", "scopes_supported", "claims_supported",
                "subject_types_supported", "id_token_signing_alg_values_supported")},
            **{name: _BOOL for name in (
                "claims_parameter_supported", "request_parameter_supported",
                "request_uri_parameter_supported",
                "authorization_response_iss_parameter_supported")},
        },
    },
    "JWK": {
        "type": "object",
        "description": "RFC 7517 public key (RSA: n, e; EC: crv, x, y)",
        "required": ["kty", "kid", "use", "alg"],
        "properties": {"kty": {"enum": ["RSA", "EC"]}, "kid": _STR, "use": {"const": "sig"},
                       "alg": {"enum": ["RS256", "ES256"]}, "n": _STR, "e": _STR,
                       "crv": _STR, "x": _STR, "y": _STR},
    },
    "JWKSet": {
        "type": "object",
        "description": "Empty with HS256 (a shared secret is never published)",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": _ref("JWK")}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "database"],
        "properties": {"status": {"enum": ["healthy", "unhealthy"]},
                       "database": {"enum": ["connected", "disconnected"]}},
    },
    "AuditEvent": {
        "type": "object",
        "required": ["id", "event_type", "event_time", "severity", "success"],
        "properties": {
            "id": _STR, "event_type": _STR,
            "event_time": {"type": "string", "format": "date-time"},
            "severity": {"enum": ["INFO", "WARNING", "ERROR", "CRITICAL"]},
            **{name: {"type": ["string", "null"]} for name in (
                "actor_user_id", "actor_username", "actor_ip", "resource_type",
                "resource_id", "resource_name", "action", "error_message", "user_agent",
                "request_path", "request_method")},
            "details": {"type": "object"}, "success": _BOOL,
            "created_at": {"type": ["string", "null"]},
        },
    },
    "Pagination": {
        "type": "object",
        "required": ["total", "total_pages", "page", "page_size", "has_prev", "has_next"],
        "properties": {"total": _INT, "total_pages": _INT, "page": _INT, "page_size": _INT,
                       "has_prev": _BOOL, "has_next": _BOOL},
    },
    "AuditPage": {
        "type": "object",
        "required": ["logs", "pagination"],
        "properties": {"logs": {"type": "array", "items": _ref("AuditEvent")},
                       "pagination": _ref("Pagination")},
    },
    "AuditStats": {
        "type": "object",
        "required": ["stats", "start_time", "end_time"],
        "properties": {
            "stats": {"type": "object",
                      "required": ["total_events", "events_by_type", "events_by_severity",
                                   "success_count", "failure_count"],
                      "properties": {
                          "total_events": _INT,
                          "events_by_type": {"type": "object",
                                             "additionalProperties": _INT},
                          "events_by_severity": {"type": "object",
                                                 "additionalProperties": _INT},
                          "success_count": _INT, "failure_count": _INT}},
            "start_time": {"type": ["string", "null"]},
            "end_time": {"type": ["string", "null"]},
        },
    },
    "CsrfToken": {
        "type": "object",
        "required": ["csrf_token", "header"],
        "properties": {"csrf_token": _STR, "header": {"const": "X-CSRF-Token"}},
    },
    "ClientRegistrationRequest": {
        "type": "object",
        "description": "RFC 7591 §2 client metadata",
        "required": ["client_name"],
        "properties": {"client_name": _STR,
                       "redirect_uris": {"type": "array", "items": _STR},
                       "grant_types": {"type": "array", "items": _STR},
                       "response_types": {"type": "array", "items": _STR},
                       "token_endpoint_auth_method": {
                           "enum": ["client_secret_basic", "client_secret_post", "none"]},
                       "scope": _STR, "client_uri": _STR},
    },
    "ClientRegistrationResponse": {
        "type": "object",
        "description": "RFC 7591 §3.2.1 / RFC 7592 §3 (client_secret only at registration, "
                       "for confidential clients)",
        "required": ["client_id", "client_name", "grant_types",
                     "token_endpoint_auth_method", "registration_access_token",
                     "registration_client_uri"],
        "properties": {"client_id": _STR, "client_secret": _STR, "client_name": _STR,
                       "redirect_uris": {"type": "array", "items": _STR},
                       "grant_types": {"type": "array", "items": _STR},
                       "response_types": {"type": "array", "items": _STR},
                       "token_endpoint_auth_method": {
                           "enum": ["client_secret_basic", "client_secret_post", "none"]},
                       "scope": _STR, "client_uri": _STR,
                       "client_id_issued_at": _INT, "client_secret_expires_at": _INT,
                       "registration_access_token": _STR,
                       "registration_client_uri": _STR},
    },
}

SECURITY_SCHEMES = {
    "clientBasic": {"type": "http", "scheme": "basic",
                    "description": "RFC 6749 §2.3.1: client_id and client_secret, each "
                                   "form-urlencoded, as HTTP Basic"},
    "clientPost": {"type": "apiKey", "in": "query", "name": "client_secret",
                   "description": "client_id and client_secret in the form body "
                                  "(client_secret_post); the `in` is nominal: send them in "
                                  "the body, never in the URL"},
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "An access token issued by this server (RFC 6750 §2.1)"},
    "adminSession": {"type": "apiKey", "in": "cookie", "name": "session",
                     "description": "The browser session cookie of a signed-in "
                                    "administrator"},
    "initialAccessToken": {"type": "http", "scheme": "bearer",
                           "description": "DYNAMIC_CLIENT_REGISTRATION_TOKEN, when set"},
    "registrationAccessToken": {"type": "http", "scheme": "bearer",
                                "description": "The registration_access_token returned by "
                                               "POST /oauth/register (RFC 7592 §1)"},
}

# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------

_AUDIT_FILTERS = [
    ("event_type", "Event type, e.g. AUTHENTICATION_FAILURE"),
    ("severity", "INFO, WARNING, ERROR or CRITICAL"),
    ("success", "true or false"),
    ("actor", "Actor username or user id"),
    ("actor_user_id", "Actor user id"),
    ("user_id", "Events the user took part in (actor, or subject of a USER event)"),
    ("resource_type", "e.g. TOKEN, USER, CLIENT"),
    ("resource_id", "Resource id"),
    ("actor_ip", "Client address"),
    ("search", "Substring of the action, resource name or actor username"),
    ("start_time", "RFC 3339 time, inclusive"),
    ("end_time", "RFC 3339 time, inclusive"),
]


def _query(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


_ADMIN_ERRORS = {"400": _error("A filter has a bad value", ["invalid_request"]),
                 "401": _error("No signed-in session", ["unauthorized"], _WWW_AUTH),
                 "403": _error("The signed-in user is not an administrator", ["forbidden"])}

_CACHEABLE = {"Cache-Control": {"schema": {"type": "string"},
                                "description": "public, max-age=3600"}}


def _paths() -> dict[str, Any]:
    bearer_401 = _error("No, invalid, expired or revoked access token",
                        ["invalid_token", "missing_token"], _WWW_AUTH)
    return {
        "/oauth/device/code": {"post": {
            "operationId": "deviceAuthorization",
            "tags": ["OAuth"],
            "summary": "Start the device authorization grant (RFC 8628 §3.1)",
            "requestBody": _form_body(_ref("DeviceAuthorizationRequest"), json_too=True),
            "security": [{}, {"clientBasic": []}],
            "responses": {
                "200": _json(_ref("DeviceAuthorizationResponse"), "Codes for the device"),
                "400": _error("Bad request, unknown client, scope or grant not allowed",
                              ["invalid_request", "invalid_client", "unauthorized_client",
                               "invalid_scope"]),
                "401": _error("Client authentication failed", ["invalid_client"], _WWW_AUTH),
                **_common(limited=True)},
        }},
        "/oauth/token": {"post": {
            "operationId": "token",
            "tags": ["OAuth"],
            "summary": "Token endpoint (RFC 6749 §3.2): one form schema per grant_type",
            "requestBody": _form_body(_ref("TokenRequest")),
            "security": [{}, {"clientBasic": []}, {"clientPost": []}],
            "responses": {
                "200": _json(_ref("TokenResponse"), "Tokens",
                             {"Cache-Control": {"schema": {"const": "no-store"}}}),
                "400": _json({"allOf": [_ref("OAuthError"), {"properties": {
                    "error": _ref("TokenErrorCode")}}]}, "Token request refused (RFC 6749 "
                                                         "§5.2, RFC 8628 §3.5)"),
                "401": _error("Client authentication failed", ["invalid_client"], _WWW_AUTH),
                **_common(limited=True)},
        }},
        "/oauth/revoke": {"post": {
            "operationId": "revoke",
            "tags": ["OAuth"],
            "summary": "Revoke a token of the calling client (RFC 7009)",
            "description": "200 with an empty body whether or not the token was known; a "
                           "refresh token takes its family and the access tokens issued "
                           "from it.",
            "requestBody": _form_body(_ref("RevocationRequest")),
            "security": [{}, {"clientBasic": []}, {"clientPost": []}],
            "responses": {
                "200": {"description": "Revoked, or unknown (RFC 7009 §2.2)"},
                "400": _error("token missing or repeated parameters", ["invalid_request"]),
                "401": _error("Client authentication missing or failed", ["invalid_client"],
                              _WWW_AUTH),
                **_common(limited=False)},
        }},
        "/oauth/introspect": {"post": {
            "operationId": "introspect",
            "tags": ["OAuth"],
            "summary": "Token introspection (RFC 7662), for confidential clients",
            "requestBody": _form_body(_ref("IntrospectionRequest")),
            "security": [{"clientBasic": []}, {"clientPost": []}],
            "responses": {
                "200": _json(_ref("IntrospectionResponse"), "Token state"),
                "400": _error("token missing or repeated parameters", ["invalid_request"]),
                "401": _error("Client authentication missing or failed", ["invalid_client"],
                              _WWW_AUTH),
                **_common(limited=True)},
        }},
        "/oauth/tokeninfo": {"get": {
            "operationId": "tokeninfo",
            "tags": ["OAuth"],
            "summary": "Details of the Bearer access token in the Authorization header",
            "security": [{"bearer": []}],
            "responses": {
                "200": _json(_ref("TokenInfo"), "The token is active"),
                "401": bearer_401,
                **_common(limited=False)},
        }},
        "/oauth/userinfo": {
            method: {
                "operationId": f"userinfo{method.capitalize()}",
                "tags": ["OpenID Connect"],
                "summary": "OpenID Connect UserInfo (Core §5.3)",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json(_ref("UserInfo"), "Claims of the token's user"),
                    "401": bearer_401,
                    **_common(limited=False)},
            } for method in ("get", "post")},
        "/.well-known/openid-configuration": {"get": {
            "operationId": "openidConfiguration",
            "tags": ["Discovery"],
            "summary": "OpenID Connect Discovery 1.0 metadata",
            "security": [{}],
            "responses": {"200": _json(_ref("ServerMetadata"), "Metadata", _CACHEABLE)},
        }},
        "/.well-known/oauth-authorization-server": {"get": {
            "operationId": "oauthAuthorizationServer",
            "tags": ["Discovery"],
            "summary": "RFC 8414 metadata (the same document)",
            "security": [{}],
            "responses": {"200": _json(_ref("ServerMetadata"), "Metadata", _CACHEABLE)},
        }},
        "/.well-known/jwks.json": {"get": {
            "operationId": "jwks",
            "tags": ["Discovery"],
            "summary": "Public keys that verify this server's tokens (RFC 7517)",
            "security": [{}],
            "responses": {"200": _json(_ref("JWKSet"), "Key set", _CACHEABLE)},
        }},
        "/health": {"get": {
            "operationId": "health",
            "tags": ["Operations"],
            "summary": "Liveness and a database round trip",
            "security": [{}],
            "responses": {"200": _json(_ref("Health"), "Healthy"),
                          "503": _json(_ref("Health"), "Database unreachable")},
        }},
        "/admin/audit/api": {"get": {
            "operationId": "auditEvents",
            "tags": ["Admin"],
            "summary": "Audit events, newest first, with filters and pagination",
            "security": [{"adminSession": []}],
            "parameters": [
                *[_query(name, text) for name, text in _AUDIT_FILTERS],
                _query("page", "Page number (from 1)", {"type": "string"}),
                _query("page_size", "Events per page (1-100, default 20)",
                       {"type": "string"}),
            ],
            "responses": {"200": _json(_ref("AuditPage"), "A page of events"),
                          **_ADMIN_ERRORS, **_common(limited=False)},
        }},
        "/admin/audit/api/stats": {"get": {
            "operationId": "auditStats",
            "tags": ["Admin"],
            "summary": "Audit event counts (default: the last 30 days)",
            "security": [{"adminSession": []}],
            "parameters": [_query(name, text) for name, text in _AUDIT_FILTERS],
            "responses": {"200": _json(_ref("AuditStats"), "Counts"),
                          **_ADMIN_ERRORS, **_common(limited=False)},
        }},
        "/admin/csrf-token": {"get": {
            "operationId": "adminCsrfToken",
            "tags": ["Admin"],
            "summary": "The session's CSRF token, for scripts that POST to the console",
            "security": [{"adminSession": []}],
            "responses": {"200": _json(_ref("CsrfToken"), "The token"),
                          "401": _ADMIN_ERRORS["401"], "403": _ADMIN_ERRORS["403"],
                          **_common(limited=False)},
        }},
        ROUTE: {"get": {
            "operationId": "openapi",
            "tags": ["Discovery"],
            "summary": "This document",
            "security": [{}],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
        }},
    }


_REGISTRATION_ERRORS = {
    "401": _error("Initial or registration access token missing or wrong",
                  ["invalid_token"], _WWW_AUTH),
    "403": _error("Registration is disabled (ENABLE_DYNAMIC_CLIENT_REGISTRATION=false)",
                  ["registration_not_supported"]),
}


def _registration_paths(register: str, client: str | None) -> dict[str, Any]:
    paths: dict[str, Any] = {register: {"post": {
        "operationId": "registerClient",
        "tags": ["OAuth"],
        "summary": "Dynamic client registration (RFC 7591)",
        "description": "Clients start pending until an administrator approves them.",
        "requestBody": {"required": True,
                        "content": {JSON: {"schema": _ref("ClientRegistrationRequest")}}},
        "security": [{}, {"initialAccessToken": []}],
        "responses": {
            "201": _json(_ref("ClientRegistrationResponse"), "The registered client"),
            "400": _error("Bad client metadata", ["invalid_client_metadata",
                                                  "invalid_redirect_uri", "invalid_request"]),
            **_REGISTRATION_ERRORS, **_common(limited=True)},
    }}}
    if client:
        paths[client] = {"get": {
            "operationId": "readClientRegistration",
            "tags": ["OAuth"],
            "summary": "Read a registration (RFC 7592 §2.1) with its registration access "
                       "token",
            "parameters": [{"name": "client_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "security": [{"registrationAccessToken": []}],
            "responses": {
                "200": _json(_ref("ClientRegistrationResponse"), "The registered metadata"),
                "400": _error("A parameter is not valid", ["invalid_request"]),
                **_REGISTRATION_ERRORS, **_common(limited=False)},
        }}
    return paths


def route_pattern(mapper: Any, name: str) -> str | None:
    route = mapper.get_route(name) if mapper is not None else None
    if route is None:
        return None
    return route.pattern if route.pattern.startswith("/") else "/" + route.pattern


def build_document(base_url: str, *, registration_path: str | None = "/oauth/register",
                   registration_client_path: str | None = "/oauth/register/{client_id}",
                   version: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document for a server at ``base_url`` (registration paths:
    None when the app has no such route)."""
    if not version:
        from authgate import __version__ as version
    paths = _paths()
    if registration_path:
        paths.update(_registration_paths(registration_path, registration_client_path))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AuthGate JSON API",
            "version": version,
            "description": "OAuth 2.0 / OpenID Connect authorization server. Every error "
                           "is JSON `{\"error\", \"error_description\"}` with "
                           "`Cache-Control: no-store`; 401s carry `WWW-Authenticate`. "
                           "Browser pages are not described here.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": base_url.rstrip("/")}],
        "tags": [{"name": name} for name in ("OAuth", "OpenID Connect", "Discovery",
                                             "Operations", "Admin")],
        "paths": paths,
        "components": {"schemas": copy.deepcopy(SCHEMAS),
                       "securitySchemes": copy.deepcopy(SECURITY_SCHEMES)},
    }


def openapi_view(request):
    from authgate.views._common import oauth_json

    settings = request.authgate.settings
    # Listed whenever the route exists: with registration turned off it still answers
    # (403 registration_not_supported), unlike discovery, which then leaves it out.
    mapper = request.registry.queryUtility(IRoutesMapper)
    response = oauth_json(build_document(
        settings.base_url, registration_path=route_pattern(mapper, "register"),
        registration_client_path=route_pattern(mapper, "register_client")))
    response.headers["Cache-Control"] = "public, max-age=3600"
    del response.headers["Pragma"]
    return response


def includeme(config: Configurator) -> None:
    if getattr(config.registry, "authgate_openapi_included", False):  # idempotent
        return
    config.registry.authgate_openapi_included = True
    config.add_route("openapi", ROUTE)
    config.add_view(openapi_view, route_name="openapi", request_method=("GET", "HEAD"))
