"""The refresh-token grant (RFC 6749 §6): fixed and rotation modes, reuse detection,
client authentication and the race between two refreshes of one token."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote_plus

import jwt
import pytest
from sqlalchemy import select, update

from authgate.models import AuditLog, OAuthClient, Token, User, utcnow
from authgate.services import refresh as refresh_service
from authgate.services import tokens
from authgate.services.errors import OAuthError
from authgate.services.secrets import hash_client_secret, sha256_hex
from authgate.testing import TEST_JWT_SECRET, form

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ROTATION = {"authgate.enable_token_rotation": "true"}


def device_flow_tokens(app, client_id=None):
    client_id = client_id or app.default_client_id
    code = app.testapp.post("/oauth/device/code", {"client_id": client_id}).json
    app.login()
    page = app.testapp.get(f"/device?user_code={code['user_code']}")
    form(page, "/device/verify").submit("action", value="approve")
    return app.testapp.post("/oauth/token", {"grant_type": GRANT, "client_id": client_id,
                                             "device_code": code["device_code"]}).json


def issue(app, client_id=None, scopes=("email", "profile")):
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(
            OAuthClient.client_id == (client_id or app.default_client_id))).one()
        subject = db.scalars(select(User.id).where(User.username == "admin")).one()
        issued = tokens.issue(db, app.runtime.signer, app.runtime.settings, subject=subject,
                              client=client, scopes=list(scopes), grant_type=GRANT)
        return issued.access_token, issued.refresh_token


def add_client(app, *, secret=None, status="active", profile="standard"):
    client_id = str(uuid.uuid4())
    with app.db() as db:
        db.add(OAuthClient(
            client_id=client_id, name="Backend app", scopes="email profile read",
            client_type="confidential" if secret else "public",
            client_secret_hash=hash_client_secret(secret) if secret else "",
            status=status, token_profile=profile))
    return client_id


def post_refresh(app, refresh_token, client_id=None, status="*", headers=None, **extra):
    params = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    if client_id is not False:
        params["client_id"] = client_id or app.default_client_id
    return app.testapp.post("/oauth/token", params, headers=headers or {}, status=status)


def basic(client_id, secret):
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def row_of(app, token):
    with app.db() as db:
        return db.scalars(select(Token).where(Token.token_hash == sha256_hex(token))).one()


def events(app, event_type):
    with app.db() as db:
        return db.scalars(select(AuditLog).where(AuditLog.event_type == event_type)).all()


# ---------------------------------------------------------------------------
# Fixed mode (default)
# ---------------------------------------------------------------------------


def test_fixed_mode_returns_the_same_refresh_token(app):
    first = device_flow_tokens(app)
    before = row_of(app, first["refresh_token"])
    assert before.last_used_at is None
    for _ in range(3):
        response = post_refresh(app, first["refresh_token"], status=200)
        body = response.json
        assert body["refresh_token"] == first["refresh_token"]
        assert body["access_token"] != first["access_token"]
        assert body["token_type"] == "Bearer" and body["scope"] == "email profile"
        assert response.headers["Cache-Control"] == "no-store"
    after = row_of(app, first["refresh_token"])
    assert after.status == "active" and after.last_used_at is not None
    assert after.expires_at == before.expires_at  # keeps its original expiry
    new_access = row_of(app, body["access_token"])
    assert new_access.parent_token_id == after.id
    assert new_access.token_family_id == after.token_family_id == after.id
    assert new_access.token_category == "access" and new_access.status == "active"
    claims = jwt.decode(body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["type"] == "access" and claims["sub"] == after.user_id
    assert len(events(app, "TOKEN_REFRESHED")) == 3
    # the old access token stays valid in fixed mode
    assert row_of(app, first["access_token"]).status == "active"


def test_narrower_scope_is_applied_to_the_new_access_token(app):
    _, refresh = issue(app)
    body = post_refresh(app, refresh, scope="email", status=200).json
    assert body["scope"] == "email"
    assert jwt.decode(body["access_token"], options={"verify_signature": False})[
        "scope"] == "email"
    assert row_of(app, body["access_token"]).scopes == "email"
    assert row_of(app, refresh).scopes == "email profile"  # the grant itself is unchanged


def test_wider_scope_is_invalid_scope(app):
    _, refresh = issue(app)
    response = post_refresh(app, refresh, scope="email read", status=400)
    assert response.json == {"error": "invalid_scope",
                             "error_description": "Requested scope exceeds original grant"}


def test_missing_parameters(app):
    assert post_refresh(app, "", status=400).json["error"] == "invalid_request"
    _, refresh = issue(app)
    response = post_refresh(app, refresh, client_id=False, status=400)
    assert response.json["error"] == "invalid_request"


def test_unsupported_grant_lists_refresh(app):
    response = app.testapp.post("/oauth/token", {"grant_type": "password"}, status=400)
    assert response.json["error"] == "unsupported_grant_type"
    assert "refresh_token" in response.json["error_description"]


@pytest.mark.parametrize("case", ["unknown", "access_token", "revoked", "disabled", "expired",
                                  "jwt_expired", "bad_signature"])
def test_invalid_refresh_tokens_are_invalid_grant(app, case):
    access, refresh = issue(app)
    token = refresh
    if case == "unknown":
        token = "nope"
    elif case == "access_token":
        token = access
    elif case in ("revoked", "disabled"):
        with app.db() as db:
            db.execute(update(Token).where(Token.token_hash == sha256_hex(refresh))
                       .values(status=case))
    elif case == "expired":
        with app.db() as db:
            db.execute(update(Token).where(Token.token_hash == sha256_hex(refresh))
                       .values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    elif case in ("jwt_expired", "bad_signature"):
        # A row that matches the presented text, but whose JWT does not verify.
        claims = jwt.decode(refresh, options={"verify_signature": False})
        if case == "jwt_expired":
            token = jwt.encode({**claims, "exp": 1000}, TEST_JWT_SECRET, algorithm="HS256")
        else:
            token = jwt.encode(claims, "some-other-secret-long-enough-0123456789",
                               algorithm="HS256")
        with app.db() as db:
            db.execute(update(Token).where(Token.token_hash == sha256_hex(refresh))
                       .values(token_hash=sha256_hex(token)))
    response = post_refresh(app, token, status=400)
    assert response.json["error"] == "invalid_grant"
    assert not events(app, "SUSPICIOUS_ACTIVITY")  # fixed mode: no reuse detection


def test_another_clients_refresh_token_is_invalid_grant_not_401(app):
    _, refresh = issue(app)
    other = add_client(app)
    response = post_refresh(app, refresh, client_id=other, status=400)
    assert response.json["error"] == "invalid_grant"
    assert row_of(app, refresh).status == "active"


def test_inactive_client_cannot_refresh(app):
    _, refresh = issue(app)
    with app.db() as db:
        db.execute(update(OAuthClient).where(OAuthClient.client_id == app.default_client_id)
                   .values(status="inactive"))
    assert post_refresh(app, refresh, status=400).json["error"] == "invalid_client"


def test_disabled_user_cannot_refresh(app):
    _, refresh = issue(app)
    with app.db() as db:
        db.execute(update(User).where(User.username == "admin").values(is_active=False))
    assert post_refresh(app, refresh, status=400).json["error"] == "invalid_grant"


def test_profile_is_re_resolved_on_refresh(app):
    _, refresh = issue(app)
    with app.db() as db:
        db.execute(update(OAuthClient).where(OAuthClient.client_id == app.default_client_id)
                   .values(token_profile="short"))
    body = post_refresh(app, refresh, status=200).json
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900


# ---------------------------------------------------------------------------
# Client authentication (RFC 6749 §2.3): confidential clients must authenticate
# ---------------------------------------------------------------------------

SECRET = "s3cr+t/with:odd&chars=%"


def test_confidential_client_must_authenticate(app):
    client_id = add_client(app, secret=SECRET)
    _, refresh = issue(app, client_id)
    missing = post_refresh(app, refresh, client_id=client_id, status=401)
    assert missing.json["error"] == "invalid_client"
    assert missing.headers["WWW-Authenticate"] == 'Basic realm="authgate"'
    wrong = post_refresh(app, refresh, client_id=client_id, client_secret="wrong", status=401)
    assert wrong.json == {"error": "invalid_client",
                          "error_description": "Client authentication failed"}
    wrong_basic = post_refresh(app, refresh, client_id=False, headers=basic(client_id, "x"),
                               status=401)
    assert wrong_basic.headers["WWW-Authenticate"] == 'Basic realm="authgate"'
    assert row_of(app, refresh).last_used_at is None  # nothing happened


def test_confidential_client_with_form_secret(app):
    client_id = add_client(app, secret=SECRET)
    _, refresh = issue(app, client_id)
    body = post_refresh(app, refresh, client_id=client_id, client_secret=SECRET,
                        status=200).json
    assert body["refresh_token"] == refresh


def test_basic_credentials_are_form_urldecoded(app):
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before base64."""
    client_id = add_client(app, secret=SECRET)
    _, refresh = issue(app, client_id)
    headers = basic(client_id, SECRET)
    assert "%2B" in base64.b64decode(headers["Authorization"][6:]).decode()
    body = post_refresh(app, refresh, client_id=False, headers=headers, status=200).json
    assert body["access_token"]


