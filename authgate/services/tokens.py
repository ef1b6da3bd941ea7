"""Access and refresh tokens: lifetimes, issuing, validation and revocation.

Tokens are JWTs stored by the SHA-256 of their exact text (the raw token is never
stored).  A row's ``status`` is ``active``, ``disabled`` (reversible) or
``revoked`` (permanent); rows are never deleted by a revocation, so the audit
trail keeps them.  A refresh token and everything issued from it share a
``token_family_id`` (the id of the first refresh token of the chain).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from sqlalchemy import bindparam, insert, or_, select, update

from authgate.db import wrote
from authgate.errors import ConfigurationError
from authgate.ids import new_uuid
from authgate.models import OAuthClient, Token, User, utcnow
from authgate.models.token import ACTIVE, DISABLED, REVOKED
from authgate.rawsql import prebuilt
from authgate.services.errors import OAuthError
from authgate.services.secrets import sha256_hex

if TYPE_CHECKING:
    from sqlalchemy.engine import Row
    from sqlalchemy.orm import Session

    from authgate.interfaces import ISigner
    from authgate.rawsql import RawUnit
    from authgate.settings import Settings

log = logging.getLogger(__name__)

ACCESS, REFRESH = "access", "refresh"
PROFILES = ("short", "standard", "long")
DEFAULT_PROFILE = "standard"
# A JWT is a few hundred bytes; anything far larger is not one of ours and is
# not worth hashing or parsing.
MAX_TOKEN_LENGTH = 16 * 1024

# The lookups every token, introspection and userinfo call runs, built once:
# constructing a select() costs about a third of running it.
_BY_HASH = select(Token).where(Token.token_hash == bindparam("hash"))
# Introspection reads a plain row of table columns, with the owner's username in the same
# statement (an outer join: client-credentials tokens have no user).  The answer only reads
# these columns; a select of mapped attributes would pay the ORM's compile, result set-up
# and object building.
_tokens, _users = Token.__table__, User.__table__
_INTROSPECTION = prebuilt(
    select(_tokens.c.id, _tokens.c.client_id, _tokens.c.token_category, _tokens.c.status,
           _tokens.c.expires_at, _tokens.c.scopes, _tokens.c.user_id, _tokens.c.jti,
           _users.c.username)
    .select_from(_tokens.outerjoin(_users, _users.c.id == _tokens.c.user_id))
    .where(_tokens.c.token_hash == bindparam("hash")))


# ---------------------------------------------------------------------------
# Lifetimes and profiles (reference 3.2)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lifetimes:
    access: dt.timedelta
    refresh: dt.timedelta
    jitter: dt.timedelta  # random extra access lifetime in [0, jitter)


def _profile_ttls(settings: Settings, profile: str) -> tuple[dt.timedelta, dt.timedelta]:
    access = settings[f"token_profile_{profile}_access_ttl"]
    refresh = settings[f"token_profile_{profile}_refresh_ttl"]
    if profile == "standard":
        access = access if access is not None else settings.jwt_expiration
        refresh = refresh if refresh is not None else settings.refresh_token_expiration
    return access, refresh


def normalize_profile(value: str | None, *, client_id: str = "") -> str:
    """A stored profile name -> one of PROFILES (empty or unknown -> standard)."""
    name = (value or "").strip().lower()
    if not name:
        return DEFAULT_PROFILE
    if name not in PROFILES:
        log.warning("client %s has unknown token_profile %r; using %r", client_id or "?",
                    value, DEFAULT_PROFILE)
        return DEFAULT_PROFILE
    return name


def lifetimes(settings: Settings, client: OAuthClient) -> Lifetimes:
    """The lifetimes for ``client``'s current token profile.

    Jitter applies only where the original applies it: the standard profile with
    its access lifetime left at JWT_EXPIRATION.  Short, long and a diverged
    standard profile are applied exactly.
    """
    profile = normalize_profile(client.token_profile, client_id=client.client_id)
    access, refresh = _profile_ttls(settings, profile)
    jitter = dt.timedelta(0)
    if profile == "standard" and access == settings.jwt_expiration:
        jitter = settings.jwt_expiration_jitter
    return Lifetimes(access, refresh, jitter)


_PROFILE_ENV = {
    ("short", "access"): "TOKEN_PROFILE_SHORT_ACCESS_TTL",
    ("short", "refresh"): "TOKEN_PROFILE_SHORT_REFRESH_TTL",
    ("standard", "access"): "TOKEN_PROFILE_STANDARD_ACCESS_TTL",
    ("standard", "refresh"): "TOKEN_PROFILE_STANDARD_REFRESH_TTL",
    ("long", "access"): "TOKEN_PROFILE_LONG_ACCESS_TTL",
    ("long", "refresh"): "TOKEN_PROFILE_LONG_REFRESH_TTL",
}


def check_settings(settings: Settings) -> None:
    """Start-up check of the lifetime settings against each other and the caps.

    Raises ConfigurationError naming the offending setting and the way out.
    """
    from authgate.settings import format_duration as fmt

    if settings.jwt_expiration_jitter >= settings.jwt_expiration:
        raise ConfigurationError(
            f"JWT_EXPIRATION_JITTER ({fmt(settings.jwt_expiration_jitter)}) must be less than "
            f"JWT_EXPIRATION ({fmt(settings.jwt_expiration)}); lower it or set it to 0")
    caps = {"access": ("JWT_EXPIRATION_MAX", settings.jwt_expiration_max),
            "refresh": ("REFRESH_TOKEN_EXPIRATION_MAX", settings.refresh_token_expiration_max)}
    for profile in PROFILES:
        ttls = dict(zip(("access", "refresh"), _profile_ttls(settings, profile), strict=True))
        for kind, value in ttls.items():
            cap_name, cap = caps[kind]
            if value <= cap:
                continue
            env = _PROFILE_ENV[(profile, kind)]
            if profile == "standard" and settings[f"token_profile_standard_{kind}_ttl"] is None:
                env = "JWT_EXPIRATION" if kind == "access" else "REFRESH_TOKEN_EXPIRATION"
            raise ConfigurationError(
                f"{env} ({fmt(value)}, {kind} tokens of the {profile!r} token profile) "
                f"exceeds {cap_name} ({fmt(cap)}); lower {env} or raise {cap_name}")


# ---------------------------------------------------------------------------
# Issuing
# ---------------------------------------------------------------------------


@dataclass
class IssuedTokens:
    access_token: str
    access: MintedToken
    refresh_token: str | None = None
    refresh: Token | MintedToken | None = None  # fixed-mode refresh: the stored row

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": max(0, int((self.access.expires_at - utcnow()).total_seconds())),
            "scope": self.access.scopes,
        }
        if self.refresh_token:
            body["refresh_token"] = self.refresh_token
        return body


def timestamp(value: dt.datetime) -> int:
    return int(value.replace(tzinfo=dt.UTC).timestamp())


def _claims(settings: Settings, *, subject: str, client_id: str, scopes: str, kind: str,
            issued: dt.datetime, expires: dt.datetime, jti: str) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": settings.base_url,
        "sub": subject,
        "user_id": subject,
        "client_id": client_id,
        "scope": scopes,
        "type": kind,
        "iat": timestamp(issued),
        "exp": timestamp(expires),
        "jti": jti,
    }
    audience = settings.jwt_audience
    if audience:
        claims["aud"] = audience[0] if len(audience) == 1 else list(audience)
    return claims


_INSERT_TOKENS = prebuilt(insert(Token.__table__))
_TOKEN_COLUMNS = tuple(column.key for column in Token.__table__.columns)
# The model's plain column defaults (token_type, token_family_id, ...), which the ORM would
# apply at flush: a minted row is stored by a Core INSERT and read afterwards, so it
# carries them from the start.  Columns without one read None on a new object.
_TOKEN_DEFAULTS = {column.key: column.default.arg for column in Token.__table__.columns
                   if column.default is not None and column.default.is_scalar}


class MintedToken:
    """A token row built by :func:`mint`, not yet stored: every column of ``tokens`` as a
    plain attribute.  Not an ORM object: instrumenting 17 attributes of an object that is
    only ever INSERTed by a Core statement and read back cost more than signing it."""

    __slots__ = _TOKEN_COLUMNS

    def __init__(self, values: dict[str, Any]) -> None:
        for key in _TOKEN_COLUMNS:
            setattr(self, key, values.get(key))

    def __repr__(self) -> str:
        return f"<MintedToken {self.id} {self.token_category} {self.client_id}>"


def mint(db: Session, signer: ISigner, settings: Settings, *, subject: str,
         client: OAuthClient, scopes: str, kind: str, lifetime: dt.timedelta,
         grant_type: str, **row: Any) -> tuple[str, MintedToken]:
    """Sign one token and build its row, not yet stored: :func:`store` inserts it.

    The row is a :class:`MintedToken` with every column set, so the caller can link
    it to its sibling before it is stored and read it afterwards.
    """
    issued = utcnow().replace(microsecond=0)
    expires = issued + lifetime
    jti = new_uuid()
    jwt_text = signer.sign(_claims(settings, subject=subject, client_id=client.client_id,
                                   scopes=scopes, kind=kind, issued=issued, expires=expires,
                                   jti=jti))
    token = MintedToken({**_TOKEN_DEFAULTS, "id": new_uuid(),
                         "token_hash": sha256_hex(jwt_text), "jti": jti,
                         "token_category": kind, "status": ACTIVE, "user_id": subject,
                         "client_id": client.client_id, "scopes": scopes,
                         "expires_at": expires, "created_at": issued,
                         "grant_type": grant_type, **row})
    return jwt_text, token


def store(db: Session | RawUnit, rows: Sequence[Token | MintedToken]) -> None:
    """INSERT minted rows in the caller's transaction, in one Core statement.

    The ORM's unit of work cost about a quarter of a client-credentials request
    for what is always a plain INSERT of new rows; the rows stay transient (the
    request only reads them afterwards: ids and scopes for the audit events).
    """
    db.flush()  # anything the request changed before, in order
    db.execute(_INSERT_TOKENS, [{key: getattr(row, key) for key in _TOKEN_COLUMNS}
                                for row in rows])
    wrote(db)


def access_lifetime(settings: Settings, life: Lifetimes) -> dt.timedelta:
    """The access lifetime with jitter drawn (whole seconds, capped at JWT_EXPIRATION_MAX)."""
    jitter_seconds = int(life.jitter.total_seconds())
    if jitter_seconds <= 0:
        return life.access
    jittered = life.access + dt.timedelta(seconds=secrets.randbelow(jitter_seconds))
    return min(jittered, max(life.access, settings.jwt_expiration_max))


def issue(db: Session, signer: ISigner, settings: Settings, *, subject: str,
          client: OAuthClient, scopes: list[str], grant_type: str,
          with_refresh: bool = True, authorization_id: int | None = None,
          authorization_code_id: int | None = None,
          access_ttl: dt.timedelta | None = None) -> IssuedTokens:
    """An access token, plus a refresh token when enabled; both rows in the caller's
    transaction so they are stored together or not at all.

    Lifetimes come from the client's token profile; ``access_ttl`` overrides it
    exactly (client credentials use CLIENT_CREDENTIALS_TOKEN_EXPIRATION).  The
    refresh token starts a new family; the access token is its child.
    """
    scope_text = " ".join(scopes)
    life = lifetimes(settings, client)
    links = {"authorization_id": authorization_id,
             "authorization_code_id": authorization_code_id}
    access_text, access = mint(db, signer, settings, subject=subject, client=client,
                               scopes=scope_text, kind=ACCESS,
                               lifetime=access_ttl or access_lifetime(settings, life),
                               grant_type=grant_type, **links)
    issued = IssuedTokens(access_text, access)
    if with_refresh and settings.enable_refresh_tokens:
        refresh_text, refresh = mint(db, signer, settings, subject=subject, client=client,
                                     scopes=scope_text, kind=REFRESH, lifetime=life.refresh,
                                     grant_type=grant_type, **links)
        refresh.token_family_id = refresh.id
        access.parent_token_id = refresh.id
        access.token_family_id = refresh.id
        issued.refresh_token, issued.refresh = refresh_text, refresh
    store(db, [row for row in (issued.refresh, access) if row is not None])
    return issued


# ---------------------------------------------------------------------------
# Lookup and validation
# ---------------------------------------------------------------------------


def _presentable(token_text: str) -> bool:
    """Worth looking up at all: not empty, not longer than any token this server signs."""
    return bool(token_text) and len(token_text) <= MAX_TOKEN_LENGTH


def find(db: Session, token_text: str) -> Token | None:
    """The row of a presented token (by the SHA-256 of its exact text), or None."""
    if not _presentable(token_text):
        return None
    return db.scalars(_BY_HASH, {"hash": sha256_hex(token_text)}).first()


def family_of(row: Token) -> str:
    """The family id, with the original's fallbacks for rows issued without one."""
    return row.token_family_id or row.parent_token_id or row.id


