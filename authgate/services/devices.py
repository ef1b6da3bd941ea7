"""RFC 8628 device authorization: codes, approval and polling.

Every decision that two requests could race for (approve, deny, redeem) is a
single conditional UPDATE whose row count says who won.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authgate.models import DeviceCode, OAuthClient, User, utcnow
from authgate.models.device import AUTHORIZED, CONSUMED, DENIED, PENDING
from authgate.rawsql import prebuilt
from authgate.services import clients
from authgate.services.errors import OAuthError
from authgate.services.secrets import sha256_hex

if TYPE_CHECKING:
    from sqlalchemy.engine import Row

    from authgate.pacing import Pacer
    from authgate.rawsql import RawUnit

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# No 0/O, 1/I/L: nothing a person can misread on a TV screen.
USER_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
USER_CODE_LENGTH = 8
SLOW_DOWN_STEP = 5  # seconds, RFC 8628 §3.5
# What a poll reads, built once (every poll runs it).  A plain row of table columns: most
# polls end in authorization_pending, and a select of mapped attributes would pay the ORM's
# compile, result set-up and object building for them.  The one poll that wins the tokens
# loads the full row after its UPDATE.
_codes = DeviceCode.__table__.c
_POLL_STATE = prebuilt(select(_codes.id, _codes.client_id, _codes.status, _codes.expires_at,
                              _codes.interval).where(_codes.device_code == bindparam("hash")))
# The rest of a poll's statements, prebuilt too: every one of them may run on the API
# lane's raw connection (authgate.rawsql), which runs only prebuilt statements.
_PACE_IN_ROW = prebuilt(
    update(DeviceCode.__table__)
    .where(_codes.id == bindparam("row_id"),
           or_(_codes.last_polled_at.is_(None), _codes.last_polled_at <= bindparam("cutoff")))
    .values(last_polled_at=bindparam("now")))
_SLOW_DOWN = prebuilt(
    update(DeviceCode.__table__).where(_codes.id == bindparam("row_id"))
    .values(interval=_codes.interval + SLOW_DOWN_STEP, last_polled_at=bindparam("now")))
_CONSUME = prebuilt(
    update(DeviceCode.__table__)
    .where(_codes.id == bindparam("row_id"), _codes.status == AUTHORIZED)
    .values(status=CONSUMED, updated_at=bindparam("now")))
_GRANTED = prebuilt(select(_codes.id, _codes.client_id, _codes.user_id, _codes.scopes)
                    .where(_codes.id == bindparam("row_id")))


def format_user_code(raw: str) -> str:
    return f"{raw[:4]}-{raw[4:]}"


def normalize_user_code(text: str | None) -> str | None:
    """What a person typed -> the stored ``XXXX-XXXX`` form, or None if it cannot be one.

    Case-insensitive; dashes, spaces and other separators are ignored.
    """
    if not text:
        return None
    cleaned = re.sub(r"[\s\-_.]", "", text).upper()
    if len(cleaned) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in cleaned):
        return None
    return format_user_code(cleaned)


def generate_user_code() -> str:
    return format_user_code("".join(secrets.choice(USER_CODE_ALPHABET)
                                    for _ in range(USER_CODE_LENGTH)))


@dataclass
class NewDeviceCode:
    device_code: str  # shown to the client once, stored only as a hash
    row: DeviceCode


def create(db: Session, client: OAuthClient, scopes: list[str], *, lifetime: dt.timedelta,
           interval: int) -> NewDeviceCode:
    device_code = secrets.token_urlsafe(32)  # 256 bits
    for _attempt in range(8):
        row = DeviceCode(device_code=sha256_hex(device_code), user_code=generate_user_code(),
                         client_id=client.client_id, scopes=" ".join(scopes),
                         status=PENDING, interval=interval, expires_at=utcnow() + lifetime)
        try:
            with db.begin_nested():
                db.add(row)
                db.flush()
        except IntegrityError:
            continue  # user-code collision: draw another
        return NewDeviceCode(device_code, row)
    raise RuntimeError("could not allocate a unique user code")


def find_by_user_code(db: Session, user_code: str) -> DeviceCode | None:
    return db.scalars(select(DeviceCode).where(DeviceCode.user_code == user_code)).first()


class VerifyError(Exception):
    """Why a user code cannot be approved; ``kind`` picks the page text."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def check_pending(db: Session, user_code_input: str | None) -> tuple[DeviceCode, OAuthClient]:
    """The pending request behind a typed user code, or VerifyError(kind)."""
    code = normalize_user_code(user_code_input)
    if code is None:
        raise VerifyError("malformed" if user_code_input else "empty")
    row = find_by_user_code(db, code)
    if row is None:
        raise VerifyError("not_found")
    if row.status != PENDING:
        raise VerifyError("denied" if row.status == DENIED else "used")
    if row.expires_at <= utcnow():
        raise VerifyError("expired")
    client = clients.get_client(db, row.client_id)  # the client cache, as the token endpoint
    if client is None or not client.is_active or not client.enable_device_flow:
        raise VerifyError("client_inactive")
    return row, client


