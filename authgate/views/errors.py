"""Error pages and JSON errors: nothing a client sends ends in a stack trace."""

from __future__ import annotations

import logging

from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken
from pyramid.httpexceptions import HTTPException
from pyramid.renderers import render_to_response
from pyramid.view import exception_view_config, notfound_view_config
from sqlalchemy.exc import DataError, OperationalError

from authgate.views._common import oauth_json

log = logging.getLogger(__name__)


def _wants_json(request) -> bool:
    if request.path.startswith(("/oauth/", "/.well-known/", "/health", "/admin/audit/api")):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _page(request, status: int, title: str, message: str, hint: str | None = None):
    response = render_to_response(
        "error.jinja2", {"title": title, "message": message, "status": status, "hint": hint},
        request=request)
    response.status = status
    return response


def _allowed_methods(request) -> list[str]:
    """The methods the matched route's views accept ([] when no route matched, or a
    view accepts any method)."""
    route = getattr(request, "matched_route", None)
    if route is None:
        return []
    methods: set[str] = set()
    for item in request.registry.introspector.get_category("views") or ():
        view = item["introspectable"]
        if view["route_name"] != route.name:
            continue
        accepted = view["request_methods"]
        if accepted is None:
            return []
        methods.update([accepted] if isinstance(accepted, str) else accepted)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


@notfound_view_config()
def not_found(request):
    allowed = _allowed_methods(request)
    if allowed and request.method not in allowed:
        # The path exists, the method does not (RFC 9110 §15.5.6).
        headers = {"Allow": ", ".join(allowed)}
        if _wants_json(request):
            return oauth_json({"error": "method_not_allowed",
                               "error_description": f"Use {headers['Allow']}"}, 405, headers)
        response = _page(request, 405, "Method not allowed",
                         f"This address answers {headers['Allow']} only.")
        response.headers.update(headers)
        return response
    if _wants_json(request):
        return oauth_json({"error": "not_found", "error_description": "No such endpoint"}, 404)
    return _page(request, 404, "Page not found", "There is nothing at this address.")


@exception_view_config(HTTPException)
def http_exception(exc, request):
    if exc.status_code < 400:
        return exc
    if isinstance(exc, BadCSRFToken | BadCSRFOrigin):
        return _page(request, 400, "Form expired",
                     "This form is no longer valid (it may be old, or opened in another "
                     "window).", "Go back, reload the page and try again.")
    if _wants_json(request):
        return oauth_json({"error": exc.title.lower().replace(" ", "_"),
                           "error_description": exc.explanation or exc.title},
                          exc.status_code, {k: v for k, v in exc.headers.items()
                                            if k == "Allow"})
    return _page(request, exc.status_code, exc.title, exc.explanation or exc.title)


def _undecodable_input(request) -> bool:
    """True when the query string or form body is not UTF-8 (webob raises
    UnicodeDecodeError when a view reads ``request.params`` then)."""
    try:
        request.GET.items()
        if request.content_type in ("application/x-www-form-urlencoded",
                                    "multipart/form-data"):
            request.POST.items()
    except UnicodeDecodeError:
        return True
    return False


@exception_view_config(UnicodeDecodeError)
def undecodable_request(exc, request):
    """Percent-encoded bytes that are not UTF-8 in the URL or form: the client's
    mistake (400), not a server error.  Any other UnicodeDecodeError is a bug."""
    if not _undecodable_input(request):
        return server_error(exc, request)
    log.info("refused %s %s: parameters are not valid UTF-8", request.method, request.path)
    if _wants_json(request):
        return oauth_json({"error": "invalid_request",
                           "error_description": "Request parameters must be UTF-8"}, 400)
    return _page(request, 400, "Bad request", "The address or form contains characters that "
                 "are not valid UTF-8.")


@exception_view_config(DataError)
def refused_by_database(exc, request):
    """PostgreSQL refuses NUL characters in text: a parameter carrying one (``%00``)
    is the client's mistake (400).  Other data errors are bugs (500)."""
    if "NUL" not in str(getattr(exc, "orig", exc)):
        return server_error(exc, request)
    log.info("refused %s %s: a parameter contains a NUL character", request.method,
             request.path)
    if _wants_json(request):
        return oauth_json({"error": "invalid_request",
                           "error_description": "Request parameters must not contain NUL "
                                                "characters"}, 400)
    return _page(request, 400, "Bad request", "The address or form contains a NUL "
                 "character.")


@exception_view_config(OperationalError)
def database_unavailable(exc, request):
    """The database is down or unreachable: a temporary condition, not a bug."""
    log.error("database unavailable on %s %s: %s", request.method, request.path,
              exc.__class__.__name__)
    if _wants_json(request):
        response = oauth_json({"error": "temporarily_unavailable",
                               "error_description": "The service is temporarily unavailable; "
                                                    "try again shortly"}, 503)
    else:
        response = _page(request, 503, "Temporarily unavailable",
                         "The service cannot reach its database right now.",
                         "Please try again in a moment.")
    response.headers["Retry-After"] = "5"
    return response


@exception_view_config(Exception)
def server_error(exc, request):
    log.exception("unhandled error on %s %s", request.method, request.path)
    if _wants_json(request):
        return oauth_json({"error": "server_error",
                           "error_description": "An internal error occurred"}, 500)
    return _page(request, 500, "Something went wrong",
                 "The server could not complete this request. It has been logged.")
