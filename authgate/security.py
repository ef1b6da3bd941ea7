"""Per-request security: client IP, the signed-in user, headers and request logs."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pyramid.csrf import get_csrf_token, new_csrf_token
from pyramid.interfaces import IRoutesMapper

from authgate.net import client_ip

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.request import Request

    from authgate.models import User

access_log = logging.getLogger("authgate.access")

SESSION_USER_KEY = "user_id"
SESSION_GENERATION_KEY = "session_generation"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
       "frame-ancestors 'none'")


def security_headers(hsts: bool) -> tuple[tuple[str, str], ...]:
    """The headers every response carries (HSTS when BASE_URL is https)."""
    headers = (
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", CSP),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    )
    if hsts:
        headers += (("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),)
    return headers


def log_access(ip: str, method: str, path: str, status: int, started: float,
               user_agent: str) -> None:
    """One access-log line.  Path only, never the query string: it can carry codes
    and tokens."""
    access_log.info('%s "%s %s" %s %.1fms "%s"', ip, method, path, status,
                    (time.perf_counter() - started) * 1000, user_agent)


def account_before_router(environ: dict, metrics: Any, trusted: tuple[str, ...], status: int,
                          started: float) -> None:
    """What the tweens record of a request (the request metrics and the access line),
    for an answer given in front of the router from the WSGI environ alone (the
    published documents, ``/health`` on the API lane)."""
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if metrics is not None:
        metrics.observe_request(method, path, status, time.perf_counter() - started)
    if access_log.isEnabledFor(logging.INFO):
        ip = client_ip(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"),
                       trusted)
        log_access(ip, method, path, status, started, environ.get("HTTP_USER_AGENT", ""))


def _client_ip(request: Request) -> str:
    return client_ip(request.remote_addr, request.headers.get("X-Forwarded-For"),
                     request.registry.authgate.settings.trusted_proxies)


def _current_user(request: Request) -> User | None:
    """The signed-in user, re-read every request so a disabled user is out at once.

    The session must also carry the user's current ``session_generation``: a
    cookie signed in before ``User.end_sessions()`` (logout, password reset,
    disable) is refused, copies of it included.  A session from before that
    column existed carries none and is refused too.  Compared in Python on the
    row loaded anyway: no extra statement.
    """
    from authgate.models import User

    if request.registry.authgate is None:
        return None
    session = request.session
    user_id = session.get(SESSION_USER_KEY)
    if not user_id:
        return None
    user = request.dbsession.get(User, user_id)
    if (user is None or not user.is_active
            or session.get(SESSION_GENERATION_KEY) != user.session_generation):
        session.invalidate()
        return None
    return user


def log_in(request: Request, user: User) -> None:
    """Start a fresh session for ``user`` (a new cookie and CSRF token)."""
    request.session.invalidate()
    request.session[SESSION_USER_KEY] = user.id
    # 0 for a user created in this request and not flushed yet (the column default).
    request.session[SESSION_GENERATION_KEY] = user.session_generation or 0
    request.session["username"] = user.username
    request.session["login_at"] = int(time.time())
    new_csrf_token(request)


def log_out(request: Request, *, everywhere: bool = False) -> None:
    """End this browser's session.

    ``everywhere`` (the logout button) also ends every other session of the
    signed-in user, in other browsers and in any copy of this cookie: with
    signed cookies and no server-side session store, a single cookie cannot be
    revoked on its own.  Without it (a fresh login asked for by ``prompt=login``
    or ``max_age``) only this browser's cookie is dropped.
    """
    if everywhere:
        user = request.current_user  # before invalidate(): read from the session
        if user is not None:
            user.end_sessions()
    request.session.invalidate()


def end_other_sessions(request: Request, user: User) -> None:
    """End every session of ``user`` but this browser's (which must be ``user``'s)."""
    user.end_sessions()
    request.session[SESSION_GENERATION_KEY] = user.session_generation


# No request to this app needs more: OAuth requests and console forms are a few KiB.
# Refused before anything reads the body, whatever the WSGI server's own limit is
# (waitress accepts 1 GiB unless max_request_body_size says otherwise).
MAX_BODY_BYTES = 1024 * 1024


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _refuse(request: Request, status: int, title: str, description: str):
    """A 4xx answered before the view (no session, no database): JSON on the API,
    a minimal page elsewhere."""
    from html import escape

    from pyramid.response import Response

    from authgate.views._common import oauth_json
    from authgate.views.errors import _wants_json

    if _wants_json(request):
        return oauth_json({"error": "invalid_request", "error_description": description},
                          status)
    return Response(status=status, content_type="text/html", charset="utf-8",
                    text=f"<!doctype html><title>{escape(title)}</title>"
                         f"<h1>{escape(title)}</h1><p>{escape(description)}.</p>")


def _parse_urlencoded(request: Request) -> None:
    """Parse a urlencoded form into webob's cache as webob would, without cgi.

    webob parses every form with ``cgi.FieldStorage``, which for a urlencoded
    body ends in the same ``parse_qsl`` call (UTF-8, blank values kept, bad
    bytes replaced) after building a field object per pair: about a tenth of a
    token request's CPU.  The result is the MultiDict ``request.POST`` returns.
    """
    from urllib.parse import parse_qsl

    from webob.multidict import MultiDict

    body = request.body  # makes the body seekable (webob's cache key below)
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                      encoding="utf-8", errors="replace")
    request.environ["webob._parsed_post_vars"] = (MultiDict(pairs), request.body_file_raw)


def _bad_body(request: Request):
    """The refusal for a body the app must not read, or None.

    Too large: over MAX_BODY_BYTES (413).  Unparseable: a form that webob cannot
    parse (a multipart body without or with a broken boundary raises ValueError /
    TypeError in ``request.POST``), 400 instead of a 500 from whichever view or
    CSRF check reads the form first.  The parsed form is cached by webob.
    """
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _refuse(request, 413, "Request too large",
                       f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB")
    if request.method in ("POST", "PUT", "PATCH") and request.content_type in FORM_TYPES:
        try:
            if request.content_type == FORM_TYPES[0] and request.charset == "UTF-8":
                _parse_urlencoded(request)
            request.POST  # noqa: B018 - parse now, inside the guard
        except Exception:  # webob's multipart parser fails in several ways
            return _refuse(request, 400, "Bad request", "The form body cannot be parsed")
    return None


def security_headers_tween_factory(handler, registry):
    always = security_headers(registry.authgate.settings.base_url.startswith("https://"))

    def tween(request: Request):
        started = time.perf_counter()
        response = _bad_body(request)
        if response is None:
            response = handler(request)
        headers = response.headers
        for name, value in always:
            headers.setdefault(name, value)
        if request.path.startswith(("/login", "/device", "/oauth/", "/account", "/admin")):
            headers.setdefault("Cache-Control", "no-store")
        if access_log.isEnabledFor(logging.INFO):
            log_access(request.client_ip, request.method, request.path,
                       response.status_code, started, request.user_agent or "")
        return response

    return tween


def template_globals(event) -> None:
    request = event.get("request")
    # JSON responses must not touch the session (no cookie on API calls).
    if request is None or not str(event.get("renderer_name", "")).endswith(".jinja2"):
        return
    from authgate import __version__

    event.setdefault("current_user", request.current_user)
    event.setdefault("csrf_token", get_csrf_token(request))
    event.setdefault("version", __version__)
    # Navigation only links to consoles that are installed in this app.
    mapper = request.registry.queryUtility(IRoutesMapper)
    event.setdefault("admin_url", "/admin" if mapper and mapper.get_route("admin") else None)
    event.setdefault("account_url", "/account/sessions"
                     if mapper and mapper.get_route("account_sessions") else None)


def includeme(config: Configurator) -> None:
    from pyramid.events import BeforeRender

    config.add_request_method(_client_ip, "client_ip", reify=True)
    config.add_request_method(_current_user, "current_user", reify=True)
    config.add_subscriber(template_globals, BeforeRender)
    config.add_tween("authgate.security.security_headers_tween_factory")
