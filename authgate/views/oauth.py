"""The OAuth API endpoints used by clients (JSON in and out, no cookies, no CSRF)."""

from __future__ import annotations

import logging

from pyramid.view import view_config

from authgate.audit import record
from authgate.services import clients, devices, scopes, tokens
from authgate.services.errors import OAuthError
from authgate.views._common import client_credentials, oauth_error, oauth_json, request_params

log = logging.getLogger(__name__)

SUPPORTED_GRANTS = (devices.DEVICE_GRANT,)


@view_config(route_name="device_code", request_method="POST", require_csrf=False)
def device_authorization(request):
    """RFC 8628 §3.1-3.2."""
    try:
        params = request_params(request)
        client_id, secret, basic = client_credentials(request, params)
        if not client_id:
            raise OAuthError("invalid_request", "client_id is required")
        client = clients.authenticate(request.dbsession, client_id, secret, basic=basic)
        clients.require_active(client)
        if not client.enable_device_flow:
            raise OAuthError("unauthorized_client",
                             "The device authorization grant is not enabled for this client")
        granted = scopes.resolve_requested(params.get("scope"), client.scope_list)
    except OAuthError as exc:
        return oauth_error(exc)

    settings = request.authgate.settings
    interval = max(1, int(settings.polling_interval.total_seconds()))
    new = devices.create(request.dbsession, client, granted,
                         lifetime=settings.device_code_expiration, interval=interval)
    base = settings.base_url.rstrip("/")
    record(request, "DEVICE_CODE_GENERATED", actor_user_id="",
           action=f"Device code issued to {client.name}", resource_type="DEVICE_CODE",
           resource_id=str(new.row.id), resource_name=client.name,
           details={"client_id": client.client_id, "scopes": new.row.scopes,
                    "user_code": new.row.user_code})
    return oauth_json({
        "device_code": new.device_code,
        "user_code": new.row.user_code,
        "verification_uri": f"{base}/device",
        "verification_uri_complete": f"{base}/device?user_code={new.row.user_code}",
        "expires_in": int(settings.device_code_expiration.total_seconds()),
        "interval": interval,
    })


@view_config(route_name="token", request_method="POST", require_csrf=False)
def token(request):
    """RFC 6749 §3.2 token endpoint; one handler per grant type."""
    try:
        params = request_params(request)
        grant_type = params.get("grant_type", "")
        handler = GRANTS.get(grant_type)
        if handler is None:
            raise OAuthError("unsupported_grant_type",
                             "Supported grant types: " + ", ".join(GRANTS))
        return oauth_json(handler(request, params))
    except OAuthError as exc:
        return oauth_error(exc)


def _device_code_grant(request, params: dict[str, str]) -> dict:
    client_id, secret, basic = client_credentials(request, params)
    device_code = params.get("device_code", "")
    if not client_id or not device_code:
        raise OAuthError("invalid_request", "device_code and client_id are required")
    db = request.dbsession
    client = clients.authenticate(db, client_id, secret, basic=basic)
    clients.require_active(client)
    if not client.enable_device_flow:
        raise OAuthError("unauthorized_client",
                         "The device authorization grant is not enabled for this client")
    row = devices.redeem(db, device_code, client)
    settings = request.authgate.settings
    issued = tokens.issue(db, request.authgate.signer, settings, subject=row.user_id,
                          client=client, scopes=row.scopes.split(),
                          grant_type=devices.DEVICE_GRANT)
    common = {"actor_user_id": row.user_id, "resource_type": "TOKEN",
              "resource_name": client.name}
    record(request, "ACCESS_TOKEN_ISSUED", action=f"Access token issued to {client.name} "
           "(device flow)", resource_id=issued.access.id, **common,
           details={"client_id": client.client_id, "scopes": issued.access.scopes,
                    "grant_type": "device_code"})
    if issued.refresh is not None:
        record(request, "REFRESH_TOKEN_ISSUED", action=f"Refresh token issued to "
               f"{client.name} (device flow)", resource_id=issued.refresh.id, **common,
               details={"client_id": client.client_id, "scopes": issued.refresh.scopes,
                        "grant_type": "device_code"})
    return issued.response()


GRANTS = {
    devices.DEVICE_GRANT: _device_code_grant,
}
