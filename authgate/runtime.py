"""The objects built once at start-up and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from authgate.audit import AuditDispatcher
    from authgate.auth import AuthChain
    from authgate.interfaces import ISigner, IStore
    from authgate.settings import Settings, SettingsSpec


@dataclass
class Runtime:
    settings: Settings
    spec: SettingsSpec
    pm: pluggy.PluginManager
    store: IStore
    engine: Engine
    session_factory: sessionmaker[Session]
    signer: ISigner
    auth: AuthChain
    audit: AuditDispatcher
    selected: dict[str, Any] = field(default_factory=dict)  # kind -> [Offered]

    def close(self) -> None:
        self.audit.close()
        self.engine.dispose()
