"""Two real `authgate server` processes with RATE_LIMIT_STORE=redis share the
counters (the machine's Redis at 127.0.0.1:6379; a missing Redis fails the test)."""

from __future__ import annotations

import re

import pytest
import redis
import requests

from authgate.testing.redis import REDIS_ADDR

pytestmark = pytest.mark.e2e

BODY = {"error": "rate_limit_exceeded",
        "message": "Too many requests. Please try again later.",
        "error_description": "Too many requests. Please try again later."}


def sign_in(server, password: str = "wrong-password") -> requests.Response:
    """What a browser does: load the form (CSRF token, session cookie), post it."""
    session = requests.Session()
    page = session.get(server.url + "/login", timeout=10)
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return session.post(server.url + "/login", timeout=10,
                        data={"username": "admin", "password": password,
                              "csrf_token": token},
                        headers={"Accept": "application/json"}, allow_redirects=False)


def test_two_servers_share_the_login_counter(live_server, redis_prefix):
    env = {"RATE_LIMIT_STORE": "redis", "REDIS_ADDR": REDIS_ADDR,
           "RATE_LIMIT_KEY_PREFIX": redis_prefix}
    one, two = live_server(**env), live_server(**env)

    answers = [sign_in(one).status_code for _ in range(3)]
    answers += [sign_in(two).status_code for _ in range(2)]
    assert answers == [401] * 5

    sixth = sign_in(two)
    assert sixth.status_code == 429
    assert sixth.json() == BODY
    assert 1 <= int(sixth.headers["Retry-After"]) <= 60
    assert sixth.headers["X-RateLimit-Limit"] == "5"
    assert sixth.headers["X-RateLimit-Remaining"] == "0"
    assert sign_in(one).status_code == 429

    keys = redis.Redis.from_url(f"redis://{REDIS_ADDR}/0").keys(f"{redis_prefix}:*")
    assert [k for k in keys if b"/login/127.0.0.1/" in k]
    for server in (one, two):
        assert "Rate limiting: store=redis" in server.log()


def test_server_refuses_to_start_without_redis(tmp_path):
    """Start-up stops with a message naming REDIS_ADDR when Redis is unreachable."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SERVER_ADDR": "127.0.0.1:0",
           "RATE_LIMIT_STORE": "redis", "REDIS_ADDR": f"127.0.0.1:{port}"}
    try:
        result = subprocess.run([str(Path(sys.executable).with_name("authgate")), "server"],
                                cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=30, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the server started without Redis:\n{exc.stderr}")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"REDIS_ADDR=127.0.0.1:{port}" in output and "unreachable" in output
