"""The audit pipeline: every emitted event type is documented, sinks are isolated
from each other and from the request, and ENABLE_AUDIT_LOGGING switches the sinks
(not the metrics) off."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from authgate import hookimpl
from authgate.audit import EVENT_TYPES
from authgate.components import ComponentSpec
from authgate.models import AuditLog
from authgate.testing import form

ROOT = Path(__file__).resolve().parents[2]
EVENTS_LOGGER = "authgate.audit.events"


# ---------------------------------------------------------------------------
# Every event type the code emits is listed in authgate.audit.EVENT_TYPES
# ---------------------------------------------------------------------------


def _param_index(func: ast.FunctionDef | ast.AsyncFunctionDef, names: set[str]) -> int | None:
    args = [a.arg for a in func.args.args]
    for name in names:
        if name in args:
            index = args.index(name)
            return index - 1 if args and args[0] == "self" else index
    return None


def _strings(node: ast.AST, scope: ast.AST | None) -> set[str]:
    """String constants an argument can be: a literal, a conditional of literals, or a
    local variable assigned such values in ``scope``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body, scope) | _strings(node.orelse, scope)
    if isinstance(node, ast.Name) and scope is not None:
        found: set[str] = set()
        for sub in ast.walk(scope):
            if isinstance(sub, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == node.id for t in sub.targets):
                found |= _strings(sub.value, None)
        return found
    return set()


def emitted_event_types() -> dict[str, set[str]]:
    """{event type: files} for every call of an event-recording function: ``record``,
    ``make_event`` and any function whose parameter is named event/event_type."""
    files = [p for d in ("authgate", "plugins") for p in (ROOT / d).rglob("*.py")]
    trees = {p: ast.parse(p.read_text(encoding="utf-8")) for p in files}
    position = {"record": 1, "make_event": 0}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name not in (
                    "record", "make_event"):
                index = _param_index(node, {"event", "event_type"})
                if index is not None:
                    position[node.name] = index
    found: dict[str, set[str]] = {}
    for path, tree in trees.items():
        functions = [n for n in ast.walk(tree)
                     if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for func in functions:
            for call in ast.walk(func):
                if not isinstance(call, ast.Call):
                    continue
                callee = call.func
                name = callee.attr if isinstance(callee, ast.Attribute) else getattr(
                    callee, "id", None)
                index = position.get(name)
                if index is None:
                    continue
                if index < len(call.args):
                    arg = call.args[index]
                else:
                    arg = next((k.value for k in call.keywords
                                if k.arg in ("event", "event_type")), None)
                    if arg is None:
                        continue
                for value in _strings(arg, func):
                    found.setdefault(value, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_emitted_event_type_is_documented():
    emitted = emitted_event_types()
    # The scan finds the calls it should (through wrappers and variables too).
    assert {"CLIENT_APPROVED", "CLIENT_REJECTED", "DEVICE_CODE_DENIED", "TOKEN_DISABLED",
            "CLIENT_REGISTERED", "RATE_LIMIT_EXCEEDED", "USER_PASSWORD_RESET"} <= set(emitted)
    undocumented = {e: sorted(f) for e, f in emitted.items() if e not in EVENT_TYPES}
    assert not undocumented, f"add these to authgate.audit.EVENT_TYPES: {undocumented}"


def test_every_documented_event_type_is_emitted():
    stale = set(EVENT_TYPES) - set(emitted_event_types())
    assert not stale, f"documented but never emitted: {sorted(stale)}"


def test_the_admin_filter_and_the_metrics_know_the_same_event_types():
    from authgate.metrics import Metrics
    from authgate.services import admin

    assert set(admin.EVENT_TYPES) == set(EVENT_TYPES)
    from prometheus_client import CollectorRegistry

    assert set(Metrics(CollectorRegistry()).handlers) <= set(EVENT_TYPES)
    for event, description in EVENT_TYPES.items():
        assert description.endswith("."), event


# ---------------------------------------------------------------------------
# A failing sink fails neither the request nor the other sink (issue 9)
# ---------------------------------------------------------------------------


class RaisingHandler(logging.Handler):
    """A handler that raises out of ``handle`` (not through ``handleError``)."""

    def handle(self, record):
        raise OSError("log collector unreachable")


@pytest.fixture
def events_logger():
    logger = logging.getLogger(EVENTS_LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logger.setLevel(logging.INFO)
    yield logger
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def device_code(app):
    return app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id},
                            status=200).json


def rows(app, event_type):
    with app.db() as db:
        return db.scalars(select(AuditLog).where(AuditLog.event_type == event_type)).all()


@pytest.mark.parametrize("sinks", ["database log", "log database"])
def test_log_sink_raising_leaves_request_and_database_row(make_app, events_logger, caplog,
                                                          sinks):
    app = make_app({"authgate.audit_sinks": sinks})
    events_logger.addHandler(RaisingHandler())
    with caplog.at_level(logging.ERROR, logger="authgate.audit"):
        code = device_code(app)  # DEVICE_CODE_GENERATED
    assert code["user_code"]
    (row,) = rows(app, "DEVICE_CODE_GENERATED")
    assert row.details["user_code"] == code["user_code"]
    # Not lost silently: the failure is logged with the undelivered event in full.
    failure = next(r for r in caplog.records if "audit sink 'log' failed" in r.getMessage())
    undelivered = json.loads(failure.getMessage().split("undelivered events: ", 1)[1])
    assert undelivered[0]["event_type"] == "DEVICE_CODE_GENERATED"
    assert undelivered[0]["id"] == row.id
    assert app.runtime.audit.failures == 1


def test_log_sink_to_an_unwritable_file_leaves_request_and_database_row(
        make_app, events_logger, tmp_path, caplog):
    app = make_app({"authgate.audit_sinks": "database log"})
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    # As an ini [handler_...] with delay: opened on the first event, which fails
    # (a path under a regular file: unwritable even for root).
    events_logger.addHandler(logging.FileHandler(blocker / "audit.log", delay=True))
    with caplog.at_level(logging.ERROR, logger="authgate.audit"):
        code = device_code(app)
    assert code["device_code"]
    (row,) = rows(app, "DEVICE_CODE_GENERATED")
    assert row.details["user_code"] == code["user_code"]
    # The log sink's failure is reported with the event it could not write.
    failure = next(r for r in caplog.records if "audit sink 'log' failed" in r.getMessage())
    assert row.id in failure.getMessage()
    assert "NotADirectoryError" in caplog.text


class BrokenSink:
    name = "broken"

    def write(self, events):
        raise OSError("disk full")


class BrokenSinkPlugin:
    __name__ = "broken_sink_pipeline"

    @hookimpl
    def authgate_register_audit_sinks(self):
        return [ComponentSpec("broken", lambda ctx: BrokenSink(), "Always fails")]


def test_failing_database_like_sink_does_not_silence_the_log_sink(make_app, caplog):
    app = make_app({"authgate.audit_sinks": "broken log"}, plugins=[BrokenSinkPlugin()])
    with caplog.at_level(logging.INFO):
        code = device_code(app)
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == EVENTS_LOGGER]
    assert [e["event_type"] for e in logged] == ["DEVICE_CODE_GENERATED"]
    assert logged[0]["details"]["user_code"] == code["user_code"]
    assert any("audit sink 'broken' failed" in r.getMessage() for r in caplog.records)


