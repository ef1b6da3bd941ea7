"""The OAuth client form's HTTP side, shared by the admin console (/admin/clients)
and the self-service apps (/apps).

Parsing and validating the form are business rules and stay in the service
layer (:class:`authgate.services.admin.ClientInput`, ``create_client``,
``update_client``); this module is what both consoles do around them: read the
POST, re-render the form with the errors (400), record the audit events, show a
new secret once, flash and redirect.  A :class:`ClientForm` holds what differs
between the two consoles.  What each console says (audit actions, flashes) and
its form page stay in its own views module.

No ``@view_config`` here: ``config.scan("authgate.views")`` finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyramid.httpexceptions import HTTPSeeOther

from authgate.audit import WARNING, record
from authgate.models import OAuthClient
from authgate.services import admin as svc
from authgate.views.admin._base import T, flash, problem, see_other

SECRET = T + "admin/client_secret.jinja2"


@dataclass(frozen=True)
class ClientForm:
    """One console's client form.

    ``self_service`` is the one switch between what an administrator and a user may
    set: an app's scopes come from the fixed APP_SCOPES choices, a new app waits for
    approval, and its status and token profile cannot be changed.  The form, its
    reading and the service calls all take it from here, so they cannot disagree.
    """

    self_service: bool
    template: str  # the form page, shown again with the errors
    detail_prefix: str  # + client_id = the client's page
    nav: str
    layout: str | None = None  # the secret page's layout (default: the admin one)

    def read(self, request) -> svc.ClientInput:
        return svc.ClientInput.from_form(request.POST, self_service=self.self_service)

    def create(self, request, data: svc.ClientInput) -> tuple[OAuthClient, str | None]:
        return svc.create_client(
            request.dbsession, request.current_user, data, self_service=self.self_service
        )

    def update(
        self, request, client: OAuthClient, data: svc.ClientInput
    ) -> tuple[dict[str, list[Any]], str | None]:
        return svc.update_client(request.dbsession, client, data, self_service=self.self_service)

    def invalid(self, request, context: dict[str, Any]) -> dict[str, Any]:
        """The form again (``context`` carries the input and the errors), as a 400."""
        request.override_renderer = self.template
        request.response.status = 400
        return context

    def detail_url(self, client: OAuthClient) -> str:
        return self.detail_prefix + client.client_id

    def event(
        self,
        request,
        event: str,
        client: OAuthClient,
        action: str,
        *,
        severity: str = "INFO",
        **details: Any,
    ) -> None:
        base: dict[str, Any] = {"client_id": client.client_id}
        if self.self_service:
            base["self_service"] = True
        record(
            request,
            event,
            action=action,
            severity=severity,
            resource_type="CLIENT",
            resource_id=client.client_id,
            resource_name=client.name,
            details={**base, **details},
        )

    def secret_page(
        self, request, client: OAuthClient, secret: str | None, reason: str
    ) -> dict[str, Any]:
        """The one time a client secret is shown (``reason``: created, confidential,
        regenerated)."""
        request.override_renderer = SECRET
        context = {
            "client": client,
            "secret": secret,
            "reason": reason,
            "nav": self.nav,
            "detail_url": self.detail_url(client),
        }
        if self.layout:
            context["layout"] = self.layout
        return context

    def created(
        self, request, client: OAuthClient, secret: str | None, action: str, **details: Any
    ) -> dict[str, Any]:
        """After a create: the CLIENT_CREATED event, then the secret page."""
        self.event(
            request,
            "CLIENT_CREATED",
            client,
            action,
            client_type=client.client_type,
            grant_types=client.grant_types,
            scopes=client.scopes,
            status=client.status,
            **details,
        )
        return self.secret_page(request, client, secret, "created")

    def became_confidential(self, request, client: OAuthClient, secret: str) -> dict[str, Any]:
        """An edit made the client confidential: its first secret, shown once."""
        self.event(
            request,
            "CLIENT_SECRET_REGENERATED",
            client,
            f"Created a secret for {client.name} (now confidential)",
            severity=WARNING,
        )
        return self.secret_page(request, client, secret, "confidential")

    def saved(self, request, client: OAuthClient, changed: bool, message: str) -> HTTPSeeOther:
        """After an edit: flash ``message`` (or "Nothing changed."), back to the client."""
        flash(request, message if changed else "Nothing changed.", "success" if changed else "info")
        return see_other(self.detail_url(client))

    def regenerate(self, request, client: OAuthClient):
        """A new secret for a confidential client (a public one gets the error page)."""
        try:
            secret = svc.regenerate_secret(request.dbsession, client)
        except svc.AdminError as exc:
            return problem(
                request, exc.status, exc.title, exc.message, back_url=self.detail_url(client)
            )
        self.event(
            request,
            "CLIENT_SECRET_REGENERATED",
            client,
            f"Regenerated the secret of {client.name}",
            severity=WARNING,
        )
        return self.secret_page(request, client, secret, "regenerated")
