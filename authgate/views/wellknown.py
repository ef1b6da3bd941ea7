from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from pyramid.interfaces import IRoutesMapper
from pyramid.registry import Registry
from pyramid.view import view_config

from authgate.security import account_before_router
from authgate.services import oidc
from authgate.views.oauth import GRANTS

CACHE = "public, max-age=3600"
DOCUMENT_TYPE = "application/json"  # what Pyramid's json renderer sends


def _jwks_document(registry: Registry) -> dict:
    return registry.authgate.signer.jwks()


def _registration_path(registry: Registry) -> str | None:
    """The dynamic registration endpoint's path, if this app has one: a route named
    "register" (so it follows whatever is installed) and, when that feature declares
    ENABLE_DYNAMIC_CLIENT_REGISTRATION, the setting on."""
    if not registry.authgate.settings.get("enable_dynamic_client_registration", True):
        return None
    mapper = registry.queryUtility(IRoutesMapper)
    route = mapper.get_route("register") if mapper is not None else None
    if route is None:
        return None
    pattern = route.pattern
    return pattern if pattern.startswith("/") else "/" + pattern


def _discovery_document(registry: Registry) -> dict:
    """OpenID Connect Discovery 1.0 §4 and RFC 8414 §3: one metadata document."""
    runtime = registry.authgate
    return oidc.metadata(runtime.settings, runtime.signer, grant_types=list(GRANTS),
                         registration_path=_registration_path(registry))


@view_config(route_name="jwks", renderer="json", request_method=("GET", "HEAD"))
def jwks(request):
    """Public keys for verifying tokens; ``{"keys": []}`` with a symmetric signer."""
    request.response.cache_control = CACHE
    return _jwks_document(request.registry)


@view_config(route_name="openid_configuration", renderer="json",
             request_method=("GET", "HEAD"))
@view_config(route_name="oauth_authorization_server", renderer="json",
             request_method=("GET", "HEAD"))
def discovery(request):
    request.response.cache_control = CACHE
    return _discovery_document(request.registry)


# Published documents: the same bodies as the views above, serialised once per
# process.  Signing keys, settings and routes are fixed once the app is built (a
# key rotation is a restart), so these answers never change while it runs.  Every
# resource server and client fetches them, so a GET or HEAD is answered by WSGI
# middleware in front of the Pyramid router (issue #11: JWKS and discovery at the
# speed of a bare Pyramid app), with what the tweens would have added: the
# security headers, the access-log line and the HTTP metrics.  Anything else
# (another method: the view's 405; a CORS request when CORS is on) goes through
# Pyramid as usual.
PUBLISHED: dict[str, Callable[[Registry], dict]] = {
    "/.well-known/jwks.json": _jwks_document,
    "/.well-known/openid-configuration": _discovery_document,
    "/.well-known/oauth-authorization-server": _discovery_document,
}


class PublishedDocuments:
    """WSGI middleware serving :data:`PUBLISHED` from precomputed bodies."""

    def __init__(self, app, registry: Registry) -> None:
        from authgate.metrics import get_metrics
        from authgate.security import security_headers

        self.app = app
        self.registry = registry
        settings = registry.authgate.settings
        self._trusted = tuple(settings.trusted_proxies)
        # With CORS on, a request with an Origin needs the policy's headers: Pyramid.
        self._cors = getattr(registry, "authgate_cors", None) is not None
        self._security = security_headers(settings.base_url.startswith("https://"))
        self._metrics = get_metrics(registry)
        self._answers: dict[str, tuple[bytes, list[tuple[str, str]]]] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self.app, name)  # the router's attributes (tests, pserve)

    def _answer(self, path: str) -> tuple[bytes, list[tuple[str, str]]]:
        answer = self._answers.get(path)
        if answer is None:
            with self._lock:  # built on first use, like the views' answers
                answer = self._answers.get(path)
                if answer is None:
                    body = json.dumps(PUBLISHED[path](self.registry)).encode()
                    headers = [("Content-Type", DOCUMENT_TYPE),
                               ("Content-Length", str(len(body))),
                               ("Cache-Control", CACHE), *self._security]
                    answer = self._answers[path] = (body, headers)
        return answer

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if (path not in PUBLISHED or method not in ("GET", "HEAD")
                or (self._cors and "HTTP_ORIGIN" in environ)):
            return self.app(environ, start_response)
        started = time.perf_counter()
        body, headers = self._answer(path)
        start_response("200 OK", list(headers))
        account_before_router(environ, self._metrics, self._trusted, 200, started)
        return [body] if method == "GET" else []
