"""Prebuilt SQLAlchemy Core statements run straight on a pooled DB-API connection.

The few statements that every device poll, client-credentials request and
token introspection runs cost far more in SQLAlchemy's per-execution machinery
(execution context, parameter and result set-up, events, the ORM session
around it) than in the database: on the project's machine a one-row SELECT by
primary key is ~25 us in sqlite3 and ~280 us through ``Session.execute``.

So those statements are declared once with :func:`prebuilt` and a
:class:`RawUnit` (a unit of work on one connection checked out of the
engine's pool) runs them with the SQL string, parameter order and type
conversions that SQLAlchemy itself compiled for the engine's dialect: the same
SQL, the same stored values (SQLite datetimes as SQLAlchemy writes them, JSON
serialised by the column type), the same Python values read back.  The
engine's pool, its connect/checkout tuning (SQLite pragmas, PostgreSQL
autocommit and idle pre-ping) and the SQLite store's in-process writer lock
(a property of the DB-API connection class) apply as usual.

Transactions follow what the stores configure for SQLAlchemy: Python's
sqlite3 opens one before the first write; on a connection in autocommit mode
(the PostgreSQL store) ``BEGIN`` is sent before the first write, as
``store_postgres.lazy_transactions`` does, so a unit that only reads is one
round trip per statement.

A statement that was not declared with :func:`prebuilt` (an ORM query, say) is
refused with :class:`NeedsSession`: the caller runs that request through an ORM
session instead (``authgate.views.api_lane``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.sql import Delete, Insert, Select, Update

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect, Engine
    from sqlalchemy.pool import PoolProxiedConnection

Statement = Select | Insert | Update | Delete
StatementHook = Callable[[str], None]
Rows = tuple[Any, Sequence[Mapping[str, Any]]]  # (prebuilt INSERT, its rows)


_SQL_LOG = logging.getLogger("sqlalchemy.engine.Engine")
# Bound parameters per statement: SQLite's historical default limit (newer builds allow
# 32766; this keeps any build working).
MAX_PARAMETERS = 999


class NeedsSession(Exception):
    """The statement is not prebuilt (e.g. an ORM query): run it through a Session."""


class _Compiled:
    """One statement as compiled for one dialect: SQL, parameter order, conversions."""

    __slots__ = ("sql", "names", "fixed", "binders", "defaults", "readers", "row",
                 "is_select", "is_write", "values_head", "values_row")

    def __init__(self, statement: Statement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.is_select = isinstance(statement, Select)
        self.is_write = not self.is_select
        # Positional paramstyles (sqlite3: qmark) take a sequence in this order; named
        # ones (psycopg: pyformat) a mapping.
        self.names: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if dialect.positional else None)
        # Literal values in the statement (``status == "authorized"``) are bound
        # parameters with a value of their own.
        self.fixed: dict[str, Any] = {name: bind.effective_value
                                      for name, bind in compiled.binds.items()
                                      if not bind.required and bind.value is not None
                                      and not name.startswith("%(")}
        self.binders: tuple[tuple[str, Callable[[Any], Any]], ...] = tuple(
            (name, processor) for name, bind in compiled.binds.items()
            if (processor := bind.type._cached_bind_processor(dialect)) is not None)
        # Python-side column defaults SQLAlchemy fills in at execution (e.g. an
        # ``onupdate=utcnow`` column the statement does not set): the same here.
        self.defaults: tuple[tuple[str, Any], ...] = tuple(
            (column.key, default) for column, default in
            [(c, c.default) for c in compiled.insert_prefetch]
            + [(c, c.onupdate) for c in compiled.update_prefetch] if default is not None)
        self.readers: tuple[tuple[int, Callable[[Any], Any]], ...] = ()
        self.row: type | None = None
        # A positional INSERT of one row, split so that several rows can be written by
        # one statement ("INSERT ... VALUES (?, ?), (?, ?)"): see RawUnit.execute.
        self.values_head = self.values_row = ""
        if isinstance(statement, Insert) and self.names is not None:
            head, separator, tail = self.sql.partition(" VALUES ")
            if separator and tail.startswith("(") and tail.endswith(")") \
                    and tail.count("(") == 1:
                self.values_head, self.values_row = head + separator, tail
        if self.is_select:
            columns = list(statement.selected_columns)
            self.readers = tuple(
                (index, processor) for index, column in enumerate(columns)
                if (processor := column.type._cached_result_processor(dialect, None))
                is not None)
            self.row = namedtuple("Row", [column.key for column in columns],  # type: ignore[misc]
                                  rename=True)

    def parameters(self, params: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        if self.fixed:
            params = {**self.fixed, **params}
        if self.defaults:
            params = dict(params)
            for name, default in self.defaults:
                if name not in params:
                    # SQLAlchemy wraps a zero-argument callable to take the context.
                    params[name] = default.arg(None) if default.is_callable else default.arg
        if self.binders:
            params = dict(params)
            for name, processor in self.binders:
                if name in params:
                    params[name] = processor(params[name])
        if self.names is not None:
            return [params[name] for name in self.names]
        return params

    def make_row(self, values: Sequence[Any]) -> Any:
        if self.readers:
            values = list(values)
            for index, processor in self.readers:
                values[index] = processor(values[index])
        return self.row._make(values)  # type: ignore[union-attr]


class Prebuilt:
    """A statement declared once (module level), compiled once per dialect."""

    __slots__ = ("statement", "_compiled", "_lock")

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = dialect.name
        found = self._compiled.get(key)
        if found is None:
            with self._lock:
                found = self._compiled.get(key)
                if found is None:
                    found = self._compiled[key] = _Compiled(self.statement, dialect)
        return found


# id(statement) -> Prebuilt.  The Prebuilt keeps its statement alive, so an id is
# never reused while it is registered here.
_REGISTRY: dict[int, Prebuilt] = {}


def prebuilt(statement: Statement) -> Statement:
    """Declare ``statement`` (built once, at import) runnable by a :class:`RawUnit`.

    Returns the statement itself, so module constants stay ordinary SQLAlchemy
    statements that an ORM Session executes as before.
    """
    _REGISTRY.setdefault(id(statement), Prebuilt(statement))
    return statement


def lookup(statement: Any) -> Prebuilt:
    found = _REGISTRY.get(id(statement))
    if found is None or found.statement is not statement:
        raise NeedsSession(f"not a prebuilt statement: {statement!r}")
    return found


class RawResult:
    """What ``RawUnit.execute`` returns: the rows of a SELECT, the count of a write."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int = -1) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def all(self) -> list[Any]:
        return self.rows

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def __iter__(self):
        return iter(self.rows)


