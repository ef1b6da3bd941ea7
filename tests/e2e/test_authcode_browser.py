"""Web sign-in end to end: a real server (ES256), Authlib as the client, a person in
Chromium who logs in and approves; plus client credentials and a device-flow client
configured only from discovery."""

from __future__ import annotations

import os
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from authlib.oidc.core.util import create_half_hash
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from e2e_support import log_in_and_consent, screenshot, sign_in

pytestmark = pytest.mark.e2e

SCOPE = "openid email profile"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class CallbackListener:
    """A tiny web app's redirect endpoint on 127.0.0.1: records each callback URL."""

    def __init__(self) -> None:
        received: queue.Queue[str] = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if not self.path.startswith("/callback"):  # e.g. the browser's favicon
                    self.send_error(404)
                    return
                received.put(f"http://{self.headers['Host']}{self.path}")
                body = b"<!doctype html><title>Signed in</title><h1 id=done>Back in the app</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.received = received
        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/callback"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, timeout: float = 15) -> str:
        return self.received.get(timeout=timeout)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def callback():
    listener = CallbackListener()
    yield listener
    listener.close()


@pytest.fixture
def es256_server(live_server, tmp_path):
    """A live server signing with a P-256 key generated for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "es256-signing-key.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)
    return live_server(JWT_SIGNING_ALGORITHM="ES256", JWT_PRIVATE_KEY_PATH=str(path))


def create_client(server, name: str, *options: str) -> tuple[str, str | None]:
    """`authgate create-client` against the server's database (same env and cwd)."""
    command = [str(Path(sys.executable).with_name("authgate")), "create-client", name, *options]
    result = subprocess.run(command, cwd=server.cwd, env=server.env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    client_id = re.search(r"^Client ID:\s+(\S+)$", result.stdout, re.M).group(1)
    secret = re.search(r"^Client Secret:\s+(\S+)$", result.stdout, re.M)
    return client_id, secret.group(1) if secret else None


def web_client(server, redirect_uri: str, *, confidential: bool = True):
    kind = "--confidential" if confidential else "--public"
    return create_client(server, "Photo Printer", kind, "--no-device", "--auth-code",
                         "--redirect-uri", redirect_uri, "--scopes", SCOPE,
                         "--description", "Prints the photos in your account")


def discovery(server) -> dict:
    response = requests.get(server.url + "/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


# ---------------------------------------------------------------------------
# Authorization code + PKCE + OpenID Connect with Authlib
# ---------------------------------------------------------------------------


def test_authlib_web_app_signs_in_with_consent(es256_server, page, callback):
    server = es256_server
    meta = discovery(server)
    client_id, secret = web_client(server, callback.url)
    session = OAuth2Session(client_id, secret, scope=SCOPE, redirect_uri=callback.url,
                            code_challenge_method="S256",
                            token_endpoint_auth_method="client_secret_basic")
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = session.create_authorization_url(meta["authorization_endpoint"],
                                                  code_verifier=verifier, nonce=nonce)

    def described(consent_page) -> None:
        assert "Prints the photos in your account" in consent_page.inner_text(
            "#client-description")
        scopes_text = consent_page.inner_text("#scope-list")
        for line in ("Confirm your identity", "Read your email address", "Read your profile"):
            assert line in scopes_text

    # Not signed in yet: login first, then back to the consent page.
    log_in_and_consent(page, url, client_name="Photo Printer", redirect_uri=callback.url,
                       check_consent=described, shot="consent")
    returned = callback.wait()
    query = parse_qs(urlsplit(returned).query)
    assert query["state"] == [state] and query["iss"] == [meta["issuer"]]

    token = session.fetch_token(meta["token_endpoint"], authorization_response=returned,
                                code_verifier=verifier, state=state)
    assert token["token_type"] == "Bearer"
    assert token["access_token"] and token["refresh_token"] and token["id_token"]
    assert set(token["scope"].split()) == set(SCOPE.split())

    # The ID token verifies against the published keys (ES256), with our nonce and
    # at_hash, checked both by PyJWT and by Authlib's OpenID Connect validator.
    assert meta["jwks_uri"] == server.url + "/.well-known/jwks.json"
    assert meta["id_token_signing_alg_values_supported"] == ["ES256"]
    signing_key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token["id_token"])
    claims = jwt.decode(token["id_token"], signing_key.key, algorithms=["ES256"],
                        audience=client_id, issuer=meta["issuer"])
    header = jwt.get_unverified_header(token["id_token"])
    assert header["alg"] == "ES256" and header["kid"] == signing_key.key_id
    assert claims["nonce"] == nonce
    assert claims["at_hash"] == create_half_hash(token["access_token"], "ES256").decode()
    assert claims["preferred_username"] == "admin" and claims["email"] == "admin@localhost"
    assert abs(claims["auth_time"] - time.time()) < 120
    id_claims = CodeIDToken(claims, header, options={"iss": {"value": meta["issuer"]},
                                                     "aud": {"value": client_id}},
                            params={"nonce": nonce, "access_token": token["access_token"],
                                    "client_id": client_id})
    id_claims.validate()

    # UserInfo with the access token: the scope's claims for the same subject.
    info = session.get(meta["userinfo_endpoint"], timeout=10)
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["sub"] == claims["sub"]
    assert body["preferred_username"] == "admin" and body["email"] == "admin@localhost"
    assert "email_verified" in body

    # A second sign-in: the remembered consent answers without the page.
    verifier2 = secrets.token_urlsafe(48)
    url2, state2 = session.create_authorization_url(meta["authorization_endpoint"],
                                                    code_verifier=verifier2, nonce="n2")
    log_in_and_consent(page, url2, login=False, consent=False)
    returned2 = callback.wait()
    again = session.fetch_token(meta["token_endpoint"], authorization_response=returned2,
                                code_verifier=verifier2, state=state2)
    assert again["access_token"] != token["access_token"]


def test_authlib_public_client_with_pkce(es256_server, page, callback):
    server = es256_server
    meta = discovery(server)
    client_id, secret = web_client(server, callback.url, confidential=False)
    assert secret is None
    session = OAuth2Session(client_id, scope="openid profile", redirect_uri=callback.url,
                            code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = secrets.token_urlsafe(64)
    url, state = session.create_authorization_url(meta["authorization_endpoint"],
                                                  code_verifier=verifier, nonce="abc")
    log_in_and_consent(page, url)
    returned = callback.wait()
    token = session.fetch_token(meta["token_endpoint"], authorization_response=returned,
                                code_verifier=verifier, state=state)
    claims = jwt.decode(token["id_token"], options={"verify_signature": False})
    assert claims["nonce"] == "abc" and "email" not in claims
    assert session.get(meta["userinfo_endpoint"], timeout=10).json()[
        "preferred_username"] == "admin"

    # Without PKCE a public client is sent back with invalid_request.
    plain = (meta["authorization_endpoint"] + "?" + urlencode({
        "client_id": client_id, "redirect_uri": callback.url, "response_type": "code",
        "state": "s1"}))
    page.goto(plain)
    query = parse_qs(urlsplit(callback.wait()).query)
    assert query["error"] == ["invalid_request"] and query["state"] == ["s1"]


def test_code_exchange_errors_and_replay(es256_server, page, callback):
    server = es256_server
    meta = discovery(server)
    client_id, secret = web_client(server, callback.url)
    verifier, challenge = pkce_pair()
    url = meta["authorization_endpoint"] + "?" + urlencode({
        "client_id": client_id, "redirect_uri": callback.url, "response_type": "code",
        "scope": SCOPE, "state": "st", "code_challenge": challenge,
        "code_challenge_method": "S256"})
    log_in_and_consent(page, url)
    code = parse_qs(urlsplit(callback.wait()).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": callback.url}
    auth = (client_id, secret)  # HTTP Basic

    wrong = requests.post(meta["token_endpoint"], auth=auth, timeout=10,
                          data={**form, "code_verifier": pkce_pair()[0]})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"

    first = requests.post(meta["token_endpoint"], auth=auth, timeout=10,
                          data={**form, "code_verifier": verifier})
    assert first.status_code == 200, first.text
    tokens = first.json()

    def active(token: str) -> bool:
        response = requests.post(meta["introspection_endpoint"], auth=auth, timeout=10,
                                 data={"token": token})
        assert response.status_code == 200, response.text
        return response.json()["active"]

    assert active(tokens["access_token"]) and active(tokens["refresh_token"])
    replay = requests.post(meta["token_endpoint"], auth=auth, timeout=10,
                           data={**form, "code_verifier": verifier})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert not active(tokens["access_token"]) and not active(tokens["refresh_token"])


def test_wrong_redirect_uri_shows_an_error_page_and_never_redirects(es256_server, page,
                                                                     callback):
    server = es256_server
    meta = discovery(server)
    client_id, _ = web_client(server, callback.url)
    _, challenge = pkce_pair()
    evil = callback.url.replace("/callback", "/evil")
    url = meta["authorization_endpoint"] + "?" + urlencode({
        "client_id": client_id, "redirect_uri": evil, "response_type": "code",
        "state": "st", "code_challenge": challenge, "code_challenge_method": "S256"})
    response = page.goto(url)
    assert response.status == 400
    assert page.url == url  # stayed on the server
    assert page.inner_text("#error-title") == "Invalid redirect URI"
    screenshot(page, "authorize-wrong-redirect-uri")
    with pytest.raises(queue.Empty):
        callback.wait(timeout=1)


# ---------------------------------------------------------------------------
# Client credentials
# ---------------------------------------------------------------------------


def test_client_credentials_basic_form_and_public_refused(es256_server):
    server = es256_server
    meta = discovery(server)
    assert "client_credentials" in meta["grant_types_supported"]
    client_id, secret = create_client(server, "Billing Service", "--confidential",
                                      "--no-device", "--client-credentials",
                                      "--scopes", "read write")
    for method in ("client_secret_basic", "client_secret_post"):
        session = OAuth2Session(client_id, secret, token_endpoint_auth_method=method)
        token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials",
                                    scope="read")
        assert token["scope"] == "read" and "refresh_token" not in token
        assert 3500 < token["expires_in"] <= 3600
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        assert claims["sub"] == f"client:{client_id}"
        info = requests.post(meta["introspection_endpoint"], auth=(client_id, secret),
                             data={"token": token["access_token"]}, timeout=10).json()
        assert info["active"] and info["sub"] == f"client:{client_id}"

    public_id, _ = create_client(server, "Public App", "--public")
    refused = requests.post(meta["token_endpoint"], timeout=10, data={
        "grant_type": "client_credentials", "client_id": public_id})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert refused.headers["WWW-Authenticate"].startswith("Basic")


# ---------------------------------------------------------------------------
# Device flow configured from discovery alone
# ---------------------------------------------------------------------------


def test_device_flow_client_configured_from_discovery(es256_server, page):
    server = es256_server
    meta = discovery(server)
    assert {"device_authorization_endpoint", "introspection_endpoint",
            "revocation_endpoint"} <= set(meta)
    assert DEVICE_GRANT in meta["grant_types_supported"]
    client_id = server.client_id
    code = requests.post(meta["device_authorization_endpoint"], timeout=10,
                         data={"client_id": client_id, "scope": "email profile"})
    assert code.status_code == 200, code.text
    grant = code.json()

    page.goto(grant["verification_uri_complete"])
    sign_in(page)
    page.wait_for_selector("#device-approve")
    page.click("#device-approve")
    page.wait_for_selector("#result-title")

    interval, deadline = grant["interval"], time.monotonic() + 60
    while True:
        time.sleep(interval)
        polled = requests.post(meta["token_endpoint"], timeout=10, data={
            "grant_type": DEVICE_GRANT, "device_code": grant["device_code"],
            "client_id": client_id})
        body = polled.json()
        if polled.status_code == 200:
            break
        assert body["error"] in ("authorization_pending", "slow_down"), body
        if body["error"] == "slow_down":
            interval += 5
        assert time.monotonic() < deadline
    assert body["access_token"] and body["token_type"] == "Bearer"
    info = requests.get(meta["userinfo_endpoint"], timeout=10,
                        headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.json()["preferred_username"] == "admin"
    revoked = requests.post(meta["revocation_endpoint"], timeout=10,
                            data={"token": body["access_token"], "client_id": client_id})
    assert revoked.status_code == 200
    after = requests.get(meta["userinfo_endpoint"], timeout=10,
                         headers={"Authorization": f"Bearer {body['access_token']}"})
    assert after.status_code == 401