def decide(db: Session, row: DeviceCode, user: User, *, approve: bool) -> bool:
    """Approve or deny a pending code; False if someone else decided first or it expired."""
    now = utcnow()
    values = {"status": AUTHORIZED if approve else DENIED, "user_id": user.id,
              "updated_at": now}
    if approve:
        values.update(is_used=True, authorized_at=now)
    result = db.execute(
        update(DeviceCode)
        .where(DeviceCode.id == row.id, DeviceCode.status == PENDING,
               DeviceCode.expires_at > now)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def redeem(db: Session | RawUnit, device_code: str, client: OAuthClient, *,
           now: dt.datetime | None = None, pacer: Pacer | None = None) -> Row:
    """Poll a device code (RFC 8628 §3.4-3.5).  Returns the granted code (``user_id``,
    ``scopes``) when this poll wins the tokens; otherwise raises the OAuthError the
    client must see.

    ``pacer`` keeps the last-poll times (authgate.pacing); without one they are
    kept in the row (a write per poll).  Every statement is prebuilt, so ``db`` may
    be a Session or the API lane's raw unit."""
    now = now or utcnow()
    if not device_code or len(device_code) > 128:
        raise OAuthError("invalid_grant", "Unknown device code")
    row = db.execute(_POLL_STATE, {"hash": sha256_hex(device_code)}).first()
    if row is None or row.client_id != client.client_id:
        raise OAuthError("invalid_grant", "Unknown device code")
    if row.status == CONSUMED:
        raise OAuthError("invalid_grant", "The device code has already been used")
    if row.expires_at <= now:
        raise OAuthError("expired_token", "The device code has expired; start a new "
                                          "device authorization request")
    if row.status == DENIED:
        raise OAuthError("access_denied", "The user denied the authorization request")

    # Enforce the polling interval.  A little tolerance keeps a client that sleeps
    # exactly `interval` seconds from tripping on network jitter.
    interval = dt.timedelta(seconds=row.interval)
    tolerance = min(dt.timedelta(seconds=1), interval / 5)
    if pacer is not None:
        paced = pacer.poll(str(row.id), (interval - tolerance).total_seconds())
    else:
        paced = db.execute(_PACE_IN_ROW, {"row_id": row.id, "now": now,
                                          "cutoff": now - interval + tolerance}).rowcount == 1
    if not paced:
        # The raised interval is kept in the row (rare; must survive a restart).
        db.execute(_SLOW_DOWN, {"row_id": row.id, "now": now})
        raise OAuthError("slow_down", f"Polling too fast; wait at least "
                                      f"{row.interval + SLOW_DOWN_STEP} seconds between "
                                      "requests")
    if row.status == PENDING:
        raise OAuthError("authorization_pending", "The user has not yet approved the device")

    won = db.execute(_CONSUME, {"row_id": row.id, "now": now}).rowcount == 1
    if not won:
        raise OAuthError("invalid_grant", "The device code has already been used")
    return db.execute(_GRANTED, {"row_id": row.id}).first()
