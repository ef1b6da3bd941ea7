"""Authlib (and PyJWT's PyJWKClient) against a real server, HS256 and ES256: discovery
validated by Authlib's metadata classes, the device flow, refresh, introspection,
revocation and userinfo through ``OAuth2Session``, tokens verified from the JWKS.

The authorization code flow with a browser is in tests/e2e/test_authcode_browser.py;
this file covers the grants and endpoints it does not."""

from __future__ import annotations

import time
import warnings

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata
from interop_support import DEVICE_GRANT, approve_device, create_client, discovery

with warnings.catch_warnings():  # authlib.jose is deprecated in favour of joserfc
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken

pytestmark = pytest.mark.e2e


def test_discovery_documents_validate_with_authlib(server):
    meta = discovery(server)
    rfc8414 = requests.get(server.url + "/.well-known/oauth-authorization-server",
                           timeout=10).json()
    assert rfc8414 == meta
    AuthorizationServerMetadata(rfc8414).validate()
    # OpenID Provider Metadata, every rule Authlib checks except two known deviations
    # (docs/security.md, "Interoperability"): Discovery §3 wants jwks_uri even with a
    # symmetric signer (HS256 publishes no key), and RS256 in
    # id_token_signing_alg_values_supported (an ES256 server signs only ES256).
    known = {"validate_id_token_signing_alg_values_supported"}
    if server.alg == "HS256":
        known.add("validate_jwks_uri")
    oidc = OpenIDProviderMetadata(meta)
    for name in dir(oidc):
        if name.startswith("validate_") and name not in known:
            getattr(oidc, name)()
    with pytest.raises(ValueError, match="RS256"):
        oidc.validate_id_token_signing_alg_values_supported()
    assert meta["issuer"] == server.url
    assert meta["id_token_signing_alg_values_supported"] == [server.alg]
    assert set(meta["grant_types_supported"]) >= {
        "authorization_code", "refresh_token", "client_credentials", DEVICE_GRANT}
    # Every advertised endpoint exists (a GET on a POST-only endpoint is not a 404 of
    # a missing route: it names the method or answers).
    for name in ("token_endpoint", "device_authorization_endpoint", "revocation_endpoint",
                 "introspection_endpoint"):
        answer = requests.post(meta[name], timeout=10)
        assert answer.status_code in (400, 401), (name, answer.status_code)
    assert requests.get(meta["userinfo_endpoint"], timeout=10).status_code == 401
    assert requests.get(meta["authorization_endpoint"], timeout=10).status_code == 400
    jwks = requests.get(server.url + "/.well-known/jwks.json", timeout=10).json()
    if server.alg == "ES256":
        assert requests.get(meta["jwks_uri"], timeout=10).json() == jwks
        key_set = JsonWebKey.import_key_set(jwks)
        assert [k.as_dict()["kty"] for k in key_set.keys] == ["EC"]
    else:
        assert "jwks_uri" not in meta and jwks == {"keys": []}
    spec = requests.get(server.url + "/openapi.json", timeout=10).json()
    assert spec["servers"] == [{"url": server.url}]


def _device_flow(server, meta, session: OAuth2Session, client_id: str) -> dict:
    """RFC 8628 with Authlib's session for both requests (it authenticates the client
    the way it was configured)."""
    # Authlib has no helper for the device authorization request: plain HTTP, with
    # the client authenticated like the session will authenticate it.
    secret = session.client_secret
    code = requests.post(meta["device_authorization_endpoint"], timeout=10,
                         auth=(client_id, secret) if secret else None,
                         data={"scope": "email profile",
                               **({} if secret else {"client_id": client_id})})
    assert code.status_code == 200, code.text
    grant = code.json()
    # Polling before the person approves: authorization_pending.
    pending = requests.post(meta["token_endpoint"], timeout=10, data={
        "grant_type": DEVICE_GRANT, "device_code": grant["device_code"],
        **({} if secret else {"client_id": client_id})},
        auth=(client_id, secret) if secret else None)
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"
    approve_device(server, grant["verification_uri_complete"], grant["user_code"])
    time.sleep(grant["interval"])
    return session.fetch_token(meta["token_endpoint"], grant_type=DEVICE_GRANT,
                               device_code=grant["device_code"])


