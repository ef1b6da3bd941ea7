"""Rate limiting (authgate.ratelimit) through the WSGI app, with the real stores.

The Redis tests use the machine's Redis at 127.0.0.1:6379 (CI starts it) under a
key prefix of their own, deleted afterwards; a missing Redis fails them.  The
"Redis goes away" tests start a private redis-server on a free port.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time

import pytest
import redis
from sqlalchemy import select

from authgate import hookimpl
from authgate.errors import ConfigurationError
from authgate.models import AuditLog
from authgate.testing import form
from authgate.testing.redis import REDIS_ADDR

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
BODY = {"error": "rate_limit_exceeded",
        "message": "Too many requests. Please try again later.",
        "error_description": "Too many requests. Please try again later."}


class IncludeRateLimit:
    """Includes authgate.ratelimit (a no-op once the app assembly includes it itself)."""

    __name__ = "include_ratelimit"

    @hookimpl
    def authgate_pyramid_includes(self, settings):
        return ["authgate.ratelimit"]


@pytest.fixture
def limited(make_app):
    def factory(environ=None, settings=None, plugins=()):
        return make_app(settings=settings, environ=environ,
                        plugins=[IncludeRateLimit(), *plugins])

    return factory


def login_attempt(app, password="wrong", status="*", headers=None):
    """A browser-like sign-in: the form (with its CSRF token), then the POST."""
    page = app.testapp.get("/login")
    login = form(page, "/login")
    login["username"] = "admin"
    login["password"] = password
    return login.submit(status=status, headers=headers or {})


def post_login(app, status="*", **kwargs):
    """A login POST without a form (no CSRF token: 400, but still counted)."""
    return app.testapp.post("/login", {"username": "admin", "password": "x"},
                            status=status, **kwargs)


def request_code(app, status="*", **kwargs):
    return app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id},
                            status=status, **kwargs)


def poll(app, device_code, status="*", **kwargs):
    return app.testapp.post("/oauth/token", {"grant_type": GRANT, "device_code": device_code,
                                             "client_id": app.default_client_id},
                            status=status, **kwargs)


def bogus_refresh(app, status="*"):
    return app.testapp.post("/oauth/token", {"grant_type": "refresh_token",
                                             "refresh_token": "not-a-token",
                                             "client_id": app.default_client_id},
                            status=status)


def audit_rows(app, event_type="RATE_LIMIT_EXCEEDED"):
    with app.db() as db:
        return [(r.severity, r.success, r.details, r.actor_ip, r.request_path)
                for r in db.scalars(select(AuditLog).where(AuditLog.event_type == event_type))]


# ---------------------------------------------------------------------------
# The seed's behaviour
# ---------------------------------------------------------------------------


def test_sixth_login_in_a_minute_is_429_with_the_seed_body(limited):
    app = limited()
    for remaining in (4, 3, 2, 1, 0):
        response = login_attempt(app, status=401)
        assert "Invalid username or password" in response.text
        assert response.headers["X-RateLimit-Limit"] == "5"
        assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        assert int(response.headers["X-RateLimit-Reset"]) > time.time()

    sixth = login_attempt(app, status=429)
    assert sixth.json == BODY
    assert list(json.loads(sixth.body)) == ["error", "message", "error_description"]
    assert sixth.content_type == "application/json"
    assert 1 <= int(sixth.headers["Retry-After"]) <= 60
    assert sixth.headers["Cache-Control"] == "no-store"
    assert sixth.headers["X-RateLimit-Limit"] == "5"
    assert sixth.headers["X-RateLimit-Remaining"] == "0"
    # Even the right password is refused now: the limiter runs before the view.
    assert login_attempt(app, password="admin-password-for-tests", status=429).json == BODY


def test_disabled_rate_limit_never_answers_429(limited):
    app = limited(environ={"ENABLE_RATE_LIMIT": "false", "LOGIN_RATE_LIMIT": "1",
                           "DEVICE_CODE_RATE_LIMIT": "1"})
    for _ in range(12):
        response = login_attempt(app, status=401)
        assert "X-RateLimit-Limit" not in response.headers
        assert request_code(app, status=200)
    assert audit_rows(app) == []


def test_the_limits_come_from_the_settings(limited):
    app = limited(settings={"authgate.login_rate_limit": "2"})
    post_login(app, status=400)
    assert post_login(app, status=400).headers["X-RateLimit-Limit"] == "2"
    post_login(app, status=429)


def test_each_endpoint_has_its_own_counter(limited):
    app = limited(environ={"LOGIN_RATE_LIMIT": "2", "DEVICE_CODE_RATE_LIMIT": "3",
                           "TOKEN_RATE_LIMIT": "2", "INTROSPECT_RATE_LIMIT": "1"})
    post_login(app, status=400)
    post_login(app, status=400)
    post_login(app, status=429)

    for remaining in ("2", "1", "0"):
        assert request_code(app, status=200).headers["X-RateLimit-Remaining"] == remaining
    limited_code = request_code(app, status=429)
    assert limited_code.json == BODY
    assert "Set-Cookie" not in limited_code.headers  # API answers never start a session

    bogus_refresh(app, status=400)
    bogus_refresh(app, status=400)
    bogus_refresh(app, status=429)

    app.testapp.post("/oauth/introspect", {"token": "x"}, status=401)
    app.testapp.post("/oauth/introspect", {"token": "x"}, status=429)
    # Endpoints without a limit, and GETs of limited paths, are untouched.
    assert "X-RateLimit-Limit" not in app.testapp.get("/login").headers
    assert "X-RateLimit-Limit" not in app.testapp.get("/health").headers
    app.testapp.post("/oauth/revoke", {"token": "x", "client_id": app.default_client_id},
                     status=200)
    assert {d["endpoint"] for _, _, d, _, _ in audit_rows(app)} == {
        "/login", "/oauth/device/code", "/oauth/token", "/oauth/introspect"}


def test_register_and_device_verify_are_limited(limited):
    app = limited(environ={"DYNAMIC_CLIENT_REGISTRATION_RATE_LIMIT": "1",
                           "DEVICE_VERIFY_RATE_LIMIT": "1"})
    first = app.testapp.post_json("/oauth/register", {"client_name": "x"}, status="*")
    assert first.status_int != 429 and first.headers["X-RateLimit-Limit"] == "1"
    assert app.testapp.post_json("/oauth/register", {"client_name": "x"},
                                 status=429).json == BODY
    app.testapp.post("/device/verify", {"user_code": "ABCD-EFGH"}, status="*")
    app.testapp.post("/device/verify", {"user_code": "ABCD-EFGH"}, status=429)


# ---------------------------------------------------------------------------
# The key: client address, never a header the client picks
# ---------------------------------------------------------------------------


def test_forged_x_forwarded_for_from_an_untrusted_peer_does_not_change_the_key(limited):
    app = limited(environ={"LOGIN_RATE_LIMIT": "2"})
    for n in range(2):
        post_login(app, status=400, headers={"X-Forwarded-For": f"198.51.100.{n}"})
    post_login(app, status=429, headers={"X-Forwarded-For": "198.51.100.99"})
    # Another real peer has its own counter.
    post_login(app, status=400, extra_environ={"REMOTE_ADDR": "192.0.2.7"})
    assert [ip for _, _, _, ip, _ in audit_rows(app)] == ["127.0.0.1"]


def test_x_forwarded_for_through_a_trusted_proxy_is_the_key(limited):
    app = limited(environ={"LOGIN_RATE_LIMIT": "2", "TRUSTED_PROXIES": "127.0.0.1"})
    client_a = {"X-Forwarded-For": "203.0.113.1"}
    post_login(app, status=400, headers=client_a)
    post_login(app, status=400, headers=client_a)
    post_login(app, status=429, headers=client_a)
    # Another client behind the same proxy is not affected...
    post_login(app, status=400, headers={"X-Forwarded-For": "203.0.113.2"})
    # ...and a client cannot escape by prepending its own hop: the proxy appends the
    # real peer, which is what counts.
    post_login(app, status=429, headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.1"})
    assert {ip for _, _, _, ip, _ in audit_rows(app)} == {"203.0.113.1"}


# ---------------------------------------------------------------------------
# Device polling: keyed by device code, never blocked by other devices
# ---------------------------------------------------------------------------


def test_two_devices_behind_one_address_never_see_429_while_polling(limited):
    """Both devices share 127.0.0.1 and together poll well over TOKEN_RATE_LIMIT
    (20) a minute; they get the grant's own slow_down, never the limiter's 429."""
    app = limited()
    codes = [request_code(app, status=200).json["device_code"] for _ in range(2)]
    errors = []
    for _ in range(15):
        for code in codes:
            response = poll(app, code, status=400)
            errors.append(response.json["error"])
            assert response.headers["X-RateLimit-Limit"] == "24"  # 2 x 60s / 5s
    assert len(errors) == 30 and set(errors) <= {"authorization_pending", "slow_down"}
    # Polling did not use the address's token budget: other grants still get 20.
    for _ in range(20):
        bogus_refresh(app, status=400)
    bogus_refresh(app, status=429)
    assert audit_rows(app)[0][2]["key"] == "ip"


def test_devices_polling_at_the_advertised_interval_are_never_limited(limited):
    """Real time: two devices poll every POLLING_INTERVAL (1 s) from one address
    with TOKEN_RATE_LIMIT=5; twelve polls, no 429 and no slow_down."""
    app = limited(environ={"POLLING_INTERVAL": "1s", "TOKEN_RATE_LIMIT": "5"})
    codes = [request_code(app, status=200).json for _ in range(2)]
    assert codes[0]["interval"] == 1
    seen = []
    for _ in range(6):
        started = time.monotonic()
        for code in codes:
            seen.append(poll(app, code["device_code"], status=400).json["error"])
        time.sleep(max(0.0, 1.1 - (time.monotonic() - started)))
    assert seen == ["authorization_pending"] * 12
    assert audit_rows(app) == []


def test_a_device_hammering_its_own_code_is_limited(limited):
    app = limited()
    code = request_code(app, status=200).json["device_code"]
    for _ in range(24):
        poll(app, code, status=400)
    assert poll(app, code, status=429).json == BODY
    other = request_code(app, status=200).json["device_code"]
    assert poll(app, other, status=400).json["error"] == "authorization_pending"
    assert audit_rows(app)[0][2] == {"endpoint": "/oauth/token", "method": "POST",
                                     "limit": 24, "window": "1m", "key": "device_code"}


def test_failed_device_requests_count_against_the_address(limited):
    """Made-up device codes each get a fresh key, so their failures (invalid_grant)
    are charged to the address: spraying codes is limited like any token request."""
    app = limited(environ={"TOKEN_RATE_LIMIT": "3"})
    good = request_code(app, status=200).json["device_code"]
    for n in range(3):
        assert poll(app, f"made-up-{n}", status=400).json["error"] == "invalid_grant"
    assert poll(app, "made-up-3", status=429).json == BODY
    assert poll(app, good, status=429).json == BODY
    # Normal polling answers are never charged to the address.
    app2 = limited(environ={"TOKEN_RATE_LIMIT": "3"})
    code = request_code(app2, status=200).json["device_code"]
    for _ in range(10):
        assert poll(app2, code, status=400).json["error"] in ("authorization_pending",
                                                              "slow_down")
    bogus_refresh(app2, status=400)


def test_device_code_in_a_json_body_is_keyed_too(limited):
    app = limited(environ={"TOKEN_RATE_LIMIT": "2"})
    code = request_code(app, status=200).json["device_code"]
    for _ in range(5):
        response = app.testapp.post_json("/oauth/token", {
            "grant_type": GRANT, "device_code": code, "client_id": app.default_client_id},
            status="*")
        assert response.status_int == 400, response.text
        assert response.headers["X-RateLimit-Limit"] == "24"


# ---------------------------------------------------------------------------
# Browsers and the audit trail
# ---------------------------------------------------------------------------


def test_browser_form_post_gets_the_html_page(limited):
    app = limited(environ={"LOGIN_RATE_LIMIT": "1"})
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    login_attempt(app, status=401, headers=browser)
    page = login_attempt(app, status=429, headers=browser)
    assert page.content_type == "text/html"
    assert "<h1 id=\"rate-title\">Too many requests</h1>" in page.text
    retry = int(page.headers["Retry-After"])
    assert re.search(rf"Try again in {retry} seconds?\.", page.text)
    assert page.headers["Cache-Control"] == "no-store"
    # An API client asking for JSON (or anything) still gets JSON.
    assert login_attempt(app, status=429, headers={"Accept": "application/json"}).json == BODY
    assert login_attempt(app, status=429, headers={"Accept": "*/*"}).json == BODY


def test_rate_limit_exceeded_is_audited(limited):
    app = limited(environ={"LOGIN_RATE_LIMIT": "1"})
    login_attempt(app, status=401)
    login_attempt(app, status=429, headers={"User-Agent": "limit-test/1.0"})
    rows = audit_rows(app)
    assert rows == [("WARNING", False, {"endpoint": "/login", "method": "POST", "limit": 1,
                                        "window": "1m", "key": "ip"},
                     "127.0.0.1", "/login")]
    with app.db() as db:
        row = db.scalars(select(AuditLog).where(
            AuditLog.event_type == "RATE_LIMIT_EXCEEDED")).one()
        assert row.user_agent == "limit-test/1.0" and row.request_method == "POST"
        assert row.error_message == "Too many requests. Please try again later."


def test_signed_in_user_is_the_actor_on_device_verify(limited):
    app = limited(environ={"DEVICE_VERIFY_RATE_LIMIT": "1"})
    app.login()
    token = app.csrf_token("/device")
    app.testapp.post("/device/verify", {"user_code": "ABCD-EFGH", "csrf_token": token},
                     status=400)  # unknown code: the view's answer
    app.testapp.post("/device/verify", {"user_code": "ABCD-EFGH", "csrf_token": token},
                     status=429)
    with app.db() as db:
        row = db.scalars(select(AuditLog).where(
            AuditLog.event_type == "RATE_LIMIT_EXCEEDED")).one()
        assert row.actor_username == "admin"


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("LOGIN_RATE_LIMIT", "0", "a value of at least 1"),
    ("TOKEN_RATE_LIMIT", "many", "a whole number"),
    ("RATE_LIMIT_STORE", "memcached", "one of memory, redis"),
    ("REDIS_ADDR", "localhost", "HOST:PORT"),
    ("REDIS_DB", "-1", "a value of at least 0"),
])
def test_bad_settings_stop_start_up(limited, name, value, expected):
    with pytest.raises(ConfigurationError, match=rf"{name}.*{re.escape(expected)}"):
        limited(environ={name: value})


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


def redis_environ(prefix, **extra):
    return {"RATE_LIMIT_STORE": "redis", "REDIS_ADDR": REDIS_ADDR,
            "RATE_LIMIT_KEY_PREFIX": prefix, **extra}


def test_redis_store_is_shared_by_two_apps(limited, redis_prefix):
    one = limited(environ=redis_environ(redis_prefix))
    two = limited(environ=redis_environ(redis_prefix))
    for _ in range(3):
        login_attempt(one, status=401)
    login_attempt(two, status=401)
    assert login_attempt(two, status=401).headers["X-RateLimit-Remaining"] == "0"
    assert login_attempt(two, status=429).json == BODY
    assert login_attempt(one, status=429).json == BODY
    keys = redis.Redis.from_url(f"redis://{REDIS_ADDR}/0").keys(f"{redis_prefix}:*")
    assert keys and all(b"LIMITER/login/127.0.0.1/" in k for k in keys)
    # Another endpoint has its own key, even in the shared store.
    assert request_code(two, status=200).headers["X-RateLimit-Remaining"] == "9"


def test_redis_unreachable_at_start_up_is_a_clear_error(limited):
    port = free_port()
    with pytest.raises(ConfigurationError) as caught:
        limited(environ={"RATE_LIMIT_STORE": "redis", "REDIS_ADDR": f"127.0.0.1:{port}"})
    message = str(caught.value)
    assert f"REDIS_ADDR=127.0.0.1:{port}" in message and "unreachable" in message
    # With rate limiting off, Redis is not needed at all.
    limited(environ={"ENABLE_RATE_LIMIT": "false", "RATE_LIMIT_STORE": "redis",
                     "REDIS_ADDR": f"127.0.0.1:{port}"})


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_redis(tmp_path):
    """Start redis-server on a free port: factory(password=None) -> (addr, process)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is needed for this test (apt-get install redis-server)")
    processes = []

    def start(password=None):
        port = free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(tmp_path)]
        if password:
            args += ["--requirepass", password]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        client = redis.Redis(host="127.0.0.1", port=port, password=password)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail("the private redis-server did not start")
                time.sleep(0.05)
        client.close()
        return f"127.0.0.1:{port}", process

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def test_redis_password_and_db(limited, private_redis):
    password = "p@ss:w/rd with space"
    addr, _ = private_redis(password=password)
    app = limited(environ={"RATE_LIMIT_STORE": "redis", "REDIS_ADDR": addr,
                           "REDIS_PASSWORD": password, "REDIS_DB": "3",
                           "LOGIN_RATE_LIMIT": "1"})
    post_login(app, status=400)
    post_login(app, status=429)
    host, port = addr.split(":")
    client = redis.Redis(host=host, port=int(port), password=password, db=3)
    assert client.keys("authgate:ratelimit:*")  # the default prefix, in REDIS_DB
    client.close()
    with pytest.raises(ConfigurationError) as caught:
        limited(environ={"RATE_LIMIT_STORE": "redis", "REDIS_ADDR": addr,
                         "REDIS_PASSWORD": "wrong-password"})
    assert "wrong-password" not in str(caught.value)
    assert f"REDIS_ADDR={addr}" in str(caught.value)


