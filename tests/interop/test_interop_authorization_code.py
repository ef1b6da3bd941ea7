"""The authorization code grant driven by Authlib against a real server (HS256 and
ES256, on the store chosen with --authgate-store), with a person in headless Chromium
who signs in and approves:

* a confidential web app: PKCE (S256), OpenID Connect (nonce, ID token verified with
  Authlib's JOSE from the JWKS or the shared secret, at_hash), UserInfo; a code issued
  without a challenge cannot be redeemed with a verifier (PKCE downgrade);
* refresh, revocation and introspection of the tokens the code produced;
* a public client (``token_endpoint_auth_method="none"``): PKCE required, a wrong or
  missing ``code_verifier`` is ``invalid_grant``;
* the client credentials grant through Authlib's ``fetch_token``.

The redirect URI is a tiny HTTP server on 127.0.0.1 that records each callback."""

from __future__ import annotations

import queue
import secrets
import shutil
import threading
import time
import warnings
from concurrent.futures import Future
from functools import partial
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from e2e_support import CHROMIUM, CHROMIUM_ARGS, log_in_and_consent
from interop_support import create_client, discovery

with warnings.catch_warnings():  # authlib.jose is deprecated in favour of joserfc
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken
    from authlib.oidc.core import CodeIDToken
    from authlib.oidc.core.util import create_half_hash

pytestmark = pytest.mark.e2e

SCOPE = "openid profile email"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class CallbackListener:
    """The web app's redirect endpoint on 127.0.0.1 (a free port): records the full
    URL of each callback and shows a page the browser can wait for."""

    def __init__(self) -> None:
        received: queue.Queue[str] = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if urlsplit(self.path).path != "/callback":  # e.g. /favicon.ico
                    self.send_error(404)
                    return
                received.put(f"http://{self.headers['Host']}{self.path}")
                body = b"<!doctype html><title>App</title><h1 id=done>Back in the app</h1>"
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
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, timeout: float = 15) -> str:
        return self.received.get(timeout=timeout)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def callback():
    listener = CallbackListener()
    yield listener
    listener.close()


class ChromiumThread:
    """Headless Chromium driven by Playwright's sync API on a thread of its own.

    tests/e2e/conftest.py's session-wide ``browser`` fixture keeps a sync Playwright
    running on the main thread until the session ends, and the sync API allows one
    per thread: a second ``browser`` fixture here (even one built from that conftest)
    fails with "using Playwright Sync API inside the asyncio loop" when this file runs
    in the same session as tests/e2e (a plain ``pytest``).  So this module's browser
    lives on its own thread, and everything that touches it runs there (``run``)."""

    def __init__(self) -> None:
        self.calls: queue.Queue = queue.Queue()
        self.browser = None
        started: Future = Future()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True,
                                       name="interop-chromium")
        self.thread.start()
        started.result(timeout=60)  # a launch failure is raised here

    def _serve(self, started: Future) -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as playwright:
                self.browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                          args=CHROMIUM_ARGS)
                started.set_result(None)
                while (call := self.calls.get()) is not None:
                    fn, args, done = call
                    try:
                        done.set_result(fn(*args))
                    except BaseException as exc:  # handed to the caller of run()
                        done.set_exception(exc)
                self.browser.close()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    def run(self, fn, *args, timeout: float = 60):
        """``fn(*args)`` on the browser's thread; its result, or its exception."""
        done: Future = Future()
        self.calls.put((fn, args, done))
        return done.result(timeout=timeout)

    def close(self) -> None:
        self.calls.put(None)
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def chromium():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    thread = ChromiumThread()
    yield thread
    thread.close()


@pytest.fixture
def page(chromium):
    """A fresh browser context (no cookies: nobody signed in) per test, like
    tests/e2e's ``page``; used only through ``chromium.run``."""
    context = chromium.run(lambda: chromium.browser.new_context(
        viewport={"width": 390, "height": 844}))
    yield chromium.run(context.new_page)
    chromium.run(context.close)


def web_client(server, name: str, redirect_uri: str, *kind: str) -> tuple[str, str | None]:
    return create_client(server, name, *kind, "--no-device", "--auth-code",
                         "--redirect-uri", redirect_uri, "--scopes", SCOPE)


