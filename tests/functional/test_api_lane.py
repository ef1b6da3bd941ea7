"""The API lane (authgate.views.api_lane): the hot OAuth calls answered in front of
the router, and everything it cannot answer exactly as Pyramid would handed to it.

Each test looks at what a client sees (status, body, headers) and at which path
answered: a counter wraps the full stack behind the lane.
"""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote_plus

import pytest
from sqlalchemy import select

from authgate.cli import create_oauth_client
from authgate.models import AuditLog, OAuthClient
from authgate.services import tokens
from authgate.testing import form
from authgate.views.api_lane import ApiLane

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
FORM = "application/x-www-form-urlencoded"


class FullStack:
    """Counts the requests that reach the router behind the lane."""

    def __init__(self, lane: ApiLane):
        self.inner = lane.app
        self.calls: list[str] = []
        lane.app = self

    def __call__(self, environ, start_response):
        self.calls.append(environ["PATH_INFO"])
        return self.inner(environ, start_response)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def lane_of(app) -> ApiLane:
    wsgi = app.testapp.app
    while not isinstance(wsgi, ApiLane):
        wsgi = wsgi.app
    return wsgi


@pytest.fixture
def lane_app(make_app):
    def build(**environ):
        # A client cache that cannot expire in the middle of a test on a slow machine.
        app = make_app(environ={"CLIENT_CACHE_TTL": "1h", **environ})
        app.full_stack = FullStack(lane_of(app))
        return app
    return build


def machine_client(app, **flags):
    with app.db() as db:
        client, secret = create_oauth_client(db, name="Billing", confidential=True,
                                             device=False, client_credentials=True,
                                             scopes="read write", **flags)
        return client.client_id, secret


def basic(client_id, secret):
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def cc(app, client_id, secret, status=200, **extra):
    return app.testapp.post("/oauth/token", {"grant_type": "client_credentials", **extra},
                            headers=basic(client_id, secret), status=status)


def start_device_flow(app):
    client_id = app.default_client_id
    body = app.testapp.post("/oauth/device/code", {"client_id": client_id}, status=200).json
    return client_id, body["device_code"], body["user_code"]


def test_hot_calls_are_answered_on_the_lane_with_the_full_stacks_headers(lane_app):
    app = lane_app()
    client_id, secret = machine_client(app)
    device_client, device_code, _ = start_device_flow(app)
    cc(app, client_id, secret)  # the first lookup of a client fills the client cache
    app.full_stack.calls.clear()

    issued = cc(app, client_id, secret)
    assert issued.json["token_type"] == "Bearer" and issued.json["scope"] == "read write"
    pending = app.testapp.post("/oauth/token", {"grant_type": GRANT, "client_id": device_client,
                                                "device_code": device_code}, status=400)
    assert pending.json["error"] == "authorization_pending"
    introspected = app.testapp.post("/oauth/introspect",
                                    {"token": issued.json["access_token"]},
                                    headers=basic(client_id, secret), status=200)
    assert introspected.json["active"] is True
    assert introspected.json["client_id"] == client_id

    assert app.full_stack.calls == []  # all three answered in front of the router
    for response in (issued, pending, introspected):
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "Content-Security-Policy" in response.headers
        assert "Set-Cookie" not in response.headers