def test_redis_going_away_fails_open(limited, private_redis, caplog):
    addr, process = private_redis()
    app = limited(environ={"RATE_LIMIT_STORE": "redis", "REDIS_ADDR": addr,
                           "LOGIN_RATE_LIMIT": "1"})
    post_login(app, status=400)
    post_login(app, status=429)
    process.terminate()
    process.wait(timeout=10)
    with caplog.at_level("WARNING", logger="authgate.ratelimit"):
        for _ in range(3):
            response = post_login(app, status=400)  # the view answers; no 500, no 429
            assert "X-RateLimit-Limit" not in response.headers
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "letting requests through" in errors[0].getMessage()
    from authgate.ratelimit import get_limiter
    assert get_limiter(app.testapp.app.registry).store_errors == 1  # retried after 5 s only


@pytest.mark.parametrize("content_type", ["application/json",
                                          "multipart/form-data; boundary=zzz"])
def test_malformed_token_bodies_are_keyed_by_address(limited, content_type):
    app = limited(environ={"TOKEN_RATE_LIMIT": "2"})
    for _ in range(2):
        response = app.testapp.post("/oauth/token", b"{not json --zzz", status="*",
                                    content_type=content_type)
        assert response.status_int == 400, response.text
    app.testapp.post("/oauth/token", b"{not json --zzz", content_type=content_type,
                     status=429)
    from authgate.ratelimit import get_limiter
    assert get_limiter(app.testapp.app.registry).store_errors == 0
