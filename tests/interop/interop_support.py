"""Helpers for the interop suite: clients made with the CLI, a person who approves a
device with a plain HTTP session, discovery."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import requests
from e2e_support import ADMIN_PASSWORD

AUTHGATE = str(Path(sys.executable).with_name("authgate"))
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def discovery(server) -> dict:
    response = requests.get(server.url + "/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def create_client(server, name: str, *options: str) -> tuple[str, str | None]:
    """`authgate create-client` against the server's database (same env and cwd)."""
    result = subprocess.run([AUTHGATE, "create-client", name, *options], cwd=server.cwd,
                            env=server.env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    client_id = re.search(r"^Client ID:\s+(\S+)$", result.stdout, re.M).group(1)
    secret = re.search(r"^Client Secret:\s+(\S+)$", result.stdout, re.M)
    return client_id, secret.group(1) if secret else None


def approve_device(server, verification_uri_complete: str, user_code: str) -> None:
    """The person: signs in and approves the code (a plain HTTP session; the browser
    version of this is tests/e2e/test_device_browser.py)."""
    person = requests.Session()
    page = person.get(server.url + "/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    person.post(server.url + "/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                             "csrf_token": csrf}, timeout=10)
    page = person.get(verification_uri_complete, timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    done = person.post(server.url + "/device/verify", data={
        "user_code": user_code, "action": "approve", "csrf_token": csrf}, timeout=10)
    assert "Device authorized" in done.text, done.text[:500]
