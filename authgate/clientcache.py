"""The OAuth clients, cached per process, with invalidation that follows every write.

Every token, introspection and device-poll request looks its client up; the
rows change rarely (an admin edit, a secret rotation, an approval).  So each
process keeps the rows it has read, for at most CLIENT_CACHE_TTL, and drops them
all as soon as anything writes to ``oauth_clients``:

* **In this process**: an engine hook sees every statement that writes to the
  table (ORM flush, bulk UPDATE/DELETE, Core, raw SQL) and empties the cache when
  it runs and again when its transaction commits or rolls back.  A generation
  counter stops a request that read the old row before the write from storing
  it after the write (the read-then-store race).
* **In other processes, on PostgreSQL**: migration 0004 puts a statement trigger
  on ``oauth_clients`` that sends ``NOTIFY authgate_clients`` (delivered at
  commit, whoever wrote: another AuthGate process, ``authgate`` commands, psql by
  hand).  Each serving process LISTENs on its own connection; while that
  connection is down the cache is off, and it is emptied when it is back.
* **Elsewhere** (a second process on one SQLite file, a hand edit with sqlite3):
  the TTL bounds how long a changed client can be served from a cache.

Only clients that exist are cached: a client inserted by hand is found at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import make_transient_to_detached

from authgate.settings import Setting

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from authgate.models import OAuthClient

log = logging.getLogger(__name__)

CHANNEL = "authgate_clients"  # the NOTIFY channel of migration 0004's trigger
TABLE = "oauth_clients"
MAX_ENTRIES = 10_000  # far above any real number of clients; a bound all the same
_WRITTEN = "authgate.clients_written"  # Connection.info flag

SETTINGS: list[Setting] = [
    Setting("client_cache_ttl", "CLIENT_CACHE_TTL", "duration", dt.timedelta(seconds=5),
            section="Performance",
            help="How long a process may reuse an OAuth client row it has read (token, "
                 "introspection and device-poll requests all look their client up). Any "
                 "change made through AuthGate empties the cache at once, on PostgreSQL "
                 "in every process (LISTEN/NOTIFY), hand edits in psql included; on "
                 "SQLite a change made outside the server process (sqlite3, a second "
                 "process) is seen within this time. 0 turns the cache off."),
]


class ClientCache:
    """Detached snapshots of client rows by ``client_id``, each kept for ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, OAuthClient]] = {}
        self._generation = 0
        self._suspended = False
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and not self._suspended

    @property
    def generation(self) -> int:
        """Read before loading a row; :meth:`put` stores it only if nothing changed since."""
        return self._generation

    def get(self, client_id: str) -> OAuthClient | None:
        if not self.enabled:
            return None
        entry = self._entries.get(client_id)
        if entry is None or time.monotonic() - entry[0] >= self.ttl:
            return None
        return entry[1]

    def put(self, client: OAuthClient, generation: int) -> None:
        if not self.enabled:
            return
        snapshot = _snapshot(client)
        with self._lock:
            if generation != self._generation or self._suspended:
                return  # a write happened since the row was read: it may be stale
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[client.client_id] = (time.monotonic(), snapshot)

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def suspend(self) -> None:
        """Stop caching (the change feed is down) until :meth:`resume`."""
        with self._lock:
            self._suspended = True
            self._generation += 1
            self._entries.clear()

    def resume(self) -> None:
        with self._lock:
            self._suspended = False
            self._generation += 1
            self._entries.clear()


def _snapshot(client: OAuthClient) -> OAuthClient:
    """A copy of the row's columns, detached and clean, for ``Session.merge(load=False)``."""
    mapper = sa_inspect(type(client))
    copy = type(client)(**{attr.key: getattr(client, attr.key)
                           for attr in mapper.column_attrs})
    make_transient_to_detached(copy)
    return copy


def watch_writes(engine: Engine, cache: ClientCache) -> None:
    """Empty ``cache`` whenever a statement on ``engine`` writes to oauth_clients, and
    again once that connection's transaction is over and the connection is back in
    the pool (the engine's commit event comes *before* the commit: a reader between
    the two would store the old row under the new generation)."""

    @event.listens_for(engine, "after_cursor_execute")
    def _after_execute(conn, cursor, statement, parameters, context, executemany):
        if TABLE in statement and statement.lstrip()[:6].upper() != "SELECT":
            cache.invalidate()
            conn.info[_WRITTEN] = True

    @event.listens_for(engine.pool, "checkin")
    def _checkin(dbapi_connection, connection_record):
        if connection_record is not None and connection_record.info.pop(_WRITTEN, False):
            cache.invalidate()


class PostgresListener:
    """LISTEN authgate_clients on a connection of its own; every notification empties
    the cache.  While the connection is down the cache is suspended."""

    def __init__(self, engine: Engine, cache: ClientCache, *, retry_seconds: float = 2.0,
                 poll_seconds: float = 1.0) -> None:
        self.engine = engine
        self.cache = cache
        self.retry_seconds = retry_seconds
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None

    def start(self) -> None:
        """LISTEN now (so no change made after start-up is missed), then in a thread."""
        if not self._connect():
            self.cache.suspend()
        self._thread = threading.Thread(target=self._run, name="authgate-client-cache",
                                        daemon=True)
        self._thread.start()

    def _connect(self) -> bool:
        try:
            raw = self.engine.raw_connection()
            conn = raw.driver_connection
            raw.detach()  # a connection of its own, never handed back to the pool
            conn.autocommit = True
            conn.execute(f"LISTEN {CHANNEL}")
        except Exception as exc:
            log.warning("client cache off: cannot LISTEN for client changes (%s); "
                        "retrying every %.0f s", exc, self.retry_seconds)
            return False
        self._conn = conn
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._conn is None:
                if self._stop.wait(self.retry_seconds):
                    break
                if self._connect():
                    log.info("client cache on: listening for client changes again")
                    self.cache.resume()
                continue
            try:
                for _ in self._conn.notifies(timeout=self.poll_seconds):
                    self.cache.invalidate()
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("client cache off: the LISTEN connection failed (%s)", exc)
                self.cache.suspend()
                self._close_conn()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the LISTEN connection failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_seconds + 2)
        self._close_conn()
