"""Social login: sign in with GitHub, Gitea, GitLab or Microsoft Entra ID (``oauth``).

Turn it on by selecting the auth source and configuring at least one provider::

    authgate.auth_sources = local oauth        # or AUTHGATE_AUTH_SOURCES="local oauth"
    GITHUB_OAUTH_ENABLED=true
    GITHUB_CLIENT_ID=...
    GITHUB_CLIENT_SECRET=...

The login page then shows a "Sign in with …" button per active provider, and
the routes ``/auth/login/<provider>`` and ``/auth/callback/<provider>`` exist.
Register ``<BASE_URL>/auth/callback/<provider>`` as the callback (redirect) URL
at the provider, or set ``<PROVIDER>_REDIRECT_URL`` to what you registered.

A provider is active only when it is enabled and its client id and secret (and
``GITEA_URL`` for Gitea) are set; otherwise a warning is logged and it is
skipped.  The upstream request carries ``state`` and PKCE (S256); the code is
exchanged server-side with Authlib's requests client; provider tokens are used
once to read the profile and never stored.  How an identity becomes a user is
in :mod:`authgate_plugins.auth_oauth.accounts`.

The source never checks passwords: ``authenticate()`` always answers ``None``
("not mine") so the password sources around it decide.

Endpoints are settings so a test (or GitHub Enterprise Server, or a sovereign
Microsoft cloud) can point them elsewhere: ``GITHUB_URL``/``GITHUB_API_URL``,
``GITEA_URL``, ``GITLAB_URL``, ``MICROSOFT_LOGIN_URL``/``MICROSOFT_GRAPH_URL``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.interfaces import AuthContext, Identity
from authgate.settings import Setting

from .providers import LABELS, ORDER, Provider, build_providers

if TYPE_CHECKING:
    from pyramid.config import Configurator

__all__ = ["SOURCE_NAME", "OAuthAuthSource", "SETTINGS", "includeme"]

log = logging.getLogger(__name__)

SOURCE_NAME = "oauth"
SECTION = "Social login"


# ---------------------------------------------------------------------------
# Settings (reference 5.7, plus the endpoint overrides)
# ---------------------------------------------------------------------------


def _check_url(value: str) -> None:
    if value and not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", value):
        raise ValueError("an absolute http:// or https:// URL without query or fragment, "
                         "such as https://git.example.com")


def _check_tenant(value: str) -> None:
    if value and not re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$", value):
        raise ValueError("a tenant id (GUID), a domain such as contoso.onmicrosoft.com, "
                         "or common, organizations, consumers")


def _check_positive(value: dt.timedelta) -> None:
    if value <= dt.timedelta(0):
        raise ValueError("a duration greater than 0")


def _provider_settings(name: str, label: str, scopes: tuple[str, ...],
                       docs: str) -> list[Setting]:
    prefix = name.upper()
    return [
        Setting(f"{name}_oauth_enabled", f"{prefix}_OAUTH_ENABLED", "bool", False,
                section=SECTION,
                help=f"Offer \"Sign in with {label}\" (auth source `oauth` must be selected; "
                     f"needs {prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET{docs})."),
        Setting(f"{name}_client_id", f"{prefix}_CLIENT_ID", "str", "", section=SECTION,
                help=f"Client id of the OAuth application registered at {label}."),
        Setting(f"{name}_client_secret", f"{prefix}_CLIENT_SECRET", "str", "", secret=True,
                section=SECTION,
                help=f"Client secret of the OAuth application registered at {label}."),
        Setting(f"{name}_redirect_url", f"{prefix}_REDIRECT_URL", "str", "", section=SECTION,
                check=_check_url,
                help=f"Callback URL registered at {label}. Empty: "
                     f"`<BASE_URL>/auth/callback/{name}`."),
        Setting(f"{name}_scopes", f"{prefix}_SCOPES", "list", scopes, section=SECTION,
                help=f"Scopes requested from {label} (comma- or space-separated)."),
    ]


SETTINGS: list[Setting] = [
    *_provider_settings("github", "GitHub", ("user:email",), ""),
    Setting("github_url", "GITHUB_URL", "str", "https://github.com", section=SECTION,
            check=_check_url,
            help="GitHub web URL (authorize and token endpoints under `/login/oauth/`). "
                 "For GitHub Enterprise Server: `https://github.example.com`."),
    Setting("github_api_url", "GITHUB_API_URL", "str", "https://api.github.com",
            section=SECTION, check=_check_url,
            help="GitHub REST API URL (`/user`, `/user/emails`). For GitHub Enterprise "
                 "Server: `https://github.example.com/api/v3`."),
    *_provider_settings("gitea", "Gitea", ("read:user",), " and GITEA_URL"),
    Setting("gitea_url", "GITEA_URL", "str", "", section=SECTION, check=_check_url,
            help="URL of the Gitea server (required for Gitea sign-in)."),
    *_provider_settings("gitlab", "GitLab", ("read_user",), ""),
    Setting("gitlab_url", "GITLAB_URL", "str", "https://gitlab.com", section=SECTION,
            check=_check_url, help="URL of the GitLab server (self-managed or gitlab.com)."),
    *_provider_settings("microsoft", "Microsoft", ("openid", "profile", "email", "User.Read"),
                        ""),
    Setting("microsoft_tenant_id", "MICROSOFT_TENANT_ID", "str", "common", section=SECTION,
            check=_check_tenant,
            help="Entra ID tenant: a tenant id or domain (one organisation), or `common`, "
                 "`organizations`, `consumers`."),
    Setting("microsoft_login_url", "MICROSOFT_LOGIN_URL", "str",
            "https://login.microsoftonline.com", section=SECTION, check=_check_url,
            help="Microsoft identity platform URL (`<tenant>/oauth2/v2.0/...` below it). "
                 "Sovereign clouds: e.g. `https://login.microsoftonline.us` (US Government), "
                 "`https://login.chinacloudapi.cn` (China)."),
    Setting("microsoft_graph_url", "MICROSOFT_GRAPH_URL", "str", "https://graph.microsoft.com",
            section=SECTION, check=_check_url,
            help="Microsoft Graph URL (`/v1.0/me`). Sovereign clouds: e.g. "
                 "`https://graph.microsoft.us`, `https://microsoftgraph.chinacloudapi.cn`."),
    Setting("oauth_auto_register", "OAUTH_AUTO_REGISTER", "bool", True, section=SECTION,
            help="Create an AuthGate user (role `user`, no password) on the first social "
                 "sign-in of someone without an account. Off: they see \"Registration "
                 "disabled\"."),
    Setting("oauth_timeout", "OAUTH_TIMEOUT", "duration", dt.timedelta(seconds=15),
            section=SECTION, check=_check_positive,
            help="Timeout of each request to a provider (code exchange, profile)."),
    Setting("oauth_insecure_skip_verify", "OAUTH_INSECURE_SKIP_VERIFY", "bool", False,
            section=SECTION,
            help="Skip TLS certificate checks towards the providers. Never in production."),
]


# ---------------------------------------------------------------------------
# The auth source
# ---------------------------------------------------------------------------


class OAuthAuthSource:
    """The ``oauth`` auth source: social-login providers; never checks passwords."""

    name = SOURCE_NAME

    def __init__(self, providers: Mapping[str, Provider], auto_register: bool = True):
        self.providers = dict(providers)
        self.auto_register = auto_register

    def authenticate(self, username: str, password: str, ctx: AuthContext) -> Identity | None:
        return None  # sign-in happens through /auth/login/<provider>, never by password


def _factory(ctx: BuildContext) -> OAuthAuthSource:
    settings = ctx.settings
    providers = build_providers(settings)
    if not providers:
        log.warning("The oauth auth source is selected but no social-login provider is "
                    "configured (set e.g. GITHUB_OAUTH_ENABLED, GITHUB_CLIENT_ID and "
                    "GITHUB_CLIENT_SECRET)")
    else:
        log.info("Social login: %s", ", ".join(p.label for p in providers.values()))
    if settings.oauth_insecure_skip_verify:
        log.warning("OAUTH_INSECURE_SKIP_VERIFY is on: TLS certificates of the social-login "
                    "providers are not checked")
    return OAuthAuthSource(providers, auto_register=settings.oauth_auto_register)


def includeme(config: Configurator) -> None:
    """Routes, views and the login buttons; included only when ``oauth`` is selected."""
    from pyramid.events import BeforeRender

    from . import views

    runtime = config.registry.authgate
    source = next((s for s in runtime.auth.sources if getattr(s, "name", None) == SOURCE_NAME),
                  None)
    if source is None:  # included by hand without the source selected
        source = _factory(BuildContext(settings=runtime.settings))
    config.registry.auth_oauth = source
    config.add_route("auth_oauth_login", "/auth/login/{provider}")
    config.add_route("auth_oauth_callback", "/auth/callback/{provider}")
    config.add_view(views.login_start, route_name="auth_oauth_login", request_method="GET")
    config.add_view(views.link_start, route_name="auth_oauth_login", request_method="POST")
    config.add_view(views.callback, route_name="auth_oauth_callback", request_method="GET")
    config.add_subscriber(views.add_login_buttons, BeforeRender)


@hookimpl
def authgate_add_settings(spec):
    for setting in SETTINGS:
        spec.add(setting)


@hookimpl
def authgate_pyramid_includes(settings):
    """Nothing to include (the component's includeme does it); warn about a half setup.

    The original turned social login on with ``GITHUB_OAUTH_ENABLED`` alone; here
    the ``oauth`` source must be selected too, and a deployer who only set the
    provider variables is told so at start-up.
    """
    if SOURCE_NAME not in settings.auth_sources:
        enabled = [LABELS[name] for name in ORDER if settings.get(f"{name}_oauth_enabled")]
        if enabled:
            log.warning("%s sign-in is enabled, but the auth source `oauth` is not selected, "
                        "so no sign-in button is shown: add it to authgate.auth_sources "
                        "(e.g. AUTHGATE_AUTH_SOURCES=\"local oauth\")", ", ".join(enabled))
    return []


@hookimpl
def authgate_register_auth_sources():
    return [ComponentSpec(SOURCE_NAME, _factory,
                          "Social login: GitHub, Gitea, GitLab, Microsoft Entra ID",
                          includeme=includeme)]
