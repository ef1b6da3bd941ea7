"""Admin: OAuth clients."""

from __future__ import annotations

from authgate.audit import CRITICAL, WARNING, record
from authgate.models import User
from authgate.services import admin as svc
from authgate.views.admin._base import T, flash, page_args, param, problem, search_param, see_other
from authgate.views.client_form import ClientForm

FORM = T + "admin/client_form.jinja2"
# An administrator sets every field, status and token profile included.
CLIENTS = ClientForm(self_service=False, template=FORM, detail_prefix="/admin/clients/",
                     nav="clients")


def clients_list(request):
    page, size = page_args(request)
    result = svc.list_clients(request.dbsession, search=search_param(request),
                              status=param(request, "status"), page=page, page_size=size)
    return {"page": result, "filters": result.params, "statuses": svc.CLIENT_STATUSES,
            "nav": "clients"}


def _duration(value) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def profile_labels(settings) -> dict[str, str]:
    """"Short (15 min access / 1 d refresh)" with the configured lifetimes."""
    labels = {}
    fallback = {"access": settings.get("jwt_expiration"),
                "refresh": settings.get("refresh_token_expiration")}
    for profile in svc.TOKEN_PROFILES:
        ttl = {kind: settings.get(f"token_profile_{profile}_{kind}_ttl")
               or (fallback[kind] if profile == "standard" else None)
               for kind in ("access", "refresh")}
        label = profile.capitalize()
        if ttl["access"] and ttl["refresh"]:
            label += f" ({_duration(ttl['access'])} access / {_duration(ttl['refresh'])} refresh)"
        labels[profile] = label
    return labels


def _form(request, client=None, data=None, errors=None):
    return {"client": client, "data": data or svc.ClientInput(), "errors": errors or {},
            "statuses": svc.CLIENT_STATUSES,
            "profiles": profile_labels(request.authgate.settings), "nav": "clients"}


def client_new(request):
    return _form(request)


def client_create(request):
    data = CLIENTS.read(request)
    try:
        client, secret = CLIENTS.create(request, data)
    except svc.ValidationError as exc:
        return CLIENTS.invalid(request, _form(request, data=data, errors=exc.errors))
    return CLIENTS.created(request, client, secret, f"Created client {client.name}",
                           token_profile=client.token_profile)


def _client(request):
    return svc.get_client(request.dbsession, request.matchdict["id"])


def client_detail(request):
    client = _client(request)
    db = request.dbsession
    owner = db.get(User, client.user_id) if client.user_id else None
    return {"client": client, "counts": svc.client_counts(db, client.client_id),
            "owner": owner, "nav": "clients",
            "authorized": svc.list_authorizations(db, client_id=client.client_id)[:10]}


def client_edit(request):
    client = _client(request)
    return _form(request, client, svc.ClientInput.from_client(client))


def client_update(request):
    client = _client(request)
    data = CLIENTS.read(request)
    previous_profile = client.token_profile
    try:
        changes, secret = CLIENTS.update(request, client, data)
    except svc.ValidationError as exc:
        return CLIENTS.invalid(request, _form(request, client, data, exc.errors))
    if changes:
        profile_changed = "token_profile" in changes
        details = {"changes": changes}
        if profile_changed:
            details["previous_token_profile"] = previous_profile
        CLIENTS.event(request, "CLIENT_UPDATED", client, f"Updated client {client.name}",
                      severity=WARNING if profile_changed else "INFO", **details)
    if secret:
        return CLIENTS.became_confidential(request, client, secret)
    return CLIENTS.saved(request, client, bool(changes), f"Saved {client.name}.")


def client_delete(request):
    client = _client(request)
    name, client_id = client.name, client.client_id
    summary = svc.delete_client(request.dbsession, client)
    record(request, "CLIENT_DELETED", action=f"Deleted client {name}", severity=WARNING,
           resource_type="CLIENT", resource_id=client_id, resource_name=name,
           details={"client_id": client_id, **summary})
    flash(request, f"Deleted {name}.")
    return see_other("/admin/clients")


def client_regenerate(request):
    return CLIENTS.regenerate(request, _client(request))


def client_revoke_all(request):
    client = _client(request)
    tokens, consents = svc.revoke_client_access(request.dbsession, client)
    CLIENTS.event(request, "CLIENT_TOKENS_REVOKED_ALL", client,
                  f"Revoked all tokens and consents of {client.name}", severity=CRITICAL,
                  tokens_revoked=tokens, authorizations_revoked=consents)
    flash(request, f"Revoked {tokens} token{'s' if tokens != 1 else ''} and {consents} "
                   f"authorization{'s' if consents != 1 else ''} of {client.name}.")
    return see_other(f"/admin/clients/{client.client_id}")


def _decide(request, new: str, event: str, verb: str):
    client = _client(request)
    try:
        svc.set_client_status(request.dbsession, client, new)
    except svc.AdminError as exc:
        return problem(request, exc.status, exc.title, exc.message,
                       back_url=f"/admin/clients/{client.client_id}")
    CLIENTS.event(request, event, client, f"{verb.capitalize()} client {client.name}",
                  status=new)
    flash(request, f"{verb.capitalize()} {client.name}.")
    back = request.POST.get("back")
    if back == "list":
        return see_other("/admin/clients?status=pending")
    return see_other(f"/admin/clients/{client.client_id}")


def client_approve(request):
    return _decide(request, "active", "CLIENT_APPROVED", "approved")


def client_reject(request):
    return _decide(request, "inactive", "CLIENT_REJECTED", "rejected")


def client_authorizations(request):
    client = _client(request)
    return {"client": client,
            "rows": svc.list_authorizations(request.dbsession, client_id=client.client_id),
            "nav": "clients"}
