"""The four upstream identity providers: endpoints, the code exchange and the profile.

Every provider is driven through Authlib's requests client
(:class:`authlib.integrations.requests_client.OAuth2Session`): the authorization
URL carries ``state`` and a PKCE S256 ``code_challenge``; the code is exchanged
with the ``code_verifier`` and the client secret (``client_secret_post``, which
all four accept); the access token is used once, to read the profile, and then
dropped (AuthGate never stores provider tokens).

Profiles (reference 7.3):

=========  ===========================================  ==========================
provider   profile                                      email counted as verified
=========  ===========================================  ==========================
github     ``<API>/user`` + ``<API>/user/emails``       only an address GitHub
                                                        lists as ``verified``
gitea      ``<GITEA_URL>/api/v1/user``                  never
gitlab     ``<GITLAB_URL>/api/v4/user``                 never
microsoft  Graph ``/v1.0/me`` (``$select`` below)       yes (as the original)
=========  ===========================================  ==========================
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from authgate import __version__

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1024 * 1024
GRAPH_SELECT = ("id,userPrincipalName,displayName,mail,givenName,surname,"
                "onPremisesSamAccountName,onPremisesSyncEnabled,mailNickname")


class UpstreamError(Exception):
    """The provider could not be reached, refused the code, or answered nonsense.

    The message is for the server log (never contains a token or secret); the
    person sees a generic page.
    """


@dataclass(frozen=True)
class Profile:
    """Who the provider says the person is."""

    provider: str
    provider_user_id: str
    username: str
    email: str  # "" when the provider gave none
    email_verified: bool
    full_name: str = ""
    avatar_url: str = ""


@dataclass(frozen=True)
class Provider:
    """One configured (active) upstream provider."""

    name: str  # "github", the word in /auth/login/<name>
    label: str  # "GitHub", shown to people
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str = ""
    scopes: tuple[str, ...] = ()
    authorize_url: str = ""
    token_url: str = ""
    api_url: str = ""  # base URL of the profile API
    timeout: dt.timedelta = dt.timedelta(seconds=15)
    verify_tls: bool = True
    read_profile: Callable[[Provider, OAuth2Session], Profile] | None = field(
        default=None, repr=False, compare=False)

    # -- the OAuth client ---------------------------------------------------------

    def client(self) -> OAuth2Session:
        session = OAuth2Session(
            self.client_id, self.client_secret,
            token_endpoint_auth_method="client_secret_post",
            scope=" ".join(self.scopes) or None,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            default_timeout=self.timeout.total_seconds(),
        )
        session.verify = self.verify_tls
        session.headers["User-Agent"] = f"AuthGate/{__version__}"
        return session

    def authorization_url(self, state: str, code_verifier: str) -> str:
        """Where to send the browser: state and the S256 challenge are in the URL."""
        with self.client() as client:
            url, _ = client.create_authorization_url(
                self.authorize_url, state=state, code_verifier=code_verifier)
        return url

    def fetch_profile(self, code: str, code_verifier: str) -> Profile:
        """Exchange the code (with the PKCE verifier), then read the profile."""
        assert self.read_profile is not None
        with self.client() as client:
            try:
                token = client.fetch_token(self.token_url, code=code,
                                           code_verifier=code_verifier)
            except OAuthError as exc:
                raise UpstreamError(f"{self.label} refused the authorization code: "
                                    f"{exc.error}: {exc.description or ''}".strip()) from None
            except requests.RequestException as exc:
                raise UpstreamError(f"{self.label} token endpoint {self.token_url} failed: "
                                    f"{exc.__class__.__name__}: {exc}") from None
            except ValueError as exc:
                raise UpstreamError(f"{self.label} token endpoint answered something that "
                                    f"is not a token: {exc}") from None
            if not isinstance(token, Mapping) or not token.get("access_token"):
                raise UpstreamError(f"{self.label} token endpoint answered without an "
                                    "access_token")
            return self.read_profile(self, client)

    def get_json(self, client: OAuth2Session, path: str, *,
                 params: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None) -> Any:
        url = self.api_url + path
        try:
            response = client.get(url, params=params,
                                  headers={"Accept": "application/json", **(headers or {})})
        except requests.RequestException as exc:
            raise UpstreamError(f"{self.label} profile request {url} failed: "
                                f"{exc.__class__.__name__}: {exc}") from None
        if response.status_code != 200:
            raise UpstreamError(f"{self.label} profile request {url} answered HTTP "
                                f"{response.status_code}")
        if len(response.content) > MAX_ANSWER_BYTES:
            raise UpstreamError(f"{self.label} profile answer from {url} is too large")
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(f"{self.label} profile answer from {url} is not JSON") from None


# ---------------------------------------------------------------------------
# Reading the answers
# ---------------------------------------------------------------------------


def _text(value: Any, limit: int = 255) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _user_id(provider: Provider, data: Mapping[str, Any]) -> str:
    value = data.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value.strip()) <= 255:
        return value.strip()
    raise UpstreamError(f"{provider.label} profile has no usable id")


def _object(provider: Provider, data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise UpstreamError(f"{provider.label} profile is not a JSON object")
    return data


def read_github(provider: Provider, client: OAuth2Session) -> Profile:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    user = _object(provider, provider.get_json(client, "/user", headers=headers))
    public = _text(user.get("email"))
    verified: list[tuple[str, bool]] = []  # (address, primary)
    try:
        emails = provider.get_json(client, "/user/emails", headers=headers)
    except UpstreamError as exc:
        # Without the user:email scope the list is refused; the public address
        # is then used, but not trusted for linking.
        log.warning("%s; using the public profile email, unverified", exc)
        emails = []
    for entry in emails if isinstance(emails, list) else []:
        if isinstance(entry, Mapping) and entry.get("verified") is True and _text(
                entry.get("email")):
            verified.append((_text(entry.get("email")), entry.get("primary") is True))
    email, email_verified = public, False
    primary = [address for address, is_primary in verified if is_primary]
    addresses = [address for address, _ in verified]
    if primary:
        email, email_verified = primary[0], True
    elif public and public.lower() in (a.lower() for a in addresses):
        email_verified = True
    elif addresses:
        email, email_verified = addresses[0], True
    return Profile(provider=provider.name, provider_user_id=_user_id(provider, user),
                   username=_text(user.get("login")), email=email,
                   email_verified=email_verified, full_name=_text(user.get("name")),
                   avatar_url=_text(user.get("avatar_url"), 1024))


def read_gitea(provider: Provider, client: OAuth2Session) -> Profile:
    user = _object(provider, provider.get_json(client, "/api/v1/user"))
    return Profile(provider=provider.name, provider_user_id=_user_id(provider, user),
                   username=_text(user.get("login")), email=_text(user.get("email")),
                   email_verified=False, full_name=_text(user.get("full_name")),
                   avatar_url=_text(user.get("avatar_url"), 1024))


def read_gitlab(provider: Provider, client: OAuth2Session) -> Profile:
    user = _object(provider, provider.get_json(client, "/api/v4/user"))
    return Profile(provider=provider.name, provider_user_id=_user_id(provider, user),
                   username=_text(user.get("username")), email=_text(user.get("email")),
                   email_verified=False, full_name=_text(user.get("name")),
                   avatar_url=_text(user.get("avatar_url"), 1024))


def read_microsoft(provider: Provider, client: OAuth2Session) -> Profile:
    me = _object(provider, provider.get_json(client, "/v1.0/me",
                                             params={"$select": GRAPH_SELECT}))
    email = _text(me.get("mail")) or _text(me.get("userPrincipalName"))
    name = _text(me.get("displayName")) or " ".join(
        part for part in (_text(me.get("givenName")), _text(me.get("surname"))) if part)
    username = ""
    if me.get("onPremisesSyncEnabled") is True:
        username = _text(me.get("onPremisesSamAccountName"))
    username = username or _text(me.get("mailNickname")) or email.split("@", 1)[0]
    return Profile(provider=provider.name, provider_user_id=_user_id(provider, me),
                   username=username, email=email, email_verified=True, full_name=name)


# ---------------------------------------------------------------------------
# Building the providers from the settings
# ---------------------------------------------------------------------------

LABELS = {"github": "GitHub", "gitea": "Gitea", "gitlab": "GitLab",
          "microsoft": "Microsoft"}
ORDER = ("github", "gitea", "gitlab", "microsoft")


def _endpoints(name: str, settings: Mapping[str, Any]) -> tuple[str, str, str]:
    """(authorize URL, token URL, profile API base) of one provider."""
    if name == "github":
        web = settings["github_url"].rstrip("/")
        return (f"{web}/login/oauth/authorize", f"{web}/login/oauth/access_token",
                settings["github_api_url"].rstrip("/"))
    if name == "gitea":
        web = settings["gitea_url"].rstrip("/")
        return f"{web}/login/oauth/authorize", f"{web}/login/oauth/access_token", web
    if name == "gitlab":
        web = (settings["gitlab_url"] or "https://gitlab.com").rstrip("/")
        return f"{web}/oauth/authorize", f"{web}/oauth/token", web
    login = settings["microsoft_login_url"].rstrip("/")
    tenant = settings["microsoft_tenant_id"] or "common"
    return (f"{login}/{tenant}/oauth2/v2.0/authorize", f"{login}/{tenant}/oauth2/v2.0/token",
            settings["microsoft_graph_url"].rstrip("/"))


READERS: dict[str, Callable[[Provider, OAuth2Session], Profile]] = {
    "github": read_github, "gitea": read_gitea, "gitlab": read_gitlab,
    "microsoft": read_microsoft,
}


def build_providers(settings: Mapping[str, Any]) -> dict[str, Provider]:
    """The active providers, in button order; incomplete ones are logged and skipped."""
    base_url = str(settings["base_url"]).rstrip("/")
    active: dict[str, Provider] = {}
    for name in ORDER:
        prefix = name.upper()
        if not settings[f"{name}_oauth_enabled"]:
            continue
        missing = [f"{prefix}_{key.upper()}" for key in ("client_id", "client_secret")
                   if not settings[f"{name}_{key}"]]
        if name == "gitea" and not settings["gitea_url"]:
            missing.append("GITEA_URL")
        if missing:
            log.warning("%s sign-in is enabled but %s %s not set; the provider is skipped",
                        LABELS[name], " and ".join(missing),
                        "is" if len(missing) == 1 else "are")
            continue
        authorize_url, token_url, api_url = _endpoints(name, settings)
        active[name] = Provider(
            name=name, label=LABELS[name],
            client_id=settings[f"{name}_client_id"],
            client_secret=settings[f"{name}_client_secret"],
            redirect_uri=(settings[f"{name}_redirect_url"]
                          or f"{base_url}/auth/callback/{name}"),
            scopes=tuple(settings[f"{name}_scopes"]),
            authorize_url=authorize_url, token_url=token_url, api_url=api_url,
            timeout=settings["oauth_timeout"],
            verify_tls=not settings["oauth_insecure_skip_verify"],
            read_profile=READERS[name],
        )
    return active
