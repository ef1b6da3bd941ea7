"""Admin console and account self-service: queries and mutations (no HTTP in here).

Token "revocation" never deletes rows: a revoked token keeps its row with
``status = 'revoked'`` so the audit trail and the admin lists still show it;
validation, introspection and refresh only accept ``active`` rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from authgate.audit import EVENT_TYPES as AUDIT_EVENT_TYPES
from authgate.models import (
    AuditLog,
    OAuthClient,
    OAuthConnection,
    Token,
    User,
    UserAuthorization,
    new_uuid,
    utcnow,
)
from authgate.models.token import ACTIVE, DISABLED, REVOKED
from authgate.services.passwords import generate_password, hash_password
from authgate.services.secrets import generate_client_secret, hash_client_secret

LIVE = (ACTIVE, DISABLED)
ROLES = ("user", "admin")
CLIENT_STATUSES = ("active", "pending", "inactive")
CLIENT_TYPES = ("public", "confidential")
TOKEN_PROFILES = ("short", "standard", "long")
# Scopes a user may request for an app they register themselves (reference 1.7).
APP_SCOPES = ("openid", "profile", "email", "offline_access")
DEFAULT_SCOPES = ("email", "profile")

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
EMAIL_RE = re.compile(r"^[^@\s<>\"']+@[^@\s<>\"']+$")
SERVICE_ACCOUNT_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,254}$")
MIN_PASSWORD_LENGTH = 8

# Every event type the product emits (the audit filter offers these plus any stored);
# authgate.audit.EVENT_TYPES is the one list, with descriptions.
EVENT_TYPES: tuple[str, ...] = tuple(AUDIT_EVENT_TYPES)
SEVERITIES = ("INFO", "WARNING", "ERROR", "CRITICAL")
RESOURCE_TYPES = ("USER", "CLIENT", "TOKEN", "DEVICE_CODE", "AUTHORIZATION")
EXPORT_LIMIT = 10_000
CSV_HEADER = ("Event Time", "Event Type", "Severity", "Actor Username", "Actor IP",
              "Resource Type", "Resource Name", "Action", "Success", "Error Message")


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class AdminError(Exception):
    """A refused action: ``message`` is shown to the person, ``status`` is the HTTP code."""

    status = 400
    title = "Action not allowed"

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class NotFound(AdminError):
    status = 404
    title = "Not found"


class NotOwner(AdminError):
    status = 403
    title = "Forbidden"


class Conflict(AdminError):
    status = 409
    title = "Nothing to do"


class ValidationError(AdminError):
    """Form input that cannot be saved; ``errors`` maps field name -> message."""

    def __init__(self, errors: Mapping[str, str]):
        super().__init__("Please correct the highlighted fields.")
        self.errors = dict(errors)


# ---------------------------------------------------------------------------
# Pagination
# ---------------------------------------------------------------------------


def parse_int(value: Any, default: int, low: int, high: int | None = None) -> int:
    """``value`` as an int clamped to [low, high]; ``default`` when it is not a number."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return default
    number = max(low, number)
    return min(number, high) if high is not None else number


@dataclass
class Page:
    items: list[Any]
    total: int
    page: int
    page_size: int
    params: dict[str, str] = field(default_factory=dict)

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.page_size) if self.page_size else 0

    @property
    def last_page(self) -> int:
        return max(1, self.total_pages)

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.total_pages

    @property
    def first_index(self) -> int:
        return 0 if not self.items else (self.page - 1) * self.page_size + 1

    @property
    def last_index(self) -> int:
        return (self.page - 1) * self.page_size + len(self.items)

    def link(self, page: int) -> str:
        """Query string for ``page`` with the current filters."""
        query = {k: v for k, v in self.params.items() if v not in ("", None)}
        query["page"] = str(page)
        return "?" + urlencode(query)

    def as_json(self) -> dict[str, Any]:
        return {"total": self.total, "total_pages": self.total_pages, "page": self.page,
                "page_size": self.page_size, "has_prev": self.has_prev,
                "has_next": self.has_next}


def paginate(db: Session, stmt: Select, *, page: int, page_size: int, scalars: bool = True,
             clamp: bool = True, params: Mapping[str, str] | None = None) -> Page:
    """One page of ``stmt``.  ``clamp``: a page past the end shows the last page (HTML);
    without it the page is empty (the JSON API, so a client paging until empty stops)."""
    total = db.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    page = max(1, page)
    if clamp:
        page = min(page, max(1, math.ceil(total / page_size)))
    paged = stmt.limit(page_size).offset((page - 1) * page_size)
    items = list(db.scalars(paged)) if scalars else [tuple(r) for r in db.execute(paged)]
    return Page(items, total, page, page_size, dict(params or {}))


def _contains(column, text: str):
    return column.icontains(text, autoescape=True)


# ---------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------


