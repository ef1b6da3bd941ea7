"""Asymmetric signing end to end: PyJWKClient verifies tokens, and a key rotation
keeps old tokens valid while new ones carry the new kid."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
import requests
from e2e_support import ADMIN_PASSWORD, start_server

pytestmark = pytest.mark.e2e

AUTHGATE = str(Path(sys.executable).with_name("authgate"))
GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def generate_key(cwd: Path, alg: str, name: str) -> Path:
    done = subprocess.run([AUTHGATE, "keys", "generate", "--alg", alg, "--out", name,
                           "--bits", "2048"], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    path = cwd / name
    assert path.stat().st_mode & 0o777 == 0o600
    return path


def device_flow_tokens(server, client_id: str) -> dict:
    """A device flow driven over HTTP, the person's part with a requests session."""
    code = requests.post(server.url + "/oauth/device/code",
                         data={"client_id": client_id}, timeout=10).json()
    person = requests.Session()
    page = person.get(server.url + "/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    person.post(server.url + "/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                             "csrf_token": csrf}, timeout=10)
    page = person.get(code["verification_uri_complete"], timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    done = person.post(server.url + "/device/verify", data={
        "user_code": code["user_code"], "action": "approve", "csrf_token": csrf}, timeout=10)
    assert "Device authorized" in done.text
    tokens = requests.post(server.url + "/oauth/token", data={
        "grant_type": GRANT, "device_code": code["device_code"],
        "client_id": client_id}, timeout=10)
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


def verify_with_jwks(server, token: str, alg: str) -> dict:
    client = jwt.PyJWKClient(server.url + "/.well-known/jwks.json", cache_keys=False)
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=[alg], options={"verify_aud": False})


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_pyjwkclient_verifies_tokens_across_a_key_rotation(tmp_path, alg):
    cwd = tmp_path / "srv"
    cwd.mkdir()
    old_key = generate_key(cwd, alg, "old.pem")
    env = {"JWT_SIGNING_ALGORITHM": alg, "JWT_PRIVATE_KEY_PATH": str(old_key)}
    server = start_server(cwd, env)
    try:
        jwks = requests.get(server.url + "/.well-known/jwks.json", timeout=10).json()
        assert [k["alg"] for k in jwks["keys"]] == [alg]
        assert {"kty", "alg", "kid", "use"} <= set(jwks["keys"][0])
        client_id = server.client_id  # logged at first start only
        old_tokens = device_flow_tokens(server, client_id)
        claims = verify_with_jwks(server, old_tokens["access_token"], alg)
        assert claims["type"] == "access" and claims["client_id"] == client_id
        old_kid = jwt.get_unverified_header(old_tokens["access_token"])["kid"]
    finally:
        assert server.stop() == 0

    new_key = generate_key(cwd, alg, "new.pem")
    server = start_server(cwd, {**env, "JWT_PRIVATE_KEY_PATH": str(new_key),
                                "JWT_PREVIOUS_KEY_PATHS": str(old_key)})
    try:
        kids = [k["kid"] for k in requests.get(server.url + "/.well-known/jwks.json",
                                               timeout=10).json()["keys"]]
        assert len(kids) == 2 and kids[1] == old_kid  # the signing key first
        # The token signed before the rotation still verifies, through JWKS and the server.
        assert verify_with_jwks(server, old_tokens["access_token"], alg)["jti"]
        info = requests.get(server.url + "/oauth/tokeninfo", headers={
            "Authorization": "Bearer " + old_tokens["access_token"]}, timeout=10)
        assert info.status_code == 200 and info.json()["active"] is True
        new_tokens = device_flow_tokens(server, client_id)
        assert jwt.get_unverified_header(new_tokens["access_token"])["kid"] == kids[0] != old_kid
        assert verify_with_jwks(server, new_tokens["access_token"], alg)["type"] == "access"
    finally:
        server.stop()


def test_bad_keys_stop_start_up_with_the_reason(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    cases = [
        ("RS256", pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "2048"),
        ("ES256", pem(ec.generate_private_key(ec.SECP384R1())), "P-256"),
        ("RS256", pem(ec.generate_private_key(ec.SECP256R1())), "ecdsa.PrivateKey"),
    ]
    for index, (alg, data, expected) in enumerate(cases):
        key = tmp_path / f"bad{index}.pem"
        key.write_bytes(data)
        done = subprocess.run([AUTHGATE, "server"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                   "JWT_SIGNING_ALGORITHM": alg,
                                   "JWT_PRIVATE_KEY_PATH": str(key),
                                   "SESSION_SECRET": "s" * 40})
        assert done.returncode != 0
        assert expected in done.stderr, done.stderr
