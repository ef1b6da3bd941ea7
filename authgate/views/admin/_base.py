"""What the admin, account and self-service views share: guards, flashes, responses.

These views are registered with ``config.add_view`` from
``authgate.views.admin.includeme`` (no ``@view_config``), so the core's
``config.scan("authgate.views")`` finds nothing here and the app works with or
without the console.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import quote, urlsplit

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.response import Response

from authgate.services.admin import AdminError, parse_int
from authgate.views._common import login_redirect, oauth_json, safe_redirect

T = "authgate:templates/"

FLASH_QUEUES = ("success", "error", "warning", "info")


def _no_store(response: Any) -> Any:
    if isinstance(response, Response):
        response.headers["Cache-Control"] = "no-store"
        response.headers.setdefault("Pragma", "no-cache")
    return response


def _login_first(request, fallback: str):
    if request.method in ("GET", "HEAD"):
        return login_redirect(request)
    # After signing in, go back to the page the form was on (a POST URL has no GET view).
    back = safe_redirect(request.referer, request.authgate.settings.base_url) or fallback
    return HTTPSeeOther(location=f"/login?redirect={quote(back, safe='')}")


def _handled(view, context, request):
    try:
        return view(context, request)
    except AdminError as exc:
        return problem(request, exc.status, exc.title, exc.message)


def admin_page(view: Callable) -> Callable:
    """Admin role required: anonymous -> sign-in page, non-admin -> 403 page."""

    @wraps(view)
    def wrapper(context, request):
        user = request.current_user
        if user is None:
            return _login_first(request, "/admin")
        if not user.is_admin:
            return problem(request, 403, "Forbidden",
                           "Administrator access is required for this page.",
                           hint=f"You are signed in as {user.username}, who is not an "
                                "administrator.", back_url="/account/sessions")
        return _no_store(_handled(view, context, request))

    return wrapper


def admin_api(view: Callable) -> Callable:
    """Admin role required, JSON errors: anonymous -> 401, non-admin -> 403."""

    @wraps(view)
    def wrapper(context, request):
        user = request.current_user
        if user is None:
            return oauth_json({"error": "unauthorized",
                               "error_description": "Sign in as an administrator: this API "
                                                    "uses the browser session cookie"},
                              401, {"WWW-Authenticate": 'Cookie realm="AuthGate admin"'})
        if not user.is_admin:
            return oauth_json({"error": "forbidden",
                               "error_description": "Administrator access is required"}, 403)
        return _no_store(view(context, request))

    return wrapper


def user_page(view: Callable) -> Callable:
    """Any signed-in (and still active) user; anonymous -> sign-in page."""

    @wraps(view)
    def wrapper(context, request):
        if request.current_user is None:
            return _login_first(request, "/account/sessions")
        return _no_store(_handled(view, context, request))

    return wrapper


def flash(request, message: str, queue: str = "success") -> None:
    request.session.flash(message, queue)


def see_other(location: str) -> HTTPSeeOther:
    return HTTPSeeOther(location=location)


def _local_path(target: str | None, base_url: str) -> str | None:
    """The same-site path (and query) of ``target``, or None."""
    safe = safe_redirect(target, base_url)
    if not safe:
        return None
    parts = urlsplit(safe)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def problem(request, status: int, title: str, message: str, back_url: str | None = None,
            hint: str | None = None):
    """An error page (error.jinja2) with a "Go back" link to the page the form was on."""
    if back_url is None:
        back_url = _local_path(request.referer, request.authgate.settings.base_url)
    response = render_to_response(
        "error.jinja2", {"title": title, "message": message, "status": status,
                         "hint": hint, "back_url": back_url}, request=request)
    response.status = status
    return _no_store(response)


def page_args(request, default_size: int = 10, max_size: int = 50) -> tuple[int, int]:
    return (parse_int(request.params.get("page"), 1, 1),
            parse_int(request.params.get("page_size"), default_size, 1, max_size))


def param(request, name: str, limit: int = 255) -> str:
    value = request.params.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def search_param(request, limit: int = 255) -> str:
    """The ``search`` box.  NUL is dropped: PostgreSQL refuses it in text and
    SQLite's LIKE stops at it (a search for "a\\0b" would match every row)."""
    return param(request, "search", limit).replace("\x00", "").strip()


def form_value(request, name: str, limit: int = 4096) -> str:
    value = request.POST.get(name, "")
    return value[:limit] if isinstance(value, str) else ""


def back_to(request, default: str, prefix: str) -> str:
    """The form's ``next`` field when it is a local path under ``prefix``, else ``default``
    (lets an action return to the filtered list it was clicked on)."""
    target = request.POST.get("next", "")
    if (isinstance(target, str) and target.startswith(prefix)
            and safe_redirect(target, request.authgate.settings.base_url) == target):
        return target
    return default
