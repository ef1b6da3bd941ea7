"""The audit log: /admin/audit (HTML), /admin/audit/api (JSON), stats, CSV export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from urllib.parse import quote

import pytest
from sqlalchemy import delete, select
from webtest import TestApp

from authgate.models import AuditLog, User, new_uuid, utcnow
from authgate.services import admin as svc
from authgate.services.passwords import hash_password
from authgate.testing import form

PASSWORD = "user-password-123"


@pytest.fixture
def app(make_app):
    handle = make_app()
    handle.login()
    with handle.db() as db:  # start from an empty log: only the rows each test adds
        db.execute(delete(AuditLog))
    return handle


NOW = utcnow().replace(microsecond=0)


def add(app, event_type, *, minutes_ago=0, severity="INFO", success=True, actor_id=None,
        actor="admin", ip="10.0.0.1", resource_type=None, resource_id=None,
        resource_name=None, action=None, error=None):
    with app.db() as db:
        when = NOW - dt.timedelta(minutes=minutes_ago)
        row = AuditLog(id=new_uuid(), event_type=event_type, event_time=when, created_at=when,
                       severity=severity, success=success, actor_user_id=actor_id,
                       actor_username=actor, actor_ip=ip, resource_type=resource_type,
                       resource_id=resource_id, resource_name=resource_name,
                       action=action or f"{event_type} happened", error_message=error,
                       details={"k": "v"})
        db.add(row)
        return row.id


def api(app, query="", status=200):
    return app.testapp.get("/admin/audit/api" + query, status=status).json


@pytest.fixture
def log(app):
    """A small, known log."""
    ids = {
        "login_ok": add(app, "AUTHENTICATION_SUCCESS", minutes_ago=50, actor_id="u-admin",
                        ip="10.0.0.1", resource_type="USER", resource_id="u-admin"),
        "login_bad": add(app, "AUTHENTICATION_FAILURE", minutes_ago=40, severity="WARNING",
                         success=False, actor=None, ip="203.0.113.9",
                         error="invalid credentials", action="Sign-in failed for 'mallory'"),
        "disable_bob": add(app, "USER_DISABLED", minutes_ago=30, severity="WARNING",
                           actor_id="u-admin", resource_type="USER", resource_id="u-bob",
                           resource_name="bob", action="Disabled user bob"),
        "disable_carol": add(app, "USER_DISABLED", minutes_ago=20, severity="WARNING",
                             actor_id="u-admin", resource_type="USER", resource_id="u-carol",
                             resource_name="carol", action="Disabled user carol"),
        "bob_revokes": add(app, "TOKEN_REVOKED", minutes_ago=10, actor_id="u-bob",
                           actor="bob", ip="10.0.0.2", resource_type="TOKEN",
                           resource_id="t-1", resource_name="CLI"),
        "refused": add(app, "USER_DISABLED", minutes_ago=5, severity="WARNING", success=False,
                       actor_id="u-admin", resource_type="USER", resource_id="u-admin",
                       resource_name="admin", error="You cannot disable your own account."),
        "critical": add(app, "CLIENT_TOKENS_REVOKED_ALL", minutes_ago=1, severity="CRITICAL",
                        actor_id="u-admin", resource_type="CLIENT", resource_id="c-1",
                        resource_name="Leaky"),
    }
    return ids


def ids_of(body):
    return [row["id"] for row in body["logs"]]


# ---------------------------------------------------------------------------
# JSON API
# ---------------------------------------------------------------------------


def test_api_shape(app, log):
    body = api(app)
    assert set(body) == {"logs", "pagination"}
    assert body["pagination"] == {"total": 7, "total_pages": 1, "page": 1, "page_size": 20,
                                  "has_prev": False, "has_next": False}
    newest = body["logs"][0]
    assert newest["id"] == log["critical"]  # newest first
    assert set(newest) >= {"id", "event_type", "event_time", "severity", "actor_user_id",
                           "actor_username", "actor_ip", "resource_type", "resource_id",
                           "resource_name", "action", "details", "success", "error_message",
                           "user_agent", "request_path", "request_method", "created_at"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", newest["event_time"])
    assert newest["details"] == {"k": "v"} and newest["success"] is True


def test_api_the_guides_user_id_query(app, log):
    """`?user_id=<id>&event_type=USER_DISABLED`: the disabled user is the resource."""
    body = api(app, "?user_id=u-bob&event_type=USER_DISABLED")
    assert ids_of(body) == [log["disable_bob"]]
    # user_id also finds what the user did themselves.
    assert set(ids_of(api(app, "?user_id=u-bob"))) == {log["disable_bob"], log["bob_revokes"]}
    # actor_user_id is the actor only.
    assert ids_of(api(app, "?actor_user_id=u-bob")) == [log["bob_revokes"]]
    assert ids_of(api(app, "?actor_user_id=u-bob&event_type=USER_DISABLED")) == []


@pytest.mark.parametrize(("query", "expected"), [
    ("?event_type=USER_DISABLED", ["refused", "disable_carol", "disable_bob"]),
    ("?event_type=user_disabled", ["refused", "disable_carol", "disable_bob"]),
    ("?event_type=USER_DISABLED&success=true", ["disable_carol", "disable_bob"]),
    ("?event_type=USER_DISABLED&success=false", ["refused"]),
    ("?success=false", ["refused", "login_bad"]),
    ("?severity=WARNING&success=true", ["disable_carol", "disable_bob"]),
    ("?severity=critical", ["critical"]),
    ("?actor_ip=203.0.113.9", ["login_bad"]),
    ("?actor_ip=10.0.0.1&resource_type=USER",
     ["refused", "disable_carol", "disable_bob", "login_ok"]),
    ("?resource_type=USER&resource_id=u-carol", ["disable_carol"]),
    ("?search=mallory", ["login_bad"]),
    ("?search=carol&event_type=USER_DISABLED", ["disable_carol"]),
    ("?search=bob", ["bob_revokes", "disable_bob"]),
    ("?actor=bob", ["bob_revokes"]),
    ("?actor=u-admin&severity=INFO", ["login_ok"]),
    ("?event_type=USER_DISABLED&user_id=u-carol&success=true", ["disable_carol"]),
    ("?event_type=NOPE", []),
])
def test_api_filters_combine(app, log, query, expected):
    assert ids_of(api(app, query)) == [log[name] for name in expected]


def test_api_time_range(app, log):
    start = (NOW - dt.timedelta(minutes=35)).isoformat() + "Z"
    end = (NOW - dt.timedelta(minutes=15)).isoformat() + "Z"
    body = api(app, f"?start_time={start}&end_time={end}")
    assert ids_of(body) == [log["disable_carol"], log["disable_bob"]]
    offset = (NOW - dt.timedelta(minutes=35) + dt.timedelta(hours=2)).isoformat() + "+02:00"
    assert ids_of(api(app, f"?start_time={quote(offset)}&event_type=TOKEN_REVOKED")) == [
        log["bob_revokes"]]
    html_style = (NOW - dt.timedelta(minutes=8)).strftime("%Y-%m-%dT%H:%M")
    assert ids_of(api(app, f"?start_time={html_style}")) == [log["critical"], log["refused"]]


@pytest.mark.parametrize("query", ["?start_time=yesterday", "?end_time=2026-13-45",
                                   "?success=maybe", "?severity=LOUD"])
def test_api_rejects_bad_filters(app, log, query):
    body = api(app, query, status=400)
    assert body["error"] == "invalid_request" and body["error_description"]


def test_api_pagination(app):
    for n in range(45):
        add(app, "TOKEN_REVOKED", minutes_ago=n)
    first = api(app)
    assert len(first["logs"]) == 20
    assert first["pagination"] == {"total": 45, "total_pages": 3, "page": 1, "page_size": 20,
                                   "has_prev": False, "has_next": True}
    last = api(app, "?page=3")
    assert len(last["logs"]) == 5
    assert last["pagination"]["has_prev"] and not last["pagination"]["has_next"]
    past_the_end = api(app, "?page=9")
    assert past_the_end["logs"] == [] and past_the_end["pagination"]["page"] == 9
    assert not past_the_end["pagination"]["has_next"]
    big = api(app, "?page_size=1000")
    assert big["pagination"]["page_size"] == 100 and len(big["logs"]) == 45
    assert api(app, "?page_size=0")["pagination"]["page_size"] == 1
    assert api(app, "?page=abc&page_size=x")["pagination"] == {
        "total": 45, "total_pages": 3, "page": 1, "page_size": 20, "has_prev": False,
        "has_next": True}
    pages = [api(app, f"?page={n}&page_size=10") for n in (1, 2, 3, 4, 5)]
    seen = [i for p in pages for i in ids_of(p)]
    assert len(seen) == len(set(seen)) == 45


def signed_in(app, username):
    with app.db() as db:
        db.add(User(username=username, password_hash=hash_password(PASSWORD)))
    browser = TestApp(app.testapp.app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    page = form(browser.get("/login"), "/login")
    page["username"], page["password"] = username, PASSWORD
    page.submit()
    return browser


@pytest.mark.parametrize("path", ["/admin/audit/api", "/admin/audit/api/stats"])
def test_api_needs_an_admin_session(app, path):
    anonymous = TestApp(app.testapp.app).get(path, status=401)
    assert anonymous.content_type == "application/json"
    assert anonymous.json["error"] == "unauthorized" and "WWW-Authenticate" in anonymous.headers
    assert "Set-Cookie" not in anonymous.headers
    regular = signed_in(app, "bob").get(path, status=403)
    assert regular.json["error"] == "forbidden"


# ---------------------------------------------------------------------------
# Stats
# ---------------------------------------------------------------------------


def test_stats(app, log):
    add(app, "AUTHENTICATION_SUCCESS", minutes_ago=60 * 24 * 40)  # outside the default window
    body = app.testapp.get("/admin/audit/api/stats").json
    stats = body["stats"]
    assert stats["total_events"] == 7
    assert stats["events_by_type"] == {"USER_DISABLED": 3, "AUTHENTICATION_SUCCESS": 1,
                                       "AUTHENTICATION_FAILURE": 1, "TOKEN_REVOKED": 1,
                                       "CLIENT_TOKENS_REVOKED_ALL": 1}
    assert stats["events_by_severity"] == {"INFO": 2, "WARNING": 4, "CRITICAL": 1}
    assert (stats["success_count"], stats["failure_count"]) == (5, 2)
    start = dt.datetime.fromisoformat(body["start_time"].rstrip("Z"))
    end = dt.datetime.fromisoformat(body["end_time"].rstrip("Z"))
    assert end - start == dt.timedelta(days=30)
    everything = app.testapp.get("/admin/audit/api/stats?start_time=2000-01-01T00:00:00Z").json
    assert everything["stats"]["total_events"] == 8 and everything["end_time"] is None
    filtered = app.testapp.get("/admin/audit/api/stats?event_type=USER_DISABLED").json
    assert filtered["stats"]["total_events"] == 3 and filtered["stats"]["failure_count"] == 1


# ---------------------------------------------------------------------------
# CSV export
# ---------------------------------------------------------------------------


def test_csv_export(app, log):
    add(app, "USER_UPDATED", minutes_ago=2, action="=HYPERLINK(\"http://evil\")",
        resource_name="+cmd")
    response = app.testapp.get("/admin/audit/export?event_type=USER_DISABLED")
    assert response.content_type == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="audit_logs_\d{4}-\d\d-\d\d\.csv"', disposition)
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["Event Time", "Event Type", "Severity", "Actor Username", "Actor IP",
                       "Resource Type", "Resource Name", "Action", "Success", "Error Message"]
    assert [r[1] for r in rows[1:]] == ["USER_DISABLED"] * 3
    assert [r[8] for r in rows[1:]] == ["No", "Yes", "Yes"]
    assert rows[1][9] == "You cannot disable your own account."
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[1][0])
    everything = list(csv.reader(io.StringIO(app.testapp.get("/admin/audit/export").text)))
    formula = next(r for r in everything if r[1] == "USER_UPDATED")
    assert formula[7].startswith("'=") and formula[6] == "'+cmd"  # not run by a spreadsheet
    exported = [e for e in _all(app) if e.event_type == "AUDIT_LOG_EXPORTED"]
    assert len(exported) == 2
    assert exported[0].details["filters"] == {"event_type": "USER_DISABLED"}
    assert exported[0].details["rows"] == 3


def _all(app):
    with app.db() as db:
        rows = db.scalars(select(AuditLog).order_by(AuditLog.event_time)).all()
        db.expunge_all()
        return rows


def test_csv_export_is_capped(app, monkeypatch):
    for n in range(5):
        add(app, "TOKEN_REVOKED", minutes_ago=n)
    monkeypatch.setattr(svc, "EXPORT_LIMIT", 3)
    rows = list(csv.reader(io.StringIO(app.testapp.get("/admin/audit/export").text)))
    assert len(rows) == 1 + 3


# ---------------------------------------------------------------------------
# HTML page
# ---------------------------------------------------------------------------


def test_audit_page_filters_and_export_link(app, log):
    page = app.testapp.get("/admin/audit?event_type=USER_DISABLED&success=true")
    assert "Disabled user bob" in page.text and "Disabled user carol" in page.text
    assert "Sign-in failed" not in page.text
    assert "Showing 1–2 of 2 events" in page.text
    assert ('href="/admin/audit/export?event_type=USER_DISABLED&amp;success=true"'
            in page.text)
    assert '<option value="USER_DISABLED" selected>' in page.text
    by_ip = app.testapp.get("/admin/audit?actor_ip=203.0.113.9")
    assert "Sign-in failed for &#39;mallory&#39;" in by_ip.text
    assert "invalid credentials" in by_ip.text
    by_actor = app.testapp.get("/admin/audit?actor=bob")
    assert "CLI" in by_actor.text and "Disabled user" not in by_actor.text
    start = (NOW - dt.timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M")
    recent = app.testapp.get(f"/admin/audit?start_time={start}")
    assert "Showing 1–1 of 1 events" in recent.text
    bad = app.testapp.get("/admin/audit?start_time=soon", status=400)
    assert "Some filters were ignored." in bad.text and "Showing 1–7 of 7" in bad.text


def test_audit_page_escapes_everything(app):
    add(app, "USER_UPDATED", action="<img src=x onerror=alert(1)>",
        resource_name="<script>alert(1)</script>", actor="<b>eve</b>")
    page = app.testapp.get("/admin/audit")
    assert "<img src=x" not in page.text and "<script>alert(1)</script>" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "&lt;b&gt;eve&lt;/b&gt;" in page.text


def test_real_admin_actions_reach_the_api(app):
    """End to end through the audit pipeline: an action, then the API finds it."""
    with app.db() as db:
        bob = User(username="bob", password_hash=hash_password(PASSWORD))
        db.add(bob)
        db.flush()
        bob_id = bob.id
    csrf = re.search(r'name="csrf_token" value="([^"]+)"',
                     app.testapp.get("/admin").text).group(1)
    app.testapp.post(f"/admin/users/{bob_id}/disable", {"csrf_token": csrf}, status=303)
    body = api(app, f"?user_id={bob_id}&event_type=USER_DISABLED")
    (row,) = body["logs"]
    assert row["actor_username"] == "admin" and row["resource_name"] == "bob"
    assert row["request_path"] == f"/admin/users/{bob_id}/disable"
    assert row["request_method"] == "POST" and row["actor_ip"] == "127.0.0.1"