def _verify(server, meta, token: str, kind: str) -> dict:
    if server.alg == "ES256":
        key = jwt.PyJWKClient(meta["jwks_uri"], cache_keys=False).get_signing_key_from_jwt(
            token)
        claims = jwt.decode(token, key.key, algorithms=["ES256"], issuer=meta["issuer"],
                            options={"verify_aud": False})
        # Authlib's JOSE implementation agrees.
        key_set = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
        authlib_claims = JsonWebToken(["ES256"]).decode(token, key_set)
        authlib_claims.validate()
        assert authlib_claims["jti"] == claims["jti"]
    else:
        claims = jwt.decode(token, server.env["JWT_SECRET"], algorithms=["HS256"],
                            issuer=meta["issuer"], options={"verify_aud": False})
    assert claims["type"] == kind
    return claims


def test_authlib_device_flow_refresh_introspection_revocation(server):
    meta = discovery(server)
    client_id, secret = create_client(server, "Smart TV", "--confidential", "--device")
    session = OAuth2Session(client_id, secret, scope="email profile",
                            token_endpoint_auth_method="client_secret_basic")
    token = _device_flow(server, meta, session, client_id)
    assert token["token_type"] == "Bearer" and token["refresh_token"]
    access_claims = _verify(server, meta, token["access_token"], "access")
    assert access_claims["client_id"] == client_id
    _verify(server, meta, token["refresh_token"], "refresh")

    info = session.get(meta["userinfo_endpoint"], timeout=10)
    assert info.status_code == 200 and info.json()["sub"] == access_claims["sub"]

    # Introspection (RFC 7662) with the session's client authentication.
    answer = session.introspect_token(meta["introspection_endpoint"],
                                      token=token["access_token"],
                                      token_type_hint="access_token").json()
    assert answer["active"] and answer["client_id"] == client_id
    assert answer["sub"] == access_claims["sub"] and answer["username"] == "admin"
    refresh_info = session.introspect_token(meta["introspection_endpoint"],
                                            token=token["refresh_token"]).json()
    assert refresh_info["active"] and refresh_info["token_type"] == "refresh_token"

    # Refresh (rotation on): Authlib replaces the session's token.
    new = session.refresh_token(meta["token_endpoint"],
                                refresh_token=token["refresh_token"])
    assert new["access_token"] != token["access_token"]
    assert new["refresh_token"] != token["refresh_token"]
    assert session.token["access_token"] == new["access_token"]
    assert not session.introspect_token(meta["introspection_endpoint"],
                                        token=token["refresh_token"]).json()["active"]

    # Revocation (RFC 7009): the refresh token takes its access tokens with it.
    revoked = session.revoke_token(meta["revocation_endpoint"],
                                   token=new["refresh_token"],
                                   token_type_hint="refresh_token")
    assert revoked.status_code == 200
    for value in (new["refresh_token"], new["access_token"]):
        assert session.introspect_token(meta["introspection_endpoint"],
                                        token=value).json() == {"active": False}
    assert session.get(meta["userinfo_endpoint"], timeout=10).status_code == 401
    # Revoking again, or a token never issued: still 200 (RFC 7009 §2.2).
    assert session.revoke_token(meta["revocation_endpoint"],
                                token="never-issued").status_code == 200


def test_authlib_public_client_device_flow_and_client_secret_post(server):
    meta = discovery(server)
    public = OAuth2Session(server.client_id, scope="email profile",
                           token_endpoint_auth_method="none")
    token = _device_flow(server, meta, public, server.client_id)
    # (Authlib puts client_id in the body itself for token_endpoint_auth_method=none.)
    refreshed = public.refresh_token(meta["token_endpoint"],
                                     refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    # A public client revokes its own token identifying itself by client_id.
    revoked = public.revoke_token(meta["revocation_endpoint"],
                                  token=refreshed["access_token"])
    assert revoked.status_code == 200
    assert public.get(meta["userinfo_endpoint"], timeout=10).status_code == 401
    # A public client may not introspect.
    assert public.introspect_token(meta["introspection_endpoint"],
                                   token=refreshed["refresh_token"]).status_code == 401

    # client_secret_post for a confidential client works through Authlib too.
    client_id, secret = create_client(server, "Worker", "--confidential", "--no-device",
                                      "--client-credentials", "--scopes", "read")
    poster = OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_post")
    machine = poster.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    claims = _verify(server, meta, machine["access_token"], "access")
    assert claims["sub"] == f"client:{client_id}"
    assert poster.introspect_token(meta["introspection_endpoint"],
                                   token=machine["access_token"]).json()["active"]
