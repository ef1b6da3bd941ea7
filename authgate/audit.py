"""Audit events: built by the core, broadcast to every selected sink.

Each sink is isolated: an exception in one is logged (with the events it
failed to take, so nothing is lost silently) and never stops the other sinks
or the request.  Within a request, events are delivered after the transaction
commits; failure events are delivered even when it aborts.

Delivery is synchronous: an event is in every sink before the response that
caused it is sent, so a shutdown has nothing buffered to flush.

``ENABLE_AUDIT_LOGGING=false`` switches the sinks off (nothing is written, the
admin audit pages stay empty); in-process observers such as the Prometheus
metrics still see every event.  :data:`EVENT_TYPES` lists every event type
the product emits.
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
from authgate.settings import Setting

if TYPE_CHECKING:
    from pyramid.request import Request

log = logging.getLogger("authgate.audit")

INFO, WARNING, ERROR, CRITICAL = "INFO", "WARNING", "ERROR", "CRITICAL"

SETTINGS: list[Setting] = [
    Setting("enable_audit_logging", "ENABLE_AUDIT_LOGGING", "bool", True, section="Audit",
            help="Write audit events to the audit sinks (AUTHGATE_AUDIT_SINKS: the "
                 "`audit_logs` table behind the admin audit pages, and/or JSON lines on "
                 "the `authgate.audit.events` logger). false: nothing is written and the "
                 "admin audit pages stay empty; Prometheus metrics, which count events "
                 "in-process, keep working."),
]

# Every event type the product emits (reference 9.1 plus DEVICE_CODE_DENIED, LOGOUT,
# AUTHORIZATION_CODE_DENIED and AUDIT_LOG_EXPORTED), with what it records.  A test
# checks that every event type in the code is listed here.
EVENT_TYPES: dict[str, str] = {
    "AUTHENTICATION_SUCCESS": "A user signed in with a password (local or HTTP API).",
    "AUTHENTICATION_FAILURE": "A password sign-in failed (WARNING), or the sign-in source "
                              "was unavailable (ERROR).",
    "LOGOUT": "A user signed out.",
    "OAUTH_AUTHENTICATION": "A user signed in with a social provider (GitHub, Gitea, "
                            "GitLab, Microsoft), or that sign-in was refused.",
    "DEVICE_CODE_GENERATED": "A device asked for a device code / user code pair.",
    "DEVICE_CODE_AUTHORIZED": "A user approved a device.",
    "DEVICE_CODE_DENIED": "A user denied a device.",
    "ACCESS_TOKEN_ISSUED": "An access token was issued (device or authorization code grant).",
    "REFRESH_TOKEN_ISSUED": "A refresh token was issued (or rotated).",
    "ID_TOKEN_ISSUED": "An OpenID Connect ID token was issued.",
    "TOKEN_REFRESHED": "A refresh token was exchanged for a new access token.",
    "TOKEN_REVOKED": "A token was revoked (by its user, an admin, or POST /oauth/revoke).",
    "TOKEN_DISABLED": "A token was disabled (can be enabled again).",
    "TOKEN_ENABLED": "A disabled token was enabled again.",
    "TOKEN_INTROSPECTED": "A client introspected a known token (RFC 7662).",
    "CLIENT_CREATED": "An OAuth client was created (admin, self-service app, CLI or "
                      "dynamic registration).",
    "CLIENT_REGISTERED": "A client registered itself at POST /oauth/register (RFC 7591); "
                         "it is pending approval.",
    "CLIENT_UPDATED": "An OAuth client was changed.",
    "CLIENT_DELETED": "An OAuth client was deleted (WARNING).",
    "CLIENT_SECRET_REGENERATED": "A client secret was created or regenerated (WARNING).",
    "CLIENT_APPROVED": "An administrator approved a pending client.",
    "CLIENT_REJECTED": "An administrator rejected a pending client.",
    "CLIENT_TOKENS_REVOKED_ALL": "Every token and consent of a client was revoked (CRITICAL).",
    "CLIENT_CREDENTIALS_TOKEN_ISSUED": "A client obtained a token with its own credentials.",
    "USER_CREATED": "A user was created (admin console or CLI).",
    "USER_UPDATED": "A user's profile was changed.",
    "USER_ROLE_CHANGED": "A user's role changed (WARNING).",
    "USER_PASSWORD_RESET": "A user's password was reset (WARNING).",
    "USER_DELETED": "A user was deleted (WARNING).",
    "USER_DISABLED": "A user was disabled and their tokens revoked (WARNING).",
    "USER_ENABLED": "A disabled user was enabled again.",
    "OAUTH_CONNECTION_DELETED": "An administrator unlinked a social-login connection "
                                "(WARNING).",
    "USER_AUTHORIZATION_GRANTED": "A user gave a client consent (authorize or device "
                                  "approval).",
    "USER_AUTHORIZATION_REVOKED": "A consent was revoked, with the tokens issued under it.",
    "AUTHORIZATION_CODE_GENERATED": "An authorization code was issued.",
    "AUTHORIZATION_CODE_EXCHANGED": "An authorization code was exchanged for tokens.",
    "AUTHORIZATION_CODE_DENIED": "A user denied a client on the consent page.",
    "RATE_LIMIT_EXCEEDED": "A request was refused with 429 (WARNING).",
    "SUSPICIOUS_ACTIVITY": "A refresh token or authorization code was reused; its token "
                           "family was revoked (CRITICAL).",
    "AUDIT_LOG_EXPORTED": "An administrator exported audit events as CSV.",
}

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
        self.enabled = enabled and bool(self.sinks)  # ENABLE_AUDIT_LOGGING
        self._lock = threading.Lock()
        self.failures = 0  # events a sink failed to take (also a metric later)
        self.observers: list[AuditObserver] = []
        # id(event) -> the sinks that stored it in its request's own transaction
        # (enlist): deliver() skips them for that event.
        self._enlisted: dict[int, tuple[IAuditSink, ...]] = {}

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

    def enlist(self, unit: Any, events: Sequence[AuditEvent]) -> None:
        """Let the sinks that can store ``events`` in ``unit`` (the API lane's unit of
        work, :class:`authgate.rawsql.RawUnit`) do so, so they commit together with
        what the request wrote -- one transaction instead of two.  A sink that
        declines or fails gets them after the commit as usual.  If the unit does not
        commit, call :meth:`forget`."""
        if not self.enabled or not events:
            return
        took = []
        for sink in self.sinks:
            store_in = getattr(sink, "store_in", None)
            if store_in is None:
                continue
            try:
                if store_in(unit, events):
                    took.append(sink)
            except Exception:
                log.exception("audit sink %r could not join the request's transaction; "
                              "it gets the events after the commit",
                              getattr(sink, "name", sink))
        if took:
            for event in events:
                self._enlisted[id(event)] = tuple(took)

    def forget(self, events: Sequence[AuditEvent]) -> None:
        """The unit the events were enlisted in did not commit."""
        for event in events:
            self._enlisted.pop(id(event), None)

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
        enlisted = [self._enlisted.pop(id(event), ()) for event in events] \
            if self._enlisted else None
        for sink in self.sinks:
            batch = events
            if enlisted is not None:
                batch = [e for e, took in zip(events, enlisted, strict=True) if sink not in took]
                if not batch:
                    continue
            try:
                sink.write(batch)
            except Exception:
                failed += len(batch)
                with self._lock:
                    self.failures += len(batch)
                # The events go to the log in full so an operator can recover them.
                log.exception(
                    "audit sink %r failed; undelivered events: %s",
                    getattr(sink, "name", sink),
                    json.dumps([e.as_dict() for e in batch], default=str),
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
