"""Interop suite: real servers (tests/e2e fixtures) driven by unmodified client
libraries.  tests/e2e is put on sys.path for its helpers (e2e_support)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

_spec = importlib.util.spec_from_file_location("authgate_e2e_fixtures_interop",
                                               E2E / "conftest.py")
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)

live_server = _e2e.live_server


@pytest.fixture(params=["HS256", "ES256"])
def server(request, live_server, tmp_path):
    """A live server signing with HS256 (shared secret) or ES256 (a P-256 key)."""
    env = {"ENABLE_RATE_LIMIT": "false", "ENABLE_TOKEN_ROTATION": "true",
           "POLLING_INTERVAL": "1s"}
    if request.param == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        path = tmp_path / "es256.pem"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(path, 0o600)
        env.update(JWT_SIGNING_ALGORITHM="ES256", JWT_PRIVATE_KEY_PATH=str(path))
    else:
        env.update(JWT_SIGNING_ALGORITHM="HS256",
                   JWT_SECRET="interop-suite-hs256-secret-0123456789abcdef")
    srv = live_server(**env)
    srv.alg = request.param
    return srv


@pytest.fixture(autouse=True)
def _plain_http_on_loopback(monkeypatch):
    """oauthlib insists on https; the test servers listen on 127.0.0.1 over http."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
