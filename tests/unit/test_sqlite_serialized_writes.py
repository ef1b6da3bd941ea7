"""The SQLite store queues a process's writers on a lock instead of SQLite's busy handler.

Each test turns SQLite's own busy wait off on the connections it uses
(``PRAGMA busy_timeout=0``): a second writer that reached SQLite while the
first holds the write lock would then fail at once with "database is locked".
That it waits and succeeds instead shows the queue in the process at work.
"""

from __future__ import annotations

import threading

import pytest
from authgate_plugins.store_sqlite import SQLiteStore
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError


@pytest.fixture
def engine(tmp_path):
    engine = SQLiteStore(str(tmp_path / "writes.db"), busy_timeout_ms=10_000).create_engine()
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    yield engine
    engine.dispose()


def _connect(engine):
    connection = engine.connect()
    connection.exec_driver_sql("PRAGMA busy_timeout=0")
    return connection


def _insert_in_thread(engine, value: str):
    """Start a thread that inserts ``value`` and commits; returns (thread, outcome)."""
    outcome: dict[str, object] = {}

    def run():
        connection = _connect(engine)
        try:
            connection.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": value})
            connection.commit()
            outcome["ok"] = True
        except Exception as exc:  # reported to the test thread
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _values(engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT v FROM t ORDER BY v")).scalars())


def test_second_writer_waits_for_the_first_commit_instead_of_failing(engine):
    first = _connect(engine)
    first.execute(text("INSERT INTO t (v) VALUES ('a')"))  # holds the write lock
    thread, outcome = _insert_in_thread(engine, "b")
    thread.join(0.3)
    assert thread.is_alive(), "the second writer must wait while the first is open"
    first.commit()
    thread.join(10)
    first.close()
    assert outcome == {"ok": True}
    assert _values(engine) == ["a", "b"]


@pytest.mark.parametrize("end", ["rollback", "close"])
def test_a_transaction_ended_without_commit_lets_the_next_writer_in(engine, end):
    first = _connect(engine)
    first.execute(text("INSERT INTO t (v) VALUES ('dropped')"))
    thread, outcome = _insert_in_thread(engine, "kept")
    thread.join(0.3)
    assert thread.is_alive()
    getattr(first, end)()
    thread.join(10)
    assert outcome == {"ok": True}
    assert _values(engine) == ["kept"]


def test_a_failed_write_then_rollback_releases_the_lock(engine):
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t (v) VALUES ('x')"))
    first = _connect(engine)
    with pytest.raises(IntegrityError):
        first.execute(text("INSERT INTO t (v) VALUES ('x')"))
    first.rollback()
    thread, outcome = _insert_in_thread(engine, "y")
    thread.join(10)
    first.close()
    assert outcome == {"ok": True}
    assert _values(engine) == ["x", "y"]


def test_readers_are_not_held_up_by_an_open_write(engine):
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t (v) VALUES ('committed')"))
    writer = _connect(engine)
    writer.execute(text("UPDATE t SET v = 'uncommitted'"))
    result: dict[str, object] = {}

    def read():
        with _connect(engine) as reader:
            result["rows"] = list(reader.execute(text("SELECT v FROM t")).scalars())

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(10)
    writer.rollback()
    writer.close()
    assert result == {"rows": ["committed"]}


def test_each_database_file_has_its_own_queue(engine, tmp_path):
    other = SQLiteStore(str(tmp_path / "other.db"), busy_timeout_ms=10_000).create_engine()
    with other.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    first = _connect(engine)
    first.execute(text("INSERT INTO t (v) VALUES ('held')"))
    thread, outcome = _insert_in_thread(other, "elsewhere")
    thread.join(10)
    first.rollback()
    first.close()
    other.dispose()
    assert outcome == {"ok": True}


def test_many_threads_writing_at_once_all_succeed(engine):
    threads = [_insert_in_thread(engine, f"v{i:02d}") for i in range(16)]
    for thread, _ in threads:
        thread.join(30)
    assert [outcome for _, outcome in threads] == [{"ok": True}] * 16
    assert _values(engine) == [f"v{i:02d}" for i in range(16)]
