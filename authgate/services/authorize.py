"""The authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636): checking an
authorization request, issuing codes, and redeeming them at the token endpoint.

Differences from the Go original (SPEC "Where we do better"):

* An unknown, inactive or code-flow-disabled client, and a missing or
  unregistered ``redirect_uri`` (exact string match), are :class:`FatalRequest`:
  the user sees an error page and is never redirected.  Every later error is
  an :class:`AuthorizeError` sent to the (now validated) redirect URI.
* PKCE is S256 only.  Public clients must send a challenge, ``PKCE_REQUIRED``
  makes it mandatory for every client, and a stored challenge is verified for
  every client type.  A ``code_verifier`` sent for a code issued without a
  challenge is refused (RFC 9700 §2.1.1, PKCE downgrade).
* A code is single use, decided by one conditional UPDATE (``used_at IS
  NULL``).  A second use revokes every token issued from the code
  (RFC 6749 §4.1.2); the caller must answer with the error *response* so the
  revocation is committed.

Codes are 256-bit random values; only their SHA-256 is stored.  The code text
also carries the time the user logged in (``<random>.<unix time>``), which the
ID token reports as ``auth_time``: the hash covers the whole text, so a client
cannot alter it, and no column is needed for it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import select, update

from authgate.models import AuthorizationCode, OAuthClient, Token, utcnow
from authgate.models.token import ACTIVE, DISABLED, REVOKED
from authgate.services import clients
from authgate.services import scopes as scope_rules
from authgate.services.errors import OAuthError
from authgate.services.secrets import sha256_hex
from authgate.settings import Setting

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import Session

    from authgate.settings import Settings

SECTION = "Authorization code"

SETTINGS: list[Setting] = [
    Setting("auth_code_expiration", "AUTH_CODE_EXPIRATION", "duration",
            dt.timedelta(minutes=10), minimum=dt.timedelta(seconds=1), section=SECTION,
            help="How long an authorization code can be exchanged for tokens (single use)."),
    Setting("pkce_required", "PKCE_REQUIRED", "bool", False, section=SECTION,
            help="Require PKCE (S256) from every client. Public clients always need it; a "
                 "challenge that was sent is always verified, whatever the client type."),
    Setting("consent_remember", "CONSENT_REMEMBER", "bool", True, section=SECTION,
            help="Skip the consent page when the user has already approved the client for "
                 "every requested scope (`prompt=consent` still shows it)."),
]

GRANT_TYPE = "authorization_code"
RESPONSE_TYPE = "code"
CHALLENGE_METHOD = "S256"
MAX_STATE_BYTES = 1024  # state and nonce
MAX_PARAM_LENGTH = 2048
# RFC 7636 §4.1: code_verifier = 43*128unreserved; §4.2: an S256 challenge is the
# unpadded base64url of a SHA-256 digest, i.e. exactly 43 characters.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
# Parameters carried from the request to the consent form and back.
FORWARDED = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
             "code_challenge", "code_challenge_method", "response_mode", "prompt", "max_age")
PROMPTS = ("none", "login", "consent", "select_account")

INVALID_CODE = "Authorization code is invalid or expired"
USED_CODE = "Authorization code has already been used"


# ---------------------------------------------------------------------------
# The authorization request
# ---------------------------------------------------------------------------


class FatalRequest(Exception):
    """The client or redirect URI cannot be trusted: show an error page, never redirect."""

    def __init__(self, title: str, message: str, hint: str = ""):
        super().__init__(message)
        self.title, self.message, self.hint = title, message, hint


class AuthorizeError(OAuthError):
    """An error sent back to the validated redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str, redirect_uri: str, state: str | None):
        super().__init__(error, description, 302)
        self.redirect_uri = redirect_uri
        self.state = state

    def location(self, issuer: str) -> str:
        params = {"error": self.error, "error_description": self.description}
        if self.state:
            params["state"] = self.state
        params["iss"] = issuer
        return add_query(self.redirect_uri, params)


@dataclass
class AuthorizeRequest:
    """A validated authorization request."""

    client: OAuthClient
    redirect_uri: str
    scopes: list[str]
    state: str = ""
    nonce: str = ""
    code_challenge: str = ""
    code_challenge_method: str = ""
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None
    forwarded: dict[str, str] = field(default_factory=dict)

    def error(self, error: str, description: str) -> AuthorizeError:
        return AuthorizeError(error, description, self.redirect_uri, self.state)


def add_query(uri: str, params: Mapping[str, str]) -> str:
    """``uri`` with ``params`` appended to its query (an existing query is kept)."""
    parts = urlsplit(uri)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _single(params: Mapping[str, list[str]], name: str) -> tuple[str, bool]:
    """(value, repeated) of one parameter; RFC 6749 §3.1 forbids repeating one."""
    values = params.get(name) or []
    return (values[0] if values else ""), len(values) > 1


