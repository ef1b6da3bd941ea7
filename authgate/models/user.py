from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from authgate.models.meta import Base, new_uuid, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    # Unique when present; external and social users may arrive without one.
    email: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    # argon2id ("$argon2id$...") or an imported bcrypt hash ("$2a$..."); empty for
    # users who only sign in through an external source.
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(20), default="user")
    full_name: Mapped[str] = mapped_column(String(255), default="")
    avatar_url: Mapped[str] = mapped_column(String(1024), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    external_id: Mapped[str | None] = mapped_column(String(255), index=True, nullable=True)
    auth_source: Mapped[str] = mapped_column(String(50), default="local")
    # Every browser session carries the value it was signed in with
    # (authgate.security.log_in) and is refused once the value has moved on, so
    # end_sessions() signs the user out of every browser, copies of a cookie included.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def end_sessions(self) -> None:
        """End every browser session of this user at its next request (logout,
        password reset, disable).  Saved with the request's transaction."""
        self.session_generation = (self.session_generation or 0) + 1