def revoke_user_tokens(db: Session, user_id: str) -> int:
    """Every live token of a user -> revoked (rows kept).  Returns how many changed."""
    return db.execute(
        update(Token).where(Token.user_id == user_id, Token.status.in_(LIVE))
        .values(status=REVOKED).execution_options(synchronize_session=False)
    ).rowcount


def token_state(token: Token, now: dt.datetime | None = None) -> str:
    """What a person should see: active, disabled, revoked or expired."""
    if token.status == REVOKED:
        return REVOKED
    if token.expires_at <= (now or utcnow()):
        return "expired"
    return token.status


TOKEN_STATUS_FILTERS = {
    "live": "Active and disabled",
    "active": "Active",
    "disabled": "Disabled",
    "expired": "Expired",
    "revoked": "Revoked",
    "all": "All",
}
TOKEN_CATEGORIES = ("access", "refresh")


def list_tokens(db: Session, *, user_id: str = "", client_id: str = "", status: str = "live",
                category: str = "", search: str = "", page: int = 1, page_size: int = 10,
                owner_search: bool = True) -> Page:
    """Tokens with their client name and username, newest first.

    ``search`` matches scopes, client name and client id, and (``owner_search``)
    the username and email of the token's user.
    """
    now = utcnow()
    stmt = (select(Token, OAuthClient.name, User.username)
            .outerjoin(OAuthClient, OAuthClient.client_id == Token.client_id)
            .outerjoin(User, User.id == Token.user_id))
    if user_id:
        stmt = stmt.where(Token.user_id == user_id)
    if client_id:
        stmt = stmt.where(Token.client_id == client_id)
    if status == "live":
        stmt = stmt.where(Token.status.in_(LIVE), Token.expires_at > now)
    elif status in (ACTIVE, DISABLED):
        stmt = stmt.where(Token.status == status, Token.expires_at > now)
    elif status == "expired":
        stmt = stmt.where(Token.status.in_(LIVE), Token.expires_at <= now)
    elif status == REVOKED:
        stmt = stmt.where(Token.status == REVOKED)
    if category in TOKEN_CATEGORIES:
        stmt = stmt.where(Token.token_category == category)
    search = search.strip()
    if search:
        terms = [_contains(Token.scopes, search), _contains(OAuthClient.name, search),
                 Token.client_id == search, Token.id == search]
        if owner_search:
            terms += [_contains(User.username, search), _contains(User.email, search),
                      Token.user_id == search]
        stmt = stmt.where(or_(*terms))
    stmt = stmt.order_by(Token.created_at.desc(), Token.id)
    params = {"status": status, "category": category, "search": search,
              "user_id": user_id if owner_search else "",
              "client_id": client_id if owner_search else "", "page_size": str(page_size)}
    return paginate(db, stmt, page=page, page_size=page_size, scalars=False, params=params)


def get_token(db: Session, token_id: str, *, owner_id: str | None = None) -> Token:
    token = db.get(Token, token_id) if token_id and len(token_id) <= 36 else None
    if token is None:
        raise NotFound("No such token.")
    if owner_id is not None and token.user_id != owner_id:
        # The same answer as "missing": never confirm another user's token id exists.
        raise NotOwner("This token does not belong to you.")
    return token


def revoke_token(db: Session, token: Token) -> int:
    """Revoke one token.  A refresh token takes its family and the access tokens
    issued from it along (RFC 7009 §2.1); an access token only itself."""
    if token.token_category == "refresh":
        family = token.token_family_id or token.parent_token_id or token.id
        condition = or_(Token.id == token.id, Token.parent_token_id == token.id,
                        Token.token_family_id == family)
    else:
        condition = Token.id == token.id
    count = db.execute(update(Token).where(condition, Token.status.in_(LIVE))
                       .values(status=REVOKED)
                       .execution_options(synchronize_session=False)).rowcount
    db.expire(token)
    if not count:
        raise Conflict("This token is already revoked.")
    return count


def _transition(db: Session, token: Token, old: str, new: str) -> bool:
    changed = db.execute(update(Token).where(Token.id == token.id, Token.status == old)
                         .values(status=new)
                         .execution_options(synchronize_session=False)).rowcount == 1
    db.expire(token)
    return changed


def disable_token(db: Session, token: Token) -> None:
    if not _transition(db, token, ACTIVE, DISABLED):
        raise Conflict("Only an active token can be disabled.")


def enable_token(db: Session, token: Token) -> None:
    if not _transition(db, token, DISABLED, ACTIVE):
        raise Conflict("Only a disabled token can be enabled.")


# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------


def get_user(db: Session, user_id: str) -> User:
    user = db.get(User, user_id) if user_id and len(user_id) <= 36 else None
    if user is None:
        raise NotFound("No such user.")
    return user


