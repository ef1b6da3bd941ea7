"""Admin: the dashboard."""

from __future__ import annotations

from pyramid.csrf import get_csrf_token

from authgate.services import admin as svc
from authgate.views._common import oauth_json


def dashboard(request):
    return {"stats": svc.dashboard(request.dbsession), "nav": "dashboard"}


def csrf_token(request):
    """The session's CSRF token as JSON, for scripts that POST with the session cookie:

        curl -s -b cookies.txt http://localhost:8080/admin/csrf-token
        curl -X POST -b cookies.txt -H "X-CSRF-Token: <token>" .../admin/users/<id>/enable

    Safe to expose to the session's owner: another site cannot read the response
    (no CORS) and does not even get the cookie sent (SameSite=Lax)."""
    return oauth_json({"csrf_token": get_csrf_token(request), "header": "X-CSRF-Token"})
