"""Routes and views.  HTTP lives here and nowhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    config.add_route("home", "/")
    config.add_route("health", "/health")
    config.add_route("jwks", "/.well-known/jwks.json")
    config.scan("authgate.views")