def test_lane_requests_are_audited_logged_and_counted(lane_app, caplog):
    app = lane_app(TRUSTED_PROXIES="127.0.0.1", METRICS_ENABLED="true")
    client_id, secret = machine_client(app)
    cc(app, client_id, secret)
    app.full_stack.calls.clear()
    caplog.set_level(logging.INFO, logger="authgate.access")
    headers = {**basic(client_id, secret), "User-Agent": "billing/1.0",
               "X-Forwarded-For": "203.0.113.9"}
    token = app.testapp.post("/oauth/token", {"grant_type": "client_credentials"},
                             headers=headers, status=200).json["access_token"]
    app.testapp.post("/oauth/introspect", {"token": token}, headers=headers, status=200)
    assert app.full_stack.calls == []

    with app.db() as db:
        events = {e.event_type: e for e in db.scalars(
            select(AuditLog).where(AuditLog.actor_ip == "203.0.113.9"))}
    issued, introspected = events["CLIENT_CREDENTIALS_TOKEN_ISSUED"], events["TOKEN_INTROSPECTED"]
    assert issued.user_agent == "billing/1.0" and issued.request_path == "/oauth/token"
    assert issued.request_method == "POST" and issued.actor_user_id == f"client:{client_id}"
    assert introspected.request_path == "/oauth/introspect"
    assert introspected.details["active"] is True

    lines = [r.getMessage() for r in caplog.records if r.name == "authgate.access"]
    assert any('203.0.113.9 "POST /oauth/token" 200' in line for line in lines)
    assert any('203.0.113.9 "POST /oauth/introspect" 200' in line for line in lines)

    metrics = app.testapp.get("/metrics", status=200).text
    assert 'http_requests_total{method="POST",path="/oauth/token",status="200"} 2.0' in metrics
    assert 'http_requests_total{method="POST",path="/oauth/introspect",status="200"} 1.0' \
        in metrics
    assert ('oauth_tokens_issued_total{grant_type="client_credentials",token_type="access"} '
            '2.0') in metrics


def test_a_client_not_yet_cached_goes_through_the_full_stack_once(lane_app):
    app = lane_app()
    client_id, secret = machine_client(app)
    cc(app, client_id, secret)
    assert app.full_stack.calls == ["/oauth/token"]  # loaded with the ORM, then cached
    cc(app, client_id, secret)
    assert app.full_stack.calls == ["/oauth/token"]


def test_other_requests_to_the_same_paths_go_through_the_full_stack(lane_app):
    app = lane_app()
    client_id, secret = machine_client(app)
    cc(app, client_id, secret)
    app.full_stack.calls.clear()

    # JSON body, another grant, a repeated grant_type, another charset, GET: Pyramid.
    app.testapp.post("/oauth/token", json.dumps({"grant_type": "client_credentials"}),
                     headers={**basic(client_id, secret), "Content-Type": "application/json"},
                     status="*")
    refused = app.testapp.post("/oauth/token", {"grant_type": "refresh_token",
                                                "refresh_token": "x", "client_id": client_id},
                               status=401)
    assert refused.json["error"] == "invalid_client"
    twice = app.testapp.post("/oauth/token", "grant_type=client_credentials&grant_type=x",
                             headers={**basic(client_id, secret), "Content-Type": FORM},
                             status=400)
    assert twice.json["error"] == "invalid_request"
    latin = app.testapp.post("/oauth/token", b"grant_type=client_credentials",
                             headers={**basic(client_id, secret),
                                      "Content-Type": FORM + "; charset=latin-1"}, status="*")
    assert latin.status_code in (200, 400)
    app.testapp.get("/oauth/token", status=405)
    assert app.full_stack.calls == ["/oauth/token"] * 5

    # With a UTF-8 charset named explicitly the lane answers.
    app.full_stack.calls.clear()
    cc_utf8 = app.testapp.post("/oauth/token", b"grant_type=client_credentials",
                               headers={**basic(client_id, secret),
                                        "Content-Type": FORM + "; charset=UTF-8"}, status=200)
    assert cc_utf8.json["token_type"] == "Bearer" and app.full_stack.calls == []


def test_an_oversized_body_gets_the_full_stacks_413(lane_app):
    app = lane_app()
    body = "grant_type=client_credentials&pad=" + "x" * (1024 * 1024)
    response = app.testapp.post("/oauth/token", body, headers={"Content-Type": FORM},
                                status=413)
    assert response.json["error"] == "invalid_request"
    assert app.full_stack.calls == ["/oauth/token"]


