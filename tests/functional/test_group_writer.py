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


def test_a_turns_units_are_committed_together_when_it_ends(app):
    """Units that wrote only rows join the loop's CommitTurn: nothing is stored
    until it commits, then all in one transaction, and each unit hears of it."""
    from authgate.rawsql import CommitTurn

    engine = app.runtime.engine
    turn = CommitTurn()
    heard: list[str] = []
    statements: list[str] = []
    remove = rawsql.on_statement(engine, statements.append)
    try:
        for n in range(3):
            unit = RawUnit(engine, group_inserts=True, turn=turn)
            unit.execute(INSERT, [row(f"turn-{n}")])
            unit.commit()
            unit.close()
            unit.pending.on_commit = lambda n=n: heard.append(f"stored {n}")
            unit.pending.on_failure = lambda error, n=n: heard.append(f"failed {n}")
        assert len(turn) == 3 and stored(app, "turn-") == 0 and statements == []
        assert turn.commit() == 3
    finally:
        remove()
    assert stored(app, "turn-") == 3
    assert heard == ["stored 0", "stored 1", "stored 2"]
    assert len([sql for sql in statements if sql.startswith("INSERT")]) == 1
    assert turn.commit() == 0  # nothing left over


def test_a_bad_row_in_a_turn_fails_only_its_own_unit(app):
    from authgate.rawsql import CommitTurn

    engine = app.runtime.engine
    with RawUnit(engine) as unit:
        unit.execute(INSERT, [row("turn-dup")])
    turn = CommitTurn()
    outcome: dict[str, object] = {}
    for name, event_id in (("good-1", "turn-g1"), ("bad", "turn-dup"), ("good-2", "turn-g2")):
        unit = RawUnit(engine, group_inserts=True, turn=turn)
        unit.execute(INSERT, [row(event_id)])
        unit.commit()
        unit.close()
        unit.pending.on_commit = lambda name=name: outcome.setdefault(name, "stored")
        unit.pending.on_failure = lambda error, name=name: outcome.setdefault(name, error)
    turn.commit()
    assert outcome["good-1"] == "stored" and outcome["good-2"] == "stored"
    assert isinstance(outcome["bad"], Exception)
    assert stored(app, "turn-g") == 2
