"""The client credentials grant (RFC 6749 §4.4) through the WSGI app."""

from __future__ import annotations

import base64
from urllib.parse import quote_plus

import pytest
from sqlalchemy import select

from authgate.cli import create_oauth_client
from authgate.models import AuditLog, Token
from authgate.services.secrets import sha256_hex


def machine_client(app, *, scopes="read write openid", enabled=True, confidential=True,
                   status="active"):
    with app.db() as db:
        client, secret = create_oauth_client(
            db, name="Billing Service", confidential=confidential,
            device=not (enabled and confidential),
            client_credentials=enabled and confidential, scopes=scopes)
        client.status = status
        return client.client_id, secret


def basic(client_id, secret):
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def request_token(app, *, headers=None, status="*", **data):
    return app.testapp.post("/oauth/token", {"grant_type": "client_credentials", **data},
                            headers=headers or {}, status=status)


def test_basic_auth_gets_a_machine_token(app):
    client_id, secret = machine_client(app)
    response = request_token(app, headers=basic(client_id, secret), scope="read", status=200)
    body = response.json
    assert response.headers["Cache-Control"] == "no-store"
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["scope"] == "read"
    assert 3590 <= body["expires_in"] <= 3600
    info = app.testapp.get("/oauth/tokeninfo", status=200,
                           headers={"Authorization": f"Bearer {body['access_token']}"}).json
    assert info["user_id"] == f"client:{client_id}" and info["subject_type"] == "client"
    with app.db() as db:
        row = db.scalars(select(Token).where(
            Token.token_hash == sha256_hex(body["access_token"]))).one()
        assert row.grant_type == "client_credentials" and row.token_category == "access"
        event = db.scalars(select(AuditLog).where(
            AuditLog.event_type == "CLIENT_CREDENTIALS_TOKEN_ISSUED")).one()
        assert event.actor_user_id == f"client:{client_id}"
        assert event.details["client_auth"] == "client_secret_basic"
        assert db.scalars(select(Token)).all() == [row]  # no refresh token


def test_form_auth_gets_a_machine_token(app):
    client_id, secret = machine_client(app)
    body = request_token(app, client_id=client_id, client_secret=secret, scope="read write",
                         status=200).json
    assert body["scope"] == "read write" and "refresh_token" not in body


def test_no_scope_means_client_scopes_without_user_scopes(app):
    client_id, secret = machine_client(app, scopes="read openid offline_access write")
    body = request_token(app, headers=basic(client_id, secret), status=200).json
    assert body["scope"] == "read write"


@pytest.mark.parametrize("scope", ["openid", "read offline_access", "admin", "read delete"])
def test_scope_must_be_a_subset_without_user_scopes(app, scope):
    client_id, secret = machine_client(app)
    response = request_token(app, headers=basic(client_id, secret), scope=scope, status=400)
    assert response.json["error"] == "invalid_scope"


def test_lifetime_setting(make_app):
    app = make_app({"authgate.client_credentials_token_expiration": "5m",
                    "authgate.token_profile_standard_access_ttl": "2h"})
    client_id, secret = machine_client(app)
    body = request_token(app, headers=basic(client_id, secret), status=200).json
    assert 290 <= body["expires_in"] <= 300


def test_public_client_is_refused_with_invalid_client(app):
    client_id, _ = machine_client(app, confidential=False)
    response = request_token(app, client_id=client_id, status=401)
    assert response.json["error"] == "invalid_client"
    assert "Public clients" in response.json["error_description"]
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("case", ["nothing", "no_secret", "wrong_secret", "unknown",
                                  "wrong_basic"])
def test_failed_client_authentication_is_401(app, case):
    client_id, secret = machine_client(app)
    headers, data = {}, {}
    if case == "no_secret":
        data = {"client_id": client_id}
    elif case == "wrong_secret":
        data = {"client_id": client_id, "client_secret": "ags_not-it"}
    elif case == "unknown":
        headers = basic("no-such-client", secret)
    elif case == "wrong_basic":
        headers = basic(client_id, secret + "x")
    response = request_token(app, headers=headers, status=401, **data)
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"] == 'Basic realm="authgate"'
    with app.db() as db:
        assert db.scalars(select(Token)).first() is None


def test_flow_disabled_is_unauthorized_client(app):
    client_id, secret = machine_client(app, enabled=False)
    response = request_token(app, headers=basic(client_id, secret), status=400)
    assert response.json["error"] == "unauthorized_client"


def test_inactive_client_is_invalid_client(app):
    client_id, secret = machine_client(app, status="pending")
    response = request_token(app, headers=basic(client_id, secret), status=401)
    assert response.json["error"] == "invalid_client"


def test_basic_and_form_secret_together_is_invalid_request(app):
    client_id, secret = machine_client(app)
    response = request_token(app, headers=basic(client_id, secret), client_secret=secret,
                             status=400)
    assert response.json["error"] == "invalid_request"


def test_machine_token_is_not_for_userinfo(app):
    client_id, secret = machine_client(app)
    token = request_token(app, headers=basic(client_id, secret), status=200).json
    response = app.testapp.get("/oauth/userinfo", status=401,
                               headers={"Authorization": f"Bearer {token['access_token']}"})
    assert response.json["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_machine_token_introspects_with_client_subject(app):
    client_id, secret = machine_client(app)
    token = request_token(app, headers=basic(client_id, secret), status=200).json
    body = app.testapp.post("/oauth/introspect", {"token": token["access_token"]},
                            headers=basic(client_id, secret), status=200).json
    assert body["active"] and body["sub"] == f"client:{client_id}" and "username" not in body


def test_bcrypt_secret_from_the_go_original_is_stored_in_the_fast_form(app):
    import bcrypt

    from authgate.models import OAuthClient
    from authgate.services.secrets import PREFIX

    client_id, secret = machine_client(app)
    by_id = select(OAuthClient).where(OAuthClient.client_id == client_id)
    with app.db() as db:
        db.scalars(by_id).one().client_secret_hash = bcrypt.hashpw(
            secret.encode(), bcrypt.gensalt(rounds=4)).decode()
    # A failed attempt leaves the client (bcrypt hash and all) in the client cache,
    # so the next request authenticates against the cached copy.
    assert request_token(app, headers=basic(client_id, "wrong"), status=401
                         ).json["error"] == "invalid_client"
    request_token(app, headers=basic(client_id, secret), status=200)
    with app.db() as db:
        stored = db.scalars(by_id).one().client_secret_hash
    assert stored.startswith(PREFIX + "$") and secret not in stored
    # The fast form is what is checked from now on, for the right and the wrong secret.
    request_token(app, headers=basic(client_id, secret), status=200)
    assert request_token(app, headers=basic(client_id, "wrong"), status=401
                         ).json["error"] == "invalid_client"
    with app.db() as db:
        assert db.scalars(by_id).one().client_secret_hash == stored
