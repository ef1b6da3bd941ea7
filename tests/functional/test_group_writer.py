"""authgate.rawsql.GroupWriter: concurrent INSERT-only transactions committed
together, on the selected store; a bad row fails only the write it came in."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import func, insert, select

from authgate import rawsql
from authgate.models import AuditLog
from authgate.rawsql import GroupWriter, RawUnit

INSERT = rawsql.prebuilt(insert(AuditLog.__table__))


def row(event_id: str) -> dict:
    when = dt.datetime(2026, 12, 7, 6, 0)
    return {"id": event_id, "event_type": "TEST", "event_time": when, "severity": "INFO",
            "actor_user_id": None, "actor_username": None, "actor_ip": None,
            "resource_type": None, "resource_id": None, "resource_name": None,
            "action": "test", "details": {}, "success": True, "error_message": None,
            "user_agent": None, "request_path": None, "request_method": None,
            "created_at": when}


def stored(app, prefix: str) -> int:
    with app.db() as db:
        return db.scalar(select(func.count()).select_from(AuditLog)
                         .where(AuditLog.id.like(prefix + "%")))


def test_concurrent_writes_are_all_stored_in_fewer_transactions(app, monkeypatch):
    writer = GroupWriter(app.runtime.engine)
    batches: list[int] = []
    original = GroupWriter._run

    def counting(self, batch):
        batches.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(GroupWriter, "_run", counting)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                writer.write([(INSERT, [row(f"w{n}-{i}")])])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert stored(app, "w") == 8 * 40
    assert sum(batches) == 8 * 40
    assert len(batches) < 8 * 40  # some writes shared a transaction


def test_a_bad_row_fails_only_its_own_write(app):
    engine = app.runtime.engine
    with RawUnit(engine) as unit:
        unit.execute(INSERT, [row("dup")])
    writer = GroupWriter(engine)
    outcome: dict[str, object] = {}
    gate = threading.Barrier(3)

    def write(name: str, rows: list[dict]) -> None:
        gate.wait()
        try:
            writer.write([(INSERT, rows)])
            outcome[name] = "stored"
        except Exception as exc:  # the database's own error
            outcome[name] = exc

    threads = [threading.Thread(target=write, args=("good-1", [row("g1")])),
               threading.Thread(target=write, args=("bad", [row("b1"), row("dup")])),
               threading.Thread(target=write, args=("good-2", [row("g2")]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcome["good-1"] == "stored" and outcome["good-2"] == "stored"
    assert isinstance(outcome["bad"], engine.dialect.loaded_dbapi.IntegrityError)
    assert stored(app, "g") == 2
    assert stored(app, "b1") == 0  # all or nothing for the failed write


SELECT = rawsql.prebuilt(select(AuditLog.__table__.c.id)
                         .where(AuditLog.__table__.c.id.like("own-%")))


def test_a_unit_reads_its_own_deferred_inserts_in_its_own_transaction(app):
    engine = app.runtime.engine
    unit = RawUnit(engine, group_inserts=True)
    assert unit.execute(INSERT, [row("own-1")]).rowcount == 1  # deferred to the commit
    # Anything else run in the unit runs the deferred inserts first, in its transaction.
    assert [r.id for r in unit.execute(SELECT)] == ["own-1"]
    unit.rollback()
    unit.close()
    assert stored(app, "own-") == 0

    unit = RawUnit(engine, group_inserts=True)
    unit.execute(INSERT, [row("own-2")])
    unit.commit()  # nothing else written: through the engine's GroupWriter
    unit.close()
    assert stored(app, "own-") == 1
