"""PostgreSQL store (psycopg 3): a pooled engine with pre-ping, so a server restart
costs one failed checkout instead of a burst of errors."""

from __future__ import annotations

import datetime as dt
import re
import time
from urllib.parse import quote

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import URL, Engine, make_url

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.errors import ConfigurationError
from authgate.settings import Setting

from . import lazy_transactions

_KEYWORD = re.compile(r"""\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)""")


def dsn_to_url(dsn: str) -> str:
    """A libpq keyword DSN (``host=... user=... dbname=...``) or a URL -> SQLAlchemy URL.

    psycopg understands both forms itself; SQLAlchemy needs a URL, so keywords other
    than host/port/user/password/dbname travel as query parameters (sslmode, ...).
    """
    dsn = dsn.strip()
    if not dsn:
        raise ConfigurationError("DATABASE_DSN is required when DATABASE_DRIVER=postgres, e.g. "
                                 "host=localhost user=authgate password=secret dbname=authgate "
                                 "port=5432 sslmode=require")
    if "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        if scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
            raise ConfigurationError(f"DATABASE_DSN: unsupported URL scheme {scheme!r} for "
                                     "PostgreSQL (use postgresql://...)")
        return "postgresql+psycopg://" + rest
    params: dict[str, str] = {}
    pos = 0
    for match in _KEYWORD.finditer(dsn):
        if match.start() != pos:
            break
        value = match.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1)] = value
        pos = match.end()
    if pos != len(dsn) or not params:
        raise ConfigurationError("DATABASE_DSN is neither a postgresql:// URL nor libpq "
                                 "keywords such as 'host=localhost user=authgate dbname=authgate'")
    host = params.pop("host", "localhost")
    port = params.pop("port", "")
    user = params.pop("user", "")
    password = params.pop("password", "")
    dbname = params.pop("dbname", "")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = (auth + "@" if auth else "") + host + (":" + port if port else "")
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return f"postgresql+psycopg://{netloc}/{quote(dbname, safe='')}" + (
        "?" + query if query else "")


class PostgresStore:
    name = "postgres"

    def __init__(self, url: str, *, max_open: int = 25, max_idle: int = 10,
                 max_lifetime: dt.timedelta = dt.timedelta(minutes=5)):
        self.url = url
        self.max_open = max_open
        self.max_idle = max_idle
        self.max_lifetime = max_lifetime

    def describe(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    # A connection back in the pool for less than this is not pinged again.
    ping_after_idle = 1.0  # seconds
    # libpq waits as long as the kernel does (minutes) for an unreachable host, and
    # `authgate server` answers device polls on its I/O thread (inline_serving): a
    # new connection to a host that dropped off the network would hold up every
    # request.  A DSN's own connect_timeout wins.
    connect_timeout = 10  # seconds

    def engine_url(self) -> URL:
        url = make_url(self.url)
        if "connect_timeout" not in url.query:
            url = url.update_query_dict({"connect_timeout": str(self.connect_timeout)})
        return url

    def create_engine(self) -> Engine:
        pool_size = max(1, min(self.max_idle, self.max_open))
        engine = create_engine(
            self.engine_url(),
            pool_size=pool_size,
            max_overflow=max(0, self.max_open - pool_size),
            pool_recycle=int(self.max_lifetime.total_seconds()) or -1,
            pool_timeout=30,
        )
        lazy_transactions.install(engine)
        install_idle_pre_ping(engine, self.ping_after_idle)
        return engine


def install_idle_pre_ping(engine: Engine, idle: float) -> None:
    """Pre-ping (reconnect transparently after a server restart) the connections
    that sat in the pool for more than ``idle`` seconds.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one more round trip
    per request, two with an audit event.  A connection returned a moment ago
    was working a moment ago; one that sat idle through an outage is pinged
    exactly as before, and the first failed query on any connection still marks
    the whole pool stale (SQLAlchemy's disconnect handling), so after a restart
    every connection is replaced.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection, record):
        record.info["authgate.checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, proxy):
        since = record.info.pop("authgate.checked_in", None)
        if since is None or time.monotonic() - since <= idle:
            return  # a new connection, or one in use moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out another.
            raise exc.DisconnectionError(f"pre-ping failed: {error}") from error


def _factory(ctx: BuildContext) -> PostgresStore:
    s = ctx.settings
    return PostgresStore(dsn_to_url(s.database_dsn), max_open=s.db_max_open_conns,
                         max_idle=s.db_max_idle_conns, max_lifetime=s.db_conn_max_lifetime)


@hookimpl
def authgate_add_settings(spec):
    spec.add(Setting("db_max_open_conns", "DB_MAX_OPEN_CONNS", "int", 25, minimum=1,
                     section="Database",
                     help="PostgreSQL: most connections one process opens."))
    spec.add(Setting("db_max_idle_conns", "DB_MAX_IDLE_CONNS", "int", 10, minimum=1,
                     section="Database",
                     help="PostgreSQL: connections kept open in the pool when idle."))
    spec.add(Setting("db_conn_max_lifetime", "DB_CONN_MAX_LIFETIME", "duration",
                     dt.timedelta(minutes=5), section="Database",
                     help="PostgreSQL: recycle a connection after this long (0 = never)."))


@hookimpl
def authgate_register_stores():
    return [ComponentSpec("postgres", _factory, "PostgreSQL through psycopg 3 (DATABASE_DSN)")]
