"""Revocation (RFC 7009), introspection (RFC 7662) and tokeninfo."""

from __future__ import annotations

import logging

from pyramid.response import Response
from pyramid.view import view_config

from authgate.audit import record
from authgate.services import clients, tokens
from authgate.services.errors import OAuthError
from authgate.views._common import client_credentials, oauth_error, oauth_json, request_params

log = logging.getLogger(__name__)

AUTH_REQUIRED = "Client authentication required"
AUTH_FAILED = "Client authentication failed"
TOKEN_TYPE_HINTS = ("access_token", "refresh_token")


def _unauthorized(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401,
                      {"WWW-Authenticate": 'Basic realm="authgate"'})


def authenticate_caller(request, params: dict[str, str], *, allow_public: bool):
    """The calling client, authenticated as in RFC 6749 §2.3 (Basic or form).

    Public clients identify themselves by ``client_id`` (when ``allow_public``);
    confidential clients must present their secret.  Every failure is 401
    ``invalid_client`` with ``WWW-Authenticate`` and says nothing about whether
    the client exists.
    """
    client_id, secret, basic = client_credentials(request, params)
    if not client_id:
        raise _unauthorized(AUTH_REQUIRED)
    db = request.dbsession
    if not secret:
        known = clients.get_client(db, client_id)
        if known is not None and not known.is_public:
            raise _unauthorized(AUTH_REQUIRED)
    try:
        client = clients.authenticate(db, client_id, secret, basic=basic)
    except OAuthError as exc:
        if exc.error != "invalid_client":
            raise
        raise _unauthorized(AUTH_FAILED) from None
    if client.is_public and not allow_public:
        raise _unauthorized(AUTH_FAILED)
    return client


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@view_config(route_name="revoke", request_method="POST", require_csrf=False)
def revoke(request):
    """RFC 7009.  200 with an empty body whether or not the token was known; a token
    of another client is left alone (and the answer is the same)."""
    try:
        params = request_params(request)
        client = authenticate_caller(request, params, allow_public=True)
        token_text = params.get("token", "")
        if not token_text:
            raise OAuthError("invalid_request", "token is required")
    except OAuthError as exc:
        return oauth_error(exc)
    # token_type_hint is only a hint (§2.1): the lookup by hash covers both kinds,
    # and an unknown hint value is ignored.
    hint = params.get("token_type_hint", "")
    db = request.dbsession
    row = tokens.find(db, token_text)
    if row is not None and row.client_id == client.client_id:
        category, row_id, user_id = row.token_category, row.id, row.user_id
        count = tokens.revoke(db, row)
        record(request, "TOKEN_REVOKED", actor_user_id=f"client:{client.client_id}",
               action=f"{category.capitalize()} token revoked by {client.name} "
                      "(/oauth/revoke)",
               resource_type="TOKEN", resource_id=row_id, resource_name=client.name,
               details={"client_id": client.client_id, "token_category": category,
                        "user_id": user_id, "tokens_revoked": count,
                        "token_type_hint": hint if hint in TOKEN_TYPE_HINTS else ""})
    elif row is not None:
        log.info("client %s tried to revoke a token of client %s; ignored",
                 client.client_id, row.client_id)
    return _no_store(Response(status=200, body=b"", content_type=None))


@view_config(route_name="introspect", request_method="POST", require_csrf=False)
def introspect(request):
    """RFC 7662.  Only an authenticated, active confidential client may ask."""
    try:
        params = request_params(request)
        client = authenticate_caller(request, params, allow_public=False)
        if not client.is_active:
            raise _unauthorized(AUTH_FAILED)
        token_text = params.get("token", "")
        if not token_text:
            raise OAuthError("invalid_request", "token is required")
    except OAuthError as exc:
        return oauth_error(exc)
    settings = request.authgate.settings
    row, body = tokens.introspect(request.dbsession, request.authgate.signer, settings,
                                  token_text)
    if row is not None:
        record(request, "TOKEN_INTROSPECTED", actor_user_id=f"client:{client.client_id}",
               action=f"Token introspected by {client.name}", resource_type="TOKEN",
               resource_id=row.id, resource_name=client.name,
               details={"client_id": client.client_id, "token_client_id": row.client_id,
                        "token_category": row.token_category, "active": body["active"]})
    return oauth_json(body)


@view_config(route_name="tokeninfo", request_method="GET")
def tokeninfo(request):
    """The original's tokeninfo: details of the Bearer access token in the header."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return oauth_json({"error": "missing_token",
                           "error_description": "A Bearer access token is required in the "
                                                "Authorization header"},
                          401, {"WWW-Authenticate": 'Bearer realm="authgate"'})
    token_text = header[7:].strip() if header[:7].lower() == "bearer " else header
    settings = request.authgate.settings
    try:
        row = tokens.validate_access_token(request.dbsession, request.authgate.signer,
                                           settings, token_text)
    except tokens.InvalidToken as exc:
        return oauth_error(exc)
    return oauth_json({
        "active": True,
        "user_id": row.user_id,
        "client_id": row.client_id,
        "scope": row.scopes,
        "exp": tokens.timestamp(row.expires_at),
        "iss": settings.base_url,
        "subject_type": "client" if row.user_id.startswith("client:") else "user",
    })
