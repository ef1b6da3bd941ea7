"""Device polling pace: in memory (SQLite, one process) and in Redis (shared)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from authgate.errors import ConfigurationError
from authgate.pacing import MemoryPacer, RedisPacer, build_pacer
from authgate.ratelimit import build_storage, redis_pool
from authgate.settings import core_spec

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_pacer():
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at 127.0.0.1:6379 is needed ({exc}); start it: "
                    "redis-server --daemonize yes --port 6379")
    prefix = f"authgate-test:{uuid.uuid4().hex}"
    yield RedisPacer(client, prefix)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def pacer(request):
    return MemoryPacer() if request.param == "memory" else request.getfixturevalue(
        "redis_pacer")


def test_first_poll_is_paced_and_an_early_one_is_not(pacer):
    assert pacer.poll("code-1", 0.3) is True
    assert pacer.poll("code-1", 0.3) is False  # too early: slow_down
    assert pacer.poll("code-2", 0.3) is True  # each code has its own pace


def test_an_early_poll_restarts_the_wait(pacer):
    assert pacer.poll("c", 0.4) is True
    time.sleep(0.25)
    assert pacer.poll("c", 0.4) is False
    time.sleep(0.25)  # 0.5 s after the first poll, 0.25 s after the early one
    assert pacer.poll("c", 0.4) is False
    time.sleep(0.45)
    assert pacer.poll("c", 0.4) is True


def test_forget_lets_the_next_poll_through(pacer):
    assert pacer.poll("c", 60) is True
    pacer.forget("c")
    assert pacer.poll("c", 60) is True


def test_concurrent_polls_only_one_is_paced(pacer):
    results: list[bool] = []
    barrier = threading.Barrier(10)

    def poll():
        barrier.wait()
        results.append(pacer.poll("same-code", 30))

    threads = [threading.Thread(target=poll) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 9 + [True]


def test_memory_pacer_forgets_codes_whose_window_has_passed():
    pacer = MemoryPacer()
    pacer.prune_every = 3
    pacer.poll("old", 0.01)
    time.sleep(0.05)
    pacer.poll("new", 60)
    pacer.poll("newer", 60)  # the third poll sweeps
    assert set(pacer._last) == {"new", "newer"}


def test_redis_failure_lets_the_poll_through(caplog):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    pacer = RedisPacer(dead, "x")
    assert pacer.poll("c", 30) is True
    assert pacer.poll("c", 30) is True
    assert "device polling pace not checked: Redis failed" in caplog.text


def settings(**environ):
    return core_spec().load({}, environ)


def test_which_pacer():
    # Redis whenever the rate limits are in Redis (several processes share it).
    configured = settings(RATE_LIMIT_STORE="redis", REDIS_ADDR="127.0.0.1:6379")
    pool = redis_pool(configured)
    shared = build_pacer(configured, pool)
    assert isinstance(shared, RedisPacer)
    # The rate limiter's storage uses the same connection pool.
    assert build_storage(configured, pool).get_connection().connection_pool is pool
    shared.close()
    pool.disconnect()
    assert redis_pool(settings()) is None
    # Without Redis, each process paces in its own memory (the store plays no part) ...
    assert isinstance(build_pacer(settings()), MemoryPacer)
    # ... unless the row is asked for (processes that share only the database) ...
    assert build_pacer(settings(DEVICE_POLL_PACE="database")) is None
    # ... and memory can be asked for beside a Redis used for the rate limits.
    memory = settings(RATE_LIMIT_STORE="redis", REDIS_ADDR="127.0.0.1:6379",
                      DEVICE_POLL_PACE="memory")
    assert isinstance(build_pacer(memory, pool), MemoryPacer)


def test_redis_pace_without_redis_rate_limits_is_refused():
    with pytest.raises(ConfigurationError, match="DEVICE_POLL_PACE=redis needs "
                                                 "RATE_LIMIT_STORE=redis"):
        build_pacer(settings(DEVICE_POLL_PACE="redis"))