# Observers of every statement a RawUnit sends (tests count statements per request,
# as they do with SQLAlchemy's before_cursor_execute for the session's).  Per engine.
_HOOKS: weakref.WeakKeyDictionary[Engine, list[StatementHook]] = weakref.WeakKeyDictionary()


def on_statement(engine: Engine, hook: StatementHook) -> Callable[[], None]:
    """Call ``hook(sql)`` before each statement a RawUnit runs on ``engine``;
    returns the function that removes it."""
    hooks = _HOOKS.setdefault(engine, [])
    hooks.append(hook)
    return lambda: hooks.remove(hook)


class _Held(threading.local):
    """The connection each thread keeps between its units of work (``sticky``).

    Kept only while the thread is busy: one idle for longer than ``IDLE_SECONDS``
    goes back to the pool and the next unit checks one out again, so the pool's
    checkout handling (the PostgreSQL store's pre-ping after an idle second, the
    pool's recycling) applies as before whenever it could matter.  A connection
    that failed (invalidated) is never kept; one of a disposed engine is closed.
    """

    IDLE_SECONDS = 1.0

    def __init__(self) -> None:
        self.held: weakref.WeakKeyDictionary[Engine, tuple[Any, float, int]] = \
            weakref.WeakKeyDictionary()

    def take(self, engine: Engine) -> Any:
        entry = self.held.pop(engine, None)
        if entry is None:
            return None
        fairy, since, generation = entry
        if (time.monotonic() - since > self.IDLE_SECONDS or not fairy.is_valid
                or generation != _generation(engine)):
            fairy.close()
            return None
        return fairy

    def keep(self, engine: Engine, fairy: Any) -> None:
        previous = self.held.get(engine)
        self.held[engine] = (fairy, time.monotonic(), _generation(engine))
        if previous is not None:  # two units of one thread at once (a group commit
            previous[0].close()   # inside a request's commit): one is kept

    def release(self, engine: Engine) -> None:
        entry = self.held.pop(engine, None)
        if entry is not None:
            entry[0].close()


