"""Error pages and JSON errors: nothing a client sends ends in a stack trace."""

from __future__ import annotations

import logging

from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken
from pyramid.httpexceptions import HTTPException
from pyramid.renderers import render_to_response
from pyramid.view import exception_view_config, notfound_view_config
from sqlalchemy.exc import OperationalError

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


@notfound_view_config()
def not_found(request):
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
