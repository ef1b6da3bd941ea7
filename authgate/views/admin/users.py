"""Admin: users, their social-login connections and their consents."""

from __future__ import annotations

from authgate.audit import WARNING, record
from authgate.services import admin as svc
from authgate.views.admin._base import (
    T,
    flash,
    form_value,
    page_args,
    param,
    problem,
    search_param,
    see_other,
)

FORM = T + "admin/user_form.jinja2"


def _event(request, event: str, user, action: str, *, severity: str = "INFO",
           success: bool = True, error: str | None = None, **details) -> None:
    record(request, event, action=action, severity=severity, success=success,
           error_message=error, resource_type="USER", resource_id=user.id,
           resource_name=user.username, details=details)


def _refused(request, event: str, user, verb: str, exc: svc.AdminError):
    """Record a refused action (an admin hitting a guard is worth knowing) and say why."""
    _event(request, event, user, f"Refused to {verb} user {user.username}", severity=WARNING,
           success=False, error=exc.message)
    return problem(request, exc.status, exc.title, exc.message,
                   back_url=f"/admin/users/{user.id}")


def users_list(request):
    page, size = page_args(request)
    db = request.dbsession
    result = svc.list_users(db, search=search_param(request), role=param(request, "role"),
                            auth_source=param(request, "auth_source"),
                            status=param(request, "status"), page=page, page_size=size)
    return {"page": result, "filters": result.params, "auth_sources": svc.auth_sources(db),
            "nav": "users"}


def _form(user=None, values=None, errors=None, is_self=False):
    values = values or {}
    if user is not None and not values:
        values = {"username": user.username, "email": user.email or "",
                  "full_name": user.full_name, "role": user.role}
    return {"user": user, "values": values, "errors": errors or {}, "is_self": is_self,
            "roles": svc.ROLES, "nav": "users"}


def user_new(request):
    return _form(values={"role": "user"})


def user_create(request):
    values = {name: form_value(request, name, 1024)
              for name in ("username", "email", "full_name", "role", "password")}
    try:
        user, password, generated = svc.create_user(request.dbsession, **values)
    except svc.ValidationError as exc:
        request.override_renderer = FORM
        request.response.status = 400
        values.pop("password")
        return _form(values=values, errors=exc.errors)
    _event(request, "USER_CREATED", user, f"Created user {user.username}", role=user.role,
           email=user.email, password_generated=generated)
    request.override_renderer = T + "admin/user_secret.jinja2"
    return {"user": user, "password": password if generated else None, "created": True,
            "nav": "users"}


def _user(request):
    return svc.get_user(request.dbsession, request.matchdict["id"])


def user_detail(request):
    user = _user(request)
    db = request.dbsession
    me = request.current_user
    return {"user": user, "counts": svc.user_counts(db, user.id), "is_self": user.id == me.id,
            "last_admin": svc.is_last_active_admin(db, user), "nav": "users"}


def user_edit(request):
    user = _user(request)
    return _form(user, is_self=user.id == request.current_user.id)


def user_update(request):
    user = _user(request)
    me = request.current_user
    values = {name: form_value(request, name, 1024) for name in ("email", "full_name", "role")}
    if user.id == me.id and not values["role"]:
        values["role"] = user.role  # the role field is locked (disabled) on your own form
    old_role = user.role
    try:
        changes = svc.update_user(request.dbsession, me, user, **values)
    except svc.ValidationError as exc:
        request.override_renderer = FORM
        request.response.status = 400
        values["username"] = user.username
        return _form(user, values=values, errors=exc.errors, is_self=user.id == me.id)
    if "role" in changes:
        _event(request, "USER_ROLE_CHANGED", user,
               f"Changed role of {user.username} from {old_role} to {user.role}",
               severity=WARNING, previous_role=old_role, new_role=user.role)
    other = {k: v for k, v in changes.items() if k != "role"}
    if other:
        _event(request, "USER_UPDATED", user, f"Updated user {user.username}",
               changes=other)
    flash(request, f"Saved {user.username}." if changes else "Nothing changed.",
          "success" if changes else "info")
    return see_other(f"/admin/users/{user.id}")


