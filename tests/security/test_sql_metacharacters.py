"""SQL metacharacters in every search box and lookup: no 500, and the right rows.

Searches are ``ILIKE`` with the pattern characters escaped (``%`` and ``_`` are
literal) and every value is a bound parameter, so an injection payload matches
nothing and a NUL byte (which PostgreSQL refuses in text) is still no error.
Run with ``--authgate-store=postgres`` too.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
from markupsafe import escape
from security_support import new_browser, sign_in
from sqlalchemy import func, select

from authgate.models import AuditLog, OAuthClient, Token, User, utcnow
from authgate.services.passwords import hash_password
from authgate.testing import form

PASSWORD = "sql-user-password-1"
NAMES = {
    "plain": "zqalpha",
    "percent": "zq%gamma",
    "underscore": "zq_beta",
    "quote": "zq'delta",
    "backslash": "zq\\epsilon",
    "dquote": 'zq"eta',
    "semicolon": "zq;theta",
}
# search text -> the NAMES keys it must find
EXPECTED = {
    "zq": set(NAMES),
    "%": {"percent"},
    "_": {"underscore"},
    "'": {"quote"},
    "\\": {"backslash"},
    '"': {"dquote"},
    ";": {"semicolon"},
    "q%g": {"percent"},
    "q_b": {"underscore"},
    "zq%": {"percent"},
    "%zq%": set(),
    "zq_": {"underscore"},
    "' OR '1'='1": set(),
    "zq' OR '1'='1' --": set(),
    "%' --": set(),
    "'; DROP TABLE users; --": set(),
    "\" OR \"\"=\"": set(),
    "') OR 1=1; --": set(),
    "zq' UNION SELECT password_hash FROM users --": set(),
    "*": set(),
    "[a-z]": set(),
    "ZQALPHA": {"plain"},  # case-insensitive
}
# Must not fail (PostgreSQL refuses NUL in text; SQLite's LIKE stops at it).
NO_ERROR = ["\x00", "zq\x00alpha", "\ud800", "a" * 300]
# A NUL in a search box is dropped, the same on both stores (SQLite's LIKE would
# otherwise stop at it and list every row).
NUL_SEARCHES = {"zq\x00alpha": {"plain"}, "\x00zqalpha\x00": {"plain"}}


@pytest.fixture
def seeded(make_app):
    """Per name: a user (username, email, full name), a client (name) owned by that
    user, an access token of the user for the client, an audit event.  Rate limits
    off: the tests sign in and post many times."""
    app = make_app({"authgate.enable_rate_limit": "false"})
    with app.db() as db:
        for key, name in NAMES.items():
            user = User(id=str(uuid.uuid4()), username=name, email=f"{key}@x.example",
                        full_name=f"Full {name}", password_hash=hash_password(PASSWORD))
            db.add(user)
            client = OAuthClient(client_id=str(uuid.uuid4()), name=f"App {name}",
                                 client_type="public", status="active", user_id=user.id)
            client.refresh_grant_types()
            db.add(client)
            db.flush()
            db.add(Token(token_hash=uuid.uuid4().hex * 2, user_id=user.id,
                         client_id=client.client_id, scopes="email", token_category="access",
                         expires_at=utcnow().replace(year=2099), grant_type="device_code"))
            db.add(AuditLog(id=str(uuid.uuid4()), event_type="CLIENT_CREATED",
                            event_time=utcnow(), severity="INFO", action=f"Created App {name}",
                            resource_name=f"App {name}", success=True))
    return app


def shown(text: str, usernames: bool = True) -> set[str]:
    """The NAMES keys whose client name (or, on admin pages, username) is listed."""
    return {key for key, name in NAMES.items() if str(escape(f"App {name}")) in text
            or (usernames and f'>{escape(name)}<' in text)}


def _check(response, search: str, what: str, statuses=(200,)) -> None:
    assert response.status_int in statuses, (what, repr(search), response.status)
    assert "Traceback" not in response.text and 'File "' not in response.text


def _no_error(browser, url: str, search: str):
    """A search that may be refused (400: not UTF-8) but never fails."""
    response = browser.get(url + quote(search, errors="surrogatepass"), status="*")
    _check(response, search, url, statuses=(200, 400))
    return response


@pytest.mark.parametrize("path", ["/admin/users", "/admin/clients", "/admin/tokens",
                                  "/admin/audit"])
def test_sql_metacharacters_in_admin_search_boxes(seeded, path):
    admin = new_browser(seeded)
    sign_in(admin)
    for search, expected in EXPECTED.items():
        response = admin.get(f"{path}?search={quote(search)}&page_size=50", status="*")
        _check(response, search, path)
        found = shown(response.text)
        assert found == expected, (path, repr(search), found)
    for search in NO_ERROR:
        _no_error(admin, f"{path}?search=", search)
    for search, expected in NUL_SEARCHES.items():
        response = admin.get(f"{path}?search={quote(search)}&page_size=50")
        assert shown(response.text) == expected, (path, repr(search))


def test_sql_metacharacters_in_the_audit_api(seeded):
    admin = new_browser(seeded)
    sign_in(admin)
    for search, expected in EXPECTED.items():
        response = admin.get(f"/admin/audit/api?search={quote(search)}&page_size=100",
                             status="*")
        _check(response, search, "audit api")
        names = {log["resource_name"] for log in response.json["logs"]
                 if log["event_type"] == "CLIENT_CREATED"}
        assert names == {f"App {NAMES[k]}" for k in expected}, (repr(search), names)
        stats = admin.get(f"/admin/audit/api/stats?search={quote(search)}", status="*")
        _check(stats, search, "audit stats")
    for search in NO_ERROR:
        _no_error(admin, "/admin/audit/api?search=", search)
    # Other filters are bound parameters too.
    for field in ("event_type", "actor", "actor_user_id", "user_id", "resource_type",
                  "resource_id", "actor_ip"):
        for value in ("' OR '1'='1", "%", "\x00"):
            response = admin.get(f"/admin/audit/api?{field}={quote(value)}", status="*")
            # NUL: PostgreSQL refuses it in text, answered 400 invalid_request
            _check(response, value, field, (200, 400) if value == "\x00" else (200,))
            assert response.json.get("logs", []) == [], (field, value)


@pytest.mark.parametrize("path", ["/account/sessions", "/apps"])
def test_sql_metacharacters_in_account_search_boxes(seeded, path):
    """Each seeded user sees only their own rows, whatever the search says."""
    for key, name in NAMES.items():
        person = new_browser(seeded)
        sign_in(person, name, PASSWORD)
        for search, expected in EXPECTED.items():
            response = person.get(f"{path}?search={quote(search)}", status="*")
            _check(response, search, path)
            assert shown(response.text, usernames=False) == ({key} & expected), (
                path, name, repr(search))
        for search in NO_ERROR:
            response = _no_error(person, f"{path}?search=", search)
            assert shown(response.text, usernames=False) <= {key}
        if key != "plain":
            break  # one user with a metacharacter name and the plain one are enough


def test_sql_metacharacters_in_logins_and_lookups(seeded):
    """Lookups by exact value (sign-in, client ids, user codes, token hashes)."""
    app = seeded
    browser = new_browser(app)
    for payload in ("' OR '1'='1", "admin'--", "admin' #", "\x00", "%", "_"):
        login = form(browser.get("/login"), "/login")
        login["username"], login["password"] = payload, "' OR '1'='1"
        response = login.submit(status="*")
        assert response.status_int in ((401, 400) if "\x00" in payload else (401,)), (
            repr(payload), response.status)
        for data in ({"client_id": payload},
                     {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                      "client_id": payload, "device_code": payload},
                     {"grant_type": "refresh_token", "client_id": payload,
                      "refresh_token": payload},
                     {"grant_type": "client_credentials", "client_id": payload,
                      "client_secret": payload}):
            path = "/oauth/token" if "grant_type" in data else "/oauth/device/code"
            answer = app.testapp.post(path, data, status="*")
            assert answer.status_int in (400, 401), (path, repr(payload), answer.text)
            json.loads(answer.text)
        for path in ("/oauth/tokeninfo", "/oauth/userinfo"):
            answer = app.testapp.get(path, headers={"Authorization": f"Bearer {payload}"},
                                     status=401)
            assert answer.json["error"] == "invalid_token"
    sign_in(browser)
    for payload in ("' OR '1'='1", "ABCD-EFGH' --", "%", "\x00"):
        assert browser.get(f"/device?user_code={quote(payload)}", status=400)
        for path in (f"/admin/users/{quote(payload)}", f"/admin/clients/{quote(payload)}"):
            assert browser.get(path, status=(404, 400) if "\x00" in payload else 404)
    with app.db() as db:  # every table is still there and whole
        assert db.scalar(select(func.count()).select_from(User)) == len(NAMES) + 1
