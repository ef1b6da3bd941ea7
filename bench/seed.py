"""Seed a benchmark database directly (SQLAlchemy on the server's own database).

The runtime is built in the bench process from production.ini and the same
environment as the server, so seeded tokens are signed with the server's key
and stored exactly as the server stores them.  Filler rows are bulk inserted
with the driver itself: executemany on SQLite, COPY on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.servers import PRODUCTION_INI

POLL_PREFIX = "bench-poll-"
POLL_INTERVAL = 5  # seconds: POLLING_INTERVAL's production default
CHUNK = 100_000


@dataclass
class Seeded:
    admin_id: str
    device_client_id: str  # public, device flow (what CLIs and TVs use)
    conf_client_id: str  # confidential: client credentials + introspection
    conf_secret: str
    poll_codes: int


def build_runtime(env: dict[str, str], workdir: Path, *, prepare_db: bool = True):
    """The app's runtime (engine, signer, settings) for ``env``; migrates and seeds
    the admin user like the server's first start when ``prepare_db``."""
    import logging

    from authgate.app import build_runtime as build
    from authgate.cli import load_app_settings

    # The server logs its own start-up; here only problems are worth showing.
    logging.getLogger("authgate").setLevel(logging.WARNING)
    logging.getLogger("authgate.seed").setLevel(logging.ERROR)

    raw, _ = load_app_settings(str(PRODUCTION_INI))
    return build(raw, env, cwd=str(workdir), prepare_db=prepare_db)


@contextlib.contextmanager
def session(runtime) -> Iterator:
    import transaction

    from authgate.db import get_tm_session

    tm = transaction.TransactionManager(explicit=True)
    with tm:
        yield get_tm_session(runtime.session_factory, tm)


def _sqlite_time(value: dt.datetime) -> str:
    # SQLAlchemy's SQLite DateTime storage format (always with microseconds).
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def bulk_insert(runtime, table: str, columns: list[str], rows: list[tuple]) -> None:
    """Insert many rows with the driver itself (executemany / COPY)."""
    if not rows:
        return
    engine = runtime.engine
    names = ", ".join(f'"{c}"' for c in columns)  # "interval" is a keyword in PostgreSQL
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            fixed = [tuple(_sqlite_time(v) if isinstance(v, dt.datetime) else v for v in row)
                     for row in rows]
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})",
                               fixed)
        cursor.close()
        raw.commit()
    finally:
        raw.close()


def analyze(runtime) -> None:
    from sqlalchemy import text

    with runtime.engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def seed_base(runtime, *, poll_codes: int) -> Seeded:
    """Clients, the admin's id and ``poll_codes`` pending device codes."""
    from sqlalchemy import select

    from authgate.cli import create_oauth_client
    from authgate.models import User
    from authgate.services.devices import USER_CODE_ALPHABET, format_user_code
    from authgate.services.secrets import sha256_hex

    with session(runtime) as db:
        admin_id = db.scalars(select(User.id).where(User.username == "admin")).one()
        device, _ = create_oauth_client(db, name="bench-device", device=True,
                                        scopes="email profile")
        conf, secret = create_oauth_client(db, name="bench-service", confidential=True,
                                           device=True, client_credentials=True,
                                           scopes="email profile")
        seeded = Seeded(admin_id, device.client_id, conf.client_id, secret or "", poll_codes)

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    expires = now + dt.timedelta(days=2)
    base = len(USER_CODE_ALPHABET)
    rows = []
    for i in range(poll_codes):
        digits, n = [], i
        for _ in range(8):
            n, r = divmod(n, base)
            digits.append(USER_CODE_ALPHABET[r])
        # Deterministic, unique user codes ("Z" first letter: the server's random
        # codes may collide only with probability ~poll_codes / 31**8).
        user_code = format_user_code("Z" + "".join(digits[:7]))
        rows.append((sha256_hex(f"{POLL_PREFIX}{i:07d}"), user_code, seeded.device_client_id,
                     "email profile", "pending", False, POLL_INTERVAL, expires, now, now))
    bulk_insert(runtime, "device_codes",
                ["device_code", "user_code", "client_id", "scopes", "status", "is_used",
                 "interval", "expires_at", "created_at", "updated_at"], rows)
    return seeded


def poll_bodies(seeded: Seeded) -> list[str]:
    from authgate.services.devices import DEVICE_GRANT

    grant = DEVICE_GRANT.replace(":", "%3A")
    return [f"grant_type={grant}&device_code={POLL_PREFIX}{i:07d}"
            f"&client_id={seeded.device_client_id}" for i in range(seeded.poll_codes)]


def slow_down_count(runtime, seeded: Seeded) -> int:
    """slow_down answers given to the seeded codes so far (each one adds 5 s)."""
    from sqlalchemy import func, select

    from authgate.models import DeviceCode

    with session(runtime) as db:
        extra = db.scalar(select(func.coalesce(func.sum(DeviceCode.interval - POLL_INTERVAL), 0))
                          .where(DeviceCode.client_id == seeded.device_client_id,
                                 DeviceCode.interval > POLL_INTERVAL))
    return int(extra or 0) // 5


def issue_tokens(runtime, seeded: Seeded, count: int) -> list[tuple[str, str]]:
    """``count`` real (access, refresh) token pairs for the admin user on the device
    client, signed by this runtime's signer and stored as the server stores them."""
    from sqlalchemy import select

    from authgate.models import OAuthClient
    from authgate.services import tokens
    from authgate.services.devices import DEVICE_GRANT

    pairs = []
    with session(runtime) as db:
        client = db.scalars(select(OAuthClient).where(
            OAuthClient.client_id == seeded.device_client_id)).one()
        for _ in range(count):
            issued = tokens.issue(db, runtime.signer, runtime.settings, subject=seeded.admin_id,
                                  client=client, scopes=["email", "profile"],
                                  grant_type=DEVICE_GRANT)
            pairs.append((issued.access_token, issued.refresh_token or ""))
    return pairs


def token_count(runtime) -> int:
    from sqlalchemy import func, select

    from authgate.models import Token

    with session(runtime) as db:
        return int(db.scalar(select(func.count()).select_from(Token)) or 0)


def fill_tokens(runtime, seeded: Seeded, total: int) -> tuple[int, float]:
    """Add filler token rows until the table holds ``total``; (rows added, seconds)."""
    started = time.monotonic()
    missing = total - token_count(runtime)
    added = 0
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    expires = now + dt.timedelta(hours=10)
    columns = ["id", "token_hash", "jti", "token_type", "token_category", "status", "user_id",
               "client_id", "scopes", "expires_at", "created_at", "token_family_id",
               "grant_type"]
    while added < missing:
        batch = min(CHUNK, missing - added)
        rows = [(str(uuid.uuid4()), secrets.token_hex(32), str(uuid.uuid4()), "Bearer",
                 "access", "active", seeded.admin_id, seeded.device_client_id, "email profile",
                 expires, now, "", "urn:ietf:params:oauth:grant-type:device_code")
                for _ in range(batch)]
        bulk_insert(runtime, "tokens", columns, rows)
        added += batch
    if added:
        analyze(runtime)
    return added, time.monotonic() - started
