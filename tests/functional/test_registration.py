"""Dynamic client registration: POST /oauth/register (RFC 7591), reading a
registration back (RFC 7592 §2.1), the pending -> approved workflow, and the
0002 migration that stores the registration access token's hash."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from authgate.models import AuditLog, OAuthClient
from authgate.services.secrets import sha256_hex, verify_client_secret
from authgate.testing import form

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
ENABLED = {"ENABLE_DYNAMIC_CLIENT_REGISTRATION": "true"}
INITIAL_TOKEN = "initial-access-token-0123456789abcdef"


@pytest.fixture
def dcr(make_app):
    def factory(**environ):
        return make_app(environ={**ENABLED, **environ})

    return factory


@pytest.fixture
def app(dcr):
    return dcr()


def register(app, body, *, status=201, headers=None):
    return app.testapp.post_json("/oauth/register", body, status=status, headers=headers or {})


def device_client(**extra):
    return {"client_name": "My CLI", "grant_types": [DEVICE],
            "token_endpoint_auth_method": "none", **extra}


def stored(app, client_id) -> OAuthClient:
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).one()
        db.expunge(client)
        return client


def admin_approve(app, client_id, action="approve", *, login=True):
    if login:
        app.login()
    page = app.testapp.get(f"/admin/clients/{client_id}")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return app.testapp.post(f"/admin/clients/{client_id}/{action}", {"csrf_token": csrf},
                            status=303)


# ---------------------------------------------------------------------------
# Switch and initial access token
# ---------------------------------------------------------------------------


def test_disabled_by_default_403_and_not_in_discovery(make_app):
    app = make_app()
    response = register(app, device_client(), status=403)
    assert response.json["error"] == "registration_not_supported"
    assert "ENABLE_DYNAMIC_CLIENT_REGISTRATION" in response.json["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    assert "registration_endpoint" not in app.testapp.get(
        "/.well-known/openid-configuration").json
    with app.db() as db:
        assert db.scalar(select(sa.func.count()).select_from(OAuthClient)) == 1  # seeded only


def test_enabled_is_listed_in_both_discovery_documents(app):
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        assert app.testapp.get(path).json["registration_endpoint"] == (
            "http://localhost:8080/oauth/register")


def test_initial_access_token_required_when_configured(dcr):
    app = dcr(DYNAMIC_CLIENT_REGISTRATION_TOKEN=INITIAL_TOKEN)
    missing = register(app, device_client(), status=401)
    assert missing.json["error"] == "invalid_token"
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="authgate"'
    wrong = register(app, device_client(), status=401,
                     headers={"Authorization": "Bearer not-the-token"})
    assert wrong.json["error"] == "invalid_token"
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    basic = register(app, device_client(), status=401,
                     headers={"Authorization": "Basic " + INITIAL_TOKEN})
    assert basic.json["error"] == "invalid_token"
    ok = register(app, device_client(), headers={"Authorization": f"Bearer {INITIAL_TOKEN}"})
    assert ok.json["client_id"]
    with app.db() as db:  # nothing was created by the refused attempts
        assert db.scalar(select(sa.func.count()).select_from(OAuthClient)) == 2


# ---------------------------------------------------------------------------
# The registration response (RFC 7591 §3.2.1)
# ---------------------------------------------------------------------------


def test_public_device_client_response_and_row(app):
    response = register(app, device_client(scope="openid profile"))
    assert response.status_int == 201
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.json
    assert re.fullmatch(r"[0-9a-f-]{36}", body["client_id"])
    assert "client_secret" not in body and "client_secret_expires_at" not in body
    assert body["client_name"] == "My CLI"
    assert body["grant_types"] == [DEVICE, "refresh_token"]
    assert body["response_types"] == []
    assert body["redirect_uris"] == []
    assert body["token_endpoint_auth_method"] == "none"
    assert body["scope"] == "openid profile"
    assert isinstance(body["client_id_issued_at"], int) and body["client_id_issued_at"] > 0
    assert body["registration_access_token"].startswith("agr_")
    assert body["registration_client_uri"] == (
        f"http://localhost:8080/oauth/register/{body['client_id']}")

    client = stored(app, body["client_id"])
    assert client.status == "pending"
    assert client.client_type == "public" and client.client_secret_hash == ""
    assert client.enable_device_flow and not client.enable_auth_code_flow
    assert not client.enable_client_credentials_flow
    assert client.user_id == "" and client.token_profile == "standard"
    # Only the hash of the registration access token is stored.
    assert client.registration_access_token_hash == sha256_hex(body["registration_access_token"])


def test_confidential_auth_code_client_gets_a_hashed_secret(app):
    body = register(app, {
        "client_name": "Web app", "redirect_uris": ["https://app.example.com/cb",
                                                    "http://127.0.0.1:8123/cb"],
        "token_endpoint_auth_method": "client_secret_post",
        "client_uri": "https://app.example.com", "logo_uri": "https://ignored.example/x.png",
    }).json
    # Defaults of RFC 7591 §2: the authorization_code grant and the code response type.
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["token_endpoint_auth_method"] == "client_secret_post"
    assert body["scope"] == "email profile"
    assert body["client_uri"] == "https://app.example.com"
    assert "logo_uri" not in body  # unknown metadata is ignored (RFC 7591 §2)
    assert body["client_secret"].startswith("ags_") and body["client_secret_expires_at"] == 0
    client = stored(app, body["client_id"])
    assert client.client_type == "confidential" and client.status == "pending"
    assert client.redirect_uris == ["https://app.example.com/cb", "http://127.0.0.1:8123/cb"]
    assert body["client_secret"] not in client.client_secret_hash
    assert verify_client_secret(client.client_secret_hash, body["client_secret"])


def test_refresh_tokens_off_leaves_refresh_token_out(dcr):
    app = dcr(ENABLE_REFRESH_TOKENS="false")
    body = register(app, device_client(grant_types=[DEVICE, "refresh_token"])).json
    assert body["grant_types"] == [DEVICE]


def test_short_device_code_grant_name_is_accepted(app):
    body = register(app, device_client(grant_types=["device_code"])).json
    assert body["grant_types"][0] == DEVICE


def test_registration_is_audited(app):
    body = register(app, device_client(), headers={"User-Agent": "dcr-test"}).json
    with app.db() as db:
        rows = db.scalars(select(AuditLog).where(AuditLog.resource_id == body["client_id"])
                          .order_by(AuditLog.event_type)).all()
        assert [r.event_type for r in rows] == ["CLIENT_CREATED", "CLIENT_REGISTERED"]
        for row in rows:
            assert row.resource_type == "CLIENT" and row.resource_name == "My CLI"
            assert row.actor_user_id is None and row.actor_ip == "127.0.0.1"
            assert row.user_agent == "dcr-test" and row.success
            assert row.details["status"] == "pending"
            assert row.details["client_type"] == "public"


# ---------------------------------------------------------------------------
# Pending until an administrator approves (issue 9 "Done when")
# ---------------------------------------------------------------------------


def test_registered_client_is_refused_until_an_admin_approves_it(app):
    client_id = register(app, device_client()).json["client_id"]

    refused = app.testapp.post("/oauth/device/code", {"client_id": client_id}, status=400)
    assert refused.json == {"error": "invalid_client", "error_description": "Client is not active"}

    # The admin console lists it as pending; the admin approves it.
    app.login()
    assert client_id in app.testapp.get("/admin/clients?status=pending").text
    admin_approve(app, client_id, login=False)
    assert stored(app, client_id).status == "active"

    # Now the whole device flow works.
    code = app.testapp.post("/oauth/device/code", {"client_id": client_id}, status=200).json
    page = app.testapp.get(f"/device?user_code={code['user_code']}")
    assert "My CLI" in page.text
    assert "Device authorized" in form(page, "/device/verify").submit(
        "action", value="approve").text
    tokens = app.testapp.post("/oauth/token", {"grant_type": DEVICE, "client_id": client_id,
                                               "device_code": code["device_code"]},
                              status=200).json
    assert tokens["access_token"] and tokens["token_type"] == "Bearer"
    with app.db() as db:
        assert db.scalar(select(AuditLog.event_type).where(
            AuditLog.event_type == "CLIENT_APPROVED",
            AuditLog.resource_id == client_id)) == "CLIENT_APPROVED"


def test_rejected_client_stays_refused(app):
    client_id = register(app, device_client()).json["client_id"]
    admin_approve(app, client_id, "reject")
    assert stored(app, client_id).status == "inactive"
    assert app.testapp.post("/oauth/device/code", {"client_id": client_id},
                            status=400).json["error"] == "invalid_client"


def test_pending_confidential_client_cannot_get_machine_tokens(app):
    from authgate.services import admin as svc

    body = register(app, {"client_name": "Robot", "grant_types": ["client_credentials"],
                          "token_endpoint_auth_method": "client_secret_basic"}).json
    assert body["grant_types"] == ["client_credentials"] and body["response_types"] == []
    creds = (body["client_id"], body["client_secret"])
    refused = app.testapp.post("/oauth/token", {"grant_type": "client_credentials"},
                               extra_environ={"HTTP_AUTHORIZATION": _basic(*creds)},
                               status=401)
    assert refused.json["error_description"] == "Client is not active"
    with app.db() as db:
        svc.set_client_status(db, db.scalars(select(OAuthClient).where(
            OAuthClient.client_id == body["client_id"])).one(), "active")
    granted = app.testapp.post("/oauth/token", {"grant_type": "client_credentials"},
                               extra_environ={"HTTP_AUTHORIZATION": _basic(*creds)},
                               status=200)
    assert granted.json["access_token"]


def _basic(client_id, secret):
    import base64

    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# ---------------------------------------------------------------------------
# Metadata validation (RFC 7591 §2, §3.2.2)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "error", "words"), [
    ({}, "invalid_client_metadata", "client_name is required"),
    ({"client_name": "  "}, "invalid_client_metadata", "client_name is required"),
    ({"client_name": 7}, "invalid_client_metadata", "client_name must be a string"),
    ({"client_name": "x" * 256}, "invalid_client_metadata", "at most 255"),
    (device_client(grant_types=["password"]), "invalid_client_metadata", "password"),
    (device_client(grant_types=["implicit", DEVICE]), "invalid_client_metadata", "implicit"),
    (device_client(grant_types=["refresh_token"]), "invalid_client_metadata",
     "must include"),
    (device_client(grant_types=DEVICE), "invalid_client_metadata", "array of strings"),
    (device_client(grant_types=[DEVICE, "client_credentials"]), "invalid_client_metadata",
     "confidential"),
    (device_client(token_endpoint_auth_method="private_key_jwt"), "invalid_client_metadata",
     "token_endpoint_auth_method"),
    (device_client(scope="email admin"), "invalid_client_metadata", "admin"),
    (device_client(scope=["email"]), "invalid_client_metadata", "scope must be a string"),
    (device_client(response_types=["code"]), "invalid_client_metadata", "disagree"),
    (device_client(response_types=["token"]), "invalid_client_metadata", "token"),
    ({"client_name": "Web", "redirect_uris": ["https://a.example/cb"],
      "response_types": []}, "invalid_client_metadata", "disagree"),
    (device_client(client_uri="javascript:alert(1)"), "invalid_client_metadata", "client_uri"),
    ({"client_name": "Web"}, "invalid_redirect_uri", "at least one redirect URI"),
    ({"client_name": "Web", "redirect_uris": "https://a.example/cb"}, "invalid_redirect_uri",
     "array of strings"),
    ({"client_name": "Web", "redirect_uris": ["/cb"]}, "invalid_redirect_uri", "absolute"),
    ({"client_name": "Web", "redirect_uris": ["http://app.example.com/cb"]},
     "invalid_redirect_uri", "https"),
    ({"client_name": "Web", "redirect_uris": ["https://app.example.com/cb#x"]},
     "invalid_redirect_uri", "fragment"),
    ({"client_name": "Web", "redirect_uris": ["https://user:pw@app.example.com/cb"]},
     "invalid_redirect_uri", "user name"),
    ({"client_name": "Web", "redirect_uris": ["myapp://cb"]}, "invalid_redirect_uri",
     "absolute https"),
    ({"client_name": "Web", "redirect_uris": ["https://a.example:99999/cb"]},
     "invalid_redirect_uri", "Malformed"),
    # A device client may list redirect URIs, and they are checked too.
    (device_client(redirect_uris=["http://evil.example/cb"]), "invalid_redirect_uri", "https"),
])
def test_invalid_metadata(app, body, error, words):
    response = register(app, body, status=400)
    assert response.json["error"] == error
    assert words in response.json["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


def test_loopback_http_redirects_are_allowed(app):
    uris = ["http://localhost:8000/cb", "http://127.0.0.1/cb", "http://[::1]:9000/cb"]
    body = register(app, {"client_name": "Native", "redirect_uris": uris,
                          "token_endpoint_auth_method": "none"}).json
    assert body["redirect_uris"] == uris


def test_body_must_be_a_json_object(app):
    form_post = app.testapp.post("/oauth/register", {"client_name": "x"}, status=400)
    assert form_post.json["error"] == "invalid_client_metadata"
    assert "application/json" in form_post.json["error_description"]
    bad = app.testapp.post("/oauth/register", "{not json", status=400,
                           content_type="application/json")
    assert bad.json["error"] == "invalid_client_metadata"
    array = app.testapp.post_json("/oauth/register", [device_client()], status=400)
    assert "JSON object" in array.json["error_description"]


def test_disabled_check_comes_before_authentication_and_validation(make_app):
    app = make_app(environ={"DYNAMIC_CLIENT_REGISTRATION_TOKEN": INITIAL_TOKEN})
    assert register(app, {}, status=403).json["error"] == "registration_not_supported"


# ---------------------------------------------------------------------------
# RFC 7592 §2.1: reading a registration back
# ---------------------------------------------------------------------------


def read(app, client_id, token=None, status=200):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.testapp.get(f"/oauth/register/{client_id}", headers=headers, status=status)


def test_read_registration_with_its_access_token(app):
    created = register(app, {"client_name": "Web", "redirect_uris": ["https://a.example/cb"],
                             "client_uri": "https://a.example"}).json
    got = read(app, created["client_id"], created["registration_access_token"])
    assert got.headers["Cache-Control"] == "no-store"
    body = got.json
    for key in ("client_id", "client_name", "redirect_uris", "grant_types", "response_types",
                "scope", "client_id_issued_at", "client_secret_expires_at",
                "registration_access_token", "registration_client_uri", "client_uri",
                "token_endpoint_auth_method"):
        assert body[key] == created[key], key
    assert "client_secret" not in body  # stored hashed: shown once, at registration


def test_read_registration_refusals(app):
    first = register(app, device_client()).json
    second = register(app, device_client(client_name="Other")).json
    no_token = read(app, first["client_id"], status=401)
    assert no_token.json["error"] == "invalid_token"
    assert no_token.headers["WWW-Authenticate"] == 'Bearer realm="authgate"'
    # Another client's token, a wrong token, an unknown client: all alike (RFC 7592 §2.1).
    for client_id, token in ((first["client_id"], second["registration_access_token"]),
                             (first["client_id"], "agr_wrong"),
                             ("00000000-0000-4000-8000-000000000000",
                              first["registration_access_token"])):
        response = read(app, client_id, token, status=401)
        assert response.json["error"] == "invalid_token"
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # The seeded client was not registered: it has no registration token at all.
    seeded = app.default_client_id
    assert read(app, seeded, "x", status=401).json["error"] == "invalid_token"


def test_read_is_off_when_registration_is_off(make_app):
    app = make_app()
    assert read(app, "anything", "x", status=403).json["error"] == "registration_not_supported"


def test_admin_pages_show_a_registered_client(app):
    client_id = register(app, device_client()).json["client_id"]
    app.login()
    detail = app.testapp.get(f"/admin/clients/{client_id}")
    assert "My CLI" in detail.text and "pending" in detail.text.lower()


# ---------------------------------------------------------------------------
# Migration 0002 (both stores: run with --authgate-store=postgres too)
# ---------------------------------------------------------------------------


def _columns(engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns("oauth_clients")}


def test_migration_0002_up_and_down_keeps_rows(make_app):
    from alembic import command

    from authgate.db import alembic_config, current_revision, head_revision, migrate

    app = make_app()
    engine = app.runtime.engine
    assert current_revision(engine) == head_revision(engine)
    assert "registration_access_token_hash" in _columns(engine)
    client_id = app.default_client_id

    with engine.begin() as connection:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0001")
    assert current_revision(engine) == "0001"
    assert "registration_access_token_hash" not in _columns(engine)

    migrate(engine)
    assert current_revision(engine) == head_revision(engine)
    with engine.connect() as connection:
        row = connection.execute(sa.text(
            "SELECT client_id, registration_access_token_hash FROM oauth_clients")).one()
    assert tuple(row) == (client_id, "")  # existing rows get the empty default
    # The model and the migrated table agree.
    assert _columns(engine) == {c.name for c in OAuthClient.__table__.columns}
    # And the app still registers clients on the migrated schema.
    register(make_app(environ=ENABLED), device_client())
