from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authgate.models.meta import Base, utcnow


class AuditLog(Base):
    __tablename__ = "audit_logs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(50), index=True)
    event_time: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    severity: Mapped[str] = mapped_column(String(20))
    # 80 chars: machine actors are "client:<client_id>".
    actor_user_id: Mapped[str | None] = mapped_column(String(80), index=True, nullable=True)
    actor_username: Mapped[str | None] = mapped_column(String(255), nullable=True)
    actor_ip: Mapped[str | None] = mapped_column(String(45), index=True, nullable=True)
    resource_type: Mapped[str | None] = mapped_column(String(50), index=True, nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(80), index=True, nullable=True)
    resource_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    action: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    success: Mapped[bool] = mapped_column(Boolean, index=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    request_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    request_method: Mapped[str | None] = mapped_column(String(10), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True, default=utcnow)
