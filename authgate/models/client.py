from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authgate.models.meta import Base, utcnow


class OAuthClient(Base):
    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    # Never the secret itself: "hmac-sha256$<hex>" (keyed with SESSION_SECRET-independent
    # pepper, see authgate.services.secrets) or an imported bcrypt hash.  Empty for
    # public clients.
    client_secret_hash: Mapped[str] = mapped_column(String(255), default="")
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    user_id: Mapped[str] = mapped_column(String(36), default="")  # owner
    scopes: Mapped[str] = mapped_column(String(1024), default="email profile")
    grant_types: Mapped[str] = mapped_column(String(512), default="")
    redirect_uris_json: Mapped[str] = mapped_column("redirect_uris", Text, default="[]")
    client_type: Mapped[str] = mapped_column(String(20), default="public")
    enable_device_flow: Mapped[bool] = mapped_column(Boolean, default=True)
    enable_auth_code_flow: Mapped[bool] = mapped_column(Boolean, default=False)
    enable_client_credentials_flow: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="active")
    token_profile: Mapped[str] = mapped_column(String(20), default="standard")
    project: Mapped[str] = mapped_column(String(64), default="")
    service_account: Mapped[str] = mapped_column(String(255), default="")
    created_by: Mapped[str] = mapped_column(String(36), default="")
    # RFC 7592: SHA-256 hex of the registration access token of a client created by
    # dynamic registration (authgate.services.registration); empty otherwise.
    registration_access_token_hash: Mapped[str] = mapped_column(String(64), default="",
                                                                server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @property
    def redirect_uris(self) -> list[str]:
        try:
            value = json.loads(self.redirect_uris_json or "[]")
        except ValueError:
            return []
        return [str(v) for v in value] if isinstance(value, list) else []

    @redirect_uris.setter
    def redirect_uris(self, uris: list[str]) -> None:
        self.redirect_uris_json = json.dumps(list(uris))

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    @property
    def is_public(self) -> bool:
        return self.client_type == "public"

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def refresh_grant_types(self) -> None:
        flows = []
        if self.enable_device_flow:
            flows.append("device_code")
        if self.enable_auth_code_flow:
            flows.append("authorization_code")
        if self.enable_client_credentials_flow:
            flows.append("client_credentials")
        self.grant_types = " ".join(flows)
