"""The OAuth API endpoints used by clients (JSON in and out, no cookies, no CSRF)."""

from __future__ import annotations

import logging

from pyramid.view import view_config

from authgate.audit import CRITICAL, record
from authgate.services import clients, devices, refresh, scopes, tokens
from authgate.services.errors import OAuthError
from authgate.views._common import client_credentials, oauth_error, oauth_json, request_params

log = logging.getLogger(__name__)


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


def _refresh_token_grant(request, params: dict[str, str]) -> dict:
    """RFC 6749 §6.  The client authenticates as in §2.3 (confidential clients must)."""
    client_id, secret, basic = client_credentials(request, params)
    token_text = params.get("refresh_token", "")
    if not token_text:
        raise OAuthError("invalid_request", "refresh_token is required")
    if not client_id:
        raise OAuthError("invalid_request", "client_id is required")
    db = request.dbsession
    client = clients.authenticate(db, client_id, secret, basic=basic)
    clients.require_active(client)
    settings, signer = request.authgate.settings, request.authgate.signer
    try:
        row = refresh.load(db, signer, settings, client=client, token_text=token_text)
        issued = refresh.exchange(db, signer, settings, client=client, row=row,
                                  token_text=token_text, scope=params.get("scope"))
    except refresh.RefreshTokenReused as reused:
        # The family revocation is in this transaction; the view answers with the
        # error (no exception leaves it), so pyramid_tm commits both.
        log.warning("refresh token reuse: client %s, family %s revoked (%d tokens)",
                    client.client_id, reused.family_id, reused.revoked)
        record(request, "SUSPICIOUS_ACTIVITY", severity=CRITICAL, success=False,
               actor_user_id=reused.row.user_id,
               action=f"Reuse of a {reused.previous_status} refresh token by {client.name}; "
                      "token family revoked",
               resource_type="TOKEN", resource_id=reused.row.id, resource_name=client.name,
               error_message="Refresh token reuse detected",
               details={"client_id": client.client_id, "token_family_id": reused.family_id,
                        "token_status": reused.previous_status,
                        "tokens_revoked": reused.revoked, "reason": "refresh_token_reuse"})
        raise
    rotated = settings.enable_token_rotation
    common = {"actor_user_id": row.user_id, "resource_type": "TOKEN",
              "resource_name": client.name}
    record(request, "TOKEN_REFRESHED", action=f"Access token refreshed for {client.name}",
           resource_id=issued.access.id, **common,
           details={"client_id": client.client_id, "scopes": issued.access.scopes,
                    "refresh_token_id": row.id, "token_family_id": issued.access.token_family_id,
                    "mode": "rotation" if rotated else "fixed"})
    if rotated:
        record(request, "REFRESH_TOKEN_ISSUED", action=f"Refresh token rotated for "
               f"{client.name}", resource_id=issued.refresh.id, **common,
               details={"client_id": client.client_id, "scopes": issued.refresh.scopes,
                        "grant_type": "refresh_token", "parent_token_id": row.id})
    return issued.response()


GRANTS = {
    devices.DEVICE_GRANT: _device_code_grant,
    refresh.GRANT_TYPE: _refresh_token_grant,
}
SUPPORTED_GRANTS = tuple(GRANTS)
