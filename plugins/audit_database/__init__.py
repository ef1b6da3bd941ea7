"""Audit sink that stores events in the ``audit_logs`` table (what the admin pages read)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.interfaces import AuditEvent
from authgate.models import AuditLog


class DatabaseSink:
    name = "database"

    def __init__(self, engine: Engine):
        self.engine = engine

    def write(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        rows = []
        for event in events:
            row = event.as_dict()
            row["event_time"] = event.event_time
            row["created_at"] = event.event_time
            rows.append(row)
        # Its own short transaction: the request's transaction has already
        # committed (or aborted) by the time events are delivered.
        with self.engine.begin() as connection:
            connection.execute(insert(AuditLog), rows)


def _factory(ctx: BuildContext) -> DatabaseSink:
    return DatabaseSink(ctx.engine)


@hookimpl
def authgate_register_audit_sinks():
    return [ComponentSpec("database", _factory, "The audit_logs table of the selected store")]
