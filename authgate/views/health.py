from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pyramid.httpexceptions import HTTPFound
from pyramid.view import view_config
from sqlalchemy import literal_column, select

from authgate.rawsql import RawUnit, prebuilt

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


_PING = prebuilt(select(literal_column("1").label("ok")))


def check(engine: Engine) -> tuple[int, dict[str, str]]:
    """(status, body): liveness plus a database round trip, outside any request
    transaction.  Answered by the API lane (authgate.views.api_lane) in front of the
    router, and by the view below when a request reaches Pyramid."""
    try:
        with RawUnit(engine, sticky=True) as unit:
            unit.execute(_PING)
    except Exception as exc:
        log.warning("health check: database unreachable: %s", exc.__class__.__name__)
        return 503, {"status": "unhealthy", "database": "disconnected"}
    return 200, {"status": "healthy", "database": "connected"}


@view_config(route_name="health", renderer="json", request_method=("GET", "HEAD"))
def health(request):
    status, body = check(request.authgate.engine)
    request.response.status = status
    return body


@view_config(route_name="home")
def home(request):
    return HTTPFound(location="/account/sessions")