def list_users(db: Session, *, search: str = "", role: str = "", auth_source: str = "",
               status: str = "", page: int = 1, page_size: int = 10) -> Page:
    stmt = select(User)
    search = search.strip()
    if search:
        stmt = stmt.where(or_(User.id == search, _contains(User.username, search),
                              _contains(User.email, search), _contains(User.full_name, search)))
    if role in ROLES:
        stmt = stmt.where(User.role == role)
    if auth_source:
        stmt = stmt.where(User.auth_source == auth_source)
    if status == "active":
        stmt = stmt.where(User.is_active.is_(True))
    elif status == "disabled":
        stmt = stmt.where(User.is_active.is_(False))
    stmt = stmt.order_by(User.created_at.desc(), User.username)
    params = {"search": search, "role": role, "auth_source": auth_source, "status": status,
              "page_size": str(page_size)}
    return paginate(db, stmt, page=page, page_size=page_size, params=params)


def auth_sources(db: Session) -> list[str]:
    return sorted(set(db.scalars(select(User.auth_source).distinct())) | {"local"})


def active_admin_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.is_active.is_(True))) or 0


def is_last_active_admin(db: Session, user: User) -> bool:
    return user.role == "admin" and user.is_active and active_admin_count(db) <= 1


def user_counts(db: Session, user_id: str) -> dict[str, int]:
    now = utcnow()
    return {
        "active_tokens": db.scalar(select(func.count()).select_from(Token).where(
            Token.user_id == user_id, Token.status == ACTIVE, Token.expires_at > now)) or 0,
        "connections": db.scalar(select(func.count()).select_from(OAuthConnection).where(
            OAuthConnection.user_id == user_id)) or 0,
        "authorizations": db.scalar(select(func.count()).select_from(UserAuthorization)
                                    .where(UserAuthorization.user_id == user_id,
                                           UserAuthorization.is_active.is_(True))) or 0,
        "clients": db.scalar(select(func.count()).select_from(OAuthClient).where(
            OAuthClient.user_id == user_id)) or 0,
    }


def _check_email(db: Session, email: str, errors: dict[str, str],
                 exclude_id: str | None = None) -> str | None:
    email = email.strip()
    if not email:
        return None
    if len(email) > 255 or not EMAIL_RE.match(email):
        errors["email"] = "Enter a valid email address, like name@example.com."
        return email
    stmt = select(User.id).where(func.lower(User.email) == email.lower())
    if exclude_id:
        stmt = stmt.where(User.id != exclude_id)
    if db.scalar(stmt) is not None:
        errors["email"] = "Another user already has this email address."
    return email


def create_user(db: Session, *, username: str, email: str, full_name: str, role: str,
                password: str = "") -> tuple[User, str, bool]:
    """A new local user.  Returns (user, password, generated?)."""
    errors: dict[str, str] = {}
    username = username.strip()
    if not username:
        errors["username"] = "Enter a username."
    elif not USERNAME_RE.match(username):
        errors["username"] = ("Use up to 100 letters, digits and . _ @ + - (starting with a "
                              "letter or digit).")
    elif db.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        errors["username"] = "This username is taken."
    email_value = _check_email(db, email, errors)
    if len(full_name) > 255:
        errors["full_name"] = "Use at most 255 characters."
    if role not in ROLES:
        errors["role"] = "Choose a role."
    generated = not password
    if password and len(password) < MIN_PASSWORD_LENGTH:
        errors["password"] = (f"Use at least {MIN_PASSWORD_LENGTH} characters, or leave it "
                              "empty to generate one.")
    elif len(password) > 1024:
        errors["password"] = "Use at most 1024 characters."
    if errors:
        raise ValidationError(errors)
    password = password or generate_password(16)
    user = User(username=username, email=email_value, full_name=full_name.strip(), role=role,
                password_hash=hash_password(password), is_active=True, auth_source="local")
    db.add(user)
    db.flush()
    return user, password, generated


def update_user(db: Session, actor: User, user: User, *, email: str, full_name: str,
                role: str) -> dict[str, list[Any]]:
    """Apply the edit form; returns {field: [old, new]} for what changed."""
    errors: dict[str, str] = {}
    email_value = _check_email(db, email, errors, exclude_id=user.id)
    if len(full_name) > 255:
        errors["full_name"] = "Use at most 255 characters."
    if role not in ROLES:
        errors["role"] = "Choose a role."
    elif role != user.role:
        if user.id == actor.id:
            errors["role"] = "You cannot change your own role."
        elif role != "admin" and is_last_active_admin(db, user):
            errors["role"] = "This is the last active administrator; promote someone else first."
    if errors:
        raise ValidationError(errors)
    changes: dict[str, list[Any]] = {}
    if (email_value or None) != user.email:
        changes["email"] = [user.email, email_value or None]
        user.email = email_value or None
        user.email_verified = False
    if full_name.strip() != user.full_name:
        changes["full_name"] = [user.full_name, full_name.strip()]
        user.full_name = full_name.strip()
    if role != user.role:
        changes["role"] = [user.role, role]
        user.role = role
    db.flush()
    return changes


def _guard_self(actor: User, user: User, verb: str) -> None:
    if actor.id == user.id:
        raise AdminError(f"You cannot {verb} your own account.")


def _guard_last_admin(db: Session, user: User, verb: str) -> None:
    if is_last_active_admin(db, user):
        raise Conflict(f"You cannot {verb} the last active administrator.")


