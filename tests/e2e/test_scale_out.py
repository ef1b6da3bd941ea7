"""Scale-out, as docs/deployment.md ("N processes: PostgreSQL, Redis and nginx")
describes it: two `authgate server` processes with the same environment (one
PostgreSQL database, one Redis, the same SESSION_SECRET, JWT_SECRET and BASE_URL),
each on its own port.  Whatever one process does, the other sees:

* a device flow started on A, approved by the person on B, finished by polling A
  (and the grant's polling pace is kept across processes);
* a token issued by A works on B, its refresh on B gives a token A accepts, and a
  revocation on B is seen by A immediately (userinfo, tokeninfo, introspection);
* the login rate limit is one counter for both processes.

Always on PostgreSQL (whatever --authgate-store says) and the machine's Redis at
127.0.0.1:6379: a missing service fails the test, it never skips.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import requests
from e2e_support import ADMIN_PASSWORD, LiveServer, start_server

from authgate.testing.redis import REDIS_ADDR

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

AUTHGATE = str(Path(sys.executable).with_name("authgate"))
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# The one public URL of the deployment (nginx's, in production): the issuer and the
# base of the verification URI, the same on both processes.  Nothing listens there;
# requests go to each process's own port.
PUBLIC_URL = "http://auth.scale-out.test"
SEEDED = re.compile(r"Seeded OAuth client with ID: ([0-9a-f-]{36})")


@dataclass
class Pair:
    a: LiveServer
    b: LiveServer
    base_url: str  # the one public URL (nginx's, in production) both processes share
    client_id: str  # the seeded public client ("AuthGate CLI")


@pytest.fixture
def start_pair(tmp_path, pg_dsn, redis_prefix) -> Iterator:
    """Factory: ``start_pair(**extra_env)`` starts A on the empty database (it
    migrates and seeds), waits until it is healthy, then starts B with the same
    environment but its own SERVER_ADDR and working directory.  One pair per test
    (the test's fresh database); the processes stop before pg_dsn drops it."""
    servers: list[LiveServer] = []

    def factory(**extra: str) -> Pair:
        assert not servers, "one pair per test: the database is seeded once"
        index = 0
        env = {
            "BASE_URL": PUBLIC_URL,
            "SESSION_SECRET": secrets.token_urlsafe(48),
            "JWT_SECRET": secrets.token_urlsafe(48),
            "DATABASE_DRIVER": "postgres",
            "DATABASE_DSN": pg_dsn,
            "RATE_LIMIT_STORE": "redis",
            "REDIS_ADDR": REDIS_ADDR,
            "RATE_LIMIT_KEY_PREFIX": f"{redis_prefix}:{index}",
            **extra,
        }
        pair_servers = []
        for name in ("a", "b"):  # A first: only the first start on an empty database seeds
            cwd = tmp_path / f"pair{index}-{name}"
            cwd.mkdir()
            server = start_server(cwd, env)
            servers.append(server)
            pair_servers.append(server)
        a, b = pair_servers
        seeded = SEEDED.search(a.log())
        assert seeded, f"A did not seed the default client:\n{a.log()}"
        assert not SEEDED.search(b.log()), f"B seeded a second client:\n{b.log()}"
        for server in (a, b):
            assert "Rate limiting: store=redis" in server.log(), server.log()
            assert "BASE_URL is" not in server.log(), server.log()  # no port warning
        return Pair(a, b, PUBLIC_URL, seeded.group(1))

    yield factory
    for server in servers:
        server.stop()


# -- what the client, the person and the operator do --------------------------------

def post(server: LiveServer, path: str, **data: str) -> requests.Response:
    return requests.post(server.url + path, data=data, timeout=10)


def bearer(server: LiveServer, path: str, token: str) -> requests.Response:
    return requests.get(server.url + path, headers={"Authorization": f"Bearer {token}"},
                        timeout=10)


def login_form(server: LiveServer, session: requests.Session) -> str:
    page = session.get(server.url + "/login", timeout=10)
    assert page.status_code == 200, page.text[:500]
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sign_in(server: LiveServer, password: str = "wrong-password") -> requests.Response:
    """What a browser does: load the form (CSRF token, session cookie), post it."""
    session = requests.Session()
    token = login_form(server, session)
    return session.post(server.url + "/login", timeout=10,
                        data={"username": "admin", "password": password,
                              "csrf_token": token},
                        headers={"Accept": "application/json"}, allow_redirects=False)


def admin_session(server: LiveServer) -> requests.Session:
    """A browser session signed in as admin on ``server``."""
    person = requests.Session()
    csrf = login_form(server, person)
    signed_in = person.post(server.url + "/login", timeout=10, allow_redirects=False,
                            data={"username": "admin", "password": ADMIN_PASSWORD,
                                  "csrf_token": csrf})
    assert signed_in.status_code in (302, 303), signed_in.text[:500]
    return person


def approve_device(server: LiveServer, pair: Pair, verification_uri_complete: str,
                   user_code: str) -> None:
    """The person signs in on ``server`` and approves the code there.  The
    verification URI names the shared public URL; its path and query are sent to
    ``server`` (what nginx would do)."""
    assert verification_uri_complete.startswith(pair.base_url + "/"), \
        verification_uri_complete
    parts = urlsplit(verification_uri_complete)
    person = admin_session(server)
    page = person.get(f"{server.url}{parts.path}?{parts.query}", timeout=10)
    assert page.status_code == 200 and user_code in page.text, page.text[:500]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    done = person.post(server.url + "/device/verify", timeout=10, data={
        "user_code": user_code, "action": "approve", "csrf_token": csrf})
    assert done.status_code == 200 and "Device authorized" in done.text, done.text[:500]


def poll(server: LiveServer, client_id: str, device_code: str) -> requests.Response:
    return post(server, "/oauth/token", grant_type=DEVICE_GRANT, device_code=device_code,
                client_id=client_id)


def create_client(server: LiveServer, name: str, *options: str) -> tuple[str, str | None]:
    """`authgate create-client` with the server's environment (the shared database)."""
    result = subprocess.run([AUTHGATE, "create-client", name, *options], cwd=server.cwd,
                            env=server.env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    client_id = re.search(r"^Client ID:\s+(\S+)$", result.stdout, re.M).group(1)
    secret = re.search(r"^Client Secret:\s+(\S+)$", result.stdout, re.M)
    return client_id, secret.group(1) if secret else None


def introspect(server: LiveServer, client: tuple[str, str | None], token: str) -> dict:
    response = requests.post(server.url + "/oauth/introspect", data={"token": token},
                             auth=client, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


# -- the tests -----------------------------------------------------------------------

def test_device_flow_and_tokens_across_two_processes(start_pair):
    pair = start_pair(POLLING_INTERVAL="1s", LOGIN_RATE_LIMIT="100")
    a, b, client_id = pair.a, pair.b, pair.client_id

    # Both processes describe the same issuer: the shared BASE_URL.
    for server in (a, b):
        found = requests.get(server.url + "/.well-known/openid-configuration", timeout=10)
        assert found.status_code == 200 and found.json()["issuer"] == pair.base_url

    # 1. Started on A, approved on B, finished on A.
    started = post(a, "/oauth/device/code", client_id=client_id, scope="profile")
    assert started.status_code == 200, started.text
    grant = started.json()
    assert grant["interval"] == 1
    pending = poll(a, client_id, grant["device_code"])
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"

    approve_device(b, pair, grant["verification_uri_complete"], grant["user_code"])

    deadline = time.monotonic() + 15
    while True:
        time.sleep(grant["interval"] + 0.1)  # the pace the grant asks for
        polled = poll(a, client_id, grant["device_code"])
        if polled.status_code == 200 or time.monotonic() > deadline:
            break
        assert polled.json()["error"] == "authorization_pending", polled.text
    assert polled.status_code == 200, polled.text
    issued = polled.json()
    access, refresh = issued["access_token"], issued["refresh_token"]
    # The device code is spent on every process, not only on A.
    again = poll(b, client_id, grant["device_code"])
    assert again.status_code == 400, again.text
    assert again.json()["error"] == "invalid_grant", again.text

    # 2. A's token works on B (same JWT_SECRET, same database) ...
    info = bearer(b, "/oauth/userinfo", access)
    assert info.status_code == 200, info.text
    assert info.json()["preferred_username"] == "admin"
    assert info.json()["iss"] == pair.base_url
    details = bearer(b, "/oauth/tokeninfo", access)
    assert details.status_code == 200, details.text
    assert details.json()["active"] is True and details.json()["client_id"] == client_id

    # ... a refresh on B gives a token A accepts ...
    refreshed = post(b, "/oauth/token", grant_type="refresh_token", refresh_token=refresh,
                     client_id=client_id)
    assert refreshed.status_code == 200, refreshed.text
    access_from_b = refreshed.json()["access_token"]
    assert bearer(a, "/oauth/userinfo", access_from_b).status_code == 200

    # ... and a revocation on B is seen by A at once.
    resource_server = create_client(a, "Scale-out resource server", "--confidential")
    assert resource_server[1], "create-client --confidential printed no secret"
    assert introspect(a, resource_server, access)["active"] is True
    assert bearer(a, "/oauth/userinfo", access).status_code == 200

    revoked = post(b, "/oauth/revoke", token=access, token_type_hint="access_token",
                   client_id=client_id)
    assert revoked.status_code == 200, revoked.text

    for server in (a, b):
        gone = bearer(server, "/oauth/userinfo", access)
        assert gone.status_code == 401, (server.url, gone.text)
        assert gone.json()["error"] == "invalid_token"
        assert bearer(server, "/oauth/tokeninfo", access).status_code == 401
        assert introspect(server, resource_server, access) == {"active": False}

    # 3. The grant's polling pace is shared (in Redis, with RATE_LIMIT_STORE=redis;
    #    authgate.pacing): a poll on B right after one on A is too fast.
    second = post(b, "/oauth/device/code", client_id=client_id).json()
    first_poll = poll(a, client_id, second["device_code"])
    assert first_poll.json()["error"] == "authorization_pending", first_poll.text
    too_fast = poll(b, client_id, second["device_code"])
    assert too_fast.status_code == 400 and too_fast.json()["error"] == "slow_down", \
        too_fast.text


def test_a_client_secret_regenerated_on_one_process_is_refused_by_the_other(start_pair):
    """Each process caches the clients it has read (authgate.clientcache); a change
    made through B reaches A's cache (PostgreSQL NOTIFY, migration 0004) before A
    serves the old row again."""
    pair = start_pair(LOGIN_RATE_LIMIT="100", CLIENT_CACHE_TTL="1h")
    a, b = pair.a, pair.b
    client_id, secret = create_client(a, "Cached on A", "--confidential")
    assert introspect(a, (client_id, secret), "not-a-token") == {"active": False}  # cached

    admin = admin_session(b)
    page = admin.get(f"{b.url}/admin/clients/{client_id}", timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    shown = admin.post(f"{b.url}/admin/clients/{client_id}/regenerate-secret",
                       data={"csrf_token": csrf}, timeout=10)
    assert shown.status_code == 200, shown.text[:500]
    new_secret = re.search(r"ags_[a-z2-7]+", shown.text).group(0)
    assert new_secret != secret

    # NOTIFY is delivered at commit, before B answered; A's listener thread applies
    # it in well under a second.
    deadline = time.monotonic() + 5
    while True:
        old = requests.post(a.url + "/oauth/introspect", data={"token": "x"},
                            auth=(client_id, secret), timeout=10)
        if old.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert old.status_code == 401 and old.json()["error"] == "invalid_client", old.text
    assert introspect(a, (client_id, new_secret), "not-a-token") == {"active": False}


def test_login_rate_limit_is_shared_by_both_processes(start_pair, redis_prefix):
    pair = start_pair()  # LOGIN_RATE_LIMIT: the default, 5 a minute
    a, b = pair.a, pair.b

    answers = [sign_in(server).status_code for server in (a, b, a, b, a)]
    assert answers == [401] * 5
    for server in (b, a):  # the 6th and later are refused by either process
        refused = sign_in(server)
        assert refused.status_code == 429, (server.url, refused.text)
        assert refused.json()["error"] == "rate_limit_exceeded"
        assert refused.headers["X-RateLimit-Limit"] == "5"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Even the right password waits: the counter is per address, not per outcome.
    assert sign_in(b, ADMIN_PASSWORD).status_code == 429

    keys = redis.Redis.from_url(f"redis://{REDIS_ADDR}/0").keys(f"{redis_prefix}:*")
    assert [k for k in keys if b"/login/127.0.0.1/" in k], keys
