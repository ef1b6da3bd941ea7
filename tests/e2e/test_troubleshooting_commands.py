"""docs/troubleshooting.md's commands, run against live servers.

Blocks marked ``<!-- check: NAME -->`` are run with bash in the server's working
directory (where oauth.db, .env and authgate-credentials.txt are), with
``http://localhost:8080`` replaced by the server's address and the variables the
guide names (``$DEVICE_CODE``, ``$SESSION``, ``$USER_ID``, ...) taken from a
real flow.  Blocks marked ``<!-- response: NAME -->`` are compared with the real
response bodies, and the quoted messages with the real output.  Missing tools
fail the test, naming the Debian package to install.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
import requests
from e2e_support import ADMIN_PASSWORD, ROOT, LiveServer, free_port, start_server

DOC = ROOT / "docs" / "troubleshooting.md"
AUTHGATE = str(Path(sys.executable).with_name("authgate"))
DOC_URL = "http://localhost:8080"
TOOLS = {"sqlite3": "sqlite3", "curl": "curl", "jq": "jq", "openssl": "openssl",
         "sha256sum": "coreutils", "psql": "postgresql-client",
         "pg_dump": "postgresql-client"}
MARKER = re.compile(r"<!-- (?P<kind>check|response|messages|source)(?:: (?P<name>[^ ]+))? -->"
                    r"\s*\n(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```",
                    re.M | re.S)
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ +\[[\w.]+\] ")

# Every <!-- check: NAME --> block of the guide, and the test that runs it.
HANDLED = {
    "credentials-file": "test_first_start_commands",
    "list-clients": "test_first_start_commands",
    "journal-mode": "test_first_start_commands",
    "grep-jwt-secret": "test_first_start_commands",
    "grep-session-secret": "test_first_start_commands",
    "jwks": "test_first_start_commands and test_signing_key_commands",
    "session-cookie": "test_first_start_commands",
    "curl-verbose": "test_first_start_commands",
    "wal-checkpoint": "test_first_start_commands",
    "device-code-by-hash": "test_device_flow_commands",
    "device-code-by-user-code": "test_device_flow_commands",
    "device-code-status": "test_device_flow_commands",
    "decode-jwt": "test_device_flow_commands",
    "introspect": "test_device_flow_commands",
    "admin-session": "test_admin_api_commands",
    "audit-rate-limit": "test_admin_api_commands",
    "user-disabled": "test_admin_api_commands",
    "dynamic-registration": "test_admin_api_commands",
    "openssl-generate": "test_signing_key_commands",
    "openssl-rsa": "test_signing_key_commands",
    "openssl-ec": "test_signing_key_commands",
    "keys-generate": "test_signing_key_commands",
    "conflict-rename": "test_http_api_commands",
    "conflict-merge": "test_http_api_commands",
    "hmac-curl": "test_http_api_commands",
    "waitress-proxy-headers": "test_trusted_proxies",
    "sqlite-backup": "test_backups_and_db_copy",
    "log-level-with-ini": "test_debug_logging",
    "db-log-level": "test_debug_logging",
    "sqlalchemy-logger": "test_debug_logging",
}


def guide() -> dict[tuple[str, str | None], list[str]]:
    found: dict[tuple[str, str | None], list[str]] = {}
    for match in MARKER.finditer(DOC.read_text(encoding="utf-8")):
        indent = match["indent"]
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line
                         for line in match["body"].splitlines())
        found.setdefault((match["kind"], match["name"]), []).append(body)
    return found


def block(kind: str, name: str) -> str:
    bodies = guide().get((kind, name))
    assert bodies, f"docs/troubleshooting.md has no <!-- {kind}: {name} --> block"
    assert len(bodies) == 1, f"<!-- {kind}: {name} --> is used twice"
    return bodies[0]


def response(name: str):
    return json.loads(block("response", name))


def messages() -> list[str]:
    return [LOG_PREFIX.sub("", line.strip()) for body in guide().get(("messages", None), [])
            for line in body.splitlines() if line.strip()]


def message(containing: str) -> str:
    found = list(dict.fromkeys(m for m in messages() if containing in m))
    assert len(found) == 1, f"{containing!r} is quoted {len(found)} times"
    return found[0]


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    missing = sorted({package for tool, package in TOOLS.items() if not shutil.which(tool)})
    if missing:
        pytest.fail("the troubleshooting guide's commands need: apt-get install "
                    + " ".join(missing))


def run(name: str, cwd: Path, url: str = DOC_URL, *, tail: str = "", subs=None,
        check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run the guide's block NAME with bash in ``cwd``."""
    script = block("check", name).replace(DOC_URL, url)
    for old, new in (subs or {}).items():
        assert old in script, f"{old!r} is not in block {name}"
        script = script.replace(old, new)
    environ = {"PATH": f"{Path(AUTHGATE).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "HOME": str(cwd), "LC_ALL": "C.UTF-8", **env}
    result = subprocess.run(["bash", "-e", "-c", script + tail], cwd=cwd, env=environ,
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, (f"block {name} failed ({result.returncode}):\n"
                                        f"{script}\nstdout:\n{result.stdout}\n"
                                        f"stderr:\n{result.stderr}")
    return result


def sql(cwd: Path, query: str) -> str:
    return subprocess.run(["sqlite3", "oauth.db", query], cwd=cwd, capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def sign_in(url: str, username: str, password: str) -> tuple[requests.Session,
                                                               requests.Response]:
    browser = requests.Session()
    page = browser.get(f"{url}/login", timeout=10)
    answer = browser.post(f"{url}/login", timeout=30, allow_redirects=False, data={
        "username": username, "password": password, "csrf_token": csrf_of(page.text),
        "redirect": ""})
    return browser, answer


def approve(browser: requests.Session, url: str, typed_code: str) -> None:
    page = browser.get(f"{url}/device", timeout=10)
    answer = browser.post(f"{url}/device/verify", timeout=10, data={
        "user_code": typed_code, "action": "approve", "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 200, answer.text[:2000]


def sqlite_server(live_server, **env: str) -> LiveServer:
    return live_server(DATABASE_DRIVER="sqlite", **env)


def wait_for(path: Path, pattern: str, process: subprocess.Popen, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        match = re.search(pattern, text)
        if match:
            return match.group(1) if match.groups() else match.group(0)
        if process.poll() is not None:
            pytest.fail(f"process exited with {process.returncode}:\n{text}")
        time.sleep(0.1)
    pytest.fail(f"{pattern!r} did not appear:\n{path.read_text()}")


# ---------------------------------------------------------------------------


def test_every_marked_block_is_run_here():
    names = {name for kind, name in guide() if kind == "check"}
    assert names == set(HANDLED), ("blocks marked <!-- check --> in the guide and the "
                                   f"blocks this module runs differ: {names ^ set(HANDLED)}")
    assert {name for kind, name in guide() if kind == "response"} == {
        "client-not-found", "database-unavailable", "signature-failed", "jwks-empty",
        "rate-limited"}


@pytest.mark.e2e
def test_first_start_commands(live_server):
    server = sqlite_server(live_server)
    cwd, url, client_id = server.cwd, server.url, server.client_id
    # "Seeded OAuth client with ID: ..." is the line the guide quotes.
    quoted = message("Seeded OAuth client with ID:")
    assert quoted.replace("116a8425-649e-46be-803d-1bca3ccf18eb", client_id) in server.log()

    assert run("credentials-file", cwd).stdout.strip() == f"Client ID: {client_id}"
    assert run("list-clients", cwd).stdout.strip() == f"{client_id}|AuthGate CLI"
    assert run("journal-mode", cwd).stdout.strip() == "wal"
    for name, variable in (("grep-jwt-secret", "JWT_SECRET"),
                           ("grep-session-secret", "SESSION_SECRET")):
        line = run(name, cwd).stdout.strip()
        assert re.fullmatch(rf"{variable}=\S{{32,}}", line), line

    # JWKS with HS256: the guide's empty key set, through its curl | jq command.
    assert json.loads(run("jwks", cwd, url).stdout) == response("jwks-empty") == {"keys": []}

    # "Client not found": the body the guide shows, and the device CLI's message.
    answer = requests.post(f"{url}/oauth/device/code", data={"client_id": "xxx"}, timeout=10)
    assert answer.status_code == 400
    assert answer.json() == response("client-not-found")
    verbose = run("curl-verbose", cwd, url)
    assert json.loads(verbose.stdout) == response("client-not-found")
    assert "> POST /oauth/device/code" in verbose.stderr
    device_login = subprocess.run(
        [AUTHGATE, "device-login", "--server", url, "--client-id", "no-such-client"],
        cwd=cwd, env={"PATH": os.environ["PATH"], "HOME": str(cwd)}, capture_output=True,
        text=True, timeout=60)
    assert device_login.returncode == 1
    assert device_login.stderr.strip() == message("device authorization request failed")

    # Session cookie: name, flags, no Secure over an http BASE_URL.
    cookie = run("session-cookie", cwd, url).stdout.strip()
    assert cookie.lower().startswith("set-cookie: session="), cookie
    for flag in ("Max-Age=3600", "Path=/", "HttpOnly", "SameSite=Lax"):
        assert flag in cookie, cookie
    assert "secure" not in cookie.lower()
    assert "domain=" not in cookie.lower()
    # A form posted without the session cookie: "Form expired".
    refused = requests.post(f"{url}/login", data={"username": "admin", "password": "x"},
                            headers={"Accept": "text/html"}, timeout=10)
    assert refused.status_code == 400 and "Form expired" in refused.text

    # A clean stop merges and removes oauth.db-wal and oauth.db-shm.
    assert server.stop() == 0
    assert sorted(p.name for p in cwd.glob("oauth.db*")) == ["oauth.db"]

    # A killed process leaves them; the guide's checkpoint merges the committed rows.
    again = start_server(cwd, {"DATABASE_DRIVER": "sqlite"})
    try:
        answer = requests.post(f"{again.url}/oauth/device/code",
                               data={"client_id": client_id}, timeout=10)
        assert answer.status_code == 200
    finally:
        again.process.kill()
        again.process.wait()
    assert (cwd / "oauth.db-wal").exists()
    run("wal-checkpoint", cwd)
    assert sorted(p.name for p in cwd.glob("oauth.db*")) == ["oauth.db"]
    assert sql(cwd, "SELECT count(*) FROM device_codes;") == "1"


@pytest.mark.e2e
def test_device_flow_commands(live_server, tmp_path):
    server = sqlite_server(live_server, POLLING_INTERVAL="1s")
    cwd, url, client_id = server.cwd, server.url, server.client_id

    # The device CLI reads CLIENT_ID and SERVER_URL from .env where it runs.
    text = DOC.read_text()
    env_block = re.search(r"```bash\n(\s*# \.env next to where you run `authgate "
                          r"device-login`\n.*?)```", text, re.S)
    assert env_block, "the guide's .env block for authgate device-login is gone"
    lines = [line.strip() for line in env_block.group(1).splitlines()
             if "=" in line and not line.strip().startswith("#")]
    assert [line.split("=", 1)[0] for line in lines] == ["CLIENT_ID", "SERVER_URL"]
    client_dir = tmp_path / "cli"
    client_dir.mkdir()
    (client_dir / ".env").write_text(f"CLIENT_ID={client_id}\nSERVER_URL={url}\n")
    out, err = client_dir / "out.json", client_dir / "err.txt"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        device = subprocess.Popen([AUTHGATE, "device-login"], cwd=client_dir, stdout=stdout,
                                  stderr=stderr, stdin=subprocess.DEVNULL,
                                  env={"PATH": os.environ["PATH"], "HOME": str(client_dir)})
    try:
        user_code = wait_for(err, r"enter the code:\s+([A-Z0-9]{4}-[A-Z0-9]{4})", device)
        waiting = message("Waiting for authorization")
        wait_for(err, re.escape(waiting), device)

        # The guide's user-code queries, with XXXX-XXXX replaced by the real code.
        row = run("device-code-by-user-code", cwd, subs={"XXXX-XXXX": user_code}).stdout
        assert f"|{user_code}|{client_id}|" in row and "|pending|0||" in row, row
        status = run("device-code-status", cwd, subs={"XXXX-XXXX": user_code}).stdout
        assert status.splitlines()[0] == "user_code|status|is_used|user_id|expires_at"
        assert status.splitlines()[1].startswith(f"{user_code}|pending|0||"), status

        # The person approves, typing the code in lower case with a space.
        browser, answer = sign_in(url, "admin", ADMIN_PASSWORD)
        assert answer.status_code in (302, 303)
        approve(browser, url, user_code.lower().replace("-", " "))
        admin_id = sql(cwd, "SELECT id FROM users WHERE username='admin';")
        status = run("device-code-status", cwd, subs={"XXXX-XXXX": user_code}).stdout
        assert status.splitlines()[1].startswith(f"{user_code}|authorized|1|{admin_id}|")
        assert device.wait(60) == 0, err.read_text()
    finally:
        if device.poll() is None:
            device.kill()
        device.wait(10)
    status = run("device-code-status", cwd, subs={"XXXX-XXXX": user_code}).stdout
    assert status.splitlines()[1].startswith(f"{user_code}|consumed|1|{admin_id}|")
    token = json.loads(out.read_text())["access_token"]

    # The device_code column holds the SHA-256 of the code: the guide's query.
    started = requests.post(f"{url}/oauth/device/code", data={"client_id": client_id},
                            timeout=10).json()
    found = run("device-code-by-hash", cwd, DEVICE_CODE=started["device_code"]).stdout.strip()
    digest = hashlib.sha256(started["device_code"].encode()).hexdigest()
    assert found.startswith(f"{digest}|"), found
    assert sql(cwd, f"SELECT expires_at FROM device_codes WHERE user_code="
                    f"'{started['user_code']}';") == found.split("|", 1)[1]
    assert not run("device-code-by-hash", cwd, DEVICE_CODE="not-a-code").stdout.strip()

    # Decoding a token without verifying it.
    claims = json.loads(run("decode-jwt", cwd, TOKEN=token).stdout)
    assert claims["client_id"] == client_id and claims["iss"] == url
    assert claims["sub"] == admin_id

    # A tampered token: tokeninfo's exact answer.
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}),
                        "another-secret-of-at-least-32-bytes!", algorithm="HS256")
    answer = requests.get(f"{url}/oauth/tokeninfo", timeout=10,
                          headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert answer.json() == response("signature-failed")
    userinfo = requests.get(f"{url}/oauth/userinfo", timeout=10,
                            headers={"Authorization": f"Bearer {forged}"})
    assert userinfo.status_code == 401 and userinfo.json() == response("signature-failed")
    good = requests.get(f"{url}/oauth/tokeninfo", timeout=10,
                        headers={"Authorization": f"Bearer {token}"})
    assert good.status_code == 200 and good.json()["active"] is True

    # Introspection with a confidential client, as the FAQ shows.
    created = subprocess.run([AUTHGATE, "create-client", "Resource server", "--confidential"],
                             cwd=cwd, env={**server.env, "PATH": os.environ["PATH"]},
                             capture_output=True, text=True, timeout=60, check=True).stdout
    rs_id = re.search(r"Client ID:\s+(\S+)", created).group(1)
    rs_secret = re.search(r"Client Secret:\s+(\S+)", created).group(1)
    introspected = run("introspect", cwd, url, CLIENT_ID=rs_id, CLIENT_SECRET=rs_secret,
                       TOKEN=token)
    body = json.loads(introspected.stdout)
    assert body["active"] is True and body["client_id"] == client_id
    assert json.loads(run("introspect", cwd, url, CLIENT_ID=rs_id, CLIENT_SECRET=rs_secret,
                          TOKEN="garbage").stdout) == {"active": False}
    public = run("introspect", cwd, url, CLIENT_ID=client_id, CLIENT_SECRET="", TOKEN=token)
    assert json.loads(public.stdout)["error"] == "invalid_client"


@pytest.mark.e2e
def test_admin_api_commands(live_server):
    server = sqlite_server(live_server, LOGIN_RATE_LIMIT="50",
                           ENABLE_DYNAMIC_CLIENT_REGISTRATION="true",
                           DYNAMIC_CLIENT_REGISTRATION_TOKEN="initial-access-token")
    cwd, url = server.cwd, server.url

    # The guide's curl sign-in gives an administrator's session cookie.
    session = run("admin-session", cwd, url, ADMIN_PASSWORD=ADMIN_PASSWORD,
                  tail='\nprintf "%s" "$SESSION"').stdout
    assert len(session) > 40
    cookie = {"Cookie": f"session={session}"}
    assert requests.get(f"{url}/admin/csrf-token", headers=cookie,
                        timeout=10).status_code == 200

    # Dynamic registration: pending (refused) until the administrator approves it.
    pending = requests.post(f"{url}/oauth/register", timeout=10, json={
        "client_name": "Pending CLI", "token_endpoint_auth_method": "none",
        "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]},
        headers={"Authorization": "Bearer initial-access-token"})
    assert pending.status_code == 201, pending.text
    refused = requests.post(f"{url}/oauth/device/code", timeout=10,
                            data={"client_id": pending.json()["client_id"]})
    assert refused.json() == {"error": "invalid_client",
                              "error_description": "Client is not active"}
    registered = run("dynamic-registration", cwd, url, SESSION=session,
                     DYNAMIC_CLIENT_REGISTRATION_TOKEN="initial-access-token",
                     tail='\nprintf "\\n%s" "$CLIENT_ID"').stdout.splitlines()[-1]
    assert sql(cwd, f"SELECT name, status FROM oauth_clients WHERE client_id='{registered}';") \
        == "My CLI|active"
    answer = requests.post(f"{url}/oauth/device/code", data={"client_id": registered},
                           timeout=10)
    assert answer.status_code == 200, answer.text

    # Over the limit: HTTP 429, Retry-After and the guide's body.
    for _ in range(12):
        answer = requests.post(f"{url}/oauth/device/code", data={"client_id": "x"},
                               timeout=10)
        if answer.status_code == 429:
            break
    assert answer.status_code == 429
    assert answer.json() == response("rate-limited")
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["X-RateLimit-Limit"] == "10"
    found = json.loads(run("audit-rate-limit", cwd, url, SESSION=session).stdout)
    assert found["logs"], found
    assert {e["event_type"] for e in found["logs"]} == {"RATE_LIMIT_EXCEEDED"}
    assert found["logs"][0]["actor_ip"] == "127.0.0.1"
    assert found["logs"][0]["details"]["endpoint"] == "/oauth/device/code"

    # A disabled user: signed out at the next request, told why at sign-in.
    subprocess.run([AUTHGATE, "create-user", "bob", "--password", "bob-password-1"], cwd=cwd,
                   env={**server.env, "PATH": os.environ["PATH"]}, capture_output=True,
                   check=True, timeout=60)
    bob_id = sql(cwd, "SELECT id FROM users WHERE username='bob';")
    bob, answer = sign_in(url, "bob", "bob-password-1")
    assert answer.status_code in (302, 303)
    assert bob.get(f"{url}/account/sessions", timeout=10, allow_redirects=False).status_code \
        == 200
    admin = requests.Session()
    admin.cookies.set("session", session)
    token = admin.get(f"{url}/admin/csrf-token", timeout=10).json()["csrf_token"]
    disabled = admin.post(f"{url}/admin/users/{bob_id}/disable", timeout=10,
                          headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert disabled.status_code == 303
    bounced = bob.get(f"{url}/account/sessions", timeout=10, allow_redirects=False)
    assert bounced.status_code in (302, 303) and "/login" in bounced.headers["Location"]
    _, refused = sign_in(url, "bob", "bob-password-1")
    assert "Your account has been disabled. Please contact an administrator." in refused.text

    output = run("user-disabled", cwd, url, SESSION=session, USER_ID=bob_id).stdout
    audit, _ = json.JSONDecoder().raw_decode(output)
    assert [e["event_type"] for e in audit["logs"]] == ["USER_DISABLED"]
    assert audit["logs"][0]["resource_id"] == bob_id
    assert sql(cwd, "SELECT is_active FROM users WHERE username='bob';") == "1"
    _, again = sign_in(url, "bob", "bob-password-1")
    assert again.status_code in (302, 303)



@pytest.mark.e2e
def test_database_locked(live_server):
    server = sqlite_server(live_server, SQLITE_BUSY_TIMEOUT="200ms")
    holder = sqlite3.connect(server.cwd / "oauth.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        answer = requests.post(f"{server.url}/oauth/device/code",
                               data={"client_id": server.client_id}, timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.json() == response("database-unavailable")
    assert message("database unavailable on POST") in server.log()
    after = requests.post(f"{server.url}/oauth/device/code",
                          data={"client_id": server.client_id}, timeout=30)
    assert after.status_code == 200


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


STARTUP_ERRORS = {
    # first words of the quoted message -> (algorithm, how to make private.pem)
    "RS256 requires *rsa.PrivateKey": ("RS256", "ec"),
    "RS256 requires at least 2048-bit": ("RS256", "rsa1024"),
    "ES256 requires P-256 curve": ("ES256", "p384"),
    "no supported private key found": ("ES256", "public"),
    "read key file private.pem": ("ES256", None),
}


@pytest.mark.e2e
def test_signing_key_commands(live_server, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    run("openssl-generate", keys)
    assert (keys / "rsa-private.pem").exists() and (keys / "ec-private.pem").exists()

    def use(source: str) -> None:
        shutil.copy(keys / source, keys / "private.pem")

    use("rsa-private.pem")
    rsa_check = run("openssl-rsa", keys).stdout.splitlines()
    assert rsa_check == ["RSA key ok", "Private-Key: (2048 bit, 2 primes)"]
    assert not run("openssl-ec", keys, check=False).stdout.strip()
    use("ec-private.pem")
    assert run("openssl-ec", keys).stdout.strip() == "NIST CURVE: P-256"
    assert run("openssl-rsa", keys, check=False).returncode != 0
    openssl(keys, "ecparam", "-genkey", "-name", "secp384r1", "-noout", "-out", "private.pem")
    assert "P-384" in run("openssl-ec", keys, check=False).stdout

    # `authgate keys generate`: mode 0600, its kid printed.
    generated = run("keys-generate", keys).stdout
    assert "kid=" in generated
    assert stat.S_IMODE((keys / "ec-2026.pem").stat().st_mode) == 0o600

    # The start-up errors the guide quotes, exactly, for each wrong key.
    makers = {
        "ec": lambda d: openssl(d, "ecparam", "-genkey", "-name", "prime256v1", "-noout",
                                "-out", "private.pem"),
        "rsa1024": lambda d: openssl(d, "genrsa", "-out", "private.pem", "1024"),
        "p384": lambda d: openssl(d, "ecparam", "-genkey", "-name", "secp384r1", "-noout",
                                  "-out", "private.pem"),
        "public": lambda d: (openssl(d, "ecparam", "-genkey", "-name", "prime256v1", "-noout",
                                     "-out", "ec.pem"),
                             openssl(d, "ec", "-in", "ec.pem", "-pubout", "-out",
                                     "private.pem")),
    }
    quoted = [m for m in messages() if m.startswith("authgate: configuration error: ")
              and ("signing key" in m or "NewLocalTokenProvider" in m)]
    assert len(quoted) == len(STARTUP_ERRORS)
    for words, (alg, maker) in STARTUP_ERRORS.items():
        expected = next(m for m in quoted if words in m)
        case = tmp_path / f"case-{len(list(tmp_path.iterdir()))}"
        case.mkdir()
        if maker:
            makers[maker](case)
            os.chmod(case / "private.pem", 0o600)
        result = subprocess.run(
            [AUTHGATE, "server"], cwd=case, capture_output=True, text=True, timeout=60,
            env={"PATH": os.environ["PATH"], "HOME": str(case), "DATABASE_DRIVER": "sqlite",
                 "SESSION_SECRET": "s" * 40, "JWT_SIGNING_ALGORITHM": alg,
                 "JWT_PRIVATE_KEY_PATH": "private.pem",
                 "SERVER_ADDR": f"127.0.0.1:{free_port()}"})
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1] == expected

    # With ES256 the JWKS publishes the key.
    server = sqlite_server(live_server, JWT_SIGNING_ALGORITHM="ES256",
                           JWT_PRIVATE_KEY_PATH=str(keys / "ec-private.pem"))
    published = json.loads(run("jwks", server.cwd, server.url).stdout)
    assert len(published["keys"]) == 1
    assert {"kty", "alg", "kid", "use"} <= set(published["keys"][0])
    assert published["keys"][0]["alg"] == "ES256"


class FakeAPI:
    """The external login API: john -> an identity named conflicting-username;
    requests with an X-Signature are checked with the plugin's own signing."""

    SECRET = "your-shared-secret"

    def __init__(self) -> None:
        from authgate_plugins.auth_httpapi import sign

        sign_with = sign
        calls = self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                calls.append((self.path, dict(self.headers), body))
                if self.path == "/slow":
                    time.sleep(3)
                if "X-Signature" in self.headers:
                    expected = sign_with(FakeAPI.SECRET, self.headers["X-Timestamp"], "POST",
                                         self.path, body)
                    ok = expected == self.headers["X-Signature"]
                    answer = ({"success": True, "user_id": "test"} if ok else
                              {"success": False, "message": "bad signature"})
                    return self.reply(200 if ok else 401, answer)
                data = json.loads(body)
                if data["username"] == "john":
                    return self.reply(200, {"success": True, "user_id": "external-user-id",
                                            "username": "conflicting-username"})
                return self.reply(401, {"success": False, "message": "unknown"})

            def reply(self, status, data):
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_api() -> Iterator[FakeAPI]:
    api = FakeAPI()
    yield api
    api.close()


CONFLICT = "Username conflict with existing user. Please contact administrator."


def http_api_server(live_server, url: str, **env: str) -> LiveServer:
    server = sqlite_server(live_server, AUTH_MODE="http_api", HTTP_API_URL=url,
                           LOGIN_RATE_LIMIT="50", **env)
    subprocess.run([AUTHGATE, "create-user", "conflicting-username", "--password",
                    "local-password-1"], cwd=server.cwd,
                   env={**server.env, "PATH": os.environ["PATH"]}, check=True,
                   capture_output=True, timeout=60)
    _, answer = sign_in(server.url, "john", "any-password")
    assert CONFLICT in answer.text, answer.text[:3000]
    assert message("Username conflict") == CONFLICT
    return server


@pytest.mark.e2e
def test_http_api_commands(live_server, fake_api):
    users = "SELECT username, auth_source, ifnull(external_id, '') FROM users ORDER BY username;"

    # Option 1: rename the local user; the external user gets the name.
    server = http_api_server(live_server, f"{fake_api.url}/api/verify")
    run("conflict-rename", server.cwd)
    _, answer = sign_in(server.url, "john", "any-password")
    assert answer.status_code in (302, 303), answer.text[:3000]
    assert sql(server.cwd, users).splitlines() == [
        "admin|local|", "conflicting-username|http_api|external-user-id",
        "olduser-renamed|local|"]

    # Option 3: merge; the same row now signs in through the API.
    server = http_api_server(live_server, f"{fake_api.url}/api/verify")
    before = sql(server.cwd, "SELECT id FROM users WHERE username='conflicting-username';")
    run("conflict-merge", server.cwd)
    _, answer = sign_in(server.url, "john", "any-password")
    assert answer.status_code in (302, 303), answer.text[:3000]
    assert sql(server.cwd, users).splitlines() == [
        "admin|local|", "conflicting-username|http_api|external-user-id"]
    assert sql(server.cwd, "SELECT id FROM users WHERE username='conflicting-username';") \
        == before

    # The HMAC signing string the guide computes is the one AuthGate uses.
    signed = run("hmac-curl", server.cwd,
                 subs={"https://auth.example.com/api/verify": f"{fake_api.url}/api/verify"})
    assert json.loads(signed.stdout) == {"success": True, "user_id": "test"}
    path, headers, _ = fake_api.calls[-1]
    assert path == "/api/verify" and re.fullmatch(r"[0-9a-f]{64}", headers["X-Signature"])

    # The API unreachable, then too slow: the log lines the guide quotes.
    closed = f"http://127.0.0.1:{free_port()}/api/verify"
    server = sqlite_server(live_server, AUTH_MODE="http_api", HTTP_API_URL=closed,
                           HTTP_API_RETRY_DELAY="10ms")
    _, answer = sign_in(server.url, "john", "any-password")
    assert answer.status_code == 503
    assert "The authentication service is unavailable. Please try again later." in answer.text
    quoted = message("connection refused by")
    pattern = (re.escape(quoted).replace(re.escape("https://auth.example.com/api/verify"),
                                         re.escape(closed))
               .replace("7012\\ ms", r"\d+\ ms").replace("7012 ms", r"\d+ ms"))
    assert re.search(pattern, server.log()), (pattern, server.log()[-3000:])

    server = sqlite_server(live_server, AUTH_MODE="http_api", HTTP_API_URL=f"{fake_api.url}/slow",
                           HTTP_API_TIMEOUT="1s")
    _, answer = sign_in(server.url, "john", "any-password")
    assert answer.status_code == 503
    quoted = message("timeout waiting for authentication response")
    pattern = (re.escape(quoted)
               .replace(re.escape("https://auth.example.com/api/verify"),
                        re.escape(f"{fake_api.url}/slow"))
               .replace(re.escape("after 10s"), re.escape("after 1s")))
    pattern = re.sub(r"10004(\\ | )ms", r"\\d+ ms", pattern)
    assert re.search(pattern, server.log()), (pattern, server.log()[-3000:])


@pytest.mark.e2e
def test_trusted_proxies(tmp_path):
    """TRUSTED_PROXIES: each client behind the proxy has its own counter, and a client
    cannot choose another's by sending the header.  `authgate server` keeps waitress
    from stripping X-Forwarded-For even when the ini lacks the guide's line."""
    fragment = block("check", "waitress-proxy-headers").strip().splitlines()
    assert fragment == ["[server:main]", "clear_untrusted_proxy_headers = false"]
    assert "TRUSTED_PROXIES=127.0.0.1" in DOC.read_text()
    port = free_port()
    ini_text = (ROOT / "development.ini").read_text()
    # The shipped ini has the guide's line (for pserve) ...
    assert "\n" + fragment[1] + "\n" in ini_text
    assert "\nlisten = localhost:8080\n" in ini_text
    # ... and the server must not need it: start from an ini without it.
    ini_text = ini_text.replace("\n" + fragment[1] + "\n", "\n")
    ini_text = ini_text.replace("\nlisten = localhost:8080\n", f"\nlisten = 127.0.0.1:{port}\n")
    ini = tmp_path / "proxy.ini"
    ini.write_text(ini_text)
    server = start_server(tmp_path, {
        "TRUSTED_PROXIES": "127.0.0.1", "BASE_URL": f"http://127.0.0.1:{port}",
        "DEFAULT_ADMIN_PASSWORD": ADMIN_PASSWORD}, ini=ini, port=port, defaults=False,
        log_name="server.log")
    try:
        def post(forwarded: str) -> int:
            return requests.post(f"{server.url}/oauth/device/code", data={"client_id": "x"},
                                 headers={"X-Forwarded-For": forwarded},
                                 timeout=10).status_code

        assert [post("203.0.113.7") for _ in range(10)] == [400] * 10
        assert post("203.0.113.7") == 429
        assert post("203.0.113.8") == 400
        assert post("203.0.113.8, 203.0.113.7") == 429  # read from the right
        ips = sql(tmp_path, "SELECT DISTINCT actor_ip FROM audit_logs "
                            "WHERE event_type='RATE_LIMIT_EXCEEDED';")
        assert ips == "203.0.113.7"
    finally:
        assert server.stop() == 0


@pytest.mark.e2e
def test_backups_and_db_copy(live_server, tmp_path, pg_dsn):
    from authgate.testing.postgres import create_database, drop_database, server_dsn

    server = sqlite_server(live_server)
    cwd = server.cwd
    subprocess.run([AUTHGATE, "create-user", "carol", "--password", "carol-password-1"],
                   cwd=cwd, env={**server.env, "PATH": os.environ["PATH"]}, check=True,
                   capture_output=True, timeout=60)
    backups = tmp_path / "backup"
    backups.mkdir()
    run("sqlite-backup", cwd, subs={"/backup/": f"{backups}/"})
    (copy,) = backups.glob("oauth-*.db")
    assert re.fullmatch(r"oauth-\d{8}\.db", copy.name)
    counted = subprocess.run(["sqlite3", str(copy), "SELECT count(*) FROM users;"],
                             capture_output=True, text=True, check=True, timeout=30)
    assert counted.stdout.strip() == "2"
    assert server.stop() == 0

    # SQLite -> PostgreSQL with the command the FAQ shows (a libpq keyword DSN).
    result = subprocess.run([AUTHGATE, "db", "copy", "--from", "oauth.db", "--to", pg_dsn],
                            cwd=cwd, capture_output=True, text=True, timeout=120,
                            env={"PATH": os.environ["PATH"], "HOME": str(cwd)})
    assert result.returncode == 0, result.stderr
    assert "Copy complete; row counts verified." in result.stdout

    # pg_dump, then psql into an empty database.
    dump = tmp_path / "backup.sql"
    with open(dump, "wb") as handle:
        subprocess.run(["pg_dump", pg_dsn], stdout=handle, check=True, timeout=120)
    restored = create_database()
    try:
        target = f"{server_dsn()} dbname={restored}"
        with open(dump, "rb") as handle:
            subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", target], stdin=handle,
                           check=True, capture_output=True, timeout=120)
        count = subprocess.run(["psql", "-At", target, "-c",
                                "SELECT username FROM users ORDER BY username;"],
                               capture_output=True, text=True, check=True, timeout=60)
        assert count.stdout.split() == ["admin", "carol"]
    finally:
        drop_database(restored)


def background(name: str, cwd: Path, env: dict[str, str], subs=None) -> LiveServer:
    """Start the guide's server command NAME (bash execs it: SIGTERM reaches it)."""
    script = block("check", name)
    for old, new in (subs or {}).items():
        script = script.replace(old, new)
    return start_server(cwd, {
        "PATH": f"{Path(AUTHGATE).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "DATABASE_DRIVER": "sqlite", **env}, command=["bash", "-c", script],
        log_name=f"{name}.log")


def stripped_log(server: LiveServer) -> list[str]:
    return [LOG_PREFIX.sub("", line) for line in server.log().splitlines()]


@pytest.mark.e2e
def test_debug_logging(live_server, tmp_path):
    # GIN_MODE=debug: the route list, the listening line, access lines, SQL.
    server = sqlite_server(live_server, GIN_MODE="debug")
    requests.get(f"{server.url}/health", timeout=10)
    time.sleep(0.5)
    lines = stripped_log(server)
    for quoted in (message("GET,HEAD /health"), message("/oauth/device/code     "),
                   message("Listening on ").replace(DOC_URL, server.url)):
        assert quoted in lines, quoted
    access = message('"GET /health" 200')
    pattern = (re.escape(access).replace(re.escape("192.168.1.1"), r"\S+")
               .replace(re.escape("1.2ms"), r"[\d.]+ms")
               .replace(re.escape('"curl/7.88.1"'), r'"[^"]*"'))
    assert any(re.fullmatch(pattern, line) for line in lines), pattern
    assert "[sqlalchemy.engine.Engine] SELECT" in server.log()

    # LOG_LEVEL wins over the ini file's levels (production.ini logs INFO).
    for name in ("ini-level", "db-level", "ini-sql"):
        (tmp_path / name).mkdir()
    secrets = {"SESSION_SECRET": "s" * 40, "JWT_SECRET": "j" * 40}
    shutil.copy(ROOT / "production.ini", tmp_path / "ini-level" / "production.ini")
    server = background("log-level-with-ini", tmp_path / "ini-level", secrets)
    try:
        assert re.search(r" DEBUG \[authgate\.cli\]\[MainThread\] GET,HEAD /health ",
                         server.log()), server.log()[-3000:]
    finally:
        assert server.stop() == 0

    # DB_LOG_LEVEL=info: every statement.
    server = background("db-log-level", tmp_path / "db-level", {})
    try:
        requests.get(f"{server.url}/login", timeout=10)
        time.sleep(0.5)
        assert "[sqlalchemy.engine.Engine] SELECT" in server.log()
    finally:
        assert server.stop() == 0

    # The ini file's [logger_sqlalchemy] at INFO.
    fragment = block("check", "sqlalchemy-logger").strip()
    ini_text = (ROOT / "production.ini").read_text()
    ini_text, count = re.subn(r"\[logger_sqlalchemy\]\nlevel = WARN\nhandlers =\n"
                              r"qualname = sqlalchemy", fragment, ini_text)
    assert count == 1
    ini = tmp_path / "ini-sql" / "production.ini"
    ini.write_text(ini_text)
    port = free_port()
    server = start_server(tmp_path / "ini-sql", {
        **secrets, "SERVER_ADDR": f"127.0.0.1:{port}", "BASE_URL": f"http://127.0.0.1:{port}",
        "DATABASE_DRIVER": "sqlite"}, ini=ini, defaults=False, log_name="server.log")
    try:
        requests.get(f"{server.url}/login", timeout=10)
        time.sleep(0.5)
        assert re.search(r"\[sqlalchemy\.engine\.Engine\]\[[\w-]+\] SELECT", server.log())
    finally:
        assert server.stop() == 0
