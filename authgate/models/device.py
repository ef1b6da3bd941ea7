from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from authgate.models.meta import Base, utcnow

PENDING = "pending"
AUTHORIZED = "authorized"
DENIED = "denied"
CONSUMED = "consumed"


class DeviceCode(Base):
    """One RFC 8628 device authorization request.

    ``device_code`` holds the SHA-256 hex digest of the device code, never the
    code itself (the code is 256 random bits, so a fast hash is enough).
    ``user_code`` is kept as displayed, ``XXXX-XXXX``.
    """

    __tablename__ = "device_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_code: Mapped[str] = mapped_column(String(64), unique=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True)
    scopes: Mapped[str] = mapped_column(String(1024), default="")
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    # 1 once the user authorized the device (and after redemption).
    is_used: Mapped[bool] = mapped_column(Boolean, default=False)
    user_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    interval: Mapped[int] = mapped_column(Integer, default=5)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    last_polled_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    authorized_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
