"""Open a PostgreSQL transaction at the first statement that needs one, not at the first.

psycopg (like every DB-API driver) sends ``BEGIN`` before a connection's first
statement and the transaction ends with ``COMMIT`` or ``ROLLBACK``: three round
trips for a request that reads one row -- a device poll, a token
introspection, the health check -- where the read alone would do.

Here the connections run in psycopg's autocommit mode and a ``BEGIN`` is sent
just before the first statement that is not a plain ``SELECT``.  Everything
after it (reads included) runs in that transaction, which commits or rolls back
as before; psycopg's ``commit()`` and ``rollback()`` send nothing when no
transaction was opened.  This is what Python's sqlite3 module has always done
(a transaction starts at the first write), now on PostgreSQL too.

Why reads before the first write lose nothing: AuthGate runs PostgreSQL at READ
COMMITTED, where every statement of a transaction takes a fresh snapshot anyway,
so a SELECT on its own sees exactly what it would have seen in the transaction.
What a transaction would *hold* for a SELECT -- row locks (``FOR UPDATE`` /
``FOR SHARE``) and transaction-scoped advisory locks -- is why such SELECTs open
the transaction first, like writes, DDL, ``SAVEPOINT`` and ``SET LOCAL``; so
does a streamed SELECT (``yield_per``), whose server-side cursor lives in one.
"""

from __future__ import annotations

import re

from psycopg import ServerCursor
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.engine import Engine

_IDLE = TransactionStatus.IDLE
# A SELECT that takes something a transaction must hold until its end.
_HOLDS = re.compile(r"\bFOR\s+(?:UPDATE|NO\s+KEY\s+UPDATE|SHARE|KEY\s+SHARE)\b|_xact_",
                    re.IGNORECASE)


def needs_transaction(statement: str) -> bool:
    """False for a plain SELECT, which can run on its own; True for anything else."""
    head = statement.lstrip()[:6]
    if head.upper() != "SELECT":
        return True
    return _HOLDS.search(statement) is not None


def install(engine: Engine) -> None:
    """Run ``engine``'s connections in autocommit mode, opening transactions lazily."""

    @event.listens_for(engine, "connect")
    def _autocommit_on_connect(dbapi_connection, record):
        dbapi_connection.autocommit = True

    @event.listens_for(engine, "checkout")
    def _autocommit_on_checkout(dbapi_connection, record, proxy):
        # A connection used with isolation_level="AUTOCOMMIT" comes back from
        # SQLAlchemy's reset with autocommit off: put it back.
        if not dbapi_connection.autocommit:
            dbapi_connection.autocommit = True

    @event.listens_for(engine, "before_cursor_execute")
    def _begin_when_needed(conn, cursor, statement, parameters, context, executemany):
        dbapi_connection = cursor.connection
        if (dbapi_connection.info.transaction_status == _IDLE
                and conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT"
                # A streamed result (yield_per) is a server-side cursor: DECLARE
                # needs a transaction block.
                and (needs_transaction(statement) or isinstance(cursor, ServerCursor))):
            dbapi_connection.execute("BEGIN")