def reset_password(db: Session, actor: User, user: User) -> tuple[str, int]:
    """A new generated password for a local user; all their tokens are revoked."""
    if user.auth_source != "local":
        raise AdminError(f"{user.username} signs in through {user.auth_source}; change the "
                         "password there.")
    password = generate_password(16)
    user.password_hash = hash_password(password)
    user.end_sessions()
    revoked = revoke_user_tokens(db, user.id)
    db.flush()
    return password, revoked


def disable_user(db: Session, actor: User, user: User) -> int:
    """is_active = false and every live token revoked.  Their browser session ends at
    its next request (request.current_user re-checks is_active)."""
    _guard_self(actor, user, "disable")
    if not user.is_active:
        raise Conflict(f"{user.username} is already disabled.")
    _guard_last_admin(db, user, "disable")
    user.is_active = False
    user.end_sessions()
    revoked = revoke_user_tokens(db, user.id)
    db.flush()
    return revoked


def enable_user(db: Session, actor: User, user: User) -> None:
    _guard_self(actor, user, "enable")
    if user.is_active:
        raise Conflict(f"{user.username} is already active.")
    user.is_active = True
    db.flush()


def delete_user(db: Session, actor: User, user: User) -> dict[str, int]:
    """Delete a user: tokens revoked (rows kept for the audit trail), consents and
    social-login links removed with the user."""
    _guard_self(actor, user, "delete")
    _guard_last_admin(db, user, "delete")
    summary = {
        "tokens_revoked": revoke_user_tokens(db, user.id),
        "connections_deleted": db.execute(
            delete(OAuthConnection).where(OAuthConnection.user_id == user.id)
            .execution_options(synchronize_session=False)).rowcount,
        "authorizations_removed": db.execute(
            delete(UserAuthorization).where(UserAuthorization.user_id == user.id)
            .execution_options(synchronize_session=False)).rowcount,
    }
    db.delete(user)
    db.flush()
    return summary


def list_connections(db: Session, user_id: str) -> list[OAuthConnection]:
    return list(db.scalars(select(OAuthConnection).where(OAuthConnection.user_id == user_id)
                           .order_by(OAuthConnection.provider)))


def delete_connection(db: Session, user: User, connection_id: str) -> OAuthConnection:
    connection = db.get(OAuthConnection, connection_id) if len(connection_id) <= 36 else None
    if connection is None or connection.user_id != user.id:
        raise NotFound("No such connection for this user.")
    db.delete(connection)
    db.flush()
    return connection


# ---------------------------------------------------------------------------
# Consents (user_authorizations)
# ---------------------------------------------------------------------------


def list_authorizations(db: Session, *, user_id: str = "", client_id: str = "",
                        active_only: bool = True) -> list[tuple[UserAuthorization, str, str]]:
    """(consent, client name, username) rows, most recent first."""
    stmt = (select(UserAuthorization, OAuthClient.name, User.username)
            .outerjoin(OAuthClient, OAuthClient.client_id == UserAuthorization.client_id)
            .outerjoin(User, User.id == UserAuthorization.user_id))
    if user_id:
        stmt = stmt.where(UserAuthorization.user_id == user_id)
    if client_id:
        stmt = stmt.where(UserAuthorization.client_id == client_id)
    if active_only:
        stmt = stmt.where(UserAuthorization.is_active.is_(True))
    stmt = stmt.order_by(UserAuthorization.granted_at.desc())
    return [tuple(row) for row in db.execute(stmt)]


def get_authorization(db: Session, uuid: str, *, user_id: str) -> UserAuthorization:
    consent = db.scalars(select(UserAuthorization).where(
        UserAuthorization.uuid == uuid[:36])).first()
    if consent is None or consent.user_id != user_id or not consent.is_active:
        raise NotFound("No such active authorization.")
    return consent


def revoke_authorization(db: Session, consent: UserAuthorization) -> int:
    """Consent inactive, and the user's live tokens for that client revoked: the tokens
    issued under the consent and any other tokens the client holds for this user (a
    person who revokes an app expects it to lose access, whatever flow it used)."""
    consent.is_active = False
    consent.revoked_at = utcnow()
    count = db.execute(
        update(Token).where(
            or_(Token.authorization_id == consent.id,
                (Token.user_id == consent.user_id) & (Token.client_id == consent.client_id)),
            Token.status.in_(LIVE))
        .values(status=REVOKED).execution_options(synchronize_session=False)).rowcount
    db.flush()
    return count


# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------


def get_client(db: Session, client_id: str) -> OAuthClient:
    client = None
    if client_id and len(client_id) <= 64:
        client = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).first()
    if client is None:
        raise NotFound("No such client.")
    return client


def get_own_client(db: Session, client_id: str, user: User) -> OAuthClient:
    client = get_client(db, client_id)
    if client.user_id != user.id:
        raise NotOwner("Only the owner of this app can see or change it.")
    return client


