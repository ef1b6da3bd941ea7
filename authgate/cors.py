"""CORS for the OAuth API (``CORS_ENABLED``), so browser apps on other origins
(single-page apps using the authorization code flow with PKCE) can call it.

Covered paths: every ``/oauth/*`` endpoint except ``/oauth/authorize`` (a page
people see, never fetched by scripts), plus the public discovery documents and
JWKS under ``/.well-known/`` that such apps read first.

Decisions:

* Origins are matched exactly (scheme, host and port; case-insensitive) against
  CORS_ALLOWED_ORIGINS.  ``*`` allows any origin and is answered with
  ``Access-Control-Allow-Origin: *``.
* ``Access-Control-Allow-Credentials`` is never sent.  The API authenticates
  with ``Authorization`` (Basic client credentials, Bearer tokens) or form
  fields, never with cookies; a script on another origin must not be able to
  ride the user's session cookie, so there is nothing credentials mode would
  legitimately carry.  (The ``Authorization`` header itself needs no
  credentials mode; it is allowed through CORS_ALLOWED_HEADERS.)
* Preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered by
  a tween before routing: 204 with the allowed methods, headers and
  ``Access-Control-Max-Age``.  A preflight from an origin that is not allowed,
  or asking for a method or header that is not, gets 403 and no CORS headers:
  the browser refuses the call either way, and the 403 shows the developer
  in the network log that the server refused it, not that it is down.
* An actual request from an origin that is not allowed is processed as usual
  but gets no CORS headers: the browser then hides the response from the
  script.  CORS protects what a script may read; the endpoints do their own
  authentication, so refusing the request would add nothing (and a request
  with an ``Origin`` header may come from a non-browser client).
* ``Vary: Origin`` is on every response of a covered path, so a cache never
  serves one origin's answer to another.
* Scripts may read ``WWW-Authenticate``, ``Retry-After`` and the
  ``X-RateLimit-*`` headers (CORS_EXPOSE_HEADERS is not a setting: these are
  what an OAuth client needs to handle 401 and 429).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyramid.response import Response

from authgate.settings import Setting

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.request import Request

    from authgate.settings import Settings

log = logging.getLogger("authgate.cors")

SECTION = "CORS"
BROWSER_PATHS = frozenset({"/oauth/authorize"})
WELL_KNOWN_PATHS = frozenset({"/.well-known/openid-configuration",
                              "/.well-known/oauth-authorization-server",
                              "/.well-known/jwks.json"})
EXPOSE_HEADERS = ("WWW-Authenticate", "Retry-After", "X-RateLimit-Limit",
                  "X-RateLimit-Remaining", "X-RateLimit-Reset")
_ORIGIN = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token


def _check_origins(values: tuple[str, ...]) -> None:
    for value in values:
        if value != "*" and not _ORIGIN.match(value.rstrip("/")):
            raise ValueError("origins such as https://app.example.com or "
                             "http://localhost:3000 (scheme, host and optional port; no "
                             f"path), or * for any origin; got {value!r}")


def _check_tokens(values: tuple[str, ...]) -> None:
    for value in values:
        if not _TOKEN.match(value):
            raise ValueError(f"HTTP method or header names; got {value!r}")


SETTINGS: list[Setting] = [
    Setting("cors_enabled", "CORS_ENABLED", "bool", False, section=SECTION,
            help="Answer cross-origin requests from the origins below on the OAuth API "
                 "(`/oauth/*` except `/oauth/authorize`) and the discovery/JWKS "
                 "documents, preflight `OPTIONS` included. Credentials mode is never "
                 "allowed (the API uses the Authorization header, not cookies)."),
    Setting("cors_allowed_origins", "CORS_ALLOWED_ORIGINS", "list", (), section=SECTION,
            check=_check_origins,
            help="Origins allowed to call the API from a browser, exactly as the browser "
                 "sends them (`https://app.example.com`, `http://localhost:3000`), "
                 "comma- or space-separated; `*` allows every origin. Empty with "
                 "CORS_ENABLED=true: no origin is allowed (a warning at start-up)."),
    Setting("cors_allowed_methods", "CORS_ALLOWED_METHODS", "list",
            ("GET", "POST", "OPTIONS"), section=SECTION, check=_check_tokens,
            help="Methods a preflight may ask for."),
    Setting("cors_allowed_headers", "CORS_ALLOWED_HEADERS", "list",
            ("Authorization", "Content-Type"), section=SECTION, check=_check_tokens,
            help="Request headers a preflight may ask for (case-insensitive)."),
    Setting("cors_max_age", "CORS_MAX_AGE", "duration", dt.timedelta(hours=12),
            minimum=dt.timedelta(0), section=SECTION,
            help="How long a browser may cache a preflight answer "
                 "(`Access-Control-Max-Age`; browsers cap it, Chrome at 2h)."),
]


def is_cors_path(path: str) -> bool:
    if path in WELL_KNOWN_PATHS:
        return True
    return path.startswith("/oauth/") and path.rstrip("/") not in BROWSER_PATHS


@dataclass(frozen=True)
class CorsPolicy:
    origins: frozenset[str]
    any_origin: bool
    methods: tuple[str, ...]
    headers: frozenset[str]
    allow_headers: str
    max_age: int

    @classmethod
    def from_settings(cls, settings: Settings) -> CorsPolicy:
        origins = tuple(o.rstrip("/").lower() for o in settings.cors_allowed_origins)
        methods = tuple(dict.fromkeys(m.upper() for m in settings.cors_allowed_methods))
        headers = tuple(dict.fromkeys(settings.cors_allowed_headers))
        return cls(origins=frozenset(o for o in origins if o != "*"),
                   any_origin="*" in origins, methods=methods,
                   headers=frozenset(h.lower() for h in headers),
                   allow_headers=", ".join(headers),
                   max_age=int(settings.cors_max_age.total_seconds()))

    def allowed_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None."""
        if not origin:
            return None
        if self.any_origin:
            return "*"
        return origin if origin.rstrip("/").lower() in self.origins else None

    def preflight(self, request: Request, origin: str) -> Response:
        allow = self.allowed_origin(origin)
        method = request.headers.get("Access-Control-Request-Method", "").strip().upper()
        asked = [h.strip().lower() for h in
                 request.headers.get("Access-Control-Request-Headers", "").split(",")
                 if h.strip()]
        refused = None
        if allow is None:
            refused = f"origin {origin!r} is not allowed (CORS_ALLOWED_ORIGINS)"
        elif method not in self.methods:
            refused = f"method {method} is not allowed (CORS_ALLOWED_METHODS)"
        elif any(h not in self.headers for h in asked):
            extra = ", ".join(h for h in asked if h not in self.headers)
            refused = f"request headers {extra} are not allowed (CORS_ALLOWED_HEADERS)"
        if refused is not None:
            log.info("CORS preflight for %s refused: %s", request.path, refused)
            response = Response(status=403, content_type="text/plain", charset="utf-8",
                                text=f"CORS preflight refused: {refused}\n")
        else:
            response = Response(status=204)
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Access-Control-Allow-Methods"] = ", ".join(self.methods)
            if self.allow_headers:
                response.headers["Access-Control-Allow-Headers"] = self.allow_headers
            response.headers["Access-Control-Max-Age"] = str(self.max_age)
        response.headers["Vary"] = ("Origin, Access-Control-Request-Method, "
                                    "Access-Control-Request-Headers")
        return response

    def decorate(self, request: Request, response: Response) -> None:
        _vary_origin(response)
        allow = self.allowed_origin(request.headers.get("Origin"))
        if allow is None:
            return
        response.headers["Access-Control-Allow-Origin"] = allow
        response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)