def user_reset_password(request):
    user = _user(request)
    try:
        password, revoked = svc.reset_password(request.dbsession, request.current_user, user)
    except svc.AdminError as exc:
        return _refused(request, "USER_PASSWORD_RESET", user, "reset the password of", exc)
    _event(request, "USER_PASSWORD_RESET", user, f"Reset the password of {user.username}",
           severity=WARNING, tokens_revoked=revoked)
    request.override_renderer = T + "admin/user_secret.jinja2"
    return {"user": user, "password": password, "created": False, "tokens_revoked": revoked,
            "nav": "users"}


def user_disable(request):
    user = _user(request)
    try:
        revoked = svc.disable_user(request.dbsession, request.current_user, user)
    except svc.AdminError as exc:
        return _refused(request, "USER_DISABLED", user, "disable", exc)
    _event(request, "USER_DISABLED", user, f"Disabled user {user.username}",
           severity=WARNING, tokens_revoked=revoked)
    flash(request, f"Disabled {user.username}: signed out everywhere, {revoked} "
                   f"token{'s' if revoked != 1 else ''} revoked.")
    return see_other(f"/admin/users/{user.id}")


def user_enable(request):
    user = _user(request)
    try:
        svc.enable_user(request.dbsession, request.current_user, user)
    except svc.AdminError as exc:
        return _refused(request, "USER_ENABLED", user, "enable", exc)
    _event(request, "USER_ENABLED", user, f"Enabled user {user.username}")
    flash(request, f"Enabled {user.username}. They can sign in again; revoked tokens stay "
                   "revoked.")
    return see_other(f"/admin/users/{user.id}")


def user_delete(request):
    user = _user(request)
    username, user_id = user.username, user.id
    try:
        summary = svc.delete_user(request.dbsession, request.current_user, user)
    except svc.AdminError as exc:
        return _refused(request, "USER_DELETED", user, "delete", exc)
    record(request, "USER_DELETED", action=f"Deleted user {username}", severity=WARNING,
           resource_type="USER", resource_id=user_id, resource_name=username, details=summary)
    flash(request, f"Deleted {username}.")
    return see_other("/admin/users")


def user_connections(request):
    user = _user(request)
    return {"user": user, "connections": svc.list_connections(request.dbsession, user.id),
            "nav": "users"}


def connection_delete(request):
    user = _user(request)
    connection = svc.delete_connection(request.dbsession, user, request.matchdict["conn_id"])
    record(request, "OAUTH_CONNECTION_DELETED", severity=WARNING,
           action=f"Unlinked {connection.provider} from {user.username}",
           resource_type="USER", resource_id=user.id, resource_name=user.username,
           details={"provider": connection.provider, "connection_id": connection.id,
                    "provider_username": connection.provider_username})
    flash(request, f"Unlinked the {connection.provider} account.")
    return see_other(f"/admin/users/{user.id}/connections")


def user_authorizations(request):
    user = _user(request)
    return {"user": user, "rows": svc.list_authorizations(request.dbsession, user_id=user.id),
            "nav": "users"}


def authorization_revoke(request):
    user = _user(request)
    db = request.dbsession
    consent = svc.get_authorization(db, request.matchdict["uuid"], user_id=user.id)
    client_name = _client_name(db, consent.client_id)
    revoked = svc.revoke_authorization(db, consent)
    record(request, "USER_AUTHORIZATION_REVOKED",
           action=f"Revoked {user.username}'s authorization of {client_name}",
           resource_type="AUTHORIZATION", resource_id=consent.uuid, resource_name=client_name,
           details={"user_id": user.id, "client_id": consent.client_id,
                    "tokens_revoked": revoked})
    flash(request, f"Revoked access of {client_name}; {revoked} token"
                   f"{'s' if revoked != 1 else ''} revoked.")
    return see_other(f"/admin/users/{user.id}/authorizations")


def _client_name(db, client_id: str) -> str:
    try:
        return svc.get_client(db, client_id).name
    except svc.NotFound:
        return client_id
