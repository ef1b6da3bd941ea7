"""The person's side of the device flow: enter the code, approve or deny."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyramid.view import view_config

from authgate.audit import record
from authgate.models import utcnow
from authgate.services import consents, devices, scopes
from authgate.views._common import login_redirect

ERRORS = {
    "empty": ("Please enter the code shown on your device.", None),
    "malformed": ("That does not look like a device code.",
                  "Codes have 8 letters and digits, like ABCD-EFGH. Check the code on your "
                  "device and try again."),
    "not_found": ("We could not find that code.",
                  "Check for typos, or start again on your device to get a new code."),
    "expired": ("This code has expired.",
                "Codes are valid for a limited time. Start again on your device to get a new "
                "code."),
    "used": ("This code has already been used.",
             "If your device is not signed in, start again on the device to get a new code."),
    "denied": ("This request was denied.",
               "Start again on your device if you want to sign it in."),
    "client_inactive": ("This application is not active.",
                        "Ask your administrator to enable it."),
    "decided": ("This code was just approved or denied in another window, or it expired.",
                "Start again on your device if it is not signed in."),
}


@dataclass
class Pending:
    user_code: str
    client_name: str
    client_description: str
    scopes: list[tuple[str, str]]
    expires_in_minutes: int


def _entry_page(request, user_code: str, kind: str | None) -> dict:
    error, hint = ERRORS[kind] if kind else (None, None)
    if kind:
        request.response.status = 400
    return {"pending": None, "user_code": user_code, "error": error, "error_hint": hint}


@view_config(route_name="device_page", request_method="GET", renderer="device.jinja2")
def device_page(request):
    if request.current_user is None:
        return login_redirect(request)
    typed = str(request.params.get("user_code", ""))[:64]
    if not typed:
        return _entry_page(request, "", None)
    try:
        row, client = devices.check_pending(request.dbsession, typed)
    except devices.VerifyError as exc:
        return _entry_page(request, typed, exc.kind)
    minutes = math.ceil((row.expires_at - utcnow()).total_seconds() / 60)
    return {"pending": Pending(row.user_code, client.name, client.description,
                              scopes.describe(row.scopes.split()), max(0, minutes)),
            "user_code": row.user_code, "error": None, "error_hint": None}


@view_config(route_name="device_verify", request_method="POST", renderer="device.jinja2")
def device_verify(request):
    user = request.current_user
    if user is None:
        return login_redirect(request)
    typed = str(request.POST.get("user_code", ""))[:64]
    action = request.POST.get("action", "")
    if action not in ("approve", "deny"):
        # A code submitted without a decision goes to the confirmation page.
        return device_page(request) if typed else _entry_page(request, "", "empty")
    try:
        row, client = devices.check_pending(request.dbsession, typed)
    except devices.VerifyError as exc:
        return _entry_page(request, typed, exc.kind)
    approve = action == "approve"
    if not devices.decide(request.dbsession, row, user, approve=approve):
        return _entry_page(request, typed, "decided")
    if approve:
        consents.upsert(request.dbsession, user_id=user.id, client=client,
                        scopes=row.scopes.split(), request=request, via="device")
    event = "DEVICE_CODE_AUTHORIZED" if approve else "DEVICE_CODE_DENIED"
    record(request, event,
           action=f"{user.username} {'authorized' if approve else 'denied'} a device for "
                  f"{client.name}",
           resource_type="DEVICE_CODE", resource_id=str(row.id), resource_name=client.name,
           details={"client_id": client.client_id, "scopes": row.scopes,
                    "user_code": row.user_code})
    request.override_renderer = "device_result.jinja2"
    return {"outcome": "approved" if approve else "denied", "client_name": client.name,
            "username": user.username}
