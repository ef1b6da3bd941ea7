"""Dynamic client registration: ``POST /oauth/register`` (RFC 7591) and
``GET /oauth/register/{client_id}`` (RFC 7592 §2.1, read only).

JSON in and out, no cookies, no CSRF.  Rate-limited by authgate.ratelimit
(DYNAMIC_CLIENT_REGISTRATION_RATE_LIMIT, matched on the path ``/oauth/register``).
See :mod:`authgate.services.registration` for the accepted metadata.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from pyramid.view import view_config

from authgate.audit import record
from authgate.services import registration
from authgate.services.errors import OAuthError
from authgate.views._common import oauth_error, oauth_json

if TYPE_CHECKING:
    from pyramid.config import Configurator

log = logging.getLogger(__name__)



def _disabled() -> OAuthError:
    return OAuthError("registration_not_supported",
                      "Dynamic client registration is disabled on this server "
                      "(ENABLE_DYNAMIC_CLIENT_REGISTRATION=false); ask an administrator "
                      "to create the client", 403)


def _bearer(request) -> str | None:
    header = request.headers.get("Authorization", "").strip()
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


def _invalid_token(description: str, *, error_code: bool = True) -> OAuthError:
    # RFC 6750 §3: a request without credentials gets a bare challenge.
    challenge = 'Bearer realm="authgate"'
    if error_code:
        challenge += ', error="invalid_token"'
    return OAuthError("invalid_token", description, 401, {"WWW-Authenticate": challenge})


def _check_initial_access_token(request) -> None:
    expected = request.authgate.settings.dynamic_client_registration_token
    if not expected:
        return
    presented = _bearer(request)
    if presented is None:
        raise _invalid_token("An initial access token is required: send "
                             "Authorization: Bearer <DYNAMIC_CLIENT_REGISTRATION_TOKEN>",
                             error_code=False)
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise _invalid_token("The initial access token is invalid")


def _json_body(request):
    if request.content_type != "application/json":
        raise OAuthError("invalid_client_metadata",
                         "Send the client metadata as a JSON object "
                         "(Content-Type: application/json)")
    try:
        return request.json_body
    except ValueError:
        raise OAuthError("invalid_client_metadata",
                         "The request body is not valid JSON") from None


def _registration_uri(request, client_id: str) -> str:
    return request.authgate.settings.base_url.rstrip("/") + f"/oauth/register/{client_id}"


@view_config(route_name="register", request_method="POST", require_csrf=False)
def register(request):
    settings = request.authgate.settings
    try:
        if not settings.enable_dynamic_client_registration:
            raise _disabled()
        _check_initial_access_token(request)
        data = registration.parse(_json_body(request))
    except OAuthError as exc:
        return oauth_error(exc)

    created = registration.register(request.dbsession, data)
    client = created.client
    details = {"client_id": client.client_id, "client_type": client.client_type,
               "grant_types": client.grant_types, "scopes": client.scopes,
               "redirect_uris": client.redirect_uris, "status": client.status,
               "token_endpoint_auth_method": data.token_endpoint_auth_method,
               "initial_access_token": bool(settings.dynamic_client_registration_token)}
    common = {"actor_user_id": "", "resource_type": "CLIENT",
              "resource_id": client.client_id, "resource_name": client.name}
    record(request, "CLIENT_CREATED", action=f"Created client {client.name} (dynamic "
           "registration, pending approval)", details=details, **common)
    record(request, "CLIENT_REGISTERED", action=f"Client {client.name} registered itself "
           "(RFC 7591); waiting for an administrator's approval", details=details, **common)
    log.info("dynamic registration: client %s (%s, %s) is pending approval",
             client.client_id, client.name, client.client_type)

    body = registration.client_information(
        client, settings, auth_method=data.token_endpoint_auth_method)
    if created.client_secret is not None:
        body["client_secret"] = created.client_secret
    body["registration_access_token"] = created.registration_access_token
    body["registration_client_uri"] = _registration_uri(request, client.client_id)
    return oauth_json(body, 201)


@view_config(route_name="register_client", request_method="GET", require_csrf=False)
def read_registration(request):
    """RFC 7592 §2.1.  The client secret is stored hashed and cannot be shown again."""
    settings = request.authgate.settings
    try:
        if not settings.enable_dynamic_client_registration:
            raise _disabled()
        token = _bearer(request)
        if token is None:
            raise _invalid_token("The registration access token is required: send "
                                 "Authorization: Bearer <registration_access_token>",
                                 error_code=False)
        client = registration.find_registered(request.dbsession,
                                              request.matchdict["client_id"], token)
        if client is None:
            # RFC 7592 §2.1: unknown client or wrong token, both 401.
            raise _invalid_token("The registration access token is invalid for this client")
    except OAuthError as exc:
        return oauth_error(exc)
    body = registration.client_information(client, settings)
    body["registration_access_token"] = token
    body["registration_client_uri"] = _registration_uri(request, client.client_id)
    return oauth_json(body)


def includeme(config: Configurator) -> None:
    config.add_route("register", "/oauth/register")
    config.add_route("register_client", "/oauth/register/{client_id}")
    settings = config.registry.authgate.settings
    if settings.enable_dynamic_client_registration:
        if settings.dynamic_client_registration_token:
            log.info("Dynamic client registration at /oauth/register (initial access token "
                     "required); registered clients wait for approval")
        else:
            log.warning("Dynamic client registration at /oauth/register is open to anyone "
                        "(no DYNAMIC_CLIENT_REGISTRATION_TOKEN); registered clients wait "
                        "for an administrator's approval")
