"""Audit events: built by the core, broadcast to every selected sink.

Each sink is isolated: an exception in one is logged (with the events it
failed to take, so nothing is lost silently) and never stops the other sinks
or the request.  Within a request, events are delivered after the transaction
commits; failure events are delivered even when it aborts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from authgate.interfaces import AuditEvent, IAuditSink
from authgate.models.meta import new_uuid

if TYPE_CHECKING:
    from pyramid.request import Request

log = logging.getLogger("authgate.audit")

INFO, WARNING, ERROR, CRITICAL = "INFO", "WARNING", "ERROR", "CRITICAL"

# Redaction is by exact key (case-insensitive), never by substring: a key such
# as "token_profile" or "tokens_revoked" is data, not a secret.
REDACTED_KEYS = frozenset({
    "password", "new_password", "client_secret", "secret", "token", "access_token",
    "refresh_token", "id_token", "device_code", "code", "code_verifier", "authorization",
    "api_secret", "jwt_secret", "session_secret",
})
REDACTED = "***REDACTED***"


def redact(details: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if key.lower() in REDACTED_KEYS:
            clean[key] = REDACTED
        elif isinstance(value, Mapping):
            clean[key] = redact(value)
        else:
            clean[key] = value
    return clean


def _truncate(value: str | None, limit: int) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[: limit - 3] + "..."


# An in-process observer (metrics): called with each delivered batch and the
# number of events the sinks failed to take in it.
AuditObserver = Callable[[Sequence[AuditEvent], int], None]


class AuditDispatcher:
    """Delivers events to the selected sinks, then to the in-process observers.

    ``observers`` are called with every batch (even when no sink is enabled) and
    never write anything themselves; like sinks, a failing observer is logged
    and ignored.  authgate.metrics counts events this way.
    """

    def __init__(self, sinks: Sequence[IAuditSink], enabled: bool = True):
        self.sinks = list(sinks)
        self.enabled = enabled and bool(self.sinks)
        self._lock = threading.Lock()
        self.failures = 0  # events a sink failed to take (also a metric later)
        self.observers: list[AuditObserver] = []

    def make_event(self, event_type: str, *, action: str, severity: str = INFO,
                   success: bool = True, details: Mapping[str, Any] | None = None,
                   **fields: Any) -> AuditEvent:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return AuditEvent(
            id=new_uuid(), event_type=event_type, event_time=now, severity=severity,
            action=action, success=success, details=redact(details or {}),
            user_agent=_truncate(fields.pop("user_agent", None), 500),
            request_path=_truncate(fields.pop("request_path", None), 500),
            request_method=_truncate(fields.pop("request_method", None), 10),
            **fields,
        )

    def deliver(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        failed = self._write(events) if self.enabled else 0
        for observer in self.observers:
            try:
                observer(events, failed)
            except Exception:
                log.exception("audit observer %r failed", observer)

    def _write(self, events: Sequence[AuditEvent]) -> int:
        failed = 0
        for sink in self.sinks:
            try:
                sink.write(events)
            except Exception:
                failed += len(events)
                with self._lock:
                    self.failures += len(events)
                # The events go to the log in full so an operator can recover them.
                log.exception(
                    "audit sink %r failed; undelivered events: %s",
                    getattr(sink, "name", sink),
                    json.dumps([e.as_dict() for e in events], default=str),
                )
        return failed

    def close(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing audit sink %r failed", getattr(sink, "name", sink))


# ---------------------------------------------------------------------------
# Request integration: request.audit(...)
# ---------------------------------------------------------------------------


def _pending(request: Request) -> list[AuditEvent]:
    pending = request.environ.get("authgate.audit_pending")
    if pending is None:
        pending = request.environ["authgate.audit_pending"] = []
        dispatcher: AuditDispatcher = request.registry.authgate.audit

        def after_commit(committed: bool) -> None:
            events = pending if committed else [e for e in pending if not e.success]
            dispatcher.deliver(events)
            pending.clear()

        tm = getattr(request, "tm", None)
        txn = tm.get() if tm is not None else None
        if txn is not None:
            txn.addAfterCommitHook(after_commit)
            # An aborted transaction never calls after-commit hooks; deliver the
            # failure events when the request finishes instead.
            def finished(req: Request) -> None:
                if pending:
                    after_commit(False)

            request.add_finished_callback(finished)
        else:
            request.add_finished_callback(lambda req: after_commit(True))
    return pending


def record(request: Request, event_type: str, *, action: str, severity: str = INFO,
           success: bool = True, details: Mapping[str, Any] | None = None,
           actor_user_id: str | None = None, actor_username: str | None = None,
           **fields: Any) -> AuditEvent:
    """Queue an audit event for this request; delivered after the transaction."""
    dispatcher: AuditDispatcher = request.registry.authgate.audit
    user = getattr(request, "current_user", None) if actor_user_id is None else None
    if user is not None:
        actor_user_id, actor_username = user.id, user.username
    actor_user_id = actor_user_id or None  # "" = explicitly anonymous
    event = dispatcher.make_event(
        event_type, action=action, severity=severity, success=success, details=details,
        actor_user_id=actor_user_id, actor_username=actor_username,
        actor_ip=request.client_ip, user_agent=request.user_agent,
        request_path=request.path, request_method=request.method, **fields,
    )
    _pending(request).append(event)
    return event