def list_clients(db: Session, *, search: str = "", status: str = "", owner_id: str = "",
                 page: int = 1, page_size: int = 10) -> Page:
    """(client, owner username) rows."""
    owner = aliased(User)
    stmt = (select(OAuthClient, owner.username)
            .outerjoin(owner, owner.id == OAuthClient.user_id))
    search = search.strip()
    if search:
        stmt = stmt.where(or_(_contains(OAuthClient.name, search),
                              OAuthClient.client_id == search,
                              _contains(OAuthClient.client_id, search),
                              _contains(OAuthClient.description, search)))
    if status in CLIENT_STATUSES:
        stmt = stmt.where(OAuthClient.status == status)
    if owner_id:
        stmt = stmt.where(OAuthClient.user_id == owner_id)
    stmt = stmt.order_by(OAuthClient.created_at.desc(), OAuthClient.id.desc())
    params = {"search": search, "status": status, "page_size": str(page_size)}
    return paginate(db, stmt, page=page, page_size=page_size, scalars=False, params=params)


def client_counts(db: Session, client_id: str) -> dict[str, int]:
    now = utcnow()
    return {
        "active_tokens": db.scalar(select(func.count()).select_from(Token).where(
            Token.client_id == client_id, Token.status == ACTIVE, Token.expires_at > now)) or 0,
        "authorizations": db.scalar(select(func.count()).select_from(UserAuthorization).where(
            UserAuthorization.client_id == client_id,
            UserAuthorization.is_active.is_(True))) or 0,
    }


def parse_redirect_uris(text: str) -> tuple[list[str], list[str]]:
    """(uris, problems) from a textarea: one per line, or separated by commas/spaces."""
    uris: list[str] = []
    problems: list[str] = []
    for raw in re.split(r"[\s,]+", text or ""):
        uri = raw.strip()
        if not uri or uri in uris:
            continue
        if len(uri) > 2048:
            problems.append(f"{uri[:60]}…: longer than 2048 characters")
            continue
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(f"{uri}: must be an absolute http:// or https:// URL")
        elif parts.fragment or "#" in uri:
            problems.append(f"{uri}: must not contain a #fragment")
        elif parts.username or parts.password:
            problems.append(f"{uri}: must not contain a user name or password")
        else:
            uris.append(uri)
    return uris, problems


def _valid_scope(item: str) -> bool:
    # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    return bool(item) and all(
        c == "\x21" or "\x23" <= c <= "\x5b" or "\x5d" <= c <= "\x7e" for c in item)


@dataclass
class ClientInput:
    """What the client forms submit (admin and self-service)."""

    name: str = ""
    description: str = ""
    client_type: str = "public"
    device: bool = True
    auth_code: bool = False
    client_credentials: bool = False
    redirect_uris: str = ""
    scopes: str = "email profile"
    token_profile: str = "standard"
    status: str = "active"
    project: str = ""
    service_account: str = ""

    @classmethod
    def from_form(cls, form: Mapping[str, Any], *, self_service: bool = False) -> ClientInput:
        def text(key: str, default: str = "") -> str:
            value = form.get(key, default)
            return value.strip() if isinstance(value, str) else default

        if self_service:
            getall = getattr(form, "getall", None)
            chosen = getall("scopes") if getall else [form.get("scopes", "")]
            scopes = " ".join(s for s in APP_SCOPES
                              if s in {x for v in chosen if isinstance(v, str) for x in v.split()})
        else:
            scopes = " ".join(text("scopes").split())
        return cls(
            name=text("name"), description=text("description"),
            client_type=text("client_type", "public"),
            device=bool(form.get("enable_device_flow")),
            auth_code=bool(form.get("enable_auth_code_flow")),
            client_credentials=bool(form.get("enable_client_credentials_flow")),
            redirect_uris=text("redirect_uris"), scopes=scopes,
            token_profile=text("token_profile", "standard"),
            status=text("status", "active"), project=text("project"),
            service_account=text("service_account"))

    @classmethod
    def from_client(cls, client: OAuthClient) -> ClientInput:
        return cls(name=client.name, description=client.description or "",
                   client_type=client.client_type, device=client.enable_device_flow,
                   auth_code=client.enable_auth_code_flow,
                   client_credentials=client.enable_client_credentials_flow,
                   redirect_uris="\n".join(client.redirect_uris), scopes=client.scopes,
                   token_profile=client.token_profile or "standard", status=client.status,
                   project=client.project or "", service_account=client.service_account or "")

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def validate(self, *, self_service: bool = False) -> list[str]:
        """Raise ValidationError, or return the cleaned redirect URIs."""
        errors: dict[str, str] = {}
        if not self.name:
            errors["name"] = "Enter a name."
        elif len(self.name) > 255:
            errors["name"] = "Use at most 255 characters."
        if len(self.description) > 2000:
            errors["description"] = "Use at most 2000 characters."
        if self.client_type not in CLIENT_TYPES:
            errors["client_type"] = "Choose public or confidential."
        if not (self.device or self.auth_code or self.client_credentials):
            errors["flows"] = "Enable at least one flow."
        elif self.client_credentials and self.client_type != "confidential":
            errors["flows"] = ("Client credentials needs a confidential client (one that can "
                               "keep a secret).")
        uris, problems = parse_redirect_uris(self.redirect_uris)
        if problems:
            errors["redirect_uris"] = "; ".join(problems)
        elif self.auth_code and not uris:
            errors["redirect_uris"] = "The authorization code flow needs at least one redirect URI."
        scopes = self.scope_list
        if self_service:
            if not scopes:
                errors["scopes"] = "Choose at least one scope."
            elif any(s not in APP_SCOPES for s in scopes):
                errors["scopes"] = "Apps may only ask for: " + ", ".join(APP_SCOPES) + "."
        else:
            bad = [s for s in scopes if not _valid_scope(s)]
            if bad:
                errors["scopes"] = "Scopes are words without spaces, quotes or backslashes."
            elif len(self.scopes) > 1024:
                errors["scopes"] = "Use at most 1024 characters."
            if self.token_profile not in TOKEN_PROFILES:
                errors["token_profile"] = "Choose short, standard or long."
            if self.status not in CLIENT_STATUSES:
                errors["status"] = "Choose active, pending or inactive."
        if len(self.project) > 64:
            errors["project"] = "Use at most 64 characters."
        if self.service_account and not SERVICE_ACCOUNT_RE.match(self.service_account):
            errors["service_account"] = ("Use letters, digits and _ . @ - (starting with a "
                                         "letter or digit), at most 255 characters.")
        if errors:
            raise ValidationError(errors)
        return uris


