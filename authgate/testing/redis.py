"""A key prefix of its own per test in the machine's Redis (opt in:
``pytest_plugins = ["authgate.testing.redis"]``).

The Redis at ``REDIS_ADDR`` (127.0.0.1:6379, database 0) must be running: a test
that needs it fails, it never skips (on CI or anywhere else).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

REDIS_ADDR = "127.0.0.1:6379"
REDIS_URL = f"redis://{REDIS_ADDR}/0"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own (``authgate-test:<uuid>``) in the machine's Redis;
    every key under ``<prefix>:`` is deleted afterwards.  An unreachable Redis fails
    the test."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.fail(
            f"Redis at {REDIS_ADDR} is needed for this test and is unreachable "
            f"({exc}); start it: redis-server --daemonize yes --port 6379"
        )
    prefix = f"authgate-test:{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
