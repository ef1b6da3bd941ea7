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
    jobs: Any = None  # authgate.jobs.Scheduler of a serving process
    pacer: Any = None  # authgate.pacing.Pacer; None = device polls paced in the database
    # With RATE_LIMIT_STORE=redis: the one connection pool the rate limiter and the
    # polling pace share (authgate.ratelimit.redis_pool).
    redis_pool: Any = None
    client_cache: Any = None  # authgate.clientcache.ClientCache
    client_listener: Any = None  # its PostgreSQL change feed (serving processes)

    def start_jobs(self) -> None:
        """What a serving process (not a test) runs beside its requests: scheduled
        cleanup and audit retention, the PostgreSQL client-change feed, glibc's
        mmap threshold pinned so the resident size does not creep up, and log
        records without the fields no configured format shows."""
        from authgate.jobs import Scheduler
        from authgate.logsetup import skip_unused_record_fields
        from authgate.memory import pin_mmap_threshold

        pin_mmap_threshold()
        skip_unused_record_fields()

        if self.jobs is None:
            self.jobs = Scheduler(self)
            self.jobs.start()
        if (self.client_listener is None and self.client_cache is not None
                and self.client_cache.ttl > 0 and self.engine.dialect.name == "postgresql"):
            from authgate.clientcache import PostgresListener

            # Other processes' (and psql's) client changes reach this one's cache.
            self.client_listener = PostgresListener(self.engine, self.client_cache)
            self.client_listener.start()

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()
        if self.client_listener is not None:
            self.client_listener.stop()
        for source in self.auth.sources:  # e.g. the HTTP-API source's connection pool
            close = getattr(source, "close", None)
            if close is not None:
                close()
        self.audit.close()
        if self.pacer is not None:
            self.pacer.close()
        if self.redis_pool is not None:
            self.redis_pool.disconnect()
        self.engine.dispose()