def _apply(client: OAuthClient, data: ClientInput, uris: list[str]) -> None:
    client.name = data.name
    client.description = data.description
    client.client_type = data.client_type
    client.enable_device_flow = data.device
    client.enable_auth_code_flow = data.auth_code
    client.enable_client_credentials_flow = data.client_credentials
    client.redirect_uris = uris
    client.scopes = " ".join(data.scope_list) or " ".join(DEFAULT_SCOPES)
    client.project = data.project
    client.service_account = data.service_account
    client.refresh_grant_types()


def create_client(db: Session, owner: User, data: ClientInput, *,
                  self_service: bool = False) -> tuple[OAuthClient, str | None]:
    """A new client; returns (client, secret) — the secret only for confidential
    clients, to be shown once (only its hash is stored)."""
    uris = data.validate(self_service=self_service)
    client = OAuthClient(client_id=new_uuid(), user_id=owner.id, created_by=owner.id)
    _apply(client, data, uris)
    if self_service:
        client.status, client.token_profile = "pending", "standard"
    else:
        client.status, client.token_profile = data.status, data.token_profile
    secret = None
    if client.client_type == "confidential":
        secret = generate_client_secret()
        client.client_secret_hash = hash_client_secret(secret)
    db.add(client)
    db.flush()
    return client, secret


def update_client(db: Session, client: OAuthClient, data: ClientInput, *,
                  self_service: bool = False) -> tuple[dict[str, list[Any]], str | None]:
    """Apply an edit; returns ({field: [old, new]}, secret if one had to be created
    because the client became confidential)."""
    uris = data.validate(self_service=self_service)
    before = ClientInput.from_client(client)
    before_uris = client.redirect_uris
    _apply(client, data, uris)
    if not self_service:
        client.status, client.token_profile = data.status, data.token_profile
    secret = None
    if client.client_type == "confidential" and not client.client_secret_hash:
        secret = generate_client_secret()
        client.client_secret_hash = hash_client_secret(secret)
    elif client.client_type == "public":
        client.client_secret_hash = ""
    after = ClientInput.from_client(client)
    changes = {name: [getattr(before, name), getattr(after, name)]
               for name in ("name", "description", "client_type", "device", "auth_code",
                            "client_credentials", "scopes", "token_profile", "status",
                            "project", "service_account")
               if getattr(before, name) != getattr(after, name)}
    if before_uris != client.redirect_uris:
        changes["redirect_uris"] = [before_uris, client.redirect_uris]
    db.flush()
    return changes, secret


def regenerate_secret(db: Session, client: OAuthClient) -> str:
    if client.client_type != "confidential":
        raise AdminError("Public clients have no secret; make the client confidential first.")
    secret = generate_client_secret()
    client.client_secret_hash = hash_client_secret(secret)
    db.flush()
    return secret


