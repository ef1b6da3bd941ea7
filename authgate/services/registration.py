"""Dynamic client registration (RFC 7591) and reading a registration back (RFC 7592 §2.1).

A registered client starts **pending**: it exists, but every grant refuses it
("Client is not active") until an administrator approves it in the admin
console (``/admin/clients?status=pending``).

Accepted metadata (RFC 7591 §2; anything else is ignored, as §2 requires):

``client_name``                 required, 1-255 characters
``redirect_uris``               absolute ``https://`` URLs, or ``http://`` on a
                                loopback host (localhost, 127.0.0.1, [::1]) for
                                native apps (RFC 8252 §7.3); no fragment, no
                                user:password -> else ``invalid_redirect_uri``;
                                at least one with ``authorization_code``
``grant_types``                 ``authorization_code`` (the default, §2),
                                ``urn:ietf:params:oauth:grant-type:device_code``
                                (``device_code`` accepted as a short form),
                                ``client_credentials`` (confidential clients only),
                                ``refresh_token`` (accepted; refresh tokens come
                                with the other grants when ENABLE_REFRESH_TOKENS)
``response_types``              ``code`` exactly when ``authorization_code`` is
                                registered (the default follows the grants)
``token_endpoint_auth_method``  ``client_secret_basic`` (default, §2),
                                ``client_secret_post`` -> confidential client with
                                a secret; ``none`` -> public client, no secret
``scope``                       space-separated subset of ``openid profile email
                                offline_access``; default ``email profile``
``client_uri``                  an http(s) URL, kept as the client's description

Any other problem is ``invalid_client_metadata``.

The registration access token (RFC 7592 §3) is a 256-bit random value; only
its SHA-256 is stored (``oauth_clients.registration_access_token_hash``).  It
reads the registration at ``GET /oauth/register/{client_id}``.  Updating and
deleting a registration through the API (RFC 7592 §2.2, §2.3) are not offered:
administrators edit and delete clients in the admin console.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from authgate.models import OAuthClient
from authgate.models.meta import new_uuid
from authgate.services.errors import OAuthError
from authgate.services.secrets import generate_client_secret, hash_client_secret, sha256_hex
from authgate.settings import Setting

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from authgate.settings import Settings

SECTION = "Dynamic client registration"

SETTINGS: list[Setting] = [
    Setting("enable_dynamic_client_registration", "ENABLE_DYNAMIC_CLIENT_REGISTRATION", "bool",
            False, section=SECTION,
            help="Serve RFC 7591 dynamic client registration at `POST /oauth/register` "
                 "(and list it as `registration_endpoint` in discovery). Registered "
                 "clients are `pending` until an administrator approves them. Off: the "
                 "endpoint answers 403 `registration_not_supported`."),
    Setting("dynamic_client_registration_token", "DYNAMIC_CLIENT_REGISTRATION_TOKEN", "str",
            "", secret=True, section=SECTION,
            help="Initial access token (RFC 7591 §3): when set, registration requires "
                 "`Authorization: Bearer <token>` (401 `invalid_token` otherwise). Empty: "
                 "anyone may register (still pending until approved, and rate-limited by "
                 "DYNAMIC_CLIENT_REGISTRATION_RATE_LIMIT)."),
]

AUTH_CODE = "authorization_code"
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_CREDENTIALS = "client_credentials"
REFRESH = "refresh_token"
GRANT_ALIASES = {"device_code": DEVICE}
GRANT_TYPES = (AUTH_CODE, DEVICE, CLIENT_CREDENTIALS, REFRESH)
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
SCOPES = ("openid", "profile", "email", "offline_access")
DEFAULT_SCOPE = "email profile"
LOOPBACK_HOSTS = ("localhost",)
MAX_REDIRECT_URIS = 20
MAX_URI_LENGTH = 2048


def _metadata_error(description: str) -> OAuthError:
    return OAuthError("invalid_client_metadata", description)


def _redirect_error(description: str) -> OAuthError:
    return OAuthError("invalid_redirect_uri", description)


@dataclass
class Registration:
    """Validated registration metadata."""

    client_name: str
    redirect_uris: list[str] = field(default_factory=list)
    grant_types: list[str] = field(default_factory=list)  # as requested, normalised
    token_endpoint_auth_method: str = "client_secret_basic"
    scope: str = DEFAULT_SCOPE
    client_uri: str = ""

    @property
    def confidential(self) -> bool:
        return self.token_endpoint_auth_method != "none"


def _string(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _metadata_error(f"{key} must be a string")
    return value.strip()


def _string_list(body: Mapping[str, Any], key: str, error=_metadata_error) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise error(f"{key} must be an array of strings")
    out: list[str] = []
    for item in (v.strip() for v in value):
        if item and item not in out:
            out.append(item)
    return out


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: str) -> None:
    """RFC 6749 §3.1.2, RFC 8252 §7.3, BCP 212: absolute, https (or loopback http),
    no fragment, no credentials."""
    if len(uri) > MAX_URI_LENGTH:
        raise _redirect_error(f"Redirect URI longer than {MAX_URI_LENGTH} characters")
    if any(c.isspace() for c in uri):
        raise _redirect_error(f"Redirect URI contains whitespace: {uri!r}")
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise _redirect_error(f"Malformed redirect URI: {uri}") from None
    if "#" in uri:
        raise _redirect_error(f"Redirect URI must not contain a fragment: {uri}")
    if parts.scheme not in ("https", "http") or not host:
        raise _redirect_error(f"Redirect URI must be an absolute https:// URL: {uri}")
    if parts.scheme == "http" and not _is_loopback(host):
        raise _redirect_error(
            f"Redirect URI must use https:// (http:// only for localhost, 127.0.0.1 or "
            f"[::1]): {uri}")
    if parts.username is not None or parts.password is not None:
        raise _redirect_error(f"Redirect URI must not contain a user name or password: {uri}")


def parse(body: Any) -> Registration:
    """Validate a registration request body (the parsed JSON)."""
    if not isinstance(body, dict):
        raise _metadata_error("The request body must be a JSON object")
    name = _string(body, "client_name")
    if not name:
        raise _metadata_error("client_name is required")
    if len(name) > 255:
        raise _metadata_error("client_name must be at most 255 characters")

    method = _string(body, "token_endpoint_auth_method") or "client_secret_basic"
    if method not in AUTH_METHODS:
        raise _metadata_error("token_endpoint_auth_method must be one of "
                              + ", ".join(AUTH_METHODS))

    grants = _string_list(body, "grant_types")
    if grants is None or not grants:
        grants = [AUTH_CODE]  # RFC 7591 §2: the default when omitted
    grants = [GRANT_ALIASES.get(g, g) for g in grants]
    grants = list(dict.fromkeys(grants))
    unknown = [g for g in grants if g not in GRANT_TYPES]
    if unknown:
        raise _metadata_error("Unsupported grant_types: " + ", ".join(unknown)
                              + "; supported: " + ", ".join(GRANT_TYPES))
    if not set(grants) & {AUTH_CODE, DEVICE, CLIENT_CREDENTIALS}:
        raise _metadata_error("grant_types must include authorization_code, "
                              f"{DEVICE} or client_credentials")
    if CLIENT_CREDENTIALS in grants and method == "none":
        raise _metadata_error("client_credentials needs a confidential client: use "
                              "token_endpoint_auth_method client_secret_basic or "
                              "client_secret_post")

    response_types = _string_list(body, "response_types")
    if response_types is not None:
        bad = [r for r in response_types if r != "code"]
        if bad:
            raise _metadata_error("Unsupported response_types: " + ", ".join(bad)
                                  + "; supported: code")
        if ("code" in response_types) != (AUTH_CODE in grants):
            raise _metadata_error("response_types and grant_types disagree: the code "
                                  "response type goes with the authorization_code grant "
                                  "(RFC 7591 §2.1)")

    uris = _string_list(body, "redirect_uris", error=_redirect_error) or []
    if len(uris) > MAX_REDIRECT_URIS:
        raise _redirect_error(f"At most {MAX_REDIRECT_URIS} redirect URIs")
    for uri in uris:
        check_redirect_uri(uri)
    if AUTH_CODE in grants and not uris:
        raise _redirect_error("The authorization_code grant needs at least one redirect URI")

    scope_text = _string(body, "scope")
    scopes = list(dict.fromkeys((scope_text or "").split())) or DEFAULT_SCOPE.split()
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise _metadata_error("Unsupported scope: " + " ".join(unknown) + "; supported: "
                              + " ".join(SCOPES))

    client_uri = _string(body, "client_uri") or ""
    if client_uri:
        parts = urlsplit(client_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(client_uri) > 2000:
            raise _metadata_error("client_uri must be an http:// or https:// URL")

    return Registration(client_name=name, redirect_uris=uris, grant_types=grants,
                        token_endpoint_auth_method=method, scope=" ".join(scopes),
                        client_uri=client_uri)


def generate_registration_token() -> str:
    # "agr_" marks registration access tokens for secret scanners (like "ags_" secrets).
    return "agr_" + base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=").lower()


@dataclass
class Registered:
    client: OAuthClient
    client_secret: str | None
    registration_access_token: str


def register(db: Session, data: Registration) -> Registered:
    """Create the pending client (no owner: nobody signed in registered it)."""
    client = OAuthClient(client_id=new_uuid(), user_id="", created_by="")
    client.name = data.client_name
    client.description = data.client_uri
    client.client_type = "confidential" if data.confidential else "public"
    client.enable_device_flow = DEVICE in data.grant_types
    client.enable_auth_code_flow = AUTH_CODE in data.grant_types
    client.enable_client_credentials_flow = CLIENT_CREDENTIALS in data.grant_types
    client.redirect_uris = data.redirect_uris
    client.scopes = data.scope
    client.status = "pending"
    client.token_profile = "standard"
    client.refresh_grant_types()
    secret = None
    if data.confidential:
        secret = generate_client_secret()
        client.client_secret_hash = hash_client_secret(secret)
    token = generate_registration_token()
    client.registration_access_token_hash = sha256_hex(token)
    db.add(client)
    db.flush()
    return Registered(client, secret, token)


def find_registered(db: Session, client_id: str, token: str) -> OAuthClient | None:
    """The client whose registration ``token`` reads, or None (unknown client, a client
    not created by registration, or a wrong token: RFC 7592 §2 answers all alike)."""
    from sqlalchemy import select

    expected = sha256_hex(token or "")
    client = None
    if client_id and len(client_id) <= 64:
        client = db.scalars(select(OAuthClient).where(
            OAuthClient.client_id == client_id)).first()
    stored = client.registration_access_token_hash if client is not None else ""
    # Compared even when there is nothing to compare with, so timing says nothing.
    if not hmac.compare_digest(expected, stored or "0" * 64) or not stored:
        return None
    return client


def _timestamp(value: dt.datetime | None) -> int:
    if value is None:
        return 0
    return int(value.replace(tzinfo=dt.UTC).timestamp())


def effective_grant_types(client: OAuthClient, settings: Settings) -> list[str]:
    grants = []
    if client.enable_auth_code_flow:
        grants.append(AUTH_CODE)
    if client.enable_device_flow:
        grants.append(DEVICE)
    if client.enable_client_credentials_flow:
        grants.append(CLIENT_CREDENTIALS)
    if settings.enable_refresh_tokens and (client.enable_auth_code_flow
                                           or client.enable_device_flow):
        grants.append(REFRESH)
    return grants


def client_information(client: OAuthClient, settings: Settings, *,
                       auth_method: str | None = None) -> dict[str, Any]:
    """The registered metadata (RFC 7591 §3.2.1) without secrets.

    ``auth_method`` is what the client asked for at registration; read back
    later it is derived from the client type (both Basic and form
    authentication work for every confidential client).
    """
    if auth_method is None:
        auth_method = "none" if client.is_public else "client_secret_basic"
    info: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": _timestamp(client.created_at),
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": effective_grant_types(client, settings),
        "response_types": ["code"] if client.enable_auth_code_flow else [],
        "token_endpoint_auth_method": auth_method,
        "scope": client.scopes,
    }
    if client.description.startswith(("https://", "http://")):
        info["client_uri"] = client.description  # registration keeps client_uri there
    if not client.is_public:
        info["client_secret_expires_at"] = 0  # never expires
    return info
