"""Device polling pace (RFC 8628 §3.5): when did this device code last poll?

Every poll of a pending device code must be checked against its interval, and
``slow_down`` answered when it comes too early.  Recording each poll in the
``device_codes`` row costs a write transaction per poll: the most frequent
request of the device flow (10,000 devices every 5 s = 2,000 writes a second),
and on SQLite every write takes the database's single writer lock.  So the
last-poll times live where they are cheap and still shared by every process
that serves the same clients:

* ``redis`` -- when ``RATE_LIMIT_STORE=redis`` (the documented set-up for
  several processes): one ``SET ... GET PX`` per poll, shared by all of them;
* ``memory`` -- otherwise: this process's memory.  On SQLite the server is one
  process; on PostgreSQL without Redis each process keeps its own pace, as each
  keeps its own rate-limit counters -- pacing is the RFC's politeness rule for
  well-behaved devices, not a security control (device codes are 256-bit and
  the token endpoint's rate limit is the brake);
* ``database`` -- ``DEVICE_POLL_PACE=database``: the ``device_codes`` row, one
  write per poll, for several processes that share nothing but the database
  and still want every poll paced across them.

The interval itself (raised by ``slow_down``) stays in the row: it changes
rarely and must survive a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

from authgate.settings import Setting

if TYPE_CHECKING:
    from authgate.settings import Settings

log = logging.getLogger(__name__)

SETTINGS: list[Setting] = [
    Setting("device_poll_pace", "DEVICE_POLL_PACE", "str", "auto",
            choices=("auto", "memory", "redis", "database"), section="Device flow",
            help="Where the time of each device code's last poll is kept (for "
                 "`slow_down`): `auto` = `redis` when RATE_LIMIT_STORE=redis, else "
                 "`memory` (this process; several processes without Redis each pace on "
                 "their own, like their rate limits); `redis` needs RATE_LIMIT_STORE=redis; "
                 "`database` = the `device_codes` row, one write per poll, paced across "
                 "processes that share only the database."),
]


class Pacer(Protocol):
    name: str

    def poll(self, key: str, window: float) -> bool:
        """Record a poll of ``key`` now; True when the previous one (if any) was at
        least ``window`` seconds ago.  Atomic: of two polls at the same moment, one
        is paced and the other too early."""

    def forget(self, key: str) -> None:
        """Drop the record of ``key`` (its next poll is paced)."""

    def close(self) -> None: ...


class MemoryPacer:
    """Last polls in this process's memory (a dict under a lock)."""

    name = "memory"
    prune_every = 10_000  # polls between sweeps of codes whose window has passed

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}  # key -> (time, window)
        self._lock = threading.Lock()
        self._polls = 0

    def poll(self, key: str, window: float) -> bool:
        now = time.monotonic()
        with self._lock:
            previous = self._last.get(key)
            self._last[key] = (now, window)
            self._polls += 1
            if self._polls >= self.prune_every:
                self._polls = 0
                self._last = {k: v for k, v in self._last.items() if now - v[0] < v[1]}
        return previous is None or now - previous[0] >= window

    def forget(self, key: str) -> None:
        with self._lock:
            self._last.pop(key, None)

    def close(self) -> None:
        self._last.clear()


class RedisPacer:
    """Last polls in Redis, shared by every process using the same Redis and prefix.

    A Redis failure lets the poll through (the database still decides whether the
    code is approved); pacing resumes when Redis is back.
    """

    name = "redis"

    def __init__(self, client, prefix: str) -> None:
        self._redis = client
        self._prefix = f"{prefix}:poll:"

    def poll(self, key: str, window: float) -> bool:
        now_ms = int(time.time() * 1000)
        try:
            # SET ... GET (Redis 6.2+): store this poll, return the previous one.
            previous = self._redis.set(self._prefix + key, now_ms, get=True,
                                       px=max(1000, int(window * 2000)))
        except Exception as exc:  # redis.RedisError, OSError: fail open, say so
            log.warning("device polling pace not checked: Redis failed (%s)", exc)
            return True
        return previous is None or now_ms - int(previous) >= window * 1000

    def forget(self, key: str) -> None:
        self._redis.delete(self._prefix + key)

    def close(self) -> None:
        try:
            self._redis.close()
        except Exception:
            log.debug("closing the Redis connection failed", exc_info=True)


def build_pacer(settings: Settings, redis_pool=None) -> Pacer | None:
    """The pacer for this deployment (DEVICE_POLL_PACE); None means the
    device_codes row (database).

    ``redis_pool`` (given when RATE_LIMIT_STORE=redis) is the connection pool the
    rate limiter uses too (:func:`authgate.ratelimit.redis_pool`)."""
    from authgate.errors import ConfigurationError

    choice = settings.get("device_poll_pace", "auto")
    if choice == "database":
        return None
    if choice == "redis" and redis_pool is None:
        raise ConfigurationError("DEVICE_POLL_PACE=redis needs RATE_LIMIT_STORE=redis "
                                 "(the Redis the rate limits use)")
    if redis_pool is not None and choice in ("auto", "redis"):
        import redis

        return RedisPacer(redis.Redis(connection_pool=redis_pool),
                          settings.rate_limit_key_prefix)
    return MemoryPacer()
