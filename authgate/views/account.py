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


def _change_own_token(request, change, event: str, verb: str, message: str):
    """Revoke, disable or enable one of the signed-in person's tokens, record ``event``,
    flash ``message`` and go back to the list the button was on.

    ``change`` is the service call; revoke_token returns how many tokens it revoked
    (recorded as ``tokens_revoked``), disable/enable return None.  A token in the wrong
    state raises svc.Conflict, shown as the error page by the ``user_page`` guard."""
    token = _own_token(request)
    revoked = change(request.dbsession, token)
    details = {} if revoked is None else {"tokens_revoked": revoked}
    token_event(request, event, token,
                f"{request.current_user.username} {verb} one of their "
                f"{token.token_category} tokens", **details)
    flash(request, message)
    return see_other(back_to(request, SESSIONS, SESSIONS))


def session_revoke(request):
    return _change_own_token(request, svc.revoke_token, "TOKEN_REVOKED", "revoked",
                             "Session revoked. That device has to sign in again.")


def session_disable(request):
    return _change_own_token(request, svc.disable_token, "TOKEN_DISABLED", "disabled",
                             "Token disabled. Enable it again to resume that session.")


def session_enable(request):
    return _change_own_token(request, svc.enable_token, "TOKEN_ENABLED", "enabled",
                             "Token enabled.")


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

