"""The browser side of the authorization code flow: ``GET/POST /oauth/authorize``.

GET checks the request, asks the user to sign in, and either answers at once
(a remembered consent covers the scopes) or shows the consent page.  POST is
the consent form (CSRF-protected by the app's default): it checks the request
again and redirects with a code or ``access_denied``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from pyramid.httpexceptions import HTTPFound
from pyramid.renderers import render_to_response
from pyramid.view import view_config

from authgate.audit import record
from authgate.security import log_out
from authgate.services import authorize, consents, oidc, scopes
from authgate.views._common import login_redirect

log = logging.getLogger(__name__)


@dataclass
class ConsentView:
    client_name: str
    client_description: str
    scopes: list[tuple[str, str]]
    redirect_host: str
    fields: dict[str, str]


def _error_page(request, exc: authorize.FatalRequest):
    response = render_to_response(
        "error.jinja2", {"title": exc.title, "message": exc.message, "status": 400,
                         "hint": exc.hint or None}, request=request)
    response.status = 400
    response.headers["Cache-Control"] = "no-store"
    return response


def _redirect(request, location: str) -> HTTPFound:
    response = HTTPFound(location=location)
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_redirect(request, exc: authorize.AuthorizeError) -> HTTPFound:
    return _redirect(request, exc.location(oidc.issuer(request.authgate.settings)))


def _params(multidict) -> dict[str, list[str]]:
    # One pass (getall() per key would be quadratic in the number of parameters).
    params: dict[str, list[str]] = {}
    for key, value in multidict.items():
        values = params.setdefault(key, [])
        if isinstance(value, str):
            values.append(value)
    return params


def _validate(request, source):
    """(AuthorizeRequest, None) or (None, the response for an invalid request)."""
    try:
        return authorize.validate(request.dbsession, request.authgate.settings,
                                  _params(source)), None
    except authorize.FatalRequest as exc:
        log.info("authorization request refused: %s", exc.message)
        return None, _error_page(request, exc)
    except authorize.AuthorizeError as exc:
        return None, _error_redirect(request, exc)


def _grant_code(request, req: authorize.AuthorizeRequest, user, *, remembered: bool):
    settings = request.authgate.settings
    code, row = authorize.issue_code(request.dbsession, settings, req, user_id=user.id,
                                     auth_time=request.session.get("login_at"))
    record(request, "AUTHORIZATION_CODE_GENERATED",
           action=f"Authorization code issued to {req.client.name}",
           resource_type="AUTHORIZATION", resource_id=row.uuid, resource_name=req.client.name,
           details={"client_id": req.client.client_id, "scopes": row.scopes,
                    "redirect_uri": req.redirect_uri, "pkce": bool(req.code_challenge),
                    "remembered_consent": remembered})
    params = {"code": code}
    if req.state:
        params["state"] = req.state
    params["iss"] = oidc.issuer(settings)
    return _redirect(request, authorize.add_query(req.redirect_uri, params))


def _needs_fresh_login(request, req: authorize.AuthorizeRequest) -> bool:
    """OIDC Core §3.1.2.1: ``prompt=login``, or a login older than ``max_age``."""
    if "login" in req.prompt:
        return True
    if req.max_age is None:
        return False
    login_at = request.session.get("login_at")
    return not isinstance(login_at, int) or time.time() - login_at > req.max_age


def _fresh_login_redirect(request) -> HTTPFound:
    """Sign the user out and send them to the login page, returning to this request
    without ``prompt=login`` / ``max_age`` (the new login satisfies them; keeping
    them would loop)."""
    log_out(request)
    kept = []
    for key, value in request.GET.items():
        if key == "max_age":
            continue
        if key == "prompt":
            value = " ".join(p for p in value.split() if p != "login")
            if not value:
                continue
        kept.append((key, value))
    here = request.path + ("?" + urlencode(kept) if kept else "")
    return HTTPFound(location=f"/login?redirect={quote(here, safe='')}")


@view_config(route_name="authorize", request_method="GET", renderer="consent.jinja2")
def authorize_page(request):
    req, refused = _validate(request, request.GET)
    if refused is not None:
        return refused
    user = request.current_user
    if user is not None and _needs_fresh_login(request, req):
        if "none" in req.prompt:
            return _error_redirect(request, req.error("login_required",
                                                      "The sign-in is older than max_age"))
        return _fresh_login_redirect(request)
    if user is None:
        if "none" in req.prompt:
            return _error_redirect(request, req.error("login_required",
                                                      "The user is not signed in"))
        return login_redirect(request)
    settings = request.authgate.settings
    consent = consents.find_active(request.dbsession, user.id, req.client.client_id)
    if (settings.consent_remember and "consent" not in req.prompt
            and consents.covers(consent, req.scopes)):
        return _grant_code(request, req, user, remembered=True)
    if "none" in req.prompt:
        return _error_redirect(request, req.error("consent_required",
                                                  "The user has not approved this client"))
    return {"consent": ConsentView(
        client_name=req.client.name, client_description=req.client.description or "",
        scopes=scopes.describe(req.scopes),
        redirect_host=urlsplit(req.redirect_uri).netloc, fields=req.forwarded)}


@view_config(route_name="authorize", request_method="POST")
def authorize_decide(request):
    user = request.current_user
    req, refused = _validate(request, request.POST)
    if refused is not None:
        return refused
    if user is None:
        # The session ended while the consent page was open.
        return _error_redirect(request, req.error("login_required",
                                                  "The user is not signed in"))
    if request.POST.get("action") != "approve":
        record(request, "AUTHORIZATION_CODE_DENIED",
               action=f"{user.username} denied access to {req.client.name}",
               resource_type="AUTHORIZATION", resource_id=req.client.client_id,
               resource_name=req.client.name,
               details={"client_id": req.client.client_id, "scopes": " ".join(req.scopes),
                        "redirect_uri": req.redirect_uri})
        return _error_redirect(request, req.error("access_denied",
                                                  "The user denied the authorization request"))
    consents.upsert(request.dbsession, user_id=user.id, client=req.client, scopes=req.scopes,
                    request=request, via="authorization_code")
    return _grant_code(request, req, user, remembered=False)