def test_failure_events_of_a_rolled_back_request_reach_both_sinks(make_app, caplog):
    app = make_app({"authgate.audit_sinks": "database log"})
    with caplog.at_level(logging.INFO, logger=EVENTS_LOGGER):
        login = form(app.testapp.get("/login"), "/login")
        login["username"], login["password"] = "admin", "wrong-password"
        login.submit(status=401)
    assert len(rows(app, "AUTHENTICATION_FAILURE")) == 1
    assert any(json.loads(r.getMessage())["event_type"] == "AUTHENTICATION_FAILURE"
               for r in caplog.records if r.name == EVENTS_LOGGER)


# ---------------------------------------------------------------------------
# ENABLE_AUDIT_LOGGING
# ---------------------------------------------------------------------------


def scrape(app) -> dict:
    samples = {}
    for family in text_string_to_metric_families(app.testapp.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_audit_logging_off_writes_nothing_but_metrics_still_count(make_app, caplog):
    app = make_app({"authgate.audit_sinks": "database log"},
                   environ={"ENABLE_AUDIT_LOGGING": "false", "METRICS_ENABLED": "true"})
    assert app.runtime.audit.enabled is False
    with caplog.at_level(logging.INFO, logger=EVENTS_LOGGER):
        device_code(app)
        device_code(app)
    with app.db() as db:
        assert db.scalars(select(AuditLog)).all() == []
    assert not [r for r in caplog.records if r.name == EVENTS_LOGGER]
    assert scrape(app)[("oauth_device_codes_total", (("result", "success"),))] == 2.0


def test_audit_logging_on_by_default(make_app):
    app = make_app({"authgate.audit_sinks": "database log"})
    assert app.runtime.audit.enabled is True
    device_code(app)
    assert len(rows(app, "DEVICE_CODE_GENERATED")) == 1


def test_sinks_are_synchronous_nothing_to_flush(make_app):
    """The event is in the table when the response arrives: shutdown has nothing to flush."""
    app = make_app()
    device_code(app)
    assert len(rows(app, "DEVICE_CODE_GENERATED")) == 1


# ---------------------------------------------------------------------------
# AUDIT_LOG_BUFFER_SIZE: the database sink off the response path
# ---------------------------------------------------------------------------


def database_sink(app):
    return next(sink for sink in app.runtime.audit.sinks if sink.name == "database")


def test_buffered_sink_stores_events_from_a_writer_thread(make_app):
    app = make_app(environ={"AUDIT_LOG_BUFFER_SIZE": "100"})
    sink = database_sink(app)
    assert sink.background is True
    for _ in range(5):
        device_code(app)
    sink.flush()  # what the writer thread had queued is now committed
    assert len(rows(app, "DEVICE_CODE_GENERATED")) == 5
    import threading

    assert "authgate-audit-db" in {thread.name for thread in threading.enumerate()}


def test_buffered_sink_is_drained_at_shutdown(make_app):
    """Shutdown (runtime.close, what SIGTERM leads to) stores every queued event."""
    app = make_app(environ={"AUDIT_LOG_BUFFER_SIZE": "1000",
                            "AUDIT_SHUTDOWN_TIMEOUT": "30s"})
    sink = database_sink(app)
    events = [app.runtime.audit.make_event("DEVICE_CODE_GENERATED", action=f"queued {n}")
              for n in range(300)]
    for event in events:
        sink.write([event])
    sink.close()
    assert len(rows(app, "DEVICE_CODE_GENERATED")) == 300


def test_buffered_sink_stores_critical_events_before_returning(make_app):
    app = make_app(environ={"AUDIT_LOG_BUFFER_SIZE": "100"})
    sink = database_sink(app)
    event = app.runtime.audit.make_event("SUSPICIOUS_ACTIVITY", action="refresh token reuse",
                                         severity="CRITICAL")
    sink.write([event])  # no flush: a CRITICAL event is committed on return
    assert [row.id for row in rows(app, "SUSPICIOUS_ACTIVITY")] == [event.id]


def test_unbuffered_sink_is_the_default(make_app):
    app = make_app()
    assert database_sink(app).background is False
