"""authgate.rawsql: prebuilt statements on a raw pooled connection store and read
exactly what SQLAlchemy does, on the selected store (SQLite, or PostgreSQL with
--authgate-store=postgres)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, insert, select, text, update

from authgate import rawsql
from authgate.models import AuditLog, DeviceCode, OAuthClient
from authgate.rawsql import NeedsSession, RawUnit

_audit = AuditLog.__table__
INSERT_AUDIT = rawsql.prebuilt(insert(_audit))
SELECT_AUDIT = rawsql.prebuilt(
    select(_audit.c.id, _audit.c.event_time, _audit.c.success, _audit.c.details)
    .where(_audit.c.id == bindparam("id")))
_codes = DeviceCode.__table__
TOUCH_CODE = rawsql.prebuilt(update(_codes).where(_codes.c.id == bindparam("row_id"))
                             .values(interval=_codes.c.interval + 1))


def audit_row(event_id: str, when: dt.datetime) -> dict:
    return {"id": event_id, "event_type": "TEST", "event_time": when, "severity": "INFO",
            "actor_user_id": None, "actor_username": None, "actor_ip": "192.0.2.1",
            "resource_type": None, "resource_id": None, "resource_name": None,
            "action": "test", "details": {"nested": [1, "two"], "flag": True},
            "success": False, "error_message": None, "user_agent": None,
            "request_path": None, "request_method": None, "created_at": when}


@pytest.fixture
def engine(app):
    return app.runtime.engine


def test_rows_stored_raw_read_back_the_same_through_sqlalchemy(app, engine):
    whole_second = dt.datetime(2026, 12, 7, 6, 0, 0)
    with RawUnit(engine) as unit:
        unit.execute(INSERT_AUDIT, [audit_row("raw-1", whole_second),
                                    audit_row("raw-2", whole_second.replace(microsecond=5))])
    with app.db() as db:
        got = {row.id: row for row in db.scalars(select(AuditLog).where(
            AuditLog.id.in_(["raw-1", "raw-2"])))}
    assert got["raw-1"].event_time == whole_second
    assert got["raw-2"].event_time == whole_second.replace(microsecond=5)
    assert got["raw-1"].details == {"nested": [1, "two"], "flag": True}
    assert got["raw-1"].success is False
    if engine.dialect.name == "sqlite":
        # The text SQLAlchemy writes, so string comparisons in SQL keep working.
        with engine.connect() as connection:
            stored = connection.execute(text(
                "SELECT event_time FROM audit_logs WHERE id = 'raw-1'")).scalar()
        assert stored == "2026-12-07 06:00:00.000000"


def test_rows_stored_by_sqlalchemy_read_back_the_same_raw(app, engine):
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678)
    with app.db() as db:
        db.execute(insert(AuditLog), [audit_row("orm-1", when)])
    with RawUnit(engine) as unit:
        row = unit.execute(SELECT_AUDIT, {"id": "orm-1"}).first()
        assert unit.execute(SELECT_AUDIT, {"id": "absent"}).first() is None
    assert row.event_time == when and row.success is False
    assert row.details == {"nested": [1, "two"], "flag": True}
    assert tuple(row) == ("orm-1", when, False, {"nested": [1, "two"], "flag": True})


def test_python_side_column_defaults_are_applied(app, engine):
    with app.db() as db:
        code = db.scalars(select(DeviceCode)).first()
        if code is None:
            client = db.scalars(select(OAuthClient)).first()
            code = DeviceCode(device_code="h" * 64, user_code="ABCD-EFGH",
                              client_id=client.client_id, scopes="read", status="pending",
                              interval=5, expires_at=dt.datetime(2030, 1, 1))
            db.add(code)
            db.flush()
        code.updated_at = dt.datetime(2000, 1, 1)
        row_id = code.id
    with RawUnit(engine) as unit:
        assert unit.execute(TOUCH_CODE, {"row_id": row_id}).rowcount == 1
    with app.db() as db:
        touched = db.get(DeviceCode, row_id)
        # onupdate=utcnow, as SQLAlchemy would have set it.
        assert touched.updated_at > dt.datetime(2025, 1, 1)
        assert touched.interval == 6


def test_only_prebuilt_statements_run(engine):
    with RawUnit(engine) as unit:
        with pytest.raises(NeedsSession):
            unit.execute(select(_audit.c.id))  # built here, not declared
        with pytest.raises(NeedsSession):
            unit.scalars(select(AuditLog))
        with pytest.raises(NeedsSession):
            unit.get(AuditLog, "x")


def test_a_unit_commits_on_success_and_rolls_back_on_error(app, engine):
    when = dt.datetime(2026, 12, 7)
    with pytest.raises(RuntimeError), RawUnit(engine) as unit:
        unit.execute(INSERT_AUDIT, [audit_row("rolled-back", when)])
        raise RuntimeError("the request failed")
    with RawUnit(engine) as unit:
        unit.execute(INSERT_AUDIT, [audit_row("kept", when)])
    with app.db() as db:
        ids = set(db.scalars(select(AuditLog.id).where(
            AuditLog.id.in_(["rolled-back", "kept"]))))
    assert ids == {"kept"}


def test_reads_open_no_transaction_and_hooks_see_every_statement(engine):
    seen: list[str] = []
    remove = rawsql.on_statement(engine, seen.append)
    try:
        unit = RawUnit(engine)
        unit.execute(SELECT_AUDIT, {"id": "x"})
        connection = unit._dbapi
        if engine.dialect.name == "postgresql":
            from psycopg.pq import TransactionStatus

            assert connection.info.transaction_status == TransactionStatus.IDLE
        else:
            assert not connection.in_transaction
        unit.execute(INSERT_AUDIT, [audit_row("hooked", dt.datetime(2026, 1, 1))])
        if engine.dialect.name == "postgresql":
            assert connection.info.transaction_status == TransactionStatus.INTRANS
        else:
            assert connection.in_transaction
        unit.commit()
        unit.close()
    finally:
        remove()
    assert [sql.split()[0] for sql in seen] == ["SELECT", "INSERT"]


def test_a_busy_thread_keeps_its_connection_and_an_idle_one_gives_it_back(
        app, engine, monkeypatch):
    def connection_of(**kwargs):
        unit = RawUnit(engine, sticky=True)
        unit.execute(SELECT_AUDIT, {"id": "x"})
        dbapi = unit._dbapi
        if kwargs.get("write"):
            unit.execute(INSERT_AUDIT, [audit_row("uncommitted", dt.datetime(2026, 1, 1))])
        unit.close()
        return dbapi

    first = connection_of()
    assert connection_of(write=True) is first  # kept across units of work
    with app.db() as db:  # what the second unit left uncommitted was rolled back
        assert db.get(AuditLog, "uncommitted") is None
    checked_out = engine.pool.checkedout()
    monkeypatch.setattr(rawsql._Held, "IDLE_SECONDS", 0.0)
    connection_of()  # idle for "too long": back to the pool first, then checked out
    assert engine.pool.checkedout() == checked_out
    engine.dispose()  # a disposed engine's kept connection is closed
    assert rawsql._HELD.held.get(engine) is None