# ---------------------------------------------------------------------------
# Rotation mode
# ---------------------------------------------------------------------------


def test_rotation_issues_a_new_refresh_token_and_revokes_the_old(make_app):
    app = make_app(ROTATION)
    first = device_flow_tokens(app)
    second = post_refresh(app, first["refresh_token"], status=200).json
    assert second["refresh_token"] != first["refresh_token"]
    old, new = row_of(app, first["refresh_token"]), row_of(app, second["refresh_token"])
    new_access = row_of(app, second["access_token"])
    assert old.status == "revoked" and new.status == "active"
    assert new.token_family_id == old.token_family_id == old.id
    assert new.parent_token_id == old.id
    assert new_access.token_family_id == old.id and new_access.parent_token_id == new.id
    claims = jwt.decode(second["refresh_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["type"] == "refresh" and claims["exp"] - claims["iat"] == 720 * 3600
    third = post_refresh(app, second["refresh_token"], status=200).json
    assert row_of(app, third["refresh_token"]).token_family_id == old.id
    assert len(events(app, "TOKEN_REFRESHED")) == 2
    issued = events(app, "REFRESH_TOKEN_ISSUED")
    assert len(issued) == 3  # device flow + two rotations
    assert not events(app, "SUSPICIOUS_ACTIVITY")


@pytest.mark.parametrize("reused_status", ["revoked", "disabled"])
def test_reuse_revokes_the_whole_family_and_is_audited(make_app, reused_status):
    app = make_app(ROTATION)
    first = device_flow_tokens(app)
    second = post_refresh(app, first["refresh_token"], status=200).json
    third = post_refresh(app, second["refresh_token"], status=200).json
    # An unrelated session of the same user must survive.
    _, unrelated = issue(app)

    presented = first["refresh_token"]
    if reused_status == "disabled":
        presented = third["refresh_token"]
        with app.db() as db:
            db.execute(update(Token).where(Token.token_hash == sha256_hex(presented))
                       .values(status="disabled"))
    response = post_refresh(app, presented, status=400)
    assert response.json["error"] == "invalid_grant"

    family = row_of(app, first["refresh_token"]).token_family_id
    with app.db() as db:
        statuses = {r.id: r.status for r in db.scalars(
            select(Token).where(Token.token_family_id == family))}
    assert len(statuses) == 6 and set(statuses.values()) == {"revoked"}
    assert row_of(app, unrelated).status == "active"
    # The latest, legitimately rotated tokens are dead too.
    assert post_refresh(app, third["refresh_token"], status=400).json["error"] == (
        "invalid_grant")
    app.testapp.get("/oauth/tokeninfo", status=401,
                    headers={"Authorization": f"Bearer {third['access_token']}"})

    (alert, *rest) = events(app, "SUSPICIOUS_ACTIVITY")
    assert alert.severity == "CRITICAL" and alert.success is False
    assert alert.details["token_family_id"] == family
    assert alert.details["token_status"] == reused_status
    assert alert.details["tokens_revoked"] >= 1
    assert alert.resource_type == "TOKEN"


def test_reuse_in_fixed_mode_is_just_invalid_grant(app):
    first = device_flow_tokens(app)
    with app.db() as db:
        db.execute(update(Token).where(Token.token_hash == sha256_hex(first["refresh_token"]))
                   .values(status="revoked"))
    assert post_refresh(app, first["refresh_token"], status=400).json["error"] == (
        "invalid_grant")
    assert row_of(app, first["access_token"]).status == "active"
    assert not events(app, "SUSPICIOUS_ACTIVITY")


def test_a_bad_scope_does_not_consume_a_rotating_token(make_app):
    app = make_app(ROTATION)
    _, refresh = issue(app)
    post_refresh(app, refresh, scope="admin", status=400)
    assert row_of(app, refresh).status == "active"
    body = post_refresh(app, refresh, scope="profile", status=200).json
    assert body["scope"] == "profile"
    assert row_of(app, body["refresh_token"]).scopes == "email profile"  # §6: same scope


def test_conditional_update_lets_only_one_of_two_refreshes_win(make_app):
    """Both requests load the token while it is active; the conditional UPDATE
    decides: the first to write wins, the second gets invalid_grant.  The second
    is a use of an already-rotated token, so it counts as reuse and the family
    (including the winner's new tokens) is revoked when its transaction commits."""
    app = make_app(ROTATION)
    _, refresh = issue(app)
    settings, signer = app.runtime.settings, app.runtime.signer

    def client_in(db):
        return db.scalars(select(OAuthClient).where(
            OAuthClient.client_id == app.default_client_id)).one()

    with app.db() as slow:
        slow_client = client_in(slow)
        slow_row = refresh_service.load(slow, signer, settings, client=slow_client,
                                        token_text=refresh)
        assert slow_row.status == "active"
        with app.db() as fast:
            fast_client = client_in(fast)
            row = refresh_service.load(fast, signer, settings, client=fast_client,
                                       token_text=refresh)
            winner = refresh_service.exchange(fast, signer, settings, client=fast_client,
                                              row=row, token_text=refresh)
        # "fast" has committed; "slow" still believes the token is active.
        with app.db() as db:
            rows = db.scalars(select(Token).where(Token.token_category == "refresh")).all()
        assert sorted(r.status for r in rows) == ["active", "revoked"]
        assert {r.token_hash for r in rows if r.status == "active"} == {
            sha256_hex(winner.refresh_token)}

        with pytest.raises(refresh_service.RefreshTokenReused) as lost:
            refresh_service.exchange(slow, signer, settings, client=slow_client,
                                     row=slow_row, token_text=refresh)
        assert lost.value.error == "invalid_grant"
        # the first access token, and the winner's new refresh and access tokens
        assert lost.value.revoked == 3
    with app.db() as db:
        rows = db.scalars(select(Token).where(Token.token_category == "refresh")).all()
    assert len(rows) == 2  # the loser minted nothing
    assert {r.status for r in rows} == {"revoked"}


def test_conditional_update_in_fixed_mode_loses_to_a_revocation(app):
    _, refresh = issue(app)
    settings, signer = app.runtime.settings, app.runtime.signer
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(
            OAuthClient.client_id == app.default_client_id)).one()
        row = refresh_service.load(db, signer, settings, client=client, token_text=refresh)
        with app.db() as other:
            other.execute(update(Token).where(Token.id == row.id).values(status="revoked"))
        with pytest.raises(OAuthError) as lost:
            refresh_service.exchange(db, signer, settings, client=client, row=row,
                                     token_text=refresh)
        assert lost.value.error == "invalid_grant"
        assert not isinstance(lost.value, refresh_service.RefreshTokenReused)
    with app.db() as db:
        assert db.scalars(select(Token).where(Token.token_category == "access")).all()[
            0].status == "active"


def test_ten_simultaneous_refreshes_over_http_one_success(make_app):
    """A real threaded server (waitress) on the real SQLite file."""
    from webtest.http import StopableWSGIServer

    app = make_app(ROTATION)
    _, refresh = issue(app)
    server = StopableWSGIServer.create(app.testapp.app, threads=10)
    server.wait()
    url = server.application_url + "oauth/token"
    data = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": refresh,
                                   "client_id": app.default_client_id}).encode()
    barrier = threading.Barrier(10)

    def attempt(_):
        barrier.wait()
        try:
            with urllib.request.urlopen(url, data=data, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    try:
        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(attempt, range(10)))
    finally:
        server.shutdown()
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [400] * 9, results
    assert {body["error"] for status, body in results if status == 400} == {"invalid_grant"}
    with app.db() as db:
        refresh_rows = db.scalars(select(Token).where(Token.token_category == "refresh")).all()
        family = {t.status for t in db.scalars(select(Token))}
    # Exactly one new refresh token was minted; the nine other uses of the same
    # token are reuse, so the family ends revoked and each is audited.
    assert len(refresh_rows) == 2
    assert family == {"revoked"}
    assert len(events(app, "SUSPICIOUS_ACTIVITY")) == 9
