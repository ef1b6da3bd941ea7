"""Deleting rows nobody needs any more, in small batches so no lock is held long."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from authgate.models import AuditLog, AuthorizationCode, DeviceCode, Token, utcnow
from authgate.settings import Setting

log = logging.getLogger("authgate.cleanup")

SETTINGS = [
    Setting("enable_expired_token_cleanup", "ENABLE_EXPIRED_TOKEN_CLEANUP", "bool", False,
            section="Maintenance",
            help="Delete expired tokens, device codes and authorization codes on a schedule "
                 "(`authgate cleanup` does it on demand)."),
    Setting("expired_token_cleanup_interval", "EXPIRED_TOKEN_CLEANUP_INTERVAL", "duration",
            dt.timedelta(hours=1), minimum=dt.timedelta(minutes=1), section="Maintenance",
            help="How often the scheduled cleanup runs."),
    Setting("audit_log_retention", "AUDIT_LOG_RETENTION", "duration", dt.timedelta(hours=2160),
            section="Maintenance",
            help="Audit events older than this are deleted (daily, and by `authgate cleanup`). "
                 "`0` keeps them forever."),
    Setting("cleanup_batch_size", "CLEANUP_BATCH_SIZE", "int", 1000, minimum=1,
            section="Maintenance",
            help="Rows deleted per transaction, so a cleanup never blocks requests for long."),
]


@dataclass
class CleanupReport:
    deleted: dict[str, int] = field(default_factory=dict)

    def total(self) -> int:
        return sum(self.deleted.values())

    def __str__(self) -> str:
        return ", ".join(f"{table}: {count}" for table, count in self.deleted.items())


def _delete_in_batches(engine: Engine, model, condition, batch: int) -> int:
    total = 0
    while True:
        with engine.begin() as connection:
            ids = connection.execute(
                select(model.id).where(condition).limit(batch)).scalars().all()
            if not ids:
                return total
            connection.execute(delete(model).where(model.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch:
            return total


def purge_expired(engine: Engine, *, batch: int = 1000,
                  now: dt.datetime | None = None) -> CleanupReport:
    """Expired tokens, device codes and authorization codes."""
    now = now or utcnow()
    report = CleanupReport()
    for name, model in (("tokens", Token), ("device_codes", DeviceCode),
                        ("authorization_codes", AuthorizationCode)):
        report.deleted[name] = _delete_in_batches(engine, model, model.expires_at < now, batch)
    return report


def purge_audit(engine: Engine, retention: dt.timedelta, *, batch: int = 1000,
                now: dt.datetime | None = None) -> int:
    if retention <= dt.timedelta(0):
        return 0
    cutoff = (now or utcnow()) - retention
    return _delete_in_batches(engine, AuditLog, AuditLog.created_at < cutoff, batch)


def run_all(engine: Engine, settings, *, now: dt.datetime | None = None) -> CleanupReport:
    report = purge_expired(engine, batch=settings.cleanup_batch_size, now=now)
    report.deleted["audit_logs"] = purge_audit(engine, settings.audit_log_retention,
                                               batch=settings.cleanup_batch_size, now=now)
    return report
