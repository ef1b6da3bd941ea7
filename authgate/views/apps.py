"""Self-service apps: people register their own clients, which wait for an
administrator's approval (reference 1.7).

Registered by ``authgate.views.admin.includeme`` with ``config.add_view``.
"""

from __future__ import annotations

from authgate.audit import WARNING, record
from authgate.services import admin as svc
from authgate.services import scopes
from authgate.views.admin._base import T, flash, page_args, problem, search_param, see_other

FORM = T + "apps/form.jinja2"
SECRET = T + "admin/client_secret.jinja2"  # with the account layout


def _event(request, event: str, client, action: str, *, severity: str = "INFO",
           **details) -> None:
    record(request, event, action=action, severity=severity, resource_type="CLIENT",
           resource_id=client.client_id, resource_name=client.name,
           details={"client_id": client.client_id, "self_service": True, **details})


def _secret_page(client, secret: str | None, reason: str) -> dict:
    return {"client": client, "secret": secret, "reason": reason, "nav": "apps",
            "layout": "account/_layout.jinja2", "detail_url": f"/apps/{client.client_id}"}


def apps_list(request):
    page, size = page_args(request)
    result = svc.list_clients(request.dbsession, search=search_param(request),
                              owner_id=request.current_user.id, page=page, page_size=size)
    return {"page": result, "filters": result.params, "nav": "apps"}


def _form(client=None, data=None, errors=None):
    return {"client": client, "errors": errors or {},
            "app_scopes": scopes.describe(list(svc.APP_SCOPES)),
            "data": data or svc.ClientInput(scopes="openid profile email"), "nav": "apps"}


def app_new(request):
    return _form()


def app_create(request):
    data = svc.ClientInput.from_form(request.POST, self_service=True)
    try:
        client, secret = svc.create_client(request.dbsession, request.current_user, data,
                                           self_service=True)
    except svc.ValidationError as exc:
        request.override_renderer = FORM
        request.response.status = 400
        return _form(data=data, errors=exc.errors)
    _event(request, "CLIENT_CREATED", client, f"Registered app {client.name} (pending "
           "approval)", client_type=client.client_type, grant_types=client.grant_types,
           scopes=client.scopes, status=client.status)
    request.override_renderer = SECRET
    return _secret_page(client, secret, "created")


def _own(request):
    return svc.get_own_client(request.dbsession, request.matchdict["id"],
                              request.current_user)


def app_detail(request):
    client = _own(request)
    return {"client": client, "counts": svc.client_counts(request.dbsession, client.client_id),
            "nav": "apps"}


def app_edit(request):
    client = _own(request)
    return _form(client, svc.ClientInput.from_client(client))


def app_update(request):
    client = _own(request)
    data = svc.ClientInput.from_form(request.POST, self_service=True)
    try:
        changes, secret = svc.update_client(request.dbsession, client, data, self_service=True)
    except svc.ValidationError as exc:
        request.override_renderer = FORM
        request.response.status = 400
        return _form(client, data, exc.errors)
    if changes:
        _event(request, "CLIENT_UPDATED", client, f"Updated app {client.name}",
               changes=changes)
    if secret:
        _event(request, "CLIENT_SECRET_REGENERATED", client,
               f"Created a secret for {client.name} (now confidential)", severity=WARNING)
        request.override_renderer = SECRET
        return _secret_page(client, secret, "confidential")
    flash(request, "Saved." if changes else "Nothing changed.",
          "success" if changes else "info")
    return see_other(f"/apps/{client.client_id}")


def app_delete(request):
    client = _own(request)
    name, client_id = client.name, client.client_id
    try:
        summary = svc.delete_own_client(request.dbsession, client)
    except svc.AdminError as exc:
        return problem(request, exc.status, "Cannot delete this app", exc.message,
                       back_url=f"/apps/{client_id}")
    record(request, "CLIENT_DELETED", action=f"Deleted app {name}", severity=WARNING,
           resource_type="CLIENT", resource_id=client_id, resource_name=name,
           details={"client_id": client_id, "self_service": True, **summary})
    flash(request, f"Deleted {name}.")
    return see_other("/apps")


def app_regenerate(request):
    client = _own(request)
    try:
        secret = svc.regenerate_secret(request.dbsession, client)
    except svc.AdminError as exc:
        return problem(request, exc.status, exc.title, exc.message,
                       back_url=f"/apps/{client.client_id}")
    _event(request, "CLIENT_SECRET_REGENERATED", client,
           f"Regenerated the secret of {client.name}", severity=WARNING)
    request.override_renderer = SECRET
    return _secret_page(client, secret, "regenerated")