def validate(db: Session, settings: Settings, params: Mapping[str, list[str]]) -> AuthorizeRequest:
    """Check an authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1).

    ``params`` maps each parameter name to all the values sent.  Raises
    :class:`FatalRequest` while the client or redirect URI is not established,
    :class:`AuthorizeError` after.
    """
    client_id, repeated = _single(params, "client_id")
    if repeated:
        raise FatalRequest("Invalid request", "The request names more than one client.")
    if not client_id:
        raise FatalRequest("Invalid request", "The request does not say which application "
                           "is asking (client_id is missing).",
                           "Go back to the application and try again.")
    client = clients.get_client(db, client_id)
    if client is None:
        raise FatalRequest("Unknown application",
                           "The application that sent you here is not registered.",
                           "Contact the application's developer.")
    if not client.is_active:
        raise FatalRequest("Application not available",
                           f"{client.name} is not active on this server.",
                           "Ask your administrator to enable it.")
    if not client.enable_auth_code_flow:
        raise FatalRequest("Sign-in not enabled",
                           f"{client.name} is not allowed to use web sign-in "
                           "(the authorization code flow is disabled for it).",
                           "Ask your administrator to enable it.")
    redirect_uri, repeated = _single(params, "redirect_uri")
    if repeated or not redirect_uri:
        raise FatalRequest("Invalid request",
                           f"{client.name} did not say where to return you (redirect_uri is "
                           "missing)." if not repeated else
                           f"{client.name} sent more than one redirect_uri.",
                           "Contact the application's developer.")
    if redirect_uri not in client.redirect_uris:
        raise FatalRequest("Invalid redirect URI",
                           f"{client.name} asked to send you to an address that is not "
                           "registered for it, so you were not sent there.",
                           "Contact the application's developer: the redirect URI must "
                           "exactly match one that is registered.")

    # From here on errors go back to the client.
    state, repeated_state = _single(params, "state")
    if len(state.encode()) > MAX_STATE_BYTES:
        raise AuthorizeError("invalid_request",
                             f"state must not exceed {MAX_STATE_BYTES} bytes", redirect_uri, None)

    def fail(error: str, description: str) -> AuthorizeError:
        return AuthorizeError(error, description, redirect_uri, state)

    if repeated_state:
        raise fail("invalid_request", "Parameter 'state' was sent more than once")
    values: dict[str, str] = {}
    for name in FORWARDED[2:]:
        value, repeated = _single(params, name)
        if repeated:
            raise fail("invalid_request", f"Parameter {name!r} was sent more than once")
        if len(value) > MAX_PARAM_LENGTH:
            raise fail("invalid_request", f"Parameter {name!r} is too long")
        values[name] = value
    if any(params.get("request") or ()):
        raise fail("request_not_supported", "Request objects are not supported")
    if any(params.get("request_uri") or ()):
        raise fail("request_uri_not_supported", "request_uri is not supported")

    response_type = values["response_type"]
    if not response_type:
        raise fail("invalid_request", "response_type is required")
    if response_type != RESPONSE_TYPE:
        raise fail("unsupported_response_type", "Only response_type=code is supported")
    if values["response_mode"] not in ("", "query"):
        raise fail("invalid_request", "Only response_mode=query is supported")
    nonce = values["nonce"]
    if len(nonce.encode()) > MAX_STATE_BYTES:
        raise fail("invalid_request", f"nonce must not exceed {MAX_STATE_BYTES} bytes")
    prompt = frozenset(values["prompt"].split())
    if prompt - set(PROMPTS):
        raise fail("invalid_request", "Unknown prompt value")
    if "none" in prompt and len(prompt) > 1:
        raise fail("invalid_request", "prompt=none cannot be combined with other values")
    max_age = None
    if values["max_age"]:
        if not re.fullmatch(r"[0-9]{1,10}", values["max_age"]):
            raise fail("invalid_request", "max_age must be a number of seconds")
        max_age = int(values["max_age"])

    try:
        granted = scope_rules.resolve_requested(values["scope"], client.scope_list)
    except OAuthError as exc:
        raise fail(exc.error, exc.description) from None

    challenge, method = values["code_challenge"], values["code_challenge_method"]
    if challenge or method:
        if method != CHALLENGE_METHOD:
            # An absent method means "plain" (RFC 7636 §4.3), which is not offered.
            raise fail("invalid_request", "code_challenge_method must be S256 (plain is not "
                                          "supported)")
        if not challenge:
            raise fail("invalid_request", "code_challenge is required with "
                                          "code_challenge_method")
        if not _S256_CHALLENGE.fullmatch(challenge):
            raise fail("invalid_request", "code_challenge must be the 43-character base64url "
                                          "S256 challenge")
    elif client.is_public:
        raise fail("invalid_request", "PKCE is required for public clients: send "
                                      "code_challenge with code_challenge_method=S256")
    elif settings.pkce_required:
        raise fail("invalid_request", "PKCE is required: send code_challenge with "
                                      "code_challenge_method=S256")

    # The consent form posts back exactly the scopes the user was shown.
    forwarded = {"client_id": client_id, "redirect_uri": redirect_uri, "state": state,
                 **values, "scope": " ".join(granted)}
    return AuthorizeRequest(client=client, redirect_uri=redirect_uri, scopes=granted,
                            state=state, nonce=nonce, code_challenge=challenge,
                            code_challenge_method=method, prompt=prompt, max_age=max_age,
                            forwarded={k: v for k, v in forwarded.items() if v})


