from __future__ import annotations

import logging

from pyramid.httpexceptions import HTTPFound
from pyramid.view import view_config

from authgate.audit import WARNING, record
from authgate.interfaces import AuthContext, AuthRejected, AuthUnavailable
from authgate.security import log_in, log_out
from authgate.services.users import sign_in
from authgate.views._common import safe_redirect

log = logging.getLogger(__name__)

LANDING = "/device"


@view_config(route_name="login", request_method="GET", renderer="login.jinja2")
def login_page(request):
    redirect = safe_redirect(request.params.get("redirect"),
                             request.authgate.settings.base_url)
    if request.current_user is not None:
        return HTTPFound(location=redirect or LANDING)
    info = None
    if request.params.get("error") == "session_expired":
        info = "Your session has expired. Please sign in again."
    return {"error": None, "info": info, "username": "", "redirect": redirect}


@view_config(route_name="login", request_method="POST", renderer="login.jinja2")
def login_submit(request):
    settings = request.authgate.settings
    redirect = safe_redirect(request.POST.get("redirect"), settings.base_url)
    username = str(request.POST.get("username", ""))[:255]
    password = str(request.POST.get("password", ""))
    ctx = AuthContext(dbsession=request.dbsession, client_ip=request.client_ip,
                      user_agent=request.user_agent or "")
    try:
        user = sign_in(request.dbsession, request.authgate.auth, username, password, ctx)
    except AuthRejected as exc:
        unavailable = isinstance(exc, AuthUnavailable)
        record(request, "AUTHENTICATION_FAILURE", severity="ERROR" if unavailable else WARNING,
               success=False, action=f"Sign-in failed for {username!r}",
               actor_username=username or None, actor_user_id="",
               error_message=exc.reason, details={"username": username})
        request.response.status = 503 if unavailable else 401
        return {"error": exc.message, "info": None, "username": username,
                "redirect": redirect}
    log_in(request, user)
    record(request, "AUTHENTICATION_SUCCESS", action=f"User {user.username} signed in",
           actor_user_id=user.id, actor_username=user.username, resource_type="USER",
           resource_id=user.id, resource_name=user.username,
           details={"auth_source": user.auth_source})
    return HTTPFound(location=redirect or LANDING)


@view_config(route_name="logout", request_method="POST")
def logout(request):
    user = request.current_user
    if user is not None:
        record(request, "LOGOUT", action=f"User {user.username} signed out",
               resource_type="USER", resource_id=user.id, resource_name=user.username)
    # Signs the user out of every browser: a copied cookie must not outlive logout.
    log_out(request, everywhere=True)
    return HTTPFound(location="/login")
