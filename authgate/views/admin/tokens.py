"""Admin: every issued token, with revoke / disable / enable."""

from __future__ import annotations

from sqlalchemy import select

from authgate.audit import record
from authgate.models import OAuthClient, User
from authgate.services import admin as svc
from authgate.views.admin._base import back_to, flash, page_args, param, search_param, see_other


def token_filters(request) -> dict[str, str]:
    status = param(request, "status") or "live"
    if status not in svc.TOKEN_STATUS_FILTERS:
        status = "live"
    category = param(request, "category")
    return {"status": status,
            "category": category if category in svc.TOKEN_CATEGORIES else "",
            "search": search_param(request)}


def tokens_list(request):
    page, size = page_args(request)
    db = request.dbsession
    filters = token_filters(request)
    user_id, client_id = param(request, "user_id", 80), param(request, "client_id", 64)
    result = svc.list_tokens(db, user_id=user_id, client_id=client_id, page=page,
                             page_size=size, **filters)
    scope_user = db.get(User, user_id) if user_id else None
    scope_client = _find_client(db, client_id) if client_id else None
    return {"page": result, "filters": result.params, "statuses": svc.TOKEN_STATUS_FILTERS,
            "categories": svc.TOKEN_CATEGORIES, "state": svc.token_state,
            "scope_user": scope_user, "scope_client": scope_client, "scope_user_id": user_id,
            "scope_client_id": client_id, "here": request.path_qs, "nav": "tokens"}


def _find_client(db, client_id: str) -> OAuthClient | None:
    return db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).first()


def token_event(request, event: str, token, action: str, **details) -> None:
    client = _find_client(request.dbsession, token.client_id)
    name = client.name if client else token.client_id
    record(request, event, action=action, resource_type="TOKEN", resource_id=token.id,
           resource_name=name,
           details={"token_category": token.token_category, "user_id": token.user_id,
                    "client_id": token.client_id, **details})


def _token(request):
    return svc.get_token(request.dbsession, request.matchdict["id"])


def token_revoke(request):
    token = _token(request)
    count = svc.revoke_token(request.dbsession, token)
    token_event(request, "TOKEN_REVOKED", token,
                f"Revoked a {token.token_category} token", tokens_revoked=count)
    extra = f" (and {count - 1} token{'s' if count != 2 else ''} issued from it)" \
        if count > 1 else ""
    flash(request, f"Token revoked{extra}.")
    return see_other(back_to(request, "/admin/tokens", "/admin/"))


def token_disable(request):
    token = _token(request)
    svc.disable_token(request.dbsession, token)
    token_event(request, "TOKEN_DISABLED", token, f"Disabled a {token.token_category} token")
    flash(request, "Token disabled. It is refused everywhere until you enable it again.")
    return see_other(back_to(request, "/admin/tokens", "/admin/"))


def token_enable(request):
    token = _token(request)
    svc.enable_token(request.dbsession, token)
    token_event(request, "TOKEN_ENABLED", token, f"Enabled a {token.token_category} token")
    flash(request, "Token enabled.")
    return see_other(back_to(request, "/admin/tokens", "/admin/"))