def _vary_origin(response: Response) -> None:
    current = response.headers.get("Vary", "")
    names = [v.strip() for v in current.split(",") if v.strip()]
    if "*" in names or any(v.lower() == "origin" for v in names):
        return
    response.headers["Vary"] = ", ".join([*names, "Origin"])


def cors_tween_factory(handler, registry):
    policy: CorsPolicy = registry.authgate_cors

    def tween(request: Request) -> Response:
        if not is_cors_path(request.path_info):
            return handler(request)
        origin = request.headers.get("Origin")
        if (request.method == "OPTIONS" and origin
                and "Access-Control-Request-Method" in request.headers):
            return policy.preflight(request, origin)
        response = handler(request)
        policy.decorate(request, response)
        return response

    return tween


def includeme(config: Configurator) -> None:
    registry = config.registry
    if getattr(registry, "authgate_cors_included", False):  # idempotent include
        return
    registry.authgate_cors_included = True
    settings = registry.authgate.settings
    if not settings.cors_enabled:
        return
    policy = CorsPolicy.from_settings(settings)
    registry.authgate_cors = policy
    if not policy.origins and not policy.any_origin:
        log.warning("CORS_ENABLED=true but CORS_ALLOWED_ORIGINS is empty: no browser origin "
                    "may call the API; list the origins of your web apps")
    elif policy.any_origin:
        log.warning("CORS_ALLOWED_ORIGINS=*: any web page may call the OAuth API from a "
                    "browser (without cookies); list your apps' origins instead if you can")
    else:
        log.info("CORS for the OAuth API: %s", " ".join(sorted(policy.origins)))
    # Over pyramid_tm (a preflight needs no transaction) and under the security-headers
    # tween, so preflights and error responses get the usual headers and access log line.
    config.add_tween("authgate.cors.cors_tween_factory", over="pyramid_tm.tm_tween_factory",
                     under="authgate.security.security_headers_tween_factory")