def is_usable(row: Token | Row, *, now: dt.datetime | None = None) -> bool:
    return row.status == ACTIVE and row.expires_at > (now or utcnow())


class SignatureInvalid(Exception):
    """The JWT is well formed but does not verify with the current signer
    (wrong key, unknown kid, foreign or ``none`` alg, tampered)."""


class VerifiedClaims:
    """The claims of tokens this process has verified, by the SHA-256 of their text.

    Resource servers introspect the same token on every API call, and a JWT's
    verification (PyJWT: parsing, base64 checks, the signature) cost more than
    the rest of an introspection.  A signer's keys are fixed for the life of the
    process (a key rotation is a restart), so a token text that verified once
    verifies again with the same signer; only time can change the answer, and
    ``exp`` is checked on every use.  Bounded (least recently used first out);
    failures are never kept.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[ISigner, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, signer: ISigner, token_hash: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(token_hash)
            if entry is None or entry[0] is not signer:
                return None
            self._entries.move_to_end(token_hash)
        claims = entry[1]
        if claims["exp"] <= time.time():
            raise jwt.ExpiredSignatureError("Signature has expired")
        return claims

    def put(self, signer: ISigner, token_hash: str, claims: dict[str, Any]) -> None:
        with self._lock:
            self._entries[token_hash] = (signer, claims)
            self._entries.move_to_end(token_hash)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


VERIFIED = VerifiedClaims()


def verify_jwt(signer: ISigner, token_text: str, kind: str, *,
               token_hash: str | None = None) -> dict[str, Any]:
    """Claims of a JWT this server signed, with ``type`` == ``kind``.

    Raises SignatureInvalid when the token parses but its signature, key or alg
    is wrong, and jwt.InvalidTokenError for anything else (expired, malformed,
    wrong type).  With ``token_hash`` (the SHA-256 of ``token_text``) a token
    verified before by this signer is answered from :data:`VERIFIED`.
    """
    if token_hash is not None:
        claims = VERIFIED.get(signer, token_hash)
        if claims is not None:
            if claims.get("type") != kind:
                raise jwt.InvalidTokenError(f"not an {kind} token")
            return claims
    # One parse: PyJWT raises DecodeError for text that is not a JWT at all, and
    # its subclass InvalidSignatureError for a JWT whose signature does not match.
    try:
        claims = signer.verify(token_text)
    except (jwt.ExpiredSignatureError, jwt.MissingRequiredClaimError):
        raise
    except jwt.InvalidSignatureError as exc:
        raise SignatureInvalid(str(exc)) from exc
    except jwt.DecodeError:
        raise  # malformed: an invalid token, not a signature failure
    except jwt.InvalidTokenError as exc:  # unknown kid, wrong alg, wrong issuer, ...
        raise SignatureInvalid(str(exc)) from exc
    if token_hash is not None and "exp" in claims:
        VERIFIED.put(signer, token_hash, claims)
    if claims.get("type") != kind:
        raise jwt.InvalidTokenError(f"not an {kind} token")
    return claims


class InvalidToken(OAuthError):
    """RFC 6750 §3.1 ``invalid_token``: 401 with ``WWW-Authenticate: Bearer``."""

    GENERIC = "Token is invalid or expired"
    SIGNATURE = "Token signature verification failed"

    def __init__(self, description: str = GENERIC):
        super().__init__("invalid_token", description, 401,
                         {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def validate_access_token(db: Session, signer: ISigner, settings: Settings,
                          token_text: str) -> Token:
    """The row of a valid bearer access token, or raise InvalidToken.

    Valid = signed by the current signer with its algorithm, ``type`` access,
    not expired, and its row is an active, unexpired access token.  A token
    that parses but does not verify gets the description "Token signature
    verification failed" (the troubleshooting guide's text); everything else
    "Token is invalid or expired".
    """
    if not _presentable(token_text):
        raise InvalidToken()
    try:
        claims = verify_jwt(signer, token_text, ACCESS)
    except SignatureInvalid:
        raise InvalidToken(InvalidToken.SIGNATURE) from None
    except jwt.InvalidTokenError:
        raise InvalidToken() from None
    row = find(db, token_text)
    if (row is None or row.token_category != ACCESS or not is_usable(row)
            or claims.get("client_id") != row.client_id):
        raise InvalidToken()
    return row


# ---------------------------------------------------------------------------
# Revocation (status changes; rows are kept for the audit trail)
# ---------------------------------------------------------------------------

_LIVE = (ACTIVE, DISABLED)


def revoke_family(db: Session, family_id: str, *, also_children_of: str | None = None) -> int:
    """Revoke every live row of a family (and, optionally, every live child of a
    token); returns how many rows changed.  Disabled rows are revoked too: a
    compromised family must not come back when someone re-enables a token."""
    condition = Token.token_family_id == family_id
    if also_children_of:
        condition = or_(condition, Token.parent_token_id == also_children_of,
                        Token.id == also_children_of)
    result = db.execute(update(Token).where(condition, Token.status.in_(_LIVE))
                        .values(status=REVOKED).execution_options(synchronize_session=False))
    return result.rowcount


def revoke(db: Session, row: Token) -> int:
    """Revoke a token presented to /oauth/revoke.

    An access token: that token only.  A refresh token: the token, every access
    token issued from it, and the rest of its family (RFC 7009 §2.1: tokens based
    on the same grant) — in rotation mode the family is the whole chain.
    """
    if row.token_category == REFRESH:
        count = revoke_family(db, family_of(row), also_children_of=row.id)
    else:
        count = db.execute(update(Token).where(Token.id == row.id, Token.status.in_(_LIVE))
                           .values(status=REVOKED)
                           .execution_options(synchronize_session=False)).rowcount
    db.expire(row)
    return count


# ---------------------------------------------------------------------------
# Introspection (RFC 7662)
# ---------------------------------------------------------------------------

INACTIVE: dict[str, Any] = {"active": False}


def introspect(db: Session, signer: ISigner, settings: Settings,
               token_text: str) -> tuple[Row | None, dict[str, Any]]:
    """(row or None, RFC 7662 response body) for a presented token.

    Active only if the JWT verifies with the current signer (so foreign-alg and
    tampered tokens are inactive), its ``type`` matches the row, and the row is
    active and unexpired.  The row is read-only: the columns of ``_INTROSPECTION``.
    """
    if not _presentable(token_text):
        return None, dict(INACTIVE)
    token_hash = sha256_hex(token_text)
    row = db.execute(_INTROSPECTION, {"hash": token_hash}).first()
    if row is None:
        return None, dict(INACTIVE)
    try:
        claims = verify_jwt(signer, token_text, row.token_category, token_hash=token_hash)
    except (jwt.InvalidTokenError, SignatureInvalid):
        return row, dict(INACTIVE)
    if not is_usable(row) or claims.get("client_id") != row.client_id:
        return row, dict(INACTIVE)
    body: dict[str, Any] = {
        "active": True,
        "scope": row.scopes,
        "client_id": row.client_id,
        "token_type": "Bearer" if row.token_category == ACCESS else "refresh_token",
        "exp": claims["exp"],
        "iat": claims["iat"],
        "sub": claims.get("sub", row.user_id),
        "iss": claims.get("iss", settings.base_url),
        "jti": claims.get("jti", row.jti),
    }
    if "aud" in claims:
        body["aud"] = claims["aud"]
    if row.username is not None:
        body["username"] = row.username
    return row, body
