from __future__ import annotations

import json
import threading
from collections.abc import Callable

from pyramid.interfaces import IRoutesMapper
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

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
# resource server and client fetches them, so they are answered by a tween before
# routing, the transaction manager and the renderer (issue #11: JWKS and discovery
# at the speed of a bare Pyramid app); the security-headers, metrics and
# rate-limit tweens above it still apply.
PUBLISHED: dict[str, Callable[[Registry], dict]] = {
    "/.well-known/jwks.json": _jwks_document,
    "/.well-known/openid-configuration": _discovery_document,
    "/.well-known/oauth-authorization-server": _discovery_document,
}


def published_documents_tween_factory(handler, registry: Registry):
    bodies: dict[str, bytes] = {}
    lock = threading.Lock()

    def body_for(path: str) -> bytes:
        body = bodies.get(path)
        if body is None:
            with lock:  # computed on first use: every route is registered by then
                body = bodies.get(path)
                if body is None:
                    body = json.dumps(PUBLISHED[path](registry)).encode()
                    bodies[path] = body
        return body

    def tween(request: Request) -> Response:
        path = request.path_info
        if path not in PUBLISHED or request.method not in ("GET", "HEAD"):
            return handler(request)  # other methods: the view answers 405 as usual
        body = body_for(path)
        response = Response(body=body, content_type=DOCUMENT_TYPE, charset=None)
        response.cache_control = CACHE
        if request.method == "HEAD":
            response.app_iter = []
            response.content_length = len(body)
        return response

    return tween


def includeme(config) -> None:
    config.add_tween("authgate.views.wellknown.published_documents_tween_factory",
                     over="pyramid_tm.tm_tween_factory",
                     under="authgate.security.security_headers_tween_factory")
