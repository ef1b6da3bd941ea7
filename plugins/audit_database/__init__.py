"""Audit sink that stores events in the ``audit_logs`` table (what the admin pages read)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.interfaces import AuditEvent
from authgate.models import AuditLog
from authgate.rawsql import group_writer, prebuilt
from authgate.settings import Setting

log = logging.getLogger("authgate.audit")

_FIELDS = tuple(f.name for f in fields(AuditEvent))
_INSERT = prebuilt(insert(AuditLog.__table__))


def _row(event: AuditEvent) -> dict[str, Any]:
    """The audit_logs row of ``event``: what ``event.as_dict()`` gives (details a
    shallow copy), without its deep copy, and the times as datetimes."""
    row = {name: getattr(event, name) for name in _FIELDS}
    row["details"] = dict(event.details)
    row["created_at"] = event.event_time
    return row


class DatabaseSink:
    """Each ``write`` returns once its events are committed, or raises.

    Concurrent writes share one transaction (group commit, the engine's
    :class:`authgate.rawsql.GroupWriter`, which the API lane's token inserts
    share too): while one thread inserts, the others queue their rows, and the
    next writer inserts the whole queue with one INSERT and one COMMIT.  Under
    load that turns N short write transactions (N lock acquisitions on SQLite)
    into one, and no caller returns before its own rows are stored.  A batch
    that fails is retried call by call, so a bad event only fails the ``write``
    it came in.
    """

    name = "database"

    def __init__(self, engine: Engine, *, background: bool = False,
                 max_pending: int = 10_000, max_batch: int = 500,
                 close_timeout: float = 10.0):
        self.engine = engine
        # Background mode (AUDIT_LOG_BUFFER_SIZE > 0): write() only queues, one
        # thread inserts in batches, close() drains (up to AUDIT_SHUTDOWN_TIMEOUT).
        # CRITICAL events are still stored before write() returns.
        self.background = background
        self.max_batch = max_batch
        self.close_timeout = close_timeout
        self._pending: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def write(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        rows = [_row(event) for event in events]
        if (self.background and not any(row["severity"] == "CRITICAL" for row in rows)
                and self._enqueue(rows)):
            return
        self._write_now(rows)

    def store_in(self, unit: Any, events: Sequence[AuditEvent]) -> bool:
        """Store ``events`` in a request's raw unit of work on this sink's engine, to
        commit with it (:meth:`authgate.audit.AuditDispatcher.enlist`): one
        transaction (on the API lane: one group commit) instead of two.  Declined in
        background mode, where writes never wait for the database."""
        if self.background or getattr(unit, "engine", None) is not self.engine:
            return False
        unit.execute(_INSERT, [_row(event) for event in events])
        return True

    def _write_now(self, rows: list[dict[str, Any]]) -> None:
        # Its own short transaction: the request's transaction has already
        # committed (or aborted) by the time events are delivered.  One prebuilt
        # INSERT on a raw pooled connection (authgate.rawsql): every token and
        # introspection call writes one, and SQLAlchemy's execution machinery cost
        # several times the insert itself.
        group_writer(self.engine).write([(_INSERT, rows)])

    # -- background mode -------------------------------------------------------

    def _enqueue(self, rows: list[dict[str, Any]]) -> bool:
        """Queue rows for the writer thread; False when the queue is full (the
        caller then writes them itself: slower, never dropped)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="authgate-audit-db")
                    self._thread.start()
        try:
            self._pending.put_nowait(rows)
        except queue.Full:
            return False
        return True

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._pending.get()
            batches = [first] if first is not None else []
            stop = first is None
            rows = list(first or ())
            while not stop and len(rows) < self.max_batch:
                try:
                    more = self._pending.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    batches.append(more)
                    rows.extend(more)
            try:
                if rows:
                    self._store(batches, rows)
            finally:
                for _ in range(len(batches) + (1 if stop else 0)):
                    self._pending.task_done()

    def _store(self, batches: list[list[dict[str, Any]]], rows: list[dict[str, Any]]) -> None:
        try:
            self._write_now(rows)
            return
        except Exception as error:
            failed = [(batches[0], error)] if len(batches) == 1 else []
        if len(batches) > 1:
            for batch in batches:
                try:
                    self._write_now(batch)
                except Exception as error:
                    failed.append((batch, error))
        for batch, error in failed:
            # Never silently: the events go to the log in full, like the dispatcher's.
            log.error("audit sink 'database' failed; undelivered events: %s",
                      json.dumps(batch, default=str), exc_info=error)

    def flush(self) -> None:
        """Wait until every queued event is stored (background mode)."""
        if self._thread is not None:
            self._pending.join()

    def close(self) -> None:
        """Store what is queued, then stop the writer thread (shutdown)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._pending.put(None)
            thread.join(timeout=self.close_timeout)
            if thread.is_alive():
                log.error("audit sink 'database': %d queued write(s) not stored within "
                          "AUDIT_SHUTDOWN_TIMEOUT (%.0f s)", self._pending.qsize(),
                          self.close_timeout)
        self._thread = None


def _factory(ctx: BuildContext) -> DatabaseSink:
    size = int(ctx.settings.get("audit_log_buffer_size", 0) or 0)
    timeout = ctx.settings.get("audit_shutdown_timeout", None)
    return DatabaseSink(ctx.engine, background=size > 0, max_pending=max(size, 1),
                        close_timeout=timeout.total_seconds() if timeout else 10.0)


@hookimpl
def authgate_add_settings(spec):
    spec.add(Setting(
        "audit_log_buffer_size", "AUDIT_LOG_BUFFER_SIZE", "int", 0, minimum=0,
        section="Audit",
        help="Database audit sink: 0 = each event is stored before the response is "
             "sent; N > 0 = events are queued (up to N writes) and stored in batches by "
             "a background thread, off the response path. A full queue makes the request "
             "store its own events (slower, never dropped); CRITICAL events are always "
             "stored before the response; the queue is drained at shutdown."))
    spec.add(Setting(
        "audit_shutdown_timeout", "AUDIT_SHUTDOWN_TIMEOUT", "duration",
        dt.timedelta(seconds=10), section="Audit",
        help="At shutdown, how long to wait for queued audit events to be stored "
             "(with AUDIT_LOG_BUFFER_SIZE > 0)."))


@hookimpl
def authgate_register_audit_sinks():
    return [ComponentSpec("database", _factory, "The audit_logs table of the selected store")]
