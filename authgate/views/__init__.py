"""Routes and views.  HTTP lives here and nowhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    config.add_route("home", "/")
    config.add_route("health", "/health")
    config.add_route("jwks", "/.well-known/jwks.json")
    config.add_route("login", "/login")
    config.add_route("logout", "/logout")
    config.add_route("device_page", "/device")
    config.add_route("device_verify", "/device/verify")
    config.add_route("device_code", "/oauth/device/code")
    config.add_route("token", "/oauth/token")
    config.add_route("revoke", "/oauth/revoke")
    config.add_route("introspect", "/oauth/introspect")
    config.add_route("tokeninfo", "/oauth/tokeninfo")
    config.add_route("authorize", "/oauth/authorize")
    config.add_route("userinfo", "/oauth/userinfo")
    config.add_route("openid_configuration", "/.well-known/openid-configuration")
    config.add_route("oauth_authorization_server", "/.well-known/oauth-authorization-server")
    config.include("authgate.views.registration")  # /oauth/register (RFC 7591/7592)
    config.scan("authgate.views")
