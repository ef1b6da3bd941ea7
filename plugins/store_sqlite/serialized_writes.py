"""One writer at a time, queued in the process instead of in SQLite's busy handler.

SQLite lets one connection write at a time.  A connection that finds the write
lock taken waits in SQLite's default busy handler, which *sleeps* -- 1, 2, 5,
10, 15, 20, 25 ... 100 ms between attempts -- while the transaction it waits for
holds the lock for a fraction of a millisecond.  Under load (waitress threads
each issuing a token and writing its audit row) writers spent most of their
time asleep: client-credentials p99 above 140 ms with the server's CPU idle.

So the connections of one engine take a process-wide lock before their first
write statement and give it back when the transaction ends (commit, rollback,
close).  Writers of the same process then queue on a ``threading.Lock`` and the
next one starts the moment the previous one commits.  SQLite's busy timeout is
still there for writers in *other* processes (the CLI, a second server on the
same file), and a writer that waits here longer than it goes on regardless, so
the behaviour on a lock held elsewhere is unchanged.

Readers never take the lock: in WAL mode they do not block writers and writers
do not block them.  pysqlite itself opens a transaction only before these same
statements (INSERT, UPDATE, DELETE, REPLACE), so the lock covers exactly the
span in which the connection holds SQLite's write lock.
"""

from __future__ import annotations

import sqlite3
import threading

# The statements before which pysqlite opens a transaction (its "DML" test).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _is_write(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(_WRITES)


def connection_factory(wait_seconds: float) -> type[sqlite3.Connection]:
    """A ``sqlite3.Connection`` class (``sqlite3.connect(factory=...)``) whose
    instances share one write lock: one lock per engine, so per database file."""
    lock = threading.Lock()

    class SerializedCursor(sqlite3.Cursor):
        def execute(self, sql, parameters=(), /):
            if _is_write(sql):
                self.connection._take_write_lock()
            return super().execute(sql, parameters)

        def executemany(self, sql, seq_of_parameters, /):
            if _is_write(sql):
                self.connection._take_write_lock()
            return super().executemany(sql, seq_of_parameters)

    class SerializedWritesConnection(sqlite3.Connection):
        _holds_write_lock = False

        def cursor(self, factory=SerializedCursor):
            return super().cursor(factory)

        def _take_write_lock(self) -> None:
            if not self._holds_write_lock:
                # Past the wait, go on and let SQLite's busy timeout decide (a
                # writer stuck elsewhere is reported as before, not hidden).
                self._holds_write_lock = lock.acquire(timeout=wait_seconds)

        def _give_back_write_lock(self) -> None:
            if self._holds_write_lock:
                self._holds_write_lock = False
                lock.release()

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._give_back_write_lock()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._give_back_write_lock()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._give_back_write_lock()

    return SerializedWritesConnection
