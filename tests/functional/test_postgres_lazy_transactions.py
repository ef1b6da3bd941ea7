"""PostgreSQL transactions open at the first statement that needs one.

What reaches the server is read from libpq's protocol trace of the store's own
engine: a read-only unit of work is its SELECTs alone (no BEGIN / COMMIT round
trips), a write still runs in one transaction that commits or rolls back as a
whole, and a locking SELECT opens the transaction before it.
"""

from __future__ import annotations

import tempfile

import pytest
from authgate_plugins.store_postgres import PostgresStore, dsn_to_url
from authgate_plugins.store_postgres.lazy_transactions import needs_transaction
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


@pytest.fixture
def traced(pg_dsn):
    """(engine, sent) where ``sent(action)`` runs ``action`` and returns the SQL
    texts the server was sent meanwhile, in order."""
    engine = PostgresStore(dsn_to_url(pg_dsn)).create_engine()
    trace = tempfile.TemporaryFile("w+")  # noqa: SIM115 - open for the whole fixture

    @event.listens_for(engine, "connect")
    def _trace(dbapi_connection, record):
        dbapi_connection.pgconn.trace(trace.fileno())

    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (v INTEGER PRIMARY KEY)"))

    def sent(action) -> list[str]:
        trace.seek(0)
        trace.truncate()
        action()
        trace.flush()
        trace.seek(0)
        out = []
        for line in trace.read().splitlines():
            fields = line.split("\t")
            # Frontend messages carrying SQL: Query (simple) and Parse (extended).
            if len(fields) > 4 and fields[1] == "F" and fields[3] in ("Query", "Parse"):
                payload = fields[4].strip()
                if fields[3] == "Parse":  # "<statement name>" "<sql>" <parameter types>
                    sql = payload.split('" "', 1)[1].rsplit('"', 1)[0]
                else:  # "<sql>"
                    sql = payload[1:-1]
                out.append(" ".join(sql.split()))
        return out

    yield engine, sent
    engine.dispose()
    trace.close()


def _values(engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT v FROM t ORDER BY v")).scalars())


def test_a_read_only_unit_of_work_sends_only_its_selects(traced):
    engine, sent = traced

    def read():
        with Session(engine) as session:
            session.execute(text("SELECT count(*) FROM t"))
            session.execute(text("SELECT 1"))
            session.commit()

    assert sent(read) == ["SELECT count(*) FROM t", "SELECT 1"]


def test_a_write_opens_the_transaction_and_commits_it(traced):
    engine, sent = traced

    def write():
        with Session(engine) as session:
            session.execute(text("SELECT count(*) FROM t"))
            session.execute(text("INSERT INTO t VALUES (1)"))
            session.execute(text("SELECT count(*) FROM t"))
            session.commit()

    assert sent(write) == ["SELECT count(*) FROM t", "BEGIN", "INSERT INTO t VALUES (1)",
                           "SELECT count(*) FROM t", "COMMIT"]
    assert _values(engine) == [1]


def test_a_failed_unit_of_work_leaves_none_of_its_writes(traced):
    engine, _ = traced
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (1)"))
    with Session(engine) as session:
        session.execute(text("INSERT INTO t VALUES (2)"))
        with pytest.raises(IntegrityError):
            session.execute(text("INSERT INTO t VALUES (1)"))
        session.rollback()
    with Session(engine) as session:
        session.execute(text("INSERT INTO t VALUES (3)"))
        session.rollback()
    assert _values(engine) == [1]


def test_a_locking_select_runs_inside_the_transaction(traced):
    engine, sent = traced
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (1)"))

    def lock():
        with Session(engine) as session:
            session.execute(text("SELECT v FROM t WHERE v = 1 FOR UPDATE"))
            session.execute(text("UPDATE t SET v = 2 WHERE v = 1"))
            session.commit()

    assert sent(lock) == ["BEGIN", "SELECT v FROM t WHERE v = 1 FOR UPDATE",
                          "UPDATE t SET v = 2 WHERE v = 1", "COMMIT"]


def test_autocommit_connections_stay_autocommit_and_lazy_mode_comes_back(traced):
    engine, sent = traced

    def health():
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("INSERT INTO t VALUES (5)"))

    assert sent(health) == ["INSERT INTO t VALUES (5)"]

    def read():
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    assert sent(read) == ["SELECT 1"]
    assert _values(engine) == [5]


def test_a_streamed_select_runs_in_a_transaction(traced):
    engine, sent = traced
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t SELECT generate_series(1, 250)"))

    def stream():
        with engine.connect() as connection:
            result = connection.execution_options(yield_per=100).execute(
                text("SELECT v FROM t ORDER BY v"))
            assert [len(rows) for rows in result.partitions(100)] == [100, 100, 50]

    statements = sent(stream)
    assert statements[0] == "BEGIN" and statements[-1] == "ROLLBACK"
    assert any(s.startswith("DECLARE") for s in statements)


@pytest.mark.parametrize(("statement", "transaction"), [
    ("SELECT * FROM tokens WHERE id = %(id)s", False),
    ("  select 1", False),
    ("SELECT * FROM t FOR UPDATE", True),
    ("SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", True),
    ("select * from t for share", True),
    ("SELECT pg_advisory_xact_lock(1)", True),
    ("INSERT INTO t VALUES (1)", True),
    ("UPDATE t SET v = 1", True),
    ("DELETE FROM t", True),
    ("WITH x AS (DELETE FROM t RETURNING v) SELECT * FROM x", True),
    ("SAVEPOINT sa_savepoint_1", True),
    ("SET LOCAL statement_timeout = 1000", True),
    ("CREATE TABLE u (v int)", True),
])
def test_which_statements_open_a_transaction(statement, transaction):
    assert needs_transaction(statement) is transaction