# ---------------------------------------------------------------------------
# Codes
# ---------------------------------------------------------------------------


def issue_code(db: Session, settings: Settings, req: AuthorizeRequest, *, user_id: str,
               auth_time: int | None) -> tuple[str, AuthorizationCode]:
    """A new single-use code for ``req`` (row flushed, not committed) and its text."""
    code = secrets.token_urlsafe(32)
    if auth_time:
        code += f".{int(auth_time)}"
    now = utcnow()
    row = AuthorizationCode(
        code_hash=sha256_hex(code), code_prefix=code[:8], application_id=req.client.id,
        client_id=req.client.client_id, user_id=user_id, redirect_uri=req.redirect_uri,
        scopes=" ".join(req.scopes), code_challenge=req.code_challenge,
        code_challenge_method=req.code_challenge_method, nonce=req.nonce,
        expires_at=now + settings.auth_code_expiration, created_at=now)
    db.add(row)
    db.flush()
    return code, row


def auth_time_of(code: str) -> int | None:
    """The login time carried by a code this module issued (see the module docstring)."""
    _, dot, suffix = code.rpartition(".")
    return int(suffix) if dot and re.fullmatch(r"[0-9]{1,12}", suffix) else None


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_pkce(row: AuthorizationCode, verifier: str) -> None:
    """RFC 7636 §4.6, for every client type; raise invalid_grant on any mismatch."""
    if not row.code_challenge:
        if verifier:
            raise OAuthError("invalid_grant", "code_verifier sent, but the authorization "
                                              "request had no code_challenge")
        return
    if not verifier:
        raise OAuthError("invalid_grant", "code_verifier is required (the authorization "
                                          "request sent a code_challenge)")
    if not _VERIFIER.fullmatch(verifier):
        raise OAuthError("invalid_grant", "code_verifier must be 43-128 characters of "
                                          "A-Z a-z 0-9 - . _ ~")
    if row.code_challenge_method != CHALLENGE_METHOD or not hmac.compare_digest(
            s256(verifier), row.code_challenge):
        raise OAuthError("invalid_grant", "PKCE verification failed: code_verifier does "
                                          "not match the code_challenge")


class CodeReplayed(OAuthError):
    """A used code was presented again; the tokens it produced are already revoked
    (in the caller's transaction) when this is raised."""

    def __init__(self, row: AuthorizationCode, revoked: int):
        super().__init__("invalid_grant", USED_CODE)
        self.row = row
        self.revoked = revoked


def revoke_tokens_of_code(db: Session, code_id: int) -> int:
    """Revoke every live token issued from an authorization code, including tokens
    refreshed from them (they inherit ``authorization_code_id``)."""
    return db.execute(
        update(Token).where(Token.authorization_code_id == code_id,
                            Token.status.in_((ACTIVE, DISABLED)))
        .values(status=REVOKED).execution_options(synchronize_session=False)).rowcount


def redeem(db: Session, *, client: OAuthClient, code: str, redirect_uri: str,
           code_verifier: str) -> AuthorizationCode:
    """Check and consume a code for an authenticated ``client`` (RFC 6749 §4.1.3).

    Raises OAuthError (``invalid_grant``) when it cannot be used, and
    :class:`CodeReplayed` when it was used before.
    """
    if not code or len(code) > 256:
        raise OAuthError("invalid_grant", INVALID_CODE)
    row = db.scalars(select(AuthorizationCode)
                     .where(AuthorizationCode.code_hash == sha256_hex(code))).first()
    if row is None or row.client_id != client.client_id:
        raise OAuthError("invalid_grant", INVALID_CODE)
    if row.used_at is not None:
        raise CodeReplayed(row, revoke_tokens_of_code(db, row.id))
    now = utcnow()
    if row.expires_at <= now:
        raise OAuthError("invalid_grant", "Authorization code has expired")
    if redirect_uri != row.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match the one in the "
                                          "authorization request")
    if client.is_public and not row.code_challenge:
        raise OAuthError("invalid_grant", "PKCE is required for public clients")
    verify_pkce(row, code_verifier)
    won = db.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.id == row.id, AuthorizationCode.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)).rowcount == 1
    if not won:
        # A concurrent exchange of the same code won: this is the second use.
        raise CodeReplayed(row, revoke_tokens_of_code(db, row.id))
    db.expire(row)
    return row
