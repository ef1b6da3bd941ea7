from __future__ import annotations

from pyramid.interfaces import IRoutesMapper
from pyramid.view import view_config

from authgate.services import oidc
from authgate.views.oauth import GRANTS

CACHE = "public, max-age=3600"


@view_config(route_name="jwks", renderer="json", request_method=("GET", "HEAD"))
def jwks(request):
    """Public keys for verifying tokens; ``{"keys": []}`` with a symmetric signer."""
    request.response.cache_control = CACHE
    return request.authgate.signer.jwks()


def _registration_path(request) -> str | None:
    """The dynamic registration endpoint's path, if this app has one: a route named
    "register" (looked up per request, so it follows whatever is installed) and,
    when that feature declares ENABLE_DYNAMIC_CLIENT_REGISTRATION, the setting on."""
    if not request.authgate.settings.get("enable_dynamic_client_registration", True):
        return None
    mapper = request.registry.queryUtility(IRoutesMapper)
    route = mapper.get_route("register") if mapper is not None else None
    if route is None:
        return None
    pattern = route.pattern
    return pattern if pattern.startswith("/") else "/" + pattern


@view_config(route_name="openid_configuration", renderer="json",
             request_method=("GET", "HEAD"))
@view_config(route_name="oauth_authorization_server", renderer="json",
             request_method=("GET", "HEAD"))
def discovery(request):
    """OpenID Connect Discovery 1.0 §4 and RFC 8414 §3: one metadata document."""
    request.response.cache_control = CACHE
    return oidc.metadata(request.authgate.settings, request.authgate.signer,
                         grant_types=list(GRANTS),
                         registration_path=_registration_path(request))
