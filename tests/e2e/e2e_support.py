"""Helpers for end-to-end tests: real server processes, the person in the browser,
screenshots."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ADMIN_PASSWORD = "e2e-admin-password"
AUTHGATE = str(Path(sys.executable).with_name("authgate"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    cwd: Path
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    health: dict = field(default_factory=dict)  # the first healthy answer of GET /health

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def client_id(self) -> str:
        match = re.search(r"Seeded OAuth client with ID: ([0-9a-f-]{36})", self.log())
        assert match, "the server did not log the seeded client id"
        return match.group(1)

    def stop(self, timeout: float = 15, *, fail_on_timeout: bool = False) -> int:
        """SIGTERM, then wait up to ``timeout`` seconds; the exit status.  A process
        still running then is killed, and with ``fail_on_timeout`` the test fails,
        showing the server's output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                if fail_on_timeout:
                    pytest.fail(f"server still running {timeout}s after SIGTERM:\n{self.log()}")
        return self.process.returncode

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server(cwd: Path, env_extra: Mapping[str, str] | None = None, *,
                 ini: Path | str | None = None, command: Sequence[str] | None = None,
                 port: int | None = None, defaults: bool = True,
                 pass_env: Sequence[str] = (), log_name: str | None = None,
                 timeout: float = 30) -> LiveServer:
    """Start a server process in ``cwd`` and wait until GET /health answers 200.

    ``command`` is `authgate server` (``authgate server -c INI`` with ``ini``) unless
    given (e.g. ``[pserve, ini]``, or ``["bash", "-c", script]``).  The server listens
    on ``port``: the one in ``env_extra["SERVER_ADDR"]`` if that is set, else a free
    one; pass it when an ini file's ``listen`` line chooses it.

    Environment: PATH and HOME (``cwd``); with ``defaults`` also SERVER_ADDR and
    BASE_URL on that port and DEFAULT_ADMIN_PASSWORD=ADMIN_PASSWORD (``defaults=False``:
    nothing the test does not set itself); then the runner's own values of the
    ``pass_env`` names that are set (e.g. PYTHONPATH); then ``env_extra``.

    Output (stdout and stderr) goes to ``cwd/log_name`` (``server-PORT.log``).  If the
    process exits, or is not healthy after ``timeout`` seconds (it is stopped then),
    the test fails showing that output.  Use the result as a context manager, or call
    its ``stop()``."""
    extra = dict(env_extra or {})
    if port is None:
        port = int(extra["SERVER_ADDR"].rsplit(":", 1)[1]) if "SERVER_ADDR" in extra \
            else free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    if defaults:
        env.update(SERVER_ADDR=f"127.0.0.1:{port}", BASE_URL=f"http://127.0.0.1:{port}",
                   DEFAULT_ADMIN_PASSWORD=ADMIN_PASSWORD)
    env.update({name: os.environ[name] for name in pass_env if os.environ.get(name)})
    env.update(extra)
    if command is None:
        command = [AUTHGATE, "server", *(["-c", str(ini)] if ini is not None else [])]
    log_path = cwd / (log_name or f"server-{port}.log")
    with open(log_path, "wb") as handle:  # the child keeps its own descriptor
        process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=handle,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = LiveServer(f"http://127.0.0.1:{port}", cwd, process, log_path, env)
    shown = shlex.join(command)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{shown} exited with {process.returncode} before it was healthy:\n"
                        f"{server.log()}")
        try:
            response = requests.get(server.url + "/health", timeout=2)
            if response.status_code == 200:
                server.health = response.json()
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"{shown} was not healthy after {timeout}s:\n{server.log()}")


def screenshot(page, name: str) -> None:
    """Save a full-page PNG under artifacts/screenshots/ (kept by CI)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any) -> None:
    """On the login page (waits for its form): sign in as admin (ADMIN_PASSWORD)."""
    page.wait_for_selector("#username")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("#login-submit")


def log_in_and_consent(page: Any, url: str, *, login: bool = True, consent: bool = True,
                       client_name: str | None = None, scopes: Iterable[str] | None = None,
                       redirect_uri: str | None = None,
                       check_consent: Callable[[Any], None] | None = None,
                       shot: str | None = None) -> None:
    """The person, in Chromium (a Playwright ``page``), opens the authorization ``url``.

    ``login``: the server shows the login page first (nobody signed in yet); the person
    signs in as admin.  ``consent``: the consent page names the signed-in user and, when
    given, ``client_name``, exactly the ``scopes`` and the host of ``redirect_uri``;
    ``check_consent(page)`` checks the rest, ``shot`` names a screenshot of it; the
    person approves.  Returns when the browser is back in the app (its ``#done``); the
    app's callback has the URL."""
    page.goto(url)
    if login:
        page.wait_for_selector("#username")
        assert urlsplit(page.url).path == "/login"  # not signed in yet
        sign_in(page)
    if consent:
        page.wait_for_selector("#consent-approve")
        assert page.inner_text("#consent-username") == "admin"
        if client_name is not None:
            assert page.inner_text("#client-name") == client_name
        if scopes is not None:
            shown = page.locator("#scope-list code.scope-name").all_inner_texts()
            assert sorted(shown) == sorted(scopes)
        if redirect_uri is not None:
            assert page.inner_text("#redirect-host") == urlsplit(redirect_uri).netloc
        if check_consent is not None:
            check_consent(page)
        if shot:
            screenshot(page, shot)
        page.click("#consent-approve")
    page.wait_for_selector("#done")
