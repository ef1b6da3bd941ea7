"""OpenID Connect UserInfo (Core §5.3): ``GET`` or ``POST /oauth/userinfo`` with a
Bearer access token in the Authorization header (RFC 6750 §2.1)."""

from __future__ import annotations

from pyramid.view import view_config

from authgate.models import User
from authgate.services import oidc, tokens
from authgate.views._common import oauth_error, oauth_json


@view_config(route_name="userinfo", request_method=("GET", "POST"), require_csrf=False)
def userinfo(request):
    header = request.headers.get("Authorization", "").strip()
    if header[:7].lower() != "bearer " or not header[7:].strip():
        # RFC 6750 §3.1: no credentials at all -> a bare challenge, no error code.
        return oauth_json({"error": "invalid_token",
                           "error_description": "A Bearer access token is required in the "
                                                "Authorization header"},
                          401, {"WWW-Authenticate": 'Bearer realm="authgate"'})
    settings = request.authgate.settings
    db = request.dbsession
    try:
        row = tokens.validate_access_token(db, request.authgate.signer, settings,
                                           header[7:].strip())
        if row.user_id.startswith("client:"):
            raise tokens.InvalidToken("The token was issued to a client, not a user")
        user = db.get(User, row.user_id)
        if user is None or not user.is_active:
            raise tokens.InvalidToken("User not found")
    except tokens.InvalidToken as exc:
        return oauth_error(exc)
    return oauth_json(oidc.userinfo(settings, user, row.scopes.split()))
