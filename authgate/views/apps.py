"""Self-service apps: people register their own clients, which wait for an
administrator's approval (reference 1.7).

Registered by ``authgate.views.admin.includeme`` with ``config.add_view``.
"""

from __future__ import annotations

from authgate.audit import WARNING, record
from authgate.services import admin as svc
from authgate.services import scopes
from authgate.views.admin._base import T, flash, page_args, problem, search_param, see_other
from authgate.views.client_form import ClientForm

FORM = T + "apps/form.jinja2"
# A user picks scopes from APP_SCOPES only; a new app waits for approval, and its
# status and token profile are the administrator's.  The secret page (the admin
# console's template) uses the account layout.
APPS = ClientForm(self_service=True, template=FORM, detail_prefix="/apps/", nav="apps",
                  layout="account/_layout.jinja2")


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
    data = APPS.read(request)
    try:
        client, secret = APPS.create(request, data)
    except svc.ValidationError as exc:
        return APPS.invalid(request, _form(data=data, errors=exc.errors))
    return APPS.created(request, client, secret,
                        f"Registered app {client.name} (pending approval)")


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
    data = APPS.read(request)
    try:
        changes, secret = APPS.update(request, client, data)
    except svc.ValidationError as exc:
        return APPS.invalid(request, _form(client, data, exc.errors))
    if changes:
        APPS.event(request, "CLIENT_UPDATED", client, f"Updated app {client.name}",
                   changes=changes)
    if secret:
        return APPS.became_confidential(request, client, secret)
    return APPS.saved(request, client, bool(changes), "Saved.")


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
    return APPS.regenerate(request, _own(request))
