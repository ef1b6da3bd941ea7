"""``/auth/login/<provider>`` and ``/auth/callback/<provider>``, and the login buttons.

The start view keeps one pending sign-in in the session (provider, a random
``state``, the PKCE ``code_verifier``, the safe redirect, who was signed in and
when) and sends the browser to the provider.  The callback takes that record
out of the session (it is good for one try, for ten minutes), checks the
provider and the ``state`` (at most 1024 characters, constant-time compare),
handles a provider ``error``, exchanges the code, resolves the account and
signs the person in with a fresh session.

Someone already signed in who opens ``/auth/login/<provider>`` is linking that
provider account to themselves: a page asks first and its POST (CSRF token
checked by the app-wide default) starts the flow, so a cross-site GET cannot
link anything.

Pages, never stack traces: a refusal is a page with its status (400, 403,
409); a provider that fails is a 502 page; details go to the log and to the
audit trail (``OAUTH_AUTHENTICATION``).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pyramid.httpexceptions import HTTPFound
from pyramid.renderers import render_to_response

from authgate.audit import ERROR, WARNING, record
from authgate.security import log_in
from authgate.views._common import safe_redirect

from .accounts import Refusal, resolve
from .providers import LABELS, UpstreamError

if TYPE_CHECKING:
    from pyramid.request import Request

    from . import OAuthAuthSource

log = logging.getLogger(__name__)

FLOW_KEY = "auth_oauth.flow"
FLOW_TTL = 600  # seconds a person may spend at the provider
MAX_STATE = 1024
MAX_CODE = 2048
LANDING = "/device"  # as authgate.views.login: where a sign-in without a redirect lands
RESULT_TEMPLATE = "authgate_plugins.auth_oauth:templates/oauth_result.jinja2"
LINK_TEMPLATE = "authgate_plugins.auth_oauth:templates/oauth_link.jinja2"


def _source(request: Request) -> OAuthAuthSource:
    return request.registry.auth_oauth


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def result_page(request: Request, status: int, title: str, message: str, hint: str = "",
                *, reason: str = "", actions: list[dict[str, Any]] | None = None):
    actions = actions if actions is not None else [
        {"label": "Back to sign in", "url": "/login", "primary": True}]
    response = render_to_response(RESULT_TEMPLATE, {
        "status": status, "title": title, "message": message, "hint": hint,
        "reason": reason, "actions": actions}, request=request)
    response.status = status
    return _no_store(response)


def _unknown_provider(request: Request):
    return result_page(request, 404, "Unknown sign-in provider",
                       "This server does not offer sign-in with that provider.",
                       reason="unknown_provider")


def login_start(request: Request):
    """GET /auth/login/<provider>?redirect=…: off to the provider, with state and PKCE.

    A person who is already signed in is linking an account instead: they get a
    page that asks first, and its CSRF-protected POST starts the flow, so a
    cross-site link cannot link a provider account to them behind their back.
    """
    provider = _source(request).providers.get(request.matchdict["provider"])
    if provider is None:
        return _unknown_provider(request)
    redirect = safe_redirect(str(request.GET.get("redirect", "")),
                             request.authgate.settings.base_url)
    user = request.current_user
    if user is not None:
        response = render_to_response(LINK_TEMPLATE, {
            "label": provider.label, "username": user.username, "redirect": redirect,
            "action": request.route_path("auth_oauth_login", provider=provider.name),
            "cancel_url": redirect or LANDING}, request=request)
        return _no_store(response)
    return _start_flow(request, provider, redirect, link_user_id=None)


def link_start(request: Request):
    """POST /auth/login/<provider> (signed in, CSRF checked): link a provider account."""
    provider = _source(request).providers.get(request.matchdict["provider"])
    if provider is None:
        return _unknown_provider(request)
    redirect = safe_redirect(str(request.POST.get("redirect", "")),
                             request.authgate.settings.base_url)
    user = request.current_user
    if user is None:
        return HTTPFound(location="/login")
    return _start_flow(request, provider, redirect, link_user_id=user.id)


def _start_flow(request: Request, provider, redirect: str, link_user_id: str | None):
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-] (RFC 7636 4.1)
    request.session[FLOW_KEY] = {
        "provider": provider.name, "state": state, "verifier": verifier,
        "redirect": redirect, "link_user_id": link_user_id, "created": int(time.time()),
    }
    return _no_store(HTTPFound(location=provider.authorization_url(state, verifier)))


def _flow_problem(flow: Any, provider: str, state: str) -> str | None:
    """Why the callback does not belong to the sign-in this browser started (or None)."""
    if not isinstance(flow, dict):
        return "no sign-in was started in this browser session"
    if not state:
        return "the callback carries no state"
    if len(state) > MAX_STATE:
        return "the state is too long"
    expected_provider = str(flow.get("provider", ""))
    if not hmac.compare_digest(expected_provider.encode(), provider.encode()):
        return f"the sign-in was started with {expected_provider!r}, not {provider!r}"
    if not hmac.compare_digest(str(flow.get("state", "")).encode(), state.encode()):
        return "the state does not match the one saved in the session"
    created = flow.get("created")
    if not isinstance(created, int) or not 0 <= time.time() - created <= FLOW_TTL:
        return "the sign-in was started too long ago"
    return None


def callback(request: Request):
    """GET /auth/callback/<provider>?code=…&state=… (or ?error=…)."""
    name = request.matchdict["provider"]
    source = _source(request)
    provider = source.providers.get(name)
    if provider is None:
        return _unknown_provider(request)
    label = provider.label
    flow = request.session.pop(FLOW_KEY, None)  # one try per started sign-in
    state = str(request.GET.get("state", ""))
    problem = _flow_problem(flow, name, state)
    if problem is not None:
        _audit_failure(request, name, "invalid_state", problem)
        return result_page(
            request, 400, "Sign-in could not be verified",
            f"This {label} sign-in does not match one started in this browser: it may "
            "have expired, been used already, been opened in another browser, or been "
            "tampered with.",
            "Start again from the sign-in page.", reason="invalid_state")

    error = str(request.GET.get("error", ""))[:100]
    if error:
        description = str(request.GET.get("error_description", ""))[:300]
        _audit_failure(request, name, "provider_error", f"{error}: {description}".strip(": "))
        if error == "access_denied":
            return result_page(
                request, 403, "Sign-in cancelled",
                f"{label} did not sign you in: the request was denied or cancelled.",
                "Choose another way to sign in, or try again.", reason="access_denied")
        return result_page(
            request, 502, f"{label} reported an error",
            f"{label} could not sign you in ({error}"
            + (f": {description}" if description else "") + ").",
            "Try again; if it keeps happening, tell your administrator.",
            reason="provider_error")

    code = str(request.GET.get("code", ""))
    if not code or len(code) > MAX_CODE:
        _audit_failure(request, name, "missing_code", "the callback carries no usable code")
        return result_page(request, 400, "Sign-in could not be completed",
                           f"{label} sent you back without an authorization code.",
                           "Start again from the sign-in page.", reason="missing_code")

    try:
        profile = provider.fetch_profile(code, flow["verifier"])
    except UpstreamError as exc:
        log.warning("%s sign-in failed: %s", label, exc)
        _audit_failure(request, name, "upstream_error", str(exc), severity=ERROR)
        return result_page(
            request, 502, f"Could not sign you in with {label}",
            f"AuthGate could not complete the sign-in with {label}: the provider did not "
            "answer as expected.",
            "Try again in a moment. If it keeps happening, tell your administrator "
            "(the server log has the details).", reason="upstream_error")

    link_user = None
    if flow.get("link_user_id"):
        link_user = request.current_user
        if link_user is None or link_user.id != flow["link_user_id"]:
            _audit_failure(request, name, "session_changed",
                           "the signed-in user changed during the sign-in", profile=profile)
            return result_page(request, 400, "Your session changed",
                               f"You were signed out or signed in as someone else while "
                               f"at {label}.", "Sign in and try again.",
                               reason="session_changed")

    try:
        outcome = resolve(request.dbsession, profile,
                          auto_register=source.auto_register, link_user=link_user)
    except Refusal as refusal:
        _audit_failure(request, name, refusal.reason, refusal.message, profile=profile)
        return result_page(request, refusal.status, refusal.title, refusal.message,
                           refusal.hint, reason=refusal.reason,
                           actions=_refusal_actions(request, refusal, name, flow))

    user = outcome.user
    log_in(request, user)
    record(request, "OAUTH_AUTHENTICATION",
           action=f"User {user.username} signed in with {label} ({outcome.result})",
           actor_user_id=user.id, actor_username=user.username, resource_type="USER",
           resource_id=user.id, resource_name=user.username,
           details={"provider": name, "outcome": outcome.result,
                    "provider_user_id": profile.provider_user_id,
                    "provider_username": profile.username,
                    "email_verified": profile.email_verified})
    target = safe_redirect(flow.get("redirect") or "", request.authgate.settings.base_url)
    return _no_store(HTTPFound(location=target or LANDING))


def _refusal_actions(request: Request, refusal: Refusal, provider: str,
                     flow: dict[str, Any]) -> list[dict[str, Any]]:
    if refusal.reason == "email_not_verified":
        # Sign in with the password, then come straight back to link this provider.
        redirect = flow.get("redirect") or ""
        link = request.route_path("auth_oauth_login", provider=provider,
                                  _query={"redirect": redirect} if redirect else ())
        return [{"label": "Sign in with your password to link",
                 "url": "/login?redirect=" + quote(link, safe=""), "primary": True,
                 "id": "oauth-link-signin"},
                {"label": "Back to sign in", "url": "/login", "primary": False}]
    return [{"label": "Back to sign in", "url": "/login", "primary": True}]


def _audit_failure(request: Request, provider: str, reason: str, message: str, *,
                   severity: str = WARNING, profile=None) -> None:
    details: dict[str, Any] = {"provider": provider, "reason": reason}
    if profile is not None:
        details.update(provider_user_id=profile.provider_user_id,
                       provider_username=profile.username)
    record(request, "OAUTH_AUTHENTICATION", severity=severity, success=False,
           action=f"Sign-in with {LABELS.get(provider, provider)} refused ({reason})",
           actor_user_id="", actor_username=profile.username if profile else None,
           error_message=message, details=details)


# ---------------------------------------------------------------------------
# The buttons on the login page
# ---------------------------------------------------------------------------


def add_login_buttons(event) -> None:
    """BeforeRender: give login.jinja2 a ``providers`` list (name, label, url)."""
    if event.get("renderer_name") != "login.jinja2":
        return
    request = event.get("request")
    if request is None:
        return
    source = getattr(request.registry, "auth_oauth", None)
    if source is None or not source.providers:
        return
    values = event.rendering_val if isinstance(event.rendering_val, dict) else {}
    redirect = str(values.get("redirect") or "")
    event["providers"] = [
        {"name": p.name, "label": p.label,
         "url": request.route_path("auth_oauth_login", provider=p.name,
                                   _query={"redirect": redirect} if redirect else ())}
        for p in source.providers.values()]
