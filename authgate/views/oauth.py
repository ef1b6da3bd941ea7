"""The OAuth API endpoints used by clients (JSON in and out, no cookies, no CSRF)."""

from __future__ import annotations

import logging

from pyramid.view import view_config

from authgate.audit import CRITICAL, record
from authgate.models import User
from authgate.services import (
    authorize,
    clientcreds,
    clients,
    consents,
    devices,
    oidc,
    refresh,
    scopes,
    tokens,
)
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
    row = devices.redeem(db, device_code, client, pacer=request.authgate.pacer)
    settings = request.authgate.settings
    # Linked to the consent the approval recorded, so revoking it revokes them.
    issued = tokens.issue(db, request.authgate.signer, settings, subject=row.user_id,
                          client=client, scopes=row.scopes.split(),
                          grant_type=devices.DEVICE_GRANT,
                          authorization_id=consents.active_id(db, row.user_id,
                                                              client.client_id))
    _token_events(request, issued, client=client, user_id=row.user_id, flow="device flow",
                  grant_type="device_code")
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


def _token_events(request, issued: tokens.IssuedTokens, *, client, user_id: str,
                  flow: str, grant_type: str) -> None:
    common = {"actor_user_id": user_id, "resource_type": "TOKEN", "resource_name": client.name}
    record(request, "ACCESS_TOKEN_ISSUED", action=f"Access token issued to {client.name} "
           f"({flow})", resource_id=issued.access.id, **common,
           details={"client_id": client.client_id, "scopes": issued.access.scopes,
                    "grant_type": grant_type})
    if issued.refresh is not None:
        record(request, "REFRESH_TOKEN_ISSUED", action=f"Refresh token issued to "
               f"{client.name} ({flow})", resource_id=issued.refresh.id, **common,
               details={"client_id": client.client_id, "scopes": issued.refresh.scopes,
                        "grant_type": grant_type})


def _authorization_code_grant(request, params: dict[str, str]) -> dict:
    """RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5) and OpenID Connect (Core §3.1.3)."""
    client_id, secret, basic = client_credentials(request, params)
    code, redirect_uri = params.get("code", ""), params.get("redirect_uri", "")
    if not code:
        raise OAuthError("invalid_request", "code is required")
    if not redirect_uri:
        raise OAuthError("invalid_request", "redirect_uri is required")
    if not client_id:
        raise OAuthError("invalid_request", "client_id is required (or authenticate with "
                                            "HTTP Basic)")
    db = request.dbsession
    client = clients.authenticate(db, client_id, secret, basic=basic)
    clients.require_active(client)
    if not client.enable_auth_code_flow:
        raise OAuthError("unauthorized_client",
                         "The authorization code grant is not enabled for this client")
    try:
        row = authorize.redeem(db, client=client, code=code, redirect_uri=redirect_uri,
                               code_verifier=params.get("code_verifier", ""))
    except authorize.CodeReplayed as replay:
        # The revocation is in this transaction; token() answers with the error
        # response (no exception leaves the view), so pyramid_tm commits it.
        log.warning("authorization code replayed: client %s, code %s, %d tokens revoked",
                    client.client_id, replay.row.uuid, replay.revoked)
        record(request, "SUSPICIOUS_ACTIVITY", severity=CRITICAL, success=False,
               actor_user_id=replay.row.user_id,
               action=f"Authorization code of {client.name} used twice; the tokens issued "
                      "from it were revoked",
               resource_type="AUTHORIZATION", resource_id=replay.row.uuid,
               resource_name=client.name, error_message="Authorization code reuse detected",
               details={"client_id": client.client_id, "tokens_revoked": replay.revoked,
                        "reason": "authorization_code_reuse"})
        raise
    user = db.get(User, row.user_id)
    if user is None or not user.is_active:
        raise OAuthError("invalid_grant", "The user who approved this code is no longer "
                                          "active")
    consent = consents.find_active(db, row.user_id, client.client_id)
    if consent is None:
        raise OAuthError("invalid_grant", "The authorization was revoked")
    granted = row.scopes.split()
    settings, signer = request.authgate.settings, request.authgate.signer
    issued = tokens.issue(db, signer, settings, subject=row.user_id, client=client,
                          scopes=granted, grant_type=authorize.GRANT_TYPE,
                          authorization_id=consent.id, authorization_code_id=row.id)
    pkce = bool(row.code_challenge)
    record(request, "AUTHORIZATION_CODE_EXCHANGED", actor_user_id=row.user_id,
           action=f"Authorization code exchanged by {client.name}",
           resource_type="AUTHORIZATION", resource_id=row.uuid, resource_name=client.name,
           details={"client_id": client.client_id, "scopes": row.scopes, "pkce": pkce,
                    "redirect_uri": row.redirect_uri,
                    "client_auth": "none" if client.is_public else
                    ("client_secret_basic" if basic else "client_secret_post")})
    _token_events(request, issued, client=client, user_id=row.user_id,
                  flow="authorization code", grant_type=authorize.GRANT_TYPE)
    body = issued.response()
    if oidc.OPENID in granted:
        body["id_token"] = oidc.id_token(
            signer, settings, user=user, client=client, scopes=granted,
            access_token=issued.access_token, nonce=row.nonce,
            auth_time=authorize.auth_time_of(code))
        record(request, "ID_TOKEN_ISSUED", actor_user_id=row.user_id,
               action=f"ID token issued to {client.name}", resource_type="TOKEN",
               resource_id=issued.access.id, resource_name=client.name,
               details={"client_id": client.client_id, "scopes": row.scopes,
                        "nonce": bool(row.nonce)})
    return body