def person_approves(chromium, page, callback: CallbackListener, url: str, *,
                    client_name: str, scopes: tuple[str, ...]) -> str:
    """The person, in Chromium: opens the authorization URL, signs in as admin, reads
    the consent page and approves; the URL the browser was sent back to."""
    chromium.run(partial(log_in_and_consent, page, url, client_name=client_name,
                         scopes=scopes, redirect_uri=callback.url))
    return callback.wait()


def returns_without_pages(chromium, page, callback: CallbackListener, url: str) -> str:
    """A later authorization by the same person: signed in and consent remembered,
    the browser goes straight back to the app."""
    chromium.run(partial(log_in_and_consent, page, url, login=False, consent=False))
    return callback.wait()


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def verification_key(server, meta: dict):
    """What a relying party verifies with: the published JWKS (ES256) or the secret it
    shares with the server (HS256, which publishes no key)."""
    if server.alg == "ES256":
        jwks = requests.get(meta["jwks_uri"], timeout=10).json()
        return JsonWebKey.import_key_set(jwks)
    assert "jwks_uri" not in meta
    return server.env["JWT_SECRET"]


def validate_id_token(server, meta: dict, token: dict, client_id: str, nonce: str):
    """The ID token checked with Authlib's JOSE and OpenID Connect rules (Core §3.1.3.7):
    signature and alg, iss, aud, exp/iat, nonce, at_hash."""
    assert meta["id_token_signing_alg_values_supported"] == [server.alg]
    jose = JsonWebToken([server.alg])  # only the advertised algorithm is accepted
    key = verification_key(server, meta)
    options = {"iss": {"essential": True, "value": meta["issuer"]},
               "aud": {"essential": True, "value": client_id},
               "nonce": {"essential": True, "value": nonce},
               "sub": {"essential": True}}
    params = {"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]}
    claims = jose.decode(token["id_token"], key, claims_cls=CodeIDToken,
                         claims_options=options, claims_params=params)
    claims.validate(leeway=60)
    assert claims.header["alg"] == server.alg
    if server.alg == "ES256":
        assert claims.header["kid"] in {k.kid for k in key.keys}
    assert claims["iss"] == meta["issuer"] and claims["aud"] == client_id
    assert claims["nonce"] == nonce
    # at_hash (Core §3.3.2.11): left half of the SHA-256 of the access token.
    assert claims["at_hash"] == create_half_hash(token["access_token"],
                                                 server.alg).decode("ascii")
    assert abs(claims["auth_time"] - time.time()) < 300
    # The same token is refused for another audience or another nonce (Authlib
    # raises its JOSE backend's InvalidClaimError: error "invalid_claim").
    for name, wrong_options, wrong_params in (
            ("aud", {"aud": {"essential": True, "value": "another-client"}},
             {"client_id": "another-client"}),
            ("nonce", {"nonce": {"essential": True, "value": "another-nonce"}},
             {"nonce": "another-nonce"})):
        mismatched = jose.decode(token["id_token"], key, claims_cls=CodeIDToken,
                                 claims_options={**options, **wrong_options},
                                 claims_params={**params, **wrong_params})
        with pytest.raises(Exception) as refused:  # class varies by Authlib version
            mismatched.validate(leeway=60)
        assert refused.value.error == "invalid_claim" and name in str(refused.value)
    return claims


def verify_access_token(server, meta: dict, access_token: str) -> dict:
    claims = JsonWebToken([server.alg]).decode(access_token, verification_key(server, meta),
                                               claims_options={"iss": {
                                                   "essential": True,
                                                   "value": meta["issuer"]}})
    claims.validate(leeway=60)
    return claims


def confidential_sign_in(server, meta: dict, chromium, page, callback, name: str):
    """A confidential web app signs the person in with code + PKCE + OpenID Connect;
    (client_id, session, token, nonce)."""
    client_id, secret = web_client(server, name, callback.url, "--confidential")
    assert secret
    session = OAuth2Session(client_id, secret, scope=SCOPE, redirect_uri=callback.url,
                            code_challenge_method="S256",
                            token_endpoint_auth_method="client_secret_basic")
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    url, state = session.create_authorization_url(meta["authorization_endpoint"],
                                                  code_verifier=verifier, nonce=nonce)
    sent = query_of(url)
    assert sent["code_challenge_method"] == "S256" and sent["code_challenge"] != verifier
    assert "code_verifier" not in sent and sent["nonce"] == nonce
    returned = person_approves(chromium, page, callback, url, client_name=name,
                               scopes=("openid", "profile", "email"))
    answer = query_of(returned)
    assert answer["state"] == state and answer["iss"] == meta["issuer"]
    assert answer["code"] and "error" not in answer
    token = session.fetch_token(meta["token_endpoint"], authorization_response=returned,
                                code_verifier=verifier, state=state)
    return client_id, session, token, nonce


# ---------------------------------------------------------------------------
# Confidential web app: code + PKCE + OpenID Connect
# ---------------------------------------------------------------------------


def test_confidential_web_app_signs_in_with_pkce_and_openid_connect(server, chromium, page,
                                                                    callback):
    meta = discovery(server)
    assert "authorization_code" in meta["grant_types_supported"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    client_id, session, token, nonce = confidential_sign_in(server, meta, chromium, page,
                                                            callback, "Recipe Box")
    assert token["token_type"] == "Bearer"
    assert token["access_token"] and token["refresh_token"] and token["id_token"]
    assert set(token["scope"].split()) == set(SCOPE.split())
    assert token["expires_at"] > time.time() + 60

    claims = validate_id_token(server, meta, token, client_id, nonce)
    assert claims["preferred_username"] == "admin" and claims["email"] == "admin@localhost"

    access = verify_access_token(server, meta, token["access_token"])
    assert access["sub"] == claims["sub"] and access["client_id"] == client_id

    # UserInfo through the session's bearer token: the same subject as the ID token.
    info = session.get(meta["userinfo_endpoint"], timeout=10)
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["sub"] == claims["sub"]
    assert body["preferred_username"] == "admin" and body["email"] == "admin@localhost"

    # PKCE downgrade (RFC 9700 §2.1.1): a code requested without a challenge cannot be
    # redeemed with a code_verifier.  (Consent is remembered: no pages this time.)
    plain = OAuth2Session(client_id, session.client_secret, scope=SCOPE,
                          redirect_uri=callback.url,
                          token_endpoint_auth_method="client_secret_basic")
    url, state = plain.create_authorization_url(meta["authorization_endpoint"])
    assert "code_challenge" not in query_of(url)
    returned = returns_without_pages(chromium, page, callback, url)
    assert query_of(returned)["state"] == state
    with pytest.raises(OAuthError) as downgraded:
        plain.fetch_token(meta["token_endpoint"], authorization_response=returned,
                          state=state, code_verifier=secrets.token_urlsafe(48))
    assert downgraded.value.error == "invalid_grant"


# ---------------------------------------------------------------------------
# Refresh, revocation, introspection of the code flow's tokens
# ---------------------------------------------------------------------------


def test_code_flow_tokens_refresh_revoke_and_introspect(server, chromium, page, callback):
    meta = discovery(server)
    client_id, session, token, _ = confidential_sign_in(server, meta, chromium, page,
                                                        callback, "Garden Planner")
    answer = session.introspect_token(meta["introspection_endpoint"],
                                      token=token["access_token"],
                                      token_type_hint="access_token")
    assert answer.status_code == 200
    assert answer.json()["active"] and answer.json()["client_id"] == client_id
    assert answer.json()["username"] == "admin"

    # Refresh (rotation on): new tokens, which Authlib puts in the session.
    new = session.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert new["access_token"] != token["access_token"]
    assert new["refresh_token"] != token["refresh_token"]
    assert set(new["scope"].split()) == set(SCOPE.split())
    assert session.token["access_token"] == new["access_token"]
    info = session.get(meta["userinfo_endpoint"], timeout=10)
    assert info.status_code == 200 and info.json()["preferred_username"] == "admin"
    assert not session.introspect_token(meta["introspection_endpoint"],
                                        token=token["refresh_token"]).json()["active"]

    # Revocation (RFC 7009) of the refresh token takes its access token with it.
    revoked = session.revoke_token(meta["revocation_endpoint"], token=new["refresh_token"],
                                   token_type_hint="refresh_token")
    assert revoked.status_code == 200
    for value in (new["refresh_token"], new["access_token"]):
        introspected = session.introspect_token(meta["introspection_endpoint"], token=value)
        assert introspected.status_code == 200
        assert introspected.json() == {"active": False}
    assert session.get(meta["userinfo_endpoint"], timeout=10).status_code == 401
    with pytest.raises(OAuthError) as refused:
        session.refresh_token(meta["token_endpoint"], refresh_token=new["refresh_token"])
    assert refused.value.error == "invalid_grant"


# ---------------------------------------------------------------------------
# Public client: PKCE is the only proof
# ---------------------------------------------------------------------------


def test_public_client_code_flow_with_pkce_and_verifier_checks(server, chromium, page, callback):
    meta = discovery(server)
    client_id, secret = web_client(server, "Pocket Notes", callback.url, "--public")
    assert secret is None
    session = OAuth2Session(client_id, scope="openid profile", redirect_uri=callback.url,
                            code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier, nonce = secrets.token_urlsafe(64), secrets.token_urlsafe(16)
    url, state = session.create_authorization_url(meta["authorization_endpoint"],
                                                  code_verifier=verifier, nonce=nonce)
    returned = person_approves(chromium, page, callback, url, client_name="Pocket Notes",
                               scopes=("openid", "profile"))
    token = session.fetch_token(meta["token_endpoint"], authorization_response=returned,
                                code_verifier=verifier, state=state)
    assert token["access_token"] and token["refresh_token"]
    assert set(token["scope"].split()) == {"openid", "profile"}
    claims = validate_id_token(server, meta, token, client_id, nonce)
    assert "email" not in claims and claims["preferred_username"] == "admin"
    info = session.get(meta["userinfo_endpoint"], timeout=10)
    assert info.status_code == 200 and info.json()["sub"] == claims["sub"]
    assert "email" not in info.json()

    # A second code (consent remembered): a wrong verifier, then none at all, are
    # invalid_grant -- the code is only worth something with the right verifier.
    verifier2 = secrets.token_urlsafe(64)
    url2, state2 = session.create_authorization_url(meta["authorization_endpoint"],
                                                    code_verifier=verifier2, nonce="n2")
    returned2 = returns_without_pages(chromium, page, callback, url2)
    assert query_of(returned2)["state"] == state2
    for wrong in (secrets.token_urlsafe(64), verifier):  # random, and the first one
        with pytest.raises(OAuthError) as mismatch:
            session.fetch_token(meta["token_endpoint"], authorization_response=returned2,
                                code_verifier=wrong, state=state2)
        assert mismatch.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as missing:
        session.fetch_token(meta["token_endpoint"], authorization_response=returned2,
                            state=state2)
    assert missing.value.error == "invalid_grant"

    # Without a challenge at all a public client is sent back with invalid_request.
    no_pkce = OAuth2Session(client_id, scope="openid profile", redirect_uri=callback.url,
                            token_endpoint_auth_method="none")
    url3, state3 = no_pkce.create_authorization_url(meta["authorization_endpoint"])
    refused = query_of(returns_without_pages(chromium, page, callback, url3))
    assert refused["error"] == "invalid_request" and refused["state"] == state3
    assert "code" not in refused


# ---------------------------------------------------------------------------
# Client credentials
# ---------------------------------------------------------------------------


def test_client_credentials_grant_with_authlib(server, callback):
    meta = discovery(server)
    assert "client_credentials" in meta["grant_types_supported"]
    client_id, secret = create_client(server, "Nightly Report", "--confidential",
                                      "--no-device", "--client-credentials",
                                      "--scopes", "read write")
    session = OAuth2Session(client_id, secret, scope="read",
                            token_endpoint_auth_method="client_secret_basic")
    token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"] == "Bearer" and token["scope"] == "read"
    assert "refresh_token" not in token and "id_token" not in token
    claims = verify_access_token(server, meta, token["access_token"])
    assert claims["sub"] == f"client:{client_id}" and claims["scope"] == "read"
    info = session.get(server.url + "/oauth/tokeninfo", timeout=10)
    assert info.status_code == 200 and info.json()["subject_type"] == "client"
    introspected = session.introspect_token(meta["introspection_endpoint"],
                                            token=token["access_token"]).json()
    assert introspected["active"] and introspected["client_id"] == client_id
    # No scope asked: every scope of the client.
    everything = OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_post")
    full = everything.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    assert set(full["scope"].split()) == {"read", "write"}

    # A confidential client that is not allowed the grant authenticates but is refused.
    web_id, web_secret = web_client(server, "Recipe Box", callback.url, "--confidential")
    other = OAuth2Session(web_id, web_secret, token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(OAuthError) as refused:
        other.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    assert refused.value.error == "unauthorized_client"
    # And a wrong secret is invalid_client.
    wrong = OAuth2Session(client_id, secret + "x",
                          token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(OAuthError) as bad:
        wrong.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    assert bad.value.error == "invalid_client"