def revoke_client_access(db: Session, client: OAuthClient) -> tuple[int, int]:
    """Every live token of the client revoked and every consent for it deactivated."""
    now = utcnow()
    tokens = db.execute(
        update(Token).where(Token.client_id == client.client_id, Token.status.in_(LIVE))
        .values(status=REVOKED).execution_options(synchronize_session=False)).rowcount
    consents = db.execute(
        update(UserAuthorization).where(UserAuthorization.client_id == client.client_id,
                                        UserAuthorization.is_active.is_(True))
        .values(is_active=False, revoked_at=now, updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    return tokens, consents


def delete_client(db: Session, client: OAuthClient) -> dict[str, int]:
    """Delete a client.  Its tokens are revoked first; the schema's cascades then
    remove the rows that only make sense with the client (tokens, codes, consents)."""
    tokens, consents = revoke_client_access(db, client)
    db.delete(client)
    db.flush()
    return {"tokens_revoked": tokens, "authorizations_revoked": consents}


def delete_own_client(db: Session, client: OAuthClient) -> dict[str, int]:
    if client.status == "active":
        raise AdminError("An approved app can only be deleted by an administrator. Ask an "
                         "administrator, or revoke the secret by regenerating it.")
    return delete_client(db, client)


def set_client_status(db: Session, client: OAuthClient, new: str, *,
                      expect: str = "pending") -> None:
    """Approve (pending -> active) or reject (pending -> inactive)."""
    changed = db.execute(update(OAuthClient).where(OAuthClient.id == client.id,
                                                   OAuthClient.status == expect)
                         .values(status=new, updated_at=utcnow())
                         .execution_options(synchronize_session=False)).rowcount == 1
    db.expire(client)
    if not changed:
        raise Conflict(f"{client.name} is not pending approval (status: {client.status}).")


# ---------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------


def dashboard(db: Session) -> dict[str, Any]:
    now = utcnow()

    def count(model, *conditions) -> int:
        return db.scalar(select(func.count()).select_from(model).where(*conditions)) or 0

    live_tokens = (Token.status == ACTIVE, Token.expires_at > now)
    return {
        "users_total": count(User),
        "users_admins": count(User, User.role == "admin"),
        "users_regular": count(User, User.role != "admin"),
        "users_disabled": count(User, User.is_active.is_(False)),
        "clients_total": count(OAuthClient),
        "clients_active": count(OAuthClient, OAuthClient.status == "active"),
        "clients_pending": count(OAuthClient, OAuthClient.status == "pending"),
        "clients_inactive": count(OAuthClient, OAuthClient.status == "inactive"),
        "access_tokens": count(Token, Token.token_category == "access", *live_tokens),
        "refresh_tokens": count(Token, Token.token_category == "refresh", *live_tokens),
        "recent_events": list(db.scalars(select(AuditLog).order_by(
            AuditLog.event_time.desc()).limit(10))),
    }


def pending_client_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(OAuthClient).where(
        OAuthClient.status == "pending")) or 0


# ---------------------------------------------------------------------------
# Audit queries (reference 9.3, 9.4)
# ---------------------------------------------------------------------------


def parse_time(value: str) -> dt.datetime:
    """RFC 3339 ("2026-02-08T10:00:00Z", offsets allowed) or an HTML datetime-local value
    ("2026-02-08T10:00", taken as UTC) -> naive UTC.  ValueError when neither."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def rfc3339(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.replace(microsecond=0).isoformat() + "Z"


@dataclass
class AuditQuery:
    """Filters shared by the audit page, the JSON API, the stats and the CSV export.

    ``user_id`` (the name the troubleshooting guide uses) finds events a user took
    part in: as the actor (``actor_user_id``) or as the subject of a user event
    (``resource_type = USER`` and ``resource_id``), so ``USER_DISABLED`` for a user
    is found by that user's id.  ``actor_user_id`` matches the actor only.
    ``actor`` (the HTML filter) matches an actor username or actor user id.
    """

    event_type: str = ""
    severity: str = ""
    success: bool | None = None
    actor: str = ""
    actor_user_id: str = ""
    user_id: str = ""
    resource_type: str = ""
    resource_id: str = ""
    actor_ip: str = ""
    search: str = ""
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    raw: dict[str, str] = field(default_factory=dict)

    FIELDS = ("event_type", "severity", "success", "actor", "actor_user_id", "user_id",
              "resource_type", "resource_id", "actor_ip", "search", "start_time", "end_time")

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> tuple[AuditQuery, dict[str, str]]:
        """(query, errors); a field with an error is left out of the query."""
        raw = {key: str(params.get(key, "")).strip()[:255] for key in cls.FIELDS}
        # NUL is dropped from the free-text search as in the other search boxes
        # (views/admin/_base.search_param); exact filters keep it and match nothing.
        raw["search"] = raw["search"].replace("\x00", "").strip()
        errors: dict[str, str] = {}
        query = cls(raw={k: v for k, v in raw.items() if v})
        query.event_type = raw["event_type"].upper()
        query.severity = raw["severity"].upper()
        if query.severity and query.severity not in SEVERITIES:
            errors["severity"] = "severity must be one of " + ", ".join(SEVERITIES)
            query.severity = ""
        success = raw["success"].lower()
        if success in ("true", "1", "yes"):
            query.success = True
        elif success in ("false", "0", "no"):
            query.success = False
        elif success:
            errors["success"] = "success must be true or false"
        for name in ("actor", "actor_user_id", "user_id", "resource_id", "actor_ip", "search"):
            setattr(query, name, raw[name])
        query.resource_type = raw["resource_type"].upper()
        for name in ("start_time", "end_time"):
            if raw[name]:
                try:
                    setattr(query, name, parse_time(raw[name]))
                except ValueError:
                    errors[name] = (f"{name} must be an RFC 3339 time such as "
                                    "2026-02-08T10:00:00Z")
        return query, errors

    def conditions(self) -> list[Any]:
        where: list[Any] = []
        if self.event_type:
            where.append(AuditLog.event_type == self.event_type)
        if self.severity:
            where.append(AuditLog.severity == self.severity)
        if self.success is not None:
            where.append(AuditLog.success.is_(self.success))
        if self.actor:
            where.append(or_(AuditLog.actor_username == self.actor,
                             AuditLog.actor_user_id == self.actor))
        if self.actor_user_id:
            where.append(AuditLog.actor_user_id == self.actor_user_id)
        if self.user_id:
            where.append(or_(AuditLog.actor_user_id == self.user_id,
                             (AuditLog.resource_type == "USER")
                             & (AuditLog.resource_id == self.user_id)))
        if self.resource_type:
            where.append(AuditLog.resource_type == self.resource_type)
        if self.resource_id:
            where.append(AuditLog.resource_id == self.resource_id)
        if self.actor_ip:
            where.append(AuditLog.actor_ip == self.actor_ip)
        if self.search:
            where.append(or_(_contains(AuditLog.action, self.search),
                             _contains(AuditLog.resource_name, self.search),
                             _contains(AuditLog.actor_username, self.search)))
        if self.start_time is not None:
            where.append(AuditLog.event_time >= self.start_time)
        if self.end_time is not None:
            where.append(AuditLog.event_time <= self.end_time)
        return where

    def statement(self) -> Select:
        return (select(AuditLog).where(*self.conditions())
                .order_by(AuditLog.event_time.desc(), AuditLog.id))


def list_audit(db: Session, query: AuditQuery, *, page: int = 1, page_size: int = 20,
               clamp: bool = True) -> Page:
    params = dict(query.raw)
    params["page_size"] = str(page_size)
    return paginate(db, query.statement(), page=page, page_size=page_size, clamp=clamp,
                    params=params)


def audit_event_types(db: Session) -> list[str]:
    return sorted(set(EVENT_TYPES) | set(db.scalars(select(AuditLog.event_type).distinct())))


def audit_json(row: AuditLog) -> dict[str, Any]:
    return {
        "id": row.id, "event_type": row.event_type, "event_time": rfc3339(row.event_time),
        "severity": row.severity, "actor_user_id": row.actor_user_id,
        "actor_username": row.actor_username, "actor_ip": row.actor_ip,
        "resource_type": row.resource_type, "resource_id": row.resource_id,
        "resource_name": row.resource_name, "action": row.action,
        "details": row.details or {}, "success": bool(row.success),
        "error_message": row.error_message, "user_agent": row.user_agent,
        "request_path": row.request_path, "request_method": row.request_method,
        "created_at": rfc3339(row.created_at),
    }


def audit_stats(db: Session, query: AuditQuery, *, default_days: int = 30) -> dict[str, Any]:
    """Counts by type and severity, successes and failures, over the query's time
    window (the last ``default_days`` days when it names neither bound)."""
    if query.start_time is None and query.end_time is None:
        query.end_time = utcnow().replace(microsecond=0)
        query.start_time = query.end_time - dt.timedelta(days=default_days)
    where = query.conditions()
    by_type = dict(db.execute(select(AuditLog.event_type, func.count()).where(*where)
                              .group_by(AuditLog.event_type)
                              .order_by(func.count().desc(), AuditLog.event_type)).all())
    by_severity = dict(db.execute(select(AuditLog.severity, func.count()).where(*where)
                                  .group_by(AuditLog.severity)).all())
    by_success = dict(db.execute(select(AuditLog.success, func.count()).where(*where)
                                 .group_by(AuditLog.success)).all())
    success = sum(n for k, n in by_success.items() if k)
    failure = sum(n for k, n in by_success.items() if not k)
    return {
        "stats": {"total_events": success + failure, "events_by_type": by_type,
                  "events_by_severity": by_severity, "success_count": success,
                  "failure_count": failure},
        "start_time": rfc3339(query.start_time),
        "end_time": rfc3339(query.end_time),
    }


def export_rows(db: Session, query: AuditQuery, limit: int | None = None) -> list[AuditLog]:
    return list(db.scalars(query.statement().limit(limit or EXPORT_LIMIT)))


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (CWE-1236)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def audit_csv(rows: list[AuditLog]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        writer.writerow([_cell(v) for v in (
            rfc3339(row.event_time), row.event_type, row.severity, row.actor_username,
            row.actor_ip, row.resource_type, row.resource_name, row.action,
            "Yes" if row.success else "No", row.error_message)])
    return out.getvalue()
