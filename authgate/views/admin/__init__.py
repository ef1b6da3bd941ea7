"""The admin console (/admin), account pages (/account) and self-service apps (/apps).

Turn it on with ``config.include("authgate.views.admin")``.  Every route and
view is added here, explicitly: the modules carry no ``@view_config``, so the
core's ``config.scan("authgate.views")`` registers nothing from them and an app
without this include still starts.

Access: /admin needs the admin role (anonymous -> sign-in page, other users ->
403 page; the JSON API answers 401/403 in JSON); /account and /apps need a
signed-in, active user.  Every POST needs the CSRF token (form field
``csrf_token`` or header ``X-CSRF-Token``): the app-wide
``require_csrf=True`` default applies to all of these views.  Scripts that
drive the console with a session cookie (the troubleshooting guide's curl
examples) read the token from ``GET /admin/csrf-token``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyramid.config import Configurator

_MARKER = "authgate_admin_included"


def _routes(config: Configurator) -> None:
    add = config.add_route
    # Admin.  Fixed paths ("new") come before the {id} patterns they would match.
    add("admin", "/admin")
    add("admin_users", "/admin/users")
    add("admin_user_new", "/admin/users/new")
    add("admin_user", "/admin/users/{id}")
    add("admin_user_edit", "/admin/users/{id}/edit")
    add("admin_user_reset_password", "/admin/users/{id}/reset-password")
    add("admin_user_disable", "/admin/users/{id}/disable")
    add("admin_user_enable", "/admin/users/{id}/enable")
    add("admin_user_delete", "/admin/users/{id}/delete")
    add("admin_user_connections", "/admin/users/{id}/connections")
    add("admin_user_connection_delete", "/admin/users/{id}/connections/{conn_id}/delete")
    add("admin_user_authorizations", "/admin/users/{id}/authorizations")
    add("admin_user_authorization_revoke", "/admin/users/{id}/authorizations/{uuid}/revoke")
    add("admin_clients", "/admin/clients")
    add("admin_client_new", "/admin/clients/new")
    add("admin_client", "/admin/clients/{id}")
    add("admin_client_edit", "/admin/clients/{id}/edit")
    add("admin_client_delete", "/admin/clients/{id}/delete")
    add("admin_client_regenerate", "/admin/clients/{id}/regenerate-secret")
    add("admin_client_revoke_all", "/admin/clients/{id}/revoke-all")
    add("admin_client_approve", "/admin/clients/{id}/approve")
    add("admin_client_reject", "/admin/clients/{id}/reject")
    add("admin_client_authorizations", "/admin/clients/{id}/authorizations")
    add("admin_tokens", "/admin/tokens")
    add("admin_token_revoke", "/admin/tokens/{id}/revoke")
    add("admin_token_disable", "/admin/tokens/{id}/disable")
    add("admin_token_enable", "/admin/tokens/{id}/enable")
    add("admin_audit", "/admin/audit")
    add("admin_audit_export", "/admin/audit/export")
    add("admin_audit_api", "/admin/audit/api")
    add("admin_audit_api_stats", "/admin/audit/api/stats")
    add("admin_csrf_token", "/admin/csrf-token")
    # Account.
    add("account", "/account")
    add("account_sessions", "/account/sessions")
    add("account_sessions_revoke_all", "/account/sessions/revoke-all")
    add("account_session_revoke", "/account/sessions/{id}/revoke")
    add("account_session_disable", "/account/sessions/{id}/disable")
    add("account_session_enable", "/account/sessions/{id}/enable")
    add("account_authorizations", "/account/authorizations")
    add("account_authorization_revoke", "/account/authorizations/{uuid}/revoke")
    # Self-service apps.
    add("apps", "/apps")
    add("apps_new", "/apps/new")
    add("apps_detail", "/apps/{id}")
    add("apps_edit", "/apps/{id}/edit")
    add("apps_delete", "/apps/{id}/delete")
    add("apps_regenerate", "/apps/{id}/regenerate-secret")


def _views(config: Configurator) -> None:
    from authgate.views import account, apps
    from authgate.views.admin import audit, clients, dashboard, tokens, users
    from authgate.views.admin._base import T, admin_api, admin_page, user_page

    def view(route, fn, method="GET", template=None, guard=admin_page):
        config.add_view(fn, route_name=route, request_method=method, decorator=guard,
                        renderer=(T + template) if template else None)

    get, post = "GET", "POST"
    view("admin", dashboard.dashboard, get, "admin/dashboard.jinja2")
    # Users
    view("admin_users", users.users_list, get, "admin/users.jinja2")
    view("admin_users", users.user_create, post, "admin/user_form.jinja2")
    view("admin_user_new", users.user_new, get, "admin/user_form.jinja2")
    view("admin_user", users.user_detail, get, "admin/user_detail.jinja2")
    view("admin_user", users.user_update, post, "admin/user_form.jinja2")
    view("admin_user_edit", users.user_edit, get, "admin/user_form.jinja2")
    view("admin_user_reset_password", users.user_reset_password, post,
         "admin/user_secret.jinja2")
    view("admin_user_disable", users.user_disable, post)
    view("admin_user_enable", users.user_enable, post)
    view("admin_user_delete", users.user_delete, post)
    view("admin_user_connections", users.user_connections, get,
         "admin/user_connections.jinja2")
    view("admin_user_connection_delete", users.connection_delete, post)
    view("admin_user_authorizations", users.user_authorizations, get,
         "admin/user_authorizations.jinja2")
    view("admin_user_authorization_revoke", users.authorization_revoke, post)
    # Clients
    view("admin_clients", clients.clients_list, get, "admin/clients.jinja2")
    view("admin_clients", clients.client_create, post, "admin/client_form.jinja2")
    view("admin_client_new", clients.client_new, get, "admin/client_form.jinja2")
    view("admin_client", clients.client_detail, get, "admin/client_detail.jinja2")
    view("admin_client", clients.client_update, post, "admin/client_form.jinja2")
    view("admin_client_edit", clients.client_edit, get, "admin/client_form.jinja2")
    view("admin_client_delete", clients.client_delete, post)
    view("admin_client_regenerate", clients.client_regenerate, post,
         "admin/client_secret.jinja2")
    view("admin_client_revoke_all", clients.client_revoke_all, post)
    view("admin_client_approve", clients.client_approve, post)
    view("admin_client_reject", clients.client_reject, post)
    view("admin_client_authorizations", clients.client_authorizations, get,
         "admin/client_authorizations.jinja2")
    # Tokens
    view("admin_tokens", tokens.tokens_list, get, "admin/tokens.jinja2")
    view("admin_token_revoke", tokens.token_revoke, post)
    view("admin_token_disable", tokens.token_disable, post)
    view("admin_token_enable", tokens.token_enable, post)
    # Audit
    view("admin_audit", audit.audit_page, get, "admin/audit.jinja2")
    view("admin_audit_export", audit.audit_export, get)
    view("admin_audit_api", audit.audit_api, get, guard=admin_api)
    view("admin_audit_api_stats", audit.audit_api_stats, get, guard=admin_api)
    view("admin_csrf_token", dashboard.csrf_token, get, guard=admin_api)
    # Account
    view("account", account.account_home, get, guard=user_page)
    view("account_sessions", account.sessions, get, "account/sessions.jinja2", user_page)
    view("account_sessions_revoke_all", account.sessions_revoke_all, post, guard=user_page)
    view("account_session_revoke", account.session_revoke, post, guard=user_page)
    view("account_session_disable", account.session_disable, post, guard=user_page)
    view("account_session_enable", account.session_enable, post, guard=user_page)
    view("account_authorizations", account.authorizations, get,
         "account/authorizations.jinja2", user_page)
    view("account_authorization_revoke", account.authorization_revoke, post, guard=user_page)
    # Apps
    view("apps", apps.apps_list, get, "apps/list.jinja2", user_page)
    view("apps", apps.app_create, post, "apps/form.jinja2", user_page)
    view("apps_new", apps.app_new, get, "apps/form.jinja2", user_page)
    view("apps_detail", apps.app_detail, get, "apps/detail.jinja2", user_page)
    view("apps_detail", apps.app_update, post, "apps/form.jinja2", user_page)
    view("apps_edit", apps.app_edit, get, "apps/form.jinja2", user_page)
    view("apps_delete", apps.app_delete, post, guard=user_page)
    view("apps_regenerate", apps.app_regenerate, post, "admin/client_secret.jinja2",
         user_page)


def includeme(config: Configurator) -> None:
    # Idempotent: the app and a plugin (or a test) may both include it.
    if getattr(config.registry, _MARKER, False):
        return
    setattr(config.registry, _MARKER, True)
    _routes(config)
    _views(config)
