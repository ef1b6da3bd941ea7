"""Real server processes: `authgate server` and `pserve development.ini`.

Each test starts the server in a fresh directory with a clean environment (PATH
and HOME only, plus what the test sets), talks to it over HTTP, uses the real
sqlite3 command line tool the troubleshooting guide uses, and stops it with
SIGTERM.  Every process is stopped in a finally block.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from e2e_support import free_port, start_server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AUTHGATE = str(BIN / "authgate")
PSERVE = str(BIN / "pserve")
SQLITE3 = "/usr/bin/sqlite3"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
HEALTHY = {"status": "healthy", "database": "connected"}
ADMIN_PASSWORD = "e2e-admin-password-123"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    env.update(extra)
    return env


def sqlite(cwd: Path, sql: str) -> str:
    result = subprocess.run([SQLITE3, "oauth.db", sql], cwd=cwd, capture_output=True,
                            text=True, timeout=30, check=True)
    return result.stdout


def test_authgate_server_first_start_and_restart(tmp_path):
    port = free_port()
    env = clean_env(tmp_path, SERVER_ADDR=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    creds, dotenv = tmp_path / "authgate-credentials.txt", tmp_path / ".env"

    with start_server(tmp_path, env, defaults=False, log_name="first.log") as server:
        assert server.health == HEALTHY
        log = server.log()
        match = re.search(rf"Seeded OAuth client with ID: ({UUID})", log)
        assert match, log
        client_id = match.group(1)
        assert f"Listening on {url}" in log
        assert "Verification URL: http://localhost:8080/device" in log

        # The troubleshooting guide's query, with the real sqlite3 tool, while serving.
        assert f"{client_id}|AuthGate CLI" in sqlite(
            tmp_path, "SELECT client_id, name FROM oauth_clients;").splitlines()

        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        assert f"Client ID: {client_id}" in creds.read_text()
        assert "Admin Password: " in creds.read_text()
        assert re.search(r"^JWT_SECRET=\S{32,}$", dotenv.read_text(), re.M)
        assert re.search(r"^SESSION_SECRET=\S{32,}$", dotenv.read_text(), re.M)
        assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600

        started = time.monotonic()
        assert server.stop(fail_on_timeout=True) == 0
        assert time.monotonic() - started < 10
        assert "Server stopped" in server.log()

    creds_bytes, creds_mtime = creds.read_bytes(), creds.stat().st_mtime_ns
    dotenv_bytes = dotenv.read_bytes()

    with start_server(tmp_path, env, defaults=False, log_name="second.log") as server:
        assert server.health == HEALTHY
        log = server.log()
        assert "Seeded OAuth client" not in log
        assert "Generated JWT_SECRET" not in log
        assert server.stop(fail_on_timeout=True) == 0

    assert creds.read_bytes() == creds_bytes
    assert creds.stat().st_mtime_ns == creds_mtime
    assert dotenv.read_bytes() == dotenv_bytes
    assert sqlite(tmp_path, "SELECT count(*) FROM oauth_clients;").strip() == "1"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        match = re.search(pattern, text)
        if match:
            return match.group(1) if match.groups() else match.group(0)
        if proc.poll() is not None:
            pytest.fail(f"device-login exited with {proc.returncode}:\n{text}")
        time.sleep(0.1)
    pytest.fail(f"{pattern!r} did not appear:\n{path.read_text()}")


def test_device_login_example_client_against_the_server(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(tmp_path, SERVER_ADDR=f"127.0.0.1:{port}", BASE_URL=url,
                    DEFAULT_ADMIN_PASSWORD=ADMIN_PASSWORD, POLLING_INTERVAL="1s")
    work = tmp_path / "client"
    work.mkdir()

    with start_server(tmp_path, env, defaults=False, log_name="server.log") as server:
        client_id = re.search(rf"Seeded OAuth client with ID: ({UUID})", server.log()).group(1)

        unknown = subprocess.run(
            [AUTHGATE, "device-login", "--server", url, "--client-id", "no-such-client"],
            cwd=work, env=clean_env(work), capture_output=True, text=True, timeout=30)
        assert unknown.returncode == 1
        assert "invalid_client" in unknown.stderr
        assert "Traceback" not in unknown.stderr

        out, err = work / "out.json", work / "err.txt"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            device = subprocess.Popen(
                [AUTHGATE, "device-login", "--server", url, "--client-id", client_id],
                cwd=work, env=clean_env(work), stdout=stdout, stderr=stderr,
                stdin=subprocess.DEVNULL)
        try:
            user_code = _wait_for(err, r"enter the code:\s+([A-Z0-9]{4}-[A-Z0-9]{4})", device)
            assert f"{url}/device" in err.read_text()
            assert f"user_code={user_code}" in err.read_text()
            _wait_for(err, r"Waiting for authorization\.\.\. \(authorization_pending\)",
                      device)
            # The guide's query finds the row by the code as displayed.
            assert user_code in sqlite(
                tmp_path, f"SELECT * FROM device_codes WHERE user_code='{user_code}';")

            # The person, in a browser: sign in, enter the code, approve.
            browser = requests.Session()
            page = browser.get(f"{url}/login", timeout=10)
            response = browser.post(f"{url}/login", timeout=10, allow_redirects=False, data={
                "username": "admin", "password": ADMIN_PASSWORD,
                "csrf_token": _csrf(page.text), "redirect": ""})
            assert response.status_code in (302, 303), response.text[:2000]
            page = browser.get(f"{url}/device", params={"user_code": user_code}, timeout=10)
            assert page.status_code == 200, page.text[:2000]
            response = browser.post(f"{url}/device/verify", timeout=10, data={
                "user_code": user_code, "action": "approve", "csrf_token": _csrf(page.text)})
            assert response.status_code == 200, response.text[:2000]

            assert device.wait(30) == 0, err.read_text()
        finally:
            if device.poll() is None:
                device.kill()
            device.wait(10)
        token = json.loads(out.read_text())
        assert token["access_token"] and token["token_type"].lower() == "bearer"
        assert "Authorized." in err.read_text()
        assert server.stop(fail_on_timeout=True) == 0


def _copy_ini(tmp_path: Path, port: int) -> Path:
    text = (REPO / "development.ini").read_text()
    assert "\nlisten = localhost:8080\n" in text
    ini = tmp_path / "development.ini"
    ini.write_text(text.replace("\nlisten = localhost:8080\n", f"\nlisten = 127.0.0.1:{port}\n"))
    return ini


def test_pserve_development_ini(tmp_path):
    port = free_port()
    ini = _copy_ini(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    with start_server(tmp_path, command=[PSERVE, str(ini)], port=port, defaults=False,
                      log_name="server.log") as server:
        assert server.health == HEALTHY
        log = server.log()
        assert re.search(rf"Seeded OAuth client with ID: {UUID}", log), log
        # The ini's logging sections are in force: "time LEVEL [logger][thread] message".
        assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO  \[authgate\.seed\]\[MainThread\]",
                         log, re.M), log
        assert re.search(r"\[authgate\.access\]\[waitress-\d+\] 127\.0\.0\.1 \"GET /health\" 200",
                         log), log
        # development.ini turns on the Pyramid debug toolbar for local browsers.
        page = requests.get(url + "/login", timeout=10)
        assert page.status_code == 200 and 'id="pDebug"' in page.text
        assert requests.get(url + "/_debug_toolbar/", timeout=10).status_code == 200
        server.stop(fail_on_timeout=True)
    assert (tmp_path / "oauth.db").exists()
    assert "JWT_SECRET=" in (tmp_path / ".env").read_text()


def test_authgate_server_with_development_ini_and_server_addr(tmp_path):
    # SERVER_ADDR beats the ini's listen line; the ini's logging applies.
    port = free_port()
    shutil.copy(REPO / "development.ini", tmp_path / "development.ini")
    env = clean_env(tmp_path, SERVER_ADDR=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    with start_server(tmp_path, env, ini="development.ini", defaults=False,
                      log_name="server.log") as server:
        assert server.health == HEALTHY
        log = server.log()
        assert f"[authgate.cli][MainThread] Listening on {url}" in log
        # development.ini logs authgate at DEBUG: the route table is listed.
        assert re.search(r"GET\S*\s+/health\s+--> authgate\.views\.health\.", log), log
        assert server.stop(fail_on_timeout=True) == 0