_HELD = _Held()
# engine -> how many times it was disposed: connections kept from before are closed.
_DISPOSALS: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


_PER_ENGINE_LOCK = threading.Lock()


def _per_engine(table: weakref.WeakKeyDictionary, engine: Engine,
                make: Callable[[Engine], Any]) -> Any:
    """``table[engine]``, made by ``make(engine)`` the first time (once, under a lock)."""
    found = table.get(engine)
    if found is None:
        with _PER_ENGINE_LOCK:
            found = table.get(engine)
            if found is None:
                found = table[engine] = make(engine)
    return found


def _watch_disposal(engine: Engine) -> int:
    event.listen(engine, "engine_disposed", _disposed)
    return 0


def _generation(engine: Engine) -> int:
    return _per_engine(_DISPOSALS, engine, _watch_disposal)


def _disposed(engine: Engine) -> None:
    with _PER_ENGINE_LOCK:
        _DISPOSALS[engine] = _DISPOSALS.get(engine, 0) + 1
    _HELD.release(engine)  # this thread's; other threads close theirs at next use


class RawUnit:
    """One unit of work on one pooled DB-API connection, checked out at first use.

    ``execute`` runs prebuilt statements; ``commit`` ends the transaction if a
    write opened one; ``close`` rolls back anything uncommitted and returns the
    connection to the pool.  Not thread-safe: one request, one thread.

    ``info`` plays the part of ``Session.info`` for the services that keep
    per-request memos there (the client lookups).
    """

    __slots__ = ("engine", "dialect", "info", "wrote", "group_inserts", "sticky", "turn",
                 "pending", "_deferred", "_fairy", "_dbapi", "_began", "_autocommit", "_hooks")

    def __init__(self, engine: Engine, info: dict[str, Any] | None = None, *,
                 group_inserts: bool = False, sticky: bool = False,
                 turn: CommitTurn | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.info: dict[str, Any] = info if info is not None else {}
        self.wrote = False
        # With group_inserts, INSERTs of rows wait for the commit: a unit that wrote
        # nothing else then commits them through the engine's GroupWriter, together
        # with other requests' rows; otherwise they run in this unit's transaction,
        # before anything else it executes (statement order is kept).
        self.group_inserts = group_inserts
        # With sticky, the thread keeps the connection between units of work while it
        # is busy (see _Held): a busy server's worker does not go through the pool's
        # lock twice a request.
        self.sticky = sticky
        # With a turn (and group_inserts), a unit that wrote nothing but rows is not
        # committed by commit(): its rows join the turn, committed at the end of the
        # event loop's turn, and ``pending`` is the caller's handle on that outcome.
        self.turn = turn
        self.pending: PendingCommit | None = None
        self._deferred: list[Rows] = []
        self._fairy: PoolProxiedConnection | None = None
        self._dbapi: Any = None
        self._began = False
        self._autocommit = False
        self._hooks = _HOOKS.get(engine)

    def _connection(self) -> Any:
        if self._dbapi is None:
            fairy = _HELD.take(self.engine) if self.sticky else None
            self._fairy = fairy if fairy is not None else self.engine.raw_connection()
            self._dbapi = self._fairy.dbapi_connection
            self._autocommit = bool(getattr(self._dbapi, "autocommit", False))
        return self._dbapi

    def execute(self, statement: Any, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]
                | None = None) -> RawResult:
        compiled = lookup(statement).compiled(self.dialect)
        if self.group_inserts:
            if (isinstance(params, Sequence) and isinstance(statement, Insert)
                    and not compiled.is_select):
                self._deferred.append((statement, params))
                return RawResult([], len(params))
            if self._deferred:
                self._run_deferred()
        connection = self._connection()
        cursor = connection.cursor()
        try:
            if compiled.is_write:
                self.wrote = True
                if self._autocommit and not self._began:
                    # As store_postgres.lazy_transactions: the transaction opens at the
                    # first statement that needs one.
                    cursor.execute("BEGIN")
                    self._began = True
            if isinstance(params, Sequence):
                if compiled.values_row and len(params) > 1:
                    return self._insert_rows(cursor, compiled, params)
                many = [compiled.parameters(p) for p in params]
                self._before(compiled.sql, many)
                cursor.executemany(compiled.sql, many)
                return RawResult([], cursor.rowcount)
            bound = compiled.parameters(params or {})
            self._before(compiled.sql, bound)
            cursor.execute(compiled.sql, bound)
            if compiled.is_select:
                return RawResult([compiled.make_row(values) for values in cursor.fetchall()])
            return RawResult([], cursor.rowcount)
        except self.dialect.loaded_dbapi.Error as error:
            self._check_disconnect(error, cursor)
            raise
        finally:
            cursor.close()

    def _insert_rows(self, cursor: Any, compiled: _Compiled,
                     rows: Sequence[Mapping[str, Any]]) -> RawResult:
        """Several rows in one multi-row INSERT per chunk.  sqlite3's executemany
        steps (and gives up the GIL) once per row; a group commit's writer holds
        the database's write lock meanwhile, and each time it waits for the GIL
        to come back every other writer waits too."""
        per = max(1, MAX_PARAMETERS // len(compiled.names or (1,)))
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            sql = compiled.values_head + ", ".join([compiled.values_row] * len(chunk))
            bound = [value for row in chunk for value in compiled.parameters(row)]
            self._before(sql, bound)
            cursor.execute(sql, bound)
        return RawResult([], len(rows))

    def pipeline(self) -> Any:
        """A context in which the statements run (and a commit) are sent together:
        psycopg's pipeline mode, one round trip instead of one per statement (their
        row counts are not known until it ends); on other drivers, nothing."""
        connection = self._connection()
        if hasattr(connection, "pipeline"):
            return connection.pipeline()
        return contextlib.nullcontext()

    def _before(self, sql: str, parameters: Any) -> None:
        if self._hooks:
            for hook in self._hooks:
                hook(sql)
        # DB_LOG_LEVEL=info (SQLAlchemy's statement log) shows these statements too,
        # on the same logger and in the same two lines as SQLAlchemy's own.
        if _SQL_LOG.isEnabledFor(logging.INFO):
            _SQL_LOG.info(sql)
            _SQL_LOG.info("[raw] %r", parameters)

    def _check_disconnect(self, error: Exception, cursor: Any) -> None:
        # A dead connection must not go back to the pool (SQLAlchemy's Connection
        # does the same on a disconnect error).
        if self._fairy is not None and self.dialect.is_disconnect(error, self._dbapi, cursor):
            self._fairy.invalidate(error)

    # The ORM-only parts of the Session API the hot-path services may touch.
    def flush(self) -> None:
        """Nothing to flush: every statement ran when it was executed."""

    def scalars(self, statement: Any, params: Any = None) -> Any:
        raise NeedsSession(f"ORM query: {statement!r}")

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise NeedsSession("ORM get()")

    def add(self, *args: Any, **kwargs: Any) -> Any:
        raise NeedsSession("ORM add()")

    def __contains__(self, instance: object) -> bool:
        return False  # no ORM objects live in a raw unit

    def _run_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        group, self.group_inserts = self.group_inserts, False
        try:
            for statement, rows in deferred:
                self.execute(statement, rows)
        finally:
            self.group_inserts = group

    def commit(self) -> None:
        if self._deferred:
            if not self.wrote:
                deferred, self._deferred = self._deferred, []
                if self.turn is not None:
                    self.pending = self.turn.add(group_writer(self.engine), deferred)
                else:
                    group_writer(self.engine).write(deferred)
            else:
                self._run_deferred()
        if self._dbapi is None:
            return
        if self.wrote:
            self._dbapi.commit()
        self._began = False
        self.wrote = False

    def rollback(self) -> None:
        self._deferred = []
        if self._dbapi is None:
            return
        self._dbapi.rollback()
        self._began = False
        self.wrote = False

    def close(self) -> None:
        """Give the connection back (uncommitted work is rolled back by the pool)."""
        self._deferred = []
        fairy, self._fairy, dbapi, self._dbapi = self._fairy, None, self._dbapi, None
        dirty = self.wrote or self._began
        self._began = self.wrote = False
        if fairy is None:
            return
        if self.sticky and fairy.is_valid:
            try:
                if dirty:
                    dbapi.rollback()
            except Exception:
                fairy.invalidate()
            else:
                _HELD.keep(self.engine, fairy)
                return
        fairy.close()

    def __enter__(self) -> RawUnit:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.commit()
        finally:
            self.close()


# ---------------------------------------------------------------------------
# Group commit
# ---------------------------------------------------------------------------



class _Entry:
    """One ``GroupWriter.write`` call waiting for its rows to be committed."""

    __slots__ = ("inserts", "done", "done_storing", "error", "wake")

    def __init__(self, inserts: list[Rows], *, waits: bool = True) -> None:
        self.inserts = inserts
        self.done = False
        self.done_storing = False  # store() finished with this entry (error or not)
        self.error: BaseException | None = None
        # Released once, when the rows are committed (done) or this call is handed the
        # writing of the next batch: a lock as a one-shot semaphore, so each waiting
        # thread is woken exactly once and only when it has something to do.
        self.wake = threading.Lock()
        if waits:
            self.wake.acquire()


class PendingCommit:
    """Rows handed to a :class:`CommitTurn`: what to do once they are committed
    (``on_commit``) or could not be (``on_failure``, with the database's error)."""

    __slots__ = ("entry", "on_commit", "on_failure")

    def __init__(self, entry: _Entry) -> None:
        self.entry = entry
        self.on_commit: Callable[[], None] | None = None
        self.on_failure: Callable[[BaseException], None] | None = None


class CommitTurn:
    """The rows of every request answered in one turn of the I/O thread's event
    loop, committed together when the turn ends (authgate.inline_serving).

    On the I/O thread requests are served one at a time, so the
    :class:`GroupWriter` never finds two to commit together: each token or
    introspection paid a transaction of its own, and on SQLite a commit writes every
    B-tree page its rows touched (a token and its audit row: 18) to the WAL.  Here
    the requests read in one turn (with 16 busy connections, about as many) share
    one multi-row INSERT per table and one COMMIT; their answers are held until it
    is done.  A batch that fails is retried request by request, as the group writer
    does, so a bad row fails only its own request.  Not thread-safe: one per loop.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[GroupWriter, PendingCommit]] = []

    def add(self, writer: GroupWriter, inserts: list[Rows]) -> PendingCommit:
        pending = PendingCommit(_Entry(inserts, waits=False))
        self._pending.append((writer, pending))
        return pending

    def __len__(self) -> int:
        return len(self._pending)

    def commit(self) -> int:
        """Commit what the turn collected and run each request's outcome; returns
        how many requests' rows there were."""
        taken, self._pending = self._pending, []
        if not taken:
            return 0
        writers: dict[int, tuple[GroupWriter, list[_Entry]]] = {}
        for writer, pending in taken:
            writers.setdefault(id(writer), (writer, []))[1].append(pending.entry)
        try:
            for writer, entries in writers.values():
                writer.store(entries)
        finally:
            for _, pending in taken:
                error = pending.entry.error
                if error is None and not pending.entry.done_storing:
                    error = RuntimeError("the turn's commit was interrupted")
                callback = pending.on_commit if error is None else pending.on_failure
                # The callbacks refer to what refers to the pending commit (the
                # request's environ): no reference cycle is left for the collector.
                pending.on_commit = pending.on_failure = None
                if callback is None:
                    continue
                try:
                    callback() if error is None else callback(error)  # type: ignore[call-arg]
                except Exception:
                    logging.getLogger(__name__).exception(
                        "the outcome of a request's commit could not be handled")
        return len(taken)


class GroupWriter:
    """Concurrent INSERT-only transactions of one engine, committed together.

    SQLite lets one connection write at a time, and a writer holds that lock
    across every point where its thread gives up the GIL (each statement, the
    commit): under load, a token request per thread meant a queue of threads
    taking turns at the lock and the GIL several times per request.  Here each
    caller queues its rows; whoever finds no batch in progress becomes the
    writer and stores its rows and everything queued in one transaction, one
    ``executemany`` per statement and one COMMIT; the others wait for it, and
    the first of those that came too late for the batch writes the next one.
    No caller returns before its own rows are committed.  If a batch fails it
    is retried call by call, so a bad row fails only the ``write`` it came in
    (and that caller sees the database's error).  On PostgreSQL the same
    batching saves round trips and commits.
    """

    def __init__(self, engine: Engine, max_batch: int = 500) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Entry] = []
        self._busy = False

    def write(self, inserts: list[Rows]) -> None:
        entry = _Entry(inserts)
        with self._lock:
            leader = not self._busy
            if leader:
                self._busy = True
            else:
                self._queue.append(entry)
        if not leader:
            entry.wake.acquire()  # until committed, or handed the next batch
        if not entry.done:
            self._lead(entry)
        if entry.error is not None:
            raise entry.error

    def _lead(self, entry: _Entry) -> None:
        """Write ``entry`` and what is queued behind it, then wake them and hand the
        next batch (if any) to the first caller still waiting."""
        with self._lock:
            batch = [entry, *self._queue[: self.max_batch - 1]]
            del self._queue[: self.max_batch - 1]
        try:
            self.store(batch)
        finally:
            with self._lock:
                for queued in batch:
                    queued.done = True
                successor = self._queue.pop(0) if self._queue else None
                if successor is None:
                    self._busy = False
            for queued in batch[1:]:
                queued.wake.release()
            if successor is not None:
                successor.wake.release()

    def store(self, batch: list[_Entry]) -> None:
        """Commit ``batch`` in one transaction; if that fails, entry by entry, so that
        a bad row fails (``entry.error``) only its own entry."""
        try:
            self._run(batch)
        except BaseException as exc:
            if len(batch) == 1 or not isinstance(exc, Exception):
                for queued in batch:
                    queued.error = exc
                    queued.done_storing = True
                if not isinstance(exc, Exception):
                    raise
                return
            for queued in batch:
                try:
                    self._run([queued])
                except Exception as single:
                    queued.error = single
                queued.done_storing = True
            return
        for queued in batch:
            queued.done_storing = True

    def _run(self, batch: list[_Entry]) -> None:
        # One executemany per statement, in the order the statements first appear.
        merged: dict[int, tuple[Any, list[Mapping[str, Any]]]] = {}
        for queued in batch:
            for statement, rows in queued.inserts:
                merged.setdefault(id(statement), (statement, []))[1].extend(rows)
        unit = RawUnit(self.engine, sticky=True)
        try:
            with unit.pipeline():
                for statement, rows in merged.values():
                    unit.execute(statement, rows)
                unit.commit()
        except BaseException:
            unit.rollback()
            raise
        finally:
            unit.close()


_WRITERS: weakref.WeakKeyDictionary[Engine, GroupWriter] = weakref.WeakKeyDictionary()


def group_writer(engine: Engine) -> GroupWriter:
    """The engine's one :class:`GroupWriter` (shared by every caller in the process)."""
    return _per_engine(_WRITERS, engine, GroupWriter)