def _client_credentials_grant(request, params: dict[str, str]) -> dict:
    """RFC 6749 §4.4: confidential clients only, authenticated by Basic or form.

    A public client is answered 401 ``invalid_client`` rather than 400
    ``unauthorized_client``: §4.4 says the grant "MUST only be used by
    confidential clients" because it rests entirely on client authentication
    (§4.4.2 "the client MUST authenticate"), and a public client has no
    credentials to authenticate with.  §5.2 defines ``unauthorized_client`` for
    an *authenticated* client lacking permission and ``invalid_client`` for
    "no client authentication included" -- the public client's case.  A
    confidential client without the flag enabled did authenticate, so it gets
    ``unauthorized_client``.
    """
    client_id, secret, basic = client_credentials(request, params)
    auth_header = {"WWW-Authenticate": 'Basic realm="authgate"'}
    if not client_id:
        raise OAuthError("invalid_client", "Client authentication required: send client_id "
                                           "and client_secret (HTTP Basic or form)", 401,
                         auth_header)
    db = request.dbsession
    known = clients.get_client(db, client_id)
    if known is not None and known.is_public:
        raise OAuthError("invalid_client", "Public clients cannot use the client credentials "
                                           "grant: it requires client authentication", 401,
                         auth_header)
    client = clients.authenticate(db, client_id, secret, basic=True)
    if not client.is_active:
        raise OAuthError("invalid_client", "Client is not active", 401, auth_header)
    if not client.enable_client_credentials_flow:
        raise OAuthError("unauthorized_client",
                         "The client credentials grant is not enabled for this client")
    settings = request.authgate.settings
    issued = clientcreds.issue(db, request.authgate.signer, settings, client=client,
                               scope=params.get("scope"))
    record(request, "CLIENT_CREDENTIALS_TOKEN_ISSUED",
           actor_user_id=clientcreds.subject(client), actor_username=client.name,
           action=f"Access token issued to {client.name} (client credentials)",
           resource_type="TOKEN", resource_id=issued.access.id, resource_name=client.name,
           details={"client_id": client.client_id, "scopes": issued.access.scopes,
                    "grant_type": clientcreds.GRANT_TYPE,
                    "client_auth": "client_secret_basic" if basic else "client_secret_post"})
    return issued.response()


GRANTS = {
    authorize.GRANT_TYPE: _authorization_code_grant,
    devices.DEVICE_GRANT: _device_code_grant,
    refresh.GRANT_TYPE: _refresh_token_grant,
    clientcreds.GRANT_TYPE: _client_credentials_grant,
}
SUPPORTED_GRANTS = tuple(GRANTS)
