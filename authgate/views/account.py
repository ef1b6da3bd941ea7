"""A signed-in person's own sessions (tokens) and consents (reference 1.6).

Registered by ``authgate.views.admin.includeme`` with ``config.add_view`` (no
``@view_config``), like the admin console.
"""

from __future__ import annotations

from authgate.audit import record
from authgate.security import end_other_sessions
from authgate.services import admin as svc
from authgate.views.admin._base import back_to, flash, page_args, see_other
from authgate.views.admin.tokens import token_event, token_filters

SESSIONS = "/account/sessions"


def account_home(request):
    return see_other(SESSIONS)


def sessions(request):
    me = request.current_user
    page, size = page_args(request)
    filters = token_filters(request)
    result = svc.list_tokens(request.dbsession, user_id=me.id, owner_search=False, page=page,
                             page_size=size, **filters)
    live = svc.list_tokens(request.dbsession, user_id=me.id, owner_search=False,
                           status="live", page=1, page_size=1).total
    return {"page": result, "filters": result.params, "statuses": svc.TOKEN_STATUS_FILTERS,
            "categories": svc.TOKEN_CATEGORIES, "state": svc.token_state, "live": live,
            "here": request.path_qs, "nav": "sessions"}


def _own_token(request):
    return svc.get_token(request.dbsession, request.matchdict["id"],
                         owner_id=request.current_user.id)


def session_revoke(request):
    token = _own_token(request)
    count = svc.revoke_token(request.dbsession, token)
    token_event(request, "TOKEN_REVOKED", token,
                f"{request.current_user.username} revoked one of their "
                f"{token.token_category} tokens", tokens_revoked=count)
    flash(request, "Session revoked. That device has to sign in again.")
    return see_other(back_to(request, SESSIONS, SESSIONS))


def session_disable(request):
    token = _own_token(request)
    svc.disable_token(request.dbsession, token)
    token_event(request, "TOKEN_DISABLED", token,
                f"{request.current_user.username} disabled one of their "
                f"{token.token_category} tokens")
    flash(request, "Token disabled. Enable it again to resume that session.")
    return see_other(back_to(request, SESSIONS, SESSIONS))


def session_enable(request):
    token = _own_token(request)
    svc.enable_token(request.dbsession, token)
    token_event(request, "TOKEN_ENABLED", token,
                f"{request.current_user.username} enabled one of their "
                f"{token.token_category} tokens")
    flash(request, "Token enabled.")
    return see_other(back_to(request, SESSIONS, SESSIONS))


def sessions_revoke_all(request):
    me = request.current_user
    count = svc.revoke_user_tokens(request.dbsession, me.id)
    # Their other browsers too (this one stays signed in).
    end_other_sessions(request, me)
    record(request, "TOKEN_REVOKED", action=f"{me.username} revoked all their sessions",
           resource_type="USER", resource_id=me.id, resource_name=me.username,
           details={"scope": "all", "tokens_revoked": count})
    flash(request, f"Signed out everywhere: {count} token{'s' if count != 1 else ''} "
                   "revoked." if count else "Signed out of your other browsers. You had no "
                   "tokens to revoke.",
          "success" if count else "info")
    return see_other(SESSIONS)


def authorizations(request):
    me = request.current_user
    return {"rows": svc.list_authorizations(request.dbsession, user_id=me.id),
            "nav": "authorizations"}


def authorization_revoke(request):
    me = request.current_user
    db = request.dbsession
    consent = svc.get_authorization(db, request.matchdict["uuid"], user_id=me.id)
    try:
        client_name = svc.get_client(db, consent.client_id).name
    except svc.NotFound:
        client_name = consent.client_id
    revoked = svc.revoke_authorization(db, consent)
    record(request, "USER_AUTHORIZATION_REVOKED",
           action=f"{me.username} revoked the access of {client_name}",
           resource_type="AUTHORIZATION", resource_id=consent.uuid, resource_name=client_name,
           details={"user_id": me.id, "client_id": consent.client_id,
                    "tokens_revoked": revoked})
    flash(request, f"{client_name} can no longer access your account.")
    return see_other("/account/authorizations")

