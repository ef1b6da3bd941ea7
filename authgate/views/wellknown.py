from __future__ import annotations

from pyramid.view import view_config


@view_config(route_name="jwks", renderer="json", request_method=("GET", "HEAD"))
def jwks(request):
    """Public keys for verifying tokens; ``{"keys": []}`` with a symmetric signer."""
    request.response.cache_control = "public, max-age=3600"
    return request.authgate.signer.jwks()
