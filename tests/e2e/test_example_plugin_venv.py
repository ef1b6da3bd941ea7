"""A third-party auth source, the way a deployer gets it: a fresh virtualenv.

1. Build wheels: AuthGate (from a copy of this working tree) and
   ``examples/authgate-auth-example``.
2. ``python -m venv`` a fresh virtualenv (no system site-packages, nothing
   shared with the test's own environment) and ``pip install`` both wheels; the
   dependencies come from the package index like anywhere else.
3. Make a users file with the example's own command, write an ini whose only
   setting is ``authgate.auth_sources = local example``, and start
   ``authgate server -c`` from the fresh virtualenv.
4. A user from the example's file completes a device flow over HTTP (device
   code, sign-in form with its CSRF token, approve, token poll -> 200).
5. Remove the line, restart on the same database: the same user's login fails,
   the admin's still works.

The phases' durations are printed (``pytest -s``) and recorded as properties.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from e2e_support import ADMIN_PASSWORD, free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "authgate-auth-example"
GRANT = "urn:ietf:params:oauth:grant-type:device_code"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ALICE_PASSWORD = "alice-from-the-users-file"
ENABLE = "authgate.auth_sources = local example"
# What a copy of the working tree needs to build AuthGate's wheel.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".ruff_cache", "artifacts", "tests", "bench", "examples", "*.db", "*.db-*", ".env",
    "authgate-credentials.txt")


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        input: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, input=input,
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, (f"{' '.join(map(str, args))} failed "
                                    f"({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def build_wheel(source: Path, tmp: Path, name: str) -> Path:
    """``pip wheel`` a copy of ``source`` (a build writes build/ next to the sources)."""
    copy = tmp / f"{name}-src"
    shutil.copytree(source, copy, ignore=NOT_SOURCES)
    out = tmp / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out, copy)
    (wheel,) = out.glob(f"{name.replace('-', '_')}-*.whl")
    return wheel


def source_packages(tree: Path) -> list[str]:
    """Dotted names of the packages in a copy of the tree (plugins/ is authgate_plugins)."""
    names = []
    for init in sorted(tree.glob("**/__init__.py")):
        parts = list(init.parent.relative_to(tree).parts)
        if parts[0] == "plugins":
            parts[0] = "authgate_plugins"
        if parts[0] in ("authgate", "authgate_plugins"):
            names.append(".".join(parts))
    return names


class Timer:
    def __init__(self, record_property) -> None:
        self.record_property = record_property
        self.phases: list[tuple[str, float]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        took = time.monotonic() - started
        self.phases.append((name, took))
        self.record_property(f"seconds_{name.replace(' ', '_')}", round(took, 1))

    def report(self) -> str:
        return ", ".join(f"{name} {took:.1f}s" for name, took in self.phases)


def server_env(home: Path, port: int, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "SERVER_ADDR": f"127.0.0.1:{port}", "BASE_URL": f"http://127.0.0.1:{port}",
            "DEFAULT_ADMIN_PASSWORD": ADMIN_PASSWORD, "POLLING_INTERVAL": "1s", **extra}


@contextmanager
def serving(authgate: Path, ini: Path, cwd: Path, env: dict[str, str], log_name: str
            ) -> Iterator[tuple[str, Path]]:
    """``authgate server -c ini`` until healthy; stopped with SIGTERM afterwards."""
    url = env["BASE_URL"]
    log = cwd / log_name
    with open(log, "wb") as handle:
        process = subprocess.Popen([str(authgate), "server", "-c", str(ini)], cwd=cwd, env=env,
                                   stdout=handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after 60s:\n{log.read_text()}")
            time.sleep(0.1)
        yield url, log
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def sign_in(url: str, username: str, password: str) -> tuple[requests.Session,
                                                             requests.Response]:
    browser = requests.Session()
    page = browser.get(url + "/login", timeout=10)
    assert page.status_code == 200, page.text[:2000]
    response = browser.post(url + "/login", timeout=30, allow_redirects=False, data={
        "username": username, "password": password, "csrf_token": csrf(page.text),
        "redirect": ""})
    return browser, response


def device_flow(url: str, client_id: str, username: str, password: str) -> dict:
    """Device code -> sign in -> approve -> poll: the token response."""
    code = requests.post(url + "/oauth/device/code", data={"client_id": client_id},
                         timeout=10)
    assert code.status_code == 200, code.text
    code = code.json()
    pending = requests.post(url + "/oauth/token", timeout=10, data={
        "grant_type": GRANT, "device_code": code["device_code"], "client_id": client_id})
    assert pending.json()["error"] == "authorization_pending", pending.text

    browser, response = sign_in(url, username, password)
    assert response.status_code in (302, 303), response.text[:2000]
    page = browser.get(url + "/device", params={"user_code": code["user_code"]}, timeout=10)
    assert page.status_code == 200, page.text[:2000]
    verified = browser.post(url + "/device/verify", timeout=10, data={
        "user_code": code["user_code"], "action": "approve", "csrf_token": csrf(page.text)})
    assert verified.status_code == 200, verified.text[:2000]

    time.sleep(code.get("interval", 1))  # a polite client waits its interval
    token = requests.post(url + "/oauth/token", timeout=10, data={
        "grant_type": GRANT, "device_code": code["device_code"], "client_id": client_id})
    assert token.status_code == 200, token.text
    return token.json()


def user_row(cwd: Path, env: dict[str, str], user_id: str) -> tuple[str, str, str]:
    """(username, auth_source, external_id) of a user, from whichever store served."""
    sql = "SELECT username, auth_source, external_id FROM users WHERE id = %s"
    if env.get("DATABASE_DRIVER") == "postgres":
        import psycopg

        with psycopg.connect(env["DATABASE_DSN"]) as connection:
            return connection.execute(sql, (user_id,)).fetchone()
    with sqlite3.connect(cwd / "oauth.db") as connection:
        return connection.execute(sql.replace("%s", "?"), (user_id,)).fetchone()


def test_example_plugin_in_a_fresh_venv(tmp_path, store_environ, record_property):
    timer = Timer(record_property)
    with timer.phase("build wheels"):
        authgate_wheel = build_wheel(REPO, tmp_path, "authgate")
        example_wheel = build_wheel(EXAMPLE, tmp_path, "authgate-auth-example")

    venv = tmp_path / "venv"
    with timer.phase("create venv"):
        run(sys.executable, "-m", "venv", venv)
    python, authgate = venv / "bin" / "python", venv / "bin" / "authgate"
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    with timer.phase("pip install"):
        run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            authgate_wheel, example_wheel, env={**os.environ, "PIP_NO_INPUT": "1"})

    # Really fresh: AuthGate and the plugin come from the new venv, not this checkout.
    where = run(python, "-c", "import json, authgate, authgate_auth_example, authgate_plugins;"
                "from authgate.plugins import installed_plugin_names as n;"
                "print(json.dumps([authgate.__file__, authgate_auth_example.__file__,"
                " n()]))", cwd=tmp_path, env=clean)
    authgate_file, example_file, plugins = json.loads(where.stdout)
    assert authgate_file.startswith(str(venv)) and example_file.startswith(str(venv))
    assert "auth_example" in plugins and "auth_local" in plugins

    # Every package of the source tree made it into the wheel.
    missing = run(python, "-c", "import importlib.util, sys; print(' '.join(n for n in "
                  "sys.argv[1:] if importlib.util.find_spec(n) is None))",
                  *source_packages(tmp_path / "authgate-src"), cwd=tmp_path, env=clean)
    assert not missing.stdout.strip(), (
        f"not in the wheel: {missing.stdout.strip()}; add them to [tool.setuptools] "
        "packages in pyproject.toml")

    cwd = tmp_path / "srv"
    cwd.mkdir()
    line = run(python, "-m", "authgate_auth_example", "alice", input=ALICE_PASSWORD + "\n",
               env=clean).stdout.strip()
    assert line.startswith("alice:$argon2id$")
    users = cwd / "users.txt"
    users.write_text(f"# people the example plugin lets in\n{line}\n")

    ini = cwd / "authgate.ini"
    ini.write_text(f"[app:main]\nuse = egg:authgate\n{ENABLE}\n")
    port = free_port()
    env = server_env(cwd, port, EXAMPLE_AUTH_USERS_FILE=str(users), **store_environ())

    with timer.phase("enabled: start and device flow"):
        with serving(authgate, ini, cwd, env, "enabled.log") as (url, log):
            client_id = re.search(rf"Seeded OAuth client with ID: ({UUID})",
                                  log.read_text()).group(1)
            assert "Auth sources: local example" in log.read_text()
            token = device_flow(url, client_id, "alice", ALICE_PASSWORD)
            assert token["access_token"] and token["token_type"].lower() == "bearer"
            info = requests.get(url + "/oauth/tokeninfo", timeout=10, headers={
                "Authorization": f"Bearer {token['access_token']}"})
            assert info.status_code == 200, info.text
            assert user_row(cwd, env, info.json()["user_id"]) == (
                "alice", "example", "example:alice")
            _, wrong = sign_in(url, "alice", "not-her-password")
            assert wrong.status_code == 401
        assert ALICE_PASSWORD not in log.read_text()

    # Turning it off is removing the line; the package stays installed.
    ini.write_text(ini.read_text().replace(ENABLE + "\n", ""))
    assert "example" not in ini.read_text()
    with timer.phase("disabled: restart and logins"), \
            serving(authgate, ini, cwd, env, "disabled.log") as (url, log):
        assert "Auth sources: local\n" in log.read_text()
        _, refused = sign_in(url, "alice", ALICE_PASSWORD)
        assert refused.status_code == 401
        assert "Invalid username or password" in refused.text
        _, admin = sign_in(url, "admin", ADMIN_PASSWORD)
        assert admin.status_code in (302, 303), admin.text[:2000]

    print(f"\nfresh-venv example plugin: {timer.report()}")
