from __future__ import annotations

import logging

from pyramid.httpexceptions import HTTPFound
from pyramid.view import view_config
from sqlalchemy import text

log = logging.getLogger(__name__)


@view_config(route_name="health", renderer="json", request_method=("GET", "HEAD"))
def health(request):
    """Liveness plus a database round trip, outside the request transaction."""
    try:
        with request.authgate.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("health check: database unreachable: %s", exc.__class__.__name__)
        request.response.status = 503
        return {"status": "unhealthy", "database": "disconnected"}
    return {"status": "healthy", "database": "connected"}


@view_config(route_name="home")
def home(request):
    return HTTPFound(location="/account/sessions")