def test_rate_limits_count_each_request_once_and_the_full_stack_answers_429(lane_app):
    app = lane_app(ENABLE_RATE_LIMIT="true", RATE_LIMIT_STORE="memory",
                   INTROSPECT_RATE_LIMIT="3")
    client_id, secret = machine_client(app)
    token = cc(app, client_id, secret).json["access_token"]
    app.full_stack.calls.clear()

    answers = [app.testapp.post("/oauth/introspect", {"token": token},
                                headers=basic(client_id, secret), status="*")
               for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    refused = answers[3]
    assert refused.json["error"] == "rate_limit_exceeded" and "Retry-After" in refused.headers
    # Only the refused one went to the full stack, which answered from the lane's decision.
    assert app.full_stack.calls == ["/oauth/introspect"]
    with app.db() as db:
        assert db.scalars(select(AuditLog.event_type).where(
            AuditLog.event_type == "RATE_LIMIT_EXCEEDED")).all() == ["RATE_LIMIT_EXCEEDED"]


def test_cors_requests_go_through_the_full_stack(lane_app):
    app = lane_app(CORS_ENABLED="true", CORS_ALLOWED_ORIGINS="https://app.example.com")
    client_id, secret = machine_client(app)
    cc(app, client_id, secret)
    app.full_stack.calls.clear()
    response = app.testapp.post("/oauth/token", {"grant_type": "client_credentials"},
                                headers={**basic(client_id, secret),
                                         "Origin": "https://app.example.com"}, status=200)
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert app.full_stack.calls == ["/oauth/token"]
    cc(app, client_id, secret)  # no Origin: the lane
    assert app.full_stack.calls == ["/oauth/token"]


def test_a_bug_on_the_lane_is_a_json_500_and_nothing_is_stored(lane_app, caplog):
    app = lane_app()
    client_id, secret = machine_client(app)
    cc(app, client_id, secret)
    app.full_stack.calls.clear()
    signer = app.runtime.signer

    def broken(claims):
        raise RuntimeError("signer exploded")

    original, signer.sign = signer.sign, broken
    try:
        response = cc(app, client_id, secret, status=500)
    finally:
        signer.sign = original
    assert response.json == {"error": "server_error",
                             "error_description": "An internal error occurred"}
    assert response.headers["Cache-Control"] == "no-store"
    assert "signer exploded" not in response.text
    assert any("unhandled error on POST /oauth/token" in r.getMessage()
               for r in caplog.records if r.exc_info)
    assert app.full_stack.calls == []
    with app.db() as db:  # only the first token, and only its event
        assert len(db.scalars(select(AuditLog).where(
            AuditLog.event_type == "CLIENT_CREDENTIALS_TOKEN_ISSUED")).all()) == 1


def test_a_database_error_on_the_lane_is_handed_to_the_full_stack(lane_app, monkeypatch):
    """The full stack retries or answers database errors with its error views; the
    lane's half-done unit of work is rolled back and none of its events stored."""
    app = lane_app()
    client_id, secret = machine_client(app)
    cc(app, client_id, secret)
    app.full_stack.calls.clear()
    dbapi = app.runtime.engine.dialect.loaded_dbapi
    from authgate import rawsql

    calls = {"n": 0}
    original = rawsql.RawUnit.execute

    def failing_once(self, statement, params=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise dbapi.OperationalError("database is locked")
        return original(self, statement, params)

    monkeypatch.setattr(rawsql.RawUnit, "execute", failing_once)
    response = cc(app, client_id, secret, status=200)
    assert response.json["token_type"] == "Bearer"
    assert app.full_stack.calls == ["/oauth/token"]
    with app.db() as db:
        assert len(db.scalars(select(AuditLog).where(
            AuditLog.event_type == "CLIENT_CREDENTIALS_TOKEN_ISSUED")).all()) == 2


def test_device_poll_answers_on_the_lane_match_the_protocol(lane_app):
    """Pending, slow_down (raised interval), denied, approved, consumed: each answer
    a device sees, with the first poll of a new client going through Pyramid."""
    app = lane_app()
    client_id, device_code, user_code = start_device_flow(app)

    def poll(status=400):
        return app.testapp.post("/oauth/token", {"grant_type": GRANT, "client_id": client_id,
                                                 "device_code": device_code}, status=status)

    assert poll().json["error"] == "authorization_pending"
    slow = poll().json
    assert slow["error"] == "slow_down" and "10 seconds" in slow["error_description"]
    app.rewind_poll(device_code)
    assert poll().json["error"] == "authorization_pending"

    # Approve in the browser, then the next (paced) poll wins the tokens.
    app.login()
    page = app.testapp.get(f"/device?user_code={user_code}")
    form(page, "/device/verify").submit("action", value="approve")
    app.rewind_poll(device_code)
    app.full_stack.calls.clear()
    won = poll(status=200).json
    assert won["token_type"] == "Bearer" and won["refresh_token"]
    assert app.full_stack.calls == []
    with app.db() as db:
        row = tokens.find(db, won["access_token"])
        assert row.authorization_id is not None  # linked to the consent of the approval
    app.rewind_poll(device_code)
    assert poll().json["error"] == "invalid_grant"


def test_unknown_clients_and_codes_get_the_same_errors_as_before(lane_app):
    app = lane_app()
    client_id, _, _ = start_device_flow(app)
    unknown_code = app.testapp.post("/oauth/token", {"grant_type": GRANT, "client_id": client_id,
                                                     "device_code": "nope"}, status=400)
    assert unknown_code.json["error"] == "invalid_grant"
    wrong_secret = app.testapp.post("/oauth/introspect", {"token": "x"},
                                    headers=basic(client_id, "wrong"), status=401)
    assert wrong_secret.json["error"] == "invalid_client"
    assert wrong_secret.headers["WWW-Authenticate"] == 'Basic realm="authgate"'
    with app.db() as db:
        assert db.scalars(select(OAuthClient).where(
            OAuthClient.client_id == "nope")).first() is None


def test_audit_rows_commit_with_the_tokens_and_a_failed_commit_stores_neither(
        lane_app, monkeypatch):
    """On the lane the audit row is written in the request's own transaction (one
    group commit for the token and its event); when that commit fails, the full
    stack answers and exactly one token and one event are stored."""
    app = lane_app()
    client_id, secret = machine_client(app)
    cc(app, client_id, secret)
    app.full_stack.calls.clear()
    from authgate import rawsql
    from authgate.models import Token

    batches: list[list[str]] = []
    original = rawsql.GroupWriter.write

    def observed(self, inserts):
        batches.append([statement.table.name for statement, _ in inserts])
        if len(batches) == 2:
            raise app.runtime.engine.dialect.loaded_dbapi.OperationalError("disk I/O error")
        return original(self, inserts)

    monkeypatch.setattr(rawsql.GroupWriter, "write", observed)
    cc(app, client_id, secret)
    assert batches == [["tokens", "audit_logs"]]  # one write for both
    assert app.full_stack.calls == []
    cc(app, client_id, secret)  # its commit fails: handed over, stored once
    assert app.full_stack.calls == ["/oauth/token"]
    with app.db() as db:
        assert len(db.scalars(select(Token)).all()) == 3
        assert len(db.scalars(select(AuditLog).where(
            AuditLog.event_type == "CLIENT_CREDENTIALS_TOKEN_ISSUED")).all()) == 3


def test_health_is_answered_on_the_lane_as_the_view_would(lane_app):
    app = lane_app()
    answered = app.testapp.get("/health", status=200)
    head = app.testapp.head("/health", status=200)
    assert app.full_stack.calls == []
    # The same response through the full stack (the view and Pyramid's JSON renderer).
    from webtest import TestApp

    full = TestApp(lane_of(app).app.inner, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    reference = full.get("/health", status=200)
    assert answered.body == reference.body == b'{"status": "healthy", "database": "connected"}'
    assert answered.headerlist == reference.headerlist
    assert head.body == b"" and head.headers["Content-Length"] == reference.headers[
        "Content-Length"]
