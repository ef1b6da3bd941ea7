"""oauthlib / requests-oauthlib against a real server (HS256 and ES256, on the store
chosen with --authgate-store): the client credentials grant with
BackendApplicationClient, and the refresh flow (explicit and automatic)."""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from interop_support import DEVICE_GRANT, approve_device, create_client, discovery
from oauthlib.oauth2 import BackendApplicationClient, DeviceClient, TokenExpiredError
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

pytestmark = pytest.mark.e2e


def verify(server, meta: dict, token: str, client_id: str) -> dict:
    """Claims of an access token, verified the way a resource server would."""
    if server.alg == "ES256":
        key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token)
        return jwt.decode(token, key.key, algorithms=["ES256"], issuer=meta["issuer"],
                          options={"verify_aud": False})
    assert "jwks_uri" not in meta  # a shared secret is never published
    return jwt.decode(token, server.env["JWT_SECRET"], algorithms=["HS256"],
                      options={"verify_aud": False})


def device_tokens(server, meta: dict, client_id: str, secret: str | None = None) -> dict:
    """Device flow with oauthlib's DeviceClient preparing the token request."""
    auth = HTTPBasicAuth(client_id, secret) if secret else None
    data = {} if secret else {"client_id": client_id}
    code = requests.post(meta["device_authorization_endpoint"], auth=auth, timeout=10,
                         data={**data, "scope": "email profile"})
    assert code.status_code == 200, code.text
    grant = code.json()
    approve_device(server, grant["verification_uri_complete"], grant["user_code"])
    client = DeviceClient(client_id)
    body = client.prepare_request_body(grant["device_code"],
                                       include_client_id=secret is None)
    assert f"grant_type={DEVICE_GRANT.replace(':', '%3A')}" in body
    response = requests.post(meta["token_endpoint"], data=body, auth=auth, timeout=10,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    return client.parse_request_body_response(response.text)


def test_backend_application_client_credentials(server):
    meta = discovery(server)
    client_id, secret = create_client(server, "Billing Service", "--confidential",
                                      "--no-device", "--client-credentials",
                                      "--scopes", "read write")
    session = OAuth2Session(client=BackendApplicationClient(client_id=client_id))
    # HTTP Basic (client_secret_basic), as requests-oauthlib sends it by default ...
    token = session.fetch_token(meta["token_endpoint"], client_id=client_id,
                                client_secret=secret, scope=["read"])
    assert token["token_type"] == "Bearer" and token["scope"] == ["read"]
    assert "refresh_token" not in token and token["expires_at"] > time.time() + 3000
    claims = verify(server, meta, token["access_token"], client_id)
    assert claims["sub"] == f"client:{client_id}" and claims["scope"] == "read"
    # ... and in the form (client_secret_post).
    post = OAuth2Session(client=BackendApplicationClient(client_id=client_id))
    form_token = post.fetch_token(meta["token_endpoint"], client_id=client_id,
                                  client_secret=secret, include_client_id=True,
                                  auth=False)
    assert set(form_token["scope"]) == {"read", "write"}
    # The bearer token is accepted where a resource server would check it.
    info = session.get(server.url + "/oauth/tokeninfo", timeout=10)
    assert info.status_code == 200 and info.json()["subject_type"] == "client"
    introspected = requests.post(meta["introspection_endpoint"], auth=(client_id, secret),
                                 data={"token": token["access_token"]}, timeout=10).json()
    assert introspected["active"] and introspected["client_id"] == client_id
    # A wrong secret is refused the way oauthlib understands (RFC 6749 §5.2).
    bad = OAuth2Session(client=BackendApplicationClient(client_id=client_id))
    with pytest.raises(Exception) as refused:
        bad.fetch_token(meta["token_endpoint"], client_id=client_id,
                        client_secret=secret + "x")
    assert "invalid_client" in str(refused.value)


def test_refresh_flow_explicit_and_automatic(server):
    meta = discovery(server)
    client_id = server.client_id  # the seeded public client (device flow)
    token = device_tokens(server, meta, client_id)
    assert token["refresh_token"] and set(token["scope"]) == {"email", "profile"}

    updates: list[dict] = []
    session = OAuth2Session(client_id, token=token,
                            auto_refresh_url=meta["token_endpoint"],
                            auto_refresh_kwargs={"client_id": client_id},
                            token_updater=updates.append)
    # Explicit refresh (rotation on): a new access and a new refresh token.
    refreshed = session.refresh_token(meta["token_endpoint"], client_id=client_id,
                                      auth=False)
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["refresh_token"] != token["refresh_token"]
    verify(server, meta, refreshed["access_token"], client_id)
    # The rotated-out refresh token is dead (reuse revokes the family).
    reuse = requests.post(meta["token_endpoint"], timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"],
        "client_id": client_id})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert session.get(meta["userinfo_endpoint"], timeout=10).status_code == 401

    # Automatic refresh: start over, mark the access token expired; the next request
    # refreshes first and hands the new token to token_updater.
    fresh = device_tokens(server, meta, client_id)
    fresh["expires_at"] = time.time() - 10
    session = OAuth2Session(client_id, token=fresh, auto_refresh_url=meta["token_endpoint"],
                            auto_refresh_kwargs={"client_id": client_id},
                            token_updater=updates.append)
    info = session.get(meta["userinfo_endpoint"], timeout=10)
    assert info.status_code == 200 and info.json()["preferred_username"] == "admin"
    assert len(updates) == 1 and updates[0]["access_token"] != fresh["access_token"]
    # Without an auto-refresh URL, oauthlib raises on the expired token instead.
    stale = dict(fresh, expires_at=time.time() - 10)
    with pytest.raises(TokenExpiredError):
        OAuth2Session(client_id, token=stale).get(meta["userinfo_endpoint"], timeout=10)


def test_refresh_flow_of_a_confidential_client_with_basic_auth(server):
    meta = discovery(server)
    client_id, secret = create_client(server, "TV App", "--confidential", "--device")
    token = device_tokens(server, meta, client_id, secret)
    session = OAuth2Session(client_id, token=token)
    refreshed = session.refresh_token(meta["token_endpoint"],
                                      auth=HTTPBasicAuth(client_id, secret))
    assert refreshed["access_token"] != token["access_token"]
    # Narrowing the scope (RFC 6749 §6).
    narrowing = OAuth2Session(client_id, token=refreshed, scope=["email"])
    narrower = narrowing.refresh_token(meta["token_endpoint"],
                                       auth=HTTPBasicAuth(client_id, secret))
    assert narrower["scope"] == ["email"]
    # Without the secret a confidential client cannot refresh.
    refused = requests.post(meta["token_endpoint"], timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": narrower["refresh_token"],
        "client_id": client_id})
    assert refused.status_code in (400, 401) and refused.json()["error"] == "invalid_client"
