from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from authgate.models.meta import Base, new_uuid, utcnow

ACTIVE = "active"
DISABLED = "disabled"
REVOKED = "revoked"


class Token(Base):
    """An issued access or refresh token, stored by the SHA-256 of the JWT."""

    __tablename__ = "tokens"
    __table_args__ = (
        Index("idx_token_cat_status_exp", "token_category", "status", "expires_at"),
        Index("idx_token_client_status", "client_id", "status"),
        Index("idx_token_family_status", "token_family_id", "status"),
        Index("idx_token_auth_status", "authorization_id", "status"),
        Index("idx_token_user_status", "user_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    jti: Mapped[str] = mapped_column(String(64), default="")
    token_type: Mapped[str] = mapped_column(String(20), default="Bearer")
    token_category: Mapped[str] = mapped_column(String(20), default="access")
    status: Mapped[str] = mapped_column(String(20), default=ACTIVE)
    # A user id, or "client:<client_id>" for client-credentials tokens.
    user_id: Mapped[str] = mapped_column(String(80))
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("oauth_clients.client_id", ondelete="CASCADE"))
    scopes: Mapped[str] = mapped_column(String(1024), default="")
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    parent_token_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    token_family_id: Mapped[str] = mapped_column(String(36), default="")
    authorization_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Set for tokens issued from an authorization code, so a replayed code can
    # revoke everything it produced.
    authorization_code_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    grant_type: Mapped[str] = mapped_column(String(80), default="")
