"""The ``httpapi`` auth source against a real HTTP server on 127.0.0.1.

``FakeLoginAPI`` is a ``ThreadingHTTPServer`` standing in for a deployer's user
directory.  It checks the service-to-service authentication itself (the
``simple`` header, or the HMAC signature computed here independently of the
plugin), answers from a small user table, and can be scripted: "answer 503
twice", "sleep 2 s", "redirect".  Nothing in ``requests`` or urllib3 is mocked,
so retries, back-off, timeouts and the wire format are the real ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, text
from zope.sqlalchemy import mark_changed

from authgate.errors import ConfigurationError
from authgate.interfaces import AuthContext, AuthRejected, AuthUnavailable
from authgate.models import AuditLog, User
from authgate.services.passwords import hash_password
from authgate.testing import ADMIN_PASSWORD, form
from authgate.testing.contracts import AuthSourceContract

PLUGINS = ["authgate_plugins.auth_httpapi"]
CONFLICT = "Username conflict with existing user. Please contact administrator."
UNAVAILABLE = "The authentication service is unavailable. Please try again later."
GENERIC = "Invalid username or password"
SECRET = "shared-api-secret-Zq8v1"
FAST = {  # tiny delays: tests never sleep for real back-off
    "authgate.http_api_retry_delay": "10ms",
    "authgate.http_api_max_retry_delay": "50ms",
    "authgate.http_api_timeout": "2s",
}


# ---------------------------------------------------------------------------
# The fake external API
# ---------------------------------------------------------------------------


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    auth_ok: bool
    auth_problem: str = ""

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Step:
    """One scripted answer (taken before the normal handling)."""

    status: int = 200
    payload: Any = None  # dict -> JSON; bytes -> sent as is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeLoginAPI:
    """A login API on 127.0.0.1: POST {"username","password"} -> {"success", ...}."""

    def __init__(self, *, mode: str = "none", secret: str = SECRET,
                 header: str = "X-API-Secret", path: str = "/api/v1/verify?tenant=t-1",
                 cert: tuple[str, str] | None = None):
        self.mode, self.secret, self.header, self.path = mode, secret, header, path
        self.users: dict[str, dict[str, str]] = {
            "alice": {"password": "alice-pass", "user_id": "ext-alice",
                      "email": "alice@api.example", "full_name": "Alice Api"},
            "john": {"password": "john-pass", "user_id": "ext-john-2",
                     "email": "john@api.example", "full_name": "John Api"},
        }
        self.answer_usernames: dict[str, str] = {}  # typed name -> "username" to answer
        self.script: deque[Step] = deque()
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, payload, headers, delay = api.answer(self.path, dict(self.headers),
                                                             body)
                if delay:
                    time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    ctype = "text/html" if isinstance(payload, bytes) else "application/json"
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}{self.path}"

    def start(self) -> FakeLoginAPI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def check_auth(self, path: str, headers: dict[str, str], body: bytes) -> tuple[bool, str]:
        """The receiver's side of HTTP_API_AUTH_MODE, written from the spec (reference 7.2)."""
        if self.mode == "simple":
            given = headers.get(self.header, "")
            if not hmac.compare_digest(given.encode(), self.secret.encode()):
                return False, "bad API secret"
        elif self.mode == "hmac":
            timestamp = headers.get("X-Timestamp", "")
            signature = headers.get("X-Signature", "")
            if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
                return False, "stale or missing timestamp"
            try:
                uuid.UUID(headers.get("X-Nonce", ""))
            except ValueError:
                return False, "missing nonce"
            message = timestamp.encode() + b"POST" + path.encode() + body
            expected = hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()
            if signature != expected:  # lowercase hex, exactly
                return False, "bad signature"
        return True, ""

    def answer(self, path: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, Any, dict[str, str], float]:
        ok, problem = self.check_auth(path, headers, body)
        with self.lock:
            self.seen.append(Seen(path, headers, body, ok, problem))
            step = self.script.popleft() if self.script else None
        if step is not None:
            return step.status, step.payload, step.headers, step.delay
        if not ok:
            return 401, {"success": False, "message": problem}, {}, 0.0
        try:
            data = json.loads(body)
            username, password = data["username"], data["password"]
        except (ValueError, KeyError, TypeError):
            return 400, {"success": False, "message": "bad request"}, {}, 0.0
        user = self.users.get(username)
        if user is None:
            return 404, {"success": False, "message": "user not found"}, {}, 0.0
        if not hmac.compare_digest(password.encode(), user["password"].encode()):
            return 200, {"success": False, "message": "wrong password"}, {}, 0.0
        answer = {"success": True, "user_id": user["user_id"], "email": user["email"],
                  "full_name": user["full_name"], "message": "ok"}
        if username in self.answer_usernames:
            answer["username"] = self.answer_usernames[username]
        return 200, answer, {}, 0.0


@contextlib.contextmanager
def running_api(**kwargs: Any) -> Iterator[FakeLoginAPI]:
    api = FakeLoginAPI(**kwargs).start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def api() -> Iterator[FakeLoginAPI]:
    with running_api() as server:
        yield server


def self_signed(tmp_path) -> tuple[str, str]:
    """(certificate, key) files of a self-signed certificate for 127.0.0.1."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake login api")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "api-cert.pem", tmp_path / "api-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/verify"  # nothing listens there any more


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def make(make_app, url: str, settings: dict[str, str] | None = None, **environ: str):
    """An app with AUTH_MODE=http_api against ``url`` (the plugin registered directly)."""
    return make_app(settings={**FAST, **(settings or {})},
                    environ={"AUTH_MODE": "http_api", "HTTP_API_URL": url, **environ},
                    plugins=PLUGINS)


def login(handle, username: str, password: str, status: int | str = "*"):
    """Sign in through the /login form, as a new browser each time."""
    handle.testapp.reset()
    page = handle.testapp.get("/login")
    login_form = form(page, "/login")
    login_form["username"] = username
    login_form["password"] = password
    return login_form.submit(status=status)


def user_row(handle, username: str) -> User | None:
    with handle.db() as db:
        return db.scalars(select(User).where(User.username == username)).first()


def audit(handle, event_type: str) -> list[AuditLog]:
    with handle.db() as db:
        return list(db.scalars(select(AuditLog).where(AuditLog.event_type == event_type)
                               .order_by(AuditLog.event_time)))


def sql(handle, statement: str) -> None:
    """Run the troubleshooting guide's SQL as written (committed)."""
    with handle.db() as db:
        db.execute(text(statement))
        mark_changed(db)


def add_user(handle, **fields: Any) -> None:
    with handle.db() as db:
        db.add(User(**fields))


# ---------------------------------------------------------------------------
# Login and user sync
# ---------------------------------------------------------------------------


def test_new_api_user_logs_in_and_is_created(make_app, api):
    handle = make(make_app, api.url)
    assert [s.name for s in handle.runtime.auth.sources] == ["local", "httpapi"]

    response = login(handle, "alice", "alice-pass", status=302)
    assert response.location.endswith("/device")

    (seen,) = api.seen
    assert seen.path == "/api/v1/verify?tenant=t-1"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.json == {"username": "alice", "password": "alice-pass"}
    assert not {"X-Signature", "X-API-Secret"} & set(seen.headers)  # auth mode none

    user = user_row(handle, "alice")
    assert (user.auth_source, user.external_id, user.email, user.full_name) == (
        "http_api", "ext-alice", "alice@api.example", "Alice Api")
    assert (user.role, user.is_active, user.password_hash) == ("user", True, "")
    (event,) = audit(handle, "AUTHENTICATION_SUCCESS")
    assert event.actor_username == "alice"
    assert event.details == {"auth_source": "http_api"}


def test_second_login_updates_the_changed_email(make_app, api):
    handle = make(make_app, api.url)
    login(handle, "alice", "alice-pass", status=302)
    first = user_row(handle, "alice")
    with handle.db() as db:
        db.get(User, first.id).email_verified = True

    api.users["alice"]["email"] = "alice.new@api.example"
    api.users["alice"]["full_name"] = "Alice Renamed"
    login(handle, "alice", "alice-pass", status=302)

    user = user_row(handle, "alice")
    assert user.id == first.id
    assert (user.email, user.full_name, user.email_verified) == (
        "alice.new@api.example", "Alice Renamed", False)
    with handle.db() as db:
        assert db.scalars(select(User).where(User.auth_source == "http_api")).all() == [
            db.get(User, first.id)]


def test_admin_still_logs_in_locally(make_app, api):
    handle = make(make_app, api.url)
    login(handle, "admin", ADMIN_PASSWORD, status=302)
    assert api.seen == []  # the API never sees a local user's password
    login(handle, "admin", "wrong-password", status=401)
    assert api.seen == []


def test_local_user_is_not_the_apis_even_when_the_api_comes_first(make_app, api):
    """The source itself passes local accounts on, whatever the order of the chain."""
    handle = make_app(settings={**FAST, "authgate.auth_sources": "httpapi local",
                                "authgate.http_api_url": api.url}, plugins=PLUGINS)
    login(handle, "admin", ADMIN_PASSWORD, status=302)
    assert api.seen == []


def test_existing_api_user_goes_to_the_api_every_time(make_app, api):
    handle = make(make_app, api.url)
    login(handle, "alice", "alice-pass", status=302)
    page = login(handle, "alice", "not-her-password", status=401)
    assert GENERIC in page.text
    assert len(api.seen) == 2
    (failure,) = audit(handle, "AUTHENTICATION_FAILURE")
    assert failure.severity == "WARNING"
    assert failure.error_message == ("httpapi: API answered success=false (HTTP 200): "
                                     "wrong password")


def test_unknown_user_is_generic_failure(make_app, api):
    handle = make(make_app, api.url)
    page = login(handle, "nobody", "whatever", status=401)
    assert GENERIC in page.text
    assert len(api.seen) == 1
    assert user_row(handle, "nobody") is None


def test_disabled_api_user_is_refused_before_the_api(make_app, api):
    handle = make(make_app, api.url)
    login(handle, "alice", "alice-pass", status=302)
    with handle.db() as db:
        db.scalars(select(User).where(User.username == "alice")).one().is_active = False
    page = login(handle, "alice", "alice-pass", status=401)
    assert "Your account has been disabled" in page.text
    assert len(api.seen) == 1


# ---------------------------------------------------------------------------
# Conflicts (the troubleshooting guide's "Username conflict")
# ---------------------------------------------------------------------------


def conflicting_john(make_app, api):
    """The API vouches for "john" as ext-john-2; the local "john" is ext-john-1."""
    handle = make(make_app, api.url)
    add_user(handle, username="john", email="john@local.example", full_name="Local John",
             auth_source="http_api", external_id="ext-john-1")
    page = login(handle, "john", "john-pass", status=401)
    assert CONFLICT in page.text
    return handle


def test_username_owned_by_another_user_is_a_conflict(make_app, api):
    handle = conflicting_john(make_app, api)
    john = user_row(handle, "john")  # untouched
    assert (john.external_id, john.email, john.full_name, john.auth_source) == (
        "ext-john-1", "john@local.example", "Local John", "http_api")
    with handle.db() as db:
        assert db.scalars(select(User).where(User.external_id == "ext-john-2")).first() is None
    (failure,) = audit(handle, "AUTHENTICATION_FAILURE")
    assert failure.error_message.startswith("username conflict")
    assert failure.severity == "WARNING"


# The troubleshooting guide's three ways out, as it writes them.

def test_conflict_option_1_rename_the_existing_local_user(make_app, api):
    handle = conflicting_john(make_app, api)
    sql(handle, "UPDATE users SET username='olduser-renamed' WHERE username='john';")
    login(handle, "john", "john-pass", status=302)
    assert user_row(handle, "john").external_id == "ext-john-2"
    assert user_row(handle, "olduser-renamed").external_id == "ext-john-1"


def test_conflict_option_2_the_api_returns_a_different_username(make_app, api):
    handle = conflicting_john(make_app, api)
    api.answer_usernames["john"] = "john@company.com"
    login(handle, "john", "john-pass", status=302)
    new = user_row(handle, "john@company.com")
    assert (new.external_id, new.auth_source) == ("ext-john-2", "http_api")
    assert user_row(handle, "john").external_id == "ext-john-1"
    login(handle, "john", "john-pass", status=302)  # found again by external_id
    with handle.db() as db:
        assert len(db.scalars(select(User).where(User.external_id == "ext-john-2")).all()) == 1


@pytest.mark.parametrize("auth_source", ["http_api", "local"])
def test_conflict_option_3_manual_account_merge(make_app, api, auth_source):
    handle = make(make_app, api.url)
    add_user(handle, username="john", email="john@local.example",
             password_hash=hash_password("old-local-pass"), auth_source=auth_source,
             external_id="ext-john-1" if auth_source == "http_api" else None)
    page = login(handle, "john", "john-pass", status=401)
    assert (CONFLICT if auth_source == "http_api" else GENERIC) in page.text
    before = user_row(handle, "john")
    sql(handle, "UPDATE users SET auth_source='http_api', external_id='ext-john-2' "
                "WHERE username='john';")
    login(handle, "john", "john-pass", status=302)
    after = user_row(handle, "john")
    assert after.id == before.id
    assert after.email == "john@api.example"


def test_username_of_a_user_from_another_source_is_a_conflict(make_app, api):
    handle = make(make_app, api.url)
    add_user(handle, username="john", auth_source="example", external_id="example:john")
    page = login(handle, "john", "john-pass", status=401)
    assert CONFLICT in page.text
    assert user_row(handle, "john").auth_source == "example"


def test_email_owned_by_another_user_is_a_conflict(make_app, api):
    handle = make(make_app, api.url)
    add_user(handle, username="someone", email="alice@api.example",
             password_hash=hash_password("x" * 12), auth_source="local")
    page = login(handle, "alice", "alice-pass", status=401)
    assert CONFLICT in page.text
    assert user_row(handle, "alice") is None

    # A later email change onto another user's address changes nothing either.
    api.users["alice"]["email"] = "fresh@api.example"
    login(handle, "alice", "alice-pass", status=302)
    api.users["alice"]["email"] = "alice@api.example"
    page = login(handle, "alice", "alice-pass", status=401)
    assert CONFLICT in page.text
    assert user_row(handle, "alice").email == "fresh@api.example"


# ---------------------------------------------------------------------------
# Service-to-service authentication
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-API-Secret", "X-Internal-Token"])
def test_simple_mode_sends_the_secret_header(make_app, header):
    with running_api(mode="simple", header=header) as api:
        extra = {} if header == "X-API-Secret" else {"HTTP_API_AUTH_HEADER": header}
        handle = make(make_app, api.url, HTTP_API_AUTH_MODE="simple",
                      HTTP_API_AUTH_SECRET=SECRET, **extra)
        login(handle, "alice", "alice-pass", status=302)
        (seen,) = api.seen
        assert seen.auth_ok and seen.headers[header] == SECRET
        assert "X-Signature" not in seen.headers


@pytest.mark.parametrize("path", ["/api/v1/verify?tenant=t-1", "/api/vérify?tenant=ü&b=1",
                                  "/"])
def test_hmac_mode_is_verified_by_the_api(make_app, path):
    with running_api(mode="hmac", path=path) as api:
        handle = make(make_app, api.url, HTTP_API_AUTH_MODE="hmac",
                      HTTP_API_AUTH_SECRET=SECRET)
        login(handle, "alice", "alice-pass", status=302)
        (seen,) = api.seen
        assert seen.auth_ok, seen.auth_problem
        if "?" in path:
            assert "?tenant=" in seen.path  # the query is part of what is signed
        assert abs(int(seen.headers["X-Timestamp"]) - time.time()) < 60
        assert seen.headers["X-Signature"] == seen.headers["X-Signature"].lower()
        assert len(seen.headers["X-Signature"]) == 64
        assert SECRET not in json.dumps(seen.headers)  # the secret itself is never sent


@pytest.mark.parametrize("mode", ["simple", "hmac"])
def test_wrong_secret_is_refused_by_the_api(make_app, mode):
    with running_api(mode=mode) as api:
        handle = make(make_app, api.url, HTTP_API_AUTH_MODE=mode,
                      HTTP_API_AUTH_SECRET="not-the-shared-secret")
        page = login(handle, "alice", "alice-pass", status=401)
        assert GENERIC in page.text
        assert api.seen[0].auth_ok is False
        (failure,) = audit(handle, "AUTHENTICATION_FAILURE")
        expected = "bad API secret" if mode == "simple" else "bad signature"
        assert failure.error_message == f"httpapi: HTTP 401: {expected}"


# ---------------------------------------------------------------------------
# Retries, timeouts, an unreachable API
# ---------------------------------------------------------------------------


def test_503_then_200_succeeds_through_retries(make_app):
    with running_api(mode="hmac") as api:
        api.script.extend([Step(503, {"success": False, "message": "warming up"}),
                           Step(502, b"<html>bad gateway</html>")])
        handle = make(make_app, api.url, HTTP_API_AUTH_MODE="hmac",
                      HTTP_API_AUTH_SECRET=SECRET)
        login(handle, "alice", "alice-pass", status=302)
        assert len(api.seen) == 3
        # urllib3 re-sends the same request: body and signed headers are identical.
        assert len({s.body for s in api.seen}) == 1
        assert len({s.headers["X-Signature"] for s in api.seen}) == 1
        assert all(s.auth_ok for s in api.seen)
        assert user_row(handle, "alice").external_id == "ext-alice"


def test_retries_back_off_exponentially(make_app, api):
    api.script.extend([Step(503, {}), Step(429, {}), Step(500, {})])
    handle = make(make_app, api.url, settings={"authgate.http_api_retry_delay": "100ms",
                                               "authgate.http_api_max_retry_delay": "1s"})
    started = time.monotonic()
    login(handle, "alice", "alice-pass", status=302)
    elapsed = time.monotonic() - started
    assert len(api.seen) == 4
    assert 0.7 <= elapsed < 3, elapsed  # 0.1 + 0.2 + 0.4 s


def test_retry_after_is_honoured_but_capped(make_app, api):
    api.script.append(Step(503, {}, headers={"Retry-After": "120"}))
    handle = make(make_app, api.url)  # HTTP_API_MAX_RETRY_DELAY=50ms
    started = time.monotonic()
    login(handle, "alice", "alice-pass", status=302)
    assert time.monotonic() - started < 2
    assert len(api.seen) == 2


def test_unreadable_retry_after_is_ignored(make_app, api):
    api.script.append(Step(503, {}, headers={"Retry-After": "soon-ish"}))
    handle = make(make_app, api.url)
    login(handle, "alice", "alice-pass", status=302)  # ignored: the normal back-off
    assert len(api.seen) == 2


def test_api_always_503_is_unavailable_with_an_audit_event(make_app, api):
    api.script.extend([Step(503, {"success": False, "message": "down"})] * 10)
    handle = make(make_app, api.url, HTTP_API_MAX_RETRIES="2")
    page = login(handle, "alice", "alice-pass", status=503)
    assert UNAVAILABLE in page.text
    assert len(api.seen) == 3  # one attempt + HTTP_API_MAX_RETRIES
    (failure,) = audit(handle, "AUTHENTICATION_FAILURE")
    assert (failure.severity, failure.success, failure.actor_username) == (
        "ERROR", False, "alice")
    assert failure.error_message == (f"httpapi: HTTP 503 from {api.url.split('?')[0]} after "
                                     "3 attempts: down")
    assert user_row(handle, "alice") is None


def test_hanging_api_is_cut_off_by_the_timeout(make_app, api, caplog):
    api.script.append(Step(200, {"success": True, "user_id": "late"}, delay=3))
    handle = make(make_app, api.url, HTTP_API_TIMEOUT="300ms")
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        page = login(handle, "alice", "alice-pass", status=503)
    elapsed = time.monotonic() - started
    assert UNAVAILABLE in page.text
    assert elapsed < 2, elapsed
    assert len(api.seen) == 1  # a read timeout is not retried
    (failure,) = audit(handle, "AUTHENTICATION_FAILURE")
    assert "timeout waiting for authentication response" in failure.error_message
    assert "Authentication failed: timeout waiting for authentication response" in caplog.text


def test_connection_refused_is_unavailable(make_app, caplog):
    url = closed_port_url()
    handle = make(make_app, url)
    with caplog.at_level(logging.INFO):
        page = login(handle, "alice", "alice-pass", status=503)
    assert UNAVAILABLE in page.text
    (failure,) = audit(handle, "AUTHENTICATION_FAILURE")
    assert failure.error_message == f"httpapi: connection refused by {url} (tried 4 times)"
    # The troubleshooting guide's symptom, verbatim.
    assert "Authentication failed: connection refused" in caplog.text
    assert caplog.text.count("Retrying (LoginRetry(") == 3  # urllib3 did the retrying


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_certificate_is_verified_unless_told_not_to(make_app, tmp_path, caplog,
                                                          monkeypatch):
    cert = self_signed(tmp_path)
    with running_api(cert=cert) as api:
        assert api.url.startswith("https://127.0.0.1:")
        handle = make(make_app, api.url)
        page = login(handle, "alice", "alice-pass", status=503)
        assert UNAVAILABLE in page.text
        assert api.seen == []  # the password was never sent
        (failure,) = audit(handle, "AUTHENTICATION_FAILURE")
        assert failure.error_message.startswith(f"httpapi: TLS error talking to "
                                                f"{api.url.split('?')[0]}")

        with caplog.at_level(logging.WARNING):
            handle = make(make_app, api.url, HTTP_API_INSECURE_SKIP_VERIFY="true")
        assert "HTTP_API_INSECURE_SKIP_VERIFY is on" in caplog.text
        login(handle, "alice", "alice-pass", status=302)
        assert len(api.seen) == 1

        # Trusting the certificate is the production answer.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert[0])
        handle = make(make_app, api.url)
        login(handle, "alice", "alice-pass", status=302)
        assert len(api.seen) == 2


@pytest.mark.parametrize(("step", "why"), [
    (Step(200, b"<html>login</html>"), "is not the expected JSON object"),
    (Step(200, {"success": "yes"}), "is not the expected JSON object"),
    (Step(200, {"success": True, "user_id": ""}), "says success but has no user_id"),
    (Step(404, b"<html>Not Found</html>"), "HTTP 404 from"),
    (Step(405, b""), "HTTP 405 from"),
])
def test_unusable_answers_are_unavailable(make_app, api, step, why):
    api.script.append(step)
    handle = make(make_app, api.url)
    page = login(handle, "alice", "alice-pass", status=503)
    assert UNAVAILABLE in page.text
    (failure,) = audit(handle, "AUTHENTICATION_FAILURE")
    assert why in failure.error_message


def test_redirects_are_not_followed(make_app, api):
    with running_api() as elsewhere:
        api.script.append(Step(307, {}, headers={"Location": elsewhere.url}))
        handle = make(make_app, api.url)
        page = login(handle, "alice", "alice-pass", status=503)
        assert UNAVAILABLE in page.text
        assert elsewhere.seen == []  # the password went nowhere else
        (failure,) = audit(handle, "AUTHENTICATION_FAILURE")
        assert "HTTP 307 redirect" in failure.error_message


def test_403_and_other_json_4xx_are_rejections(make_app, api):
    api.script.extend([Step(403, {"success": False, "message": "account locked"}),
                       Step(422, {"success": False, "message": "bad username format"})])
    handle = make(make_app, api.url)
    assert GENERIC in login(handle, "alice", "alice-pass", status=401).text
    assert GENERIC in login(handle, "alice", "alice-pass", status=401).text
    assert [f.error_message for f in audit(handle, "AUTHENTICATION_FAILURE")] == [
        "httpapi: HTTP 403: account locked", "httpapi: HTTP 422: bad username format"]


# ---------------------------------------------------------------------------
# Secrets stay secret
# ---------------------------------------------------------------------------


def test_logs_and_reasons_never_contain_the_password_or_the_secret(make_app, caplog):
    password = "Pa55-very-secret-word"
    with running_api(mode="simple") as api, caplog.at_level(logging.DEBUG):
        api.users["alice"]["password"] = password
        handle = make(make_app, api.url, HTTP_API_AUTH_MODE="simple",
                      HTTP_API_AUTH_SECRET=SECRET)
        login(handle, "alice", password, status=302)
        api.script.extend([
            Step(200, {"success": False, "message": f"password {password} is wrong"}),
            Step(503, {"message": f"secret {SECRET} rejected"}),
            Step(503, {"message": f"secret {SECRET} rejected"}),
            Step(503, {"message": f"secret {SECRET} rejected"}),
            Step(503, {"message": f"secret {SECRET} rejected"}),
        ])
        login(handle, "alice", password, status=401)
        login(handle, "alice", password, status=503)
    reasons = [f.error_message for f in audit(handle, "AUTHENTICATION_FAILURE")]
    assert reasons == ["httpapi: API answered success=false (HTTP 200): password *** is wrong",
                       f"httpapi: HTTP 503 from {api.url.split('?')[0]} after 4 attempts: "
                       "secret *** rejected"]
    assert "HTTP API accepted user 'alice'" in caplog.text
    for logged in (caplog.text, json.dumps(reasons)):
        assert password not in logged
        assert SECRET not in logged


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def test_settings_are_declared_by_the_plugin(make_app, api):
    handle = make_app(settings={**FAST, "authgate.auth_sources": "local httpapi",
                                "authgate.http_api_url": api.url,
                                "authgate.http_api_max_retries": "5",
                                "authgate.http_api_auth_mode": "none"}, plugins=PLUGINS)
    settings, spec = handle.runtime.settings, handle.runtime.spec
    assert spec.owners["http_api_url"] in ("auth_httpapi", "authgate_plugins.auth_httpapi")
    assert {s.env for s in spec if s.name.startswith("http_api_")} == {
        "HTTP_API_URL", "HTTP_API_TIMEOUT", "HTTP_API_INSECURE_SKIP_VERIFY",
        "HTTP_API_AUTH_MODE", "HTTP_API_AUTH_SECRET", "HTTP_API_AUTH_HEADER",
        "HTTP_API_MAX_RETRIES", "HTTP_API_RETRY_DELAY", "HTTP_API_MAX_RETRY_DELAY"}
    assert {s.section for s in spec if s.name.startswith("http_api_")} == {"Authentication"}
    assert spec["http_api_auth_secret"].secret
    assert settings.http_api_max_retries == 5
    source = handle.runtime.auth.sources[1]
    assert (source.name, source.retry.total, source.retry.status_forcelist) == (
        "httpapi", 5, (429, 500, 502, 503, 504))


def test_defaults(make_app, api):
    handle = make_app(environ={"AUTH_MODE": "http_api", "HTTP_API_URL": api.url},
                      plugins=PLUGINS)
    source = handle.runtime.auth.sources[1]
    assert (source.timeout, source.auth_mode, source.max_retries) == (10.0, "none", 3)
    assert (source.retry.backoff_factor, source.retry.backoff_max) == (1.0, 10.0)
    assert source.retry.allowed_methods == frozenset({"POST"})
    assert handle.runtime.settings.http_api_auth_header == "X-API-Secret"
    assert handle.runtime.settings.http_api_insecure_skip_verify is False


def test_url_is_required_when_selected(make_app):
    with pytest.raises(ConfigurationError, match="HTTP_API_URL") as info:
        make_app(environ={"AUTH_MODE": "http_api"}, plugins=PLUGINS)
    assert "authgate.http_api_url" in str(info.value)
    make_app(plugins=PLUGINS)  # not selected: no URL needed


@pytest.mark.parametrize("mode", ["simple", "hmac"])
def test_secret_is_required_for_simple_and_hmac(make_app, api, mode):
    with pytest.raises(ConfigurationError, match="HTTP_API_AUTH_SECRET"):
        make(make_app, api.url, HTTP_API_AUTH_MODE=mode)


@pytest.mark.parametrize(("env", "value", "expected"), [
    ("HTTP_API_URL", "auth.example.com/verify", "absolute http:// or https:// URL"),
    ("HTTP_API_AUTH_MODE", "digest", "one of none, simple, hmac"),
    ("HTTP_API_TIMEOUT", "0", "greater than 0"),
    ("HTTP_API_MAX_RETRIES", "-1", "at least 0"),
    ("HTTP_API_AUTH_HEADER", "X Secret", "HTTP header name"),
])
def test_bad_values_stop_start_up(make_app, api, env, value, expected):
    with pytest.raises(ConfigurationError) as info:
        make(make_app, api.url, **{env: value})
    assert env in str(info.value) and expected in str(info.value)


def test_bad_secret_value_is_not_echoed(make_app, api):
    with pytest.raises(ConfigurationError) as info:
        make(make_app, api.url, HTTP_API_AUTH_MODE="hmac", HTTP_API_AUTH_SECRET="")
    assert "HTTP_API_AUTH_SECRET" in str(info.value)


# ---------------------------------------------------------------------------
# The auth-source contract
# ---------------------------------------------------------------------------


class TestHTTPAPIAuthSource(AuthSourceContract):
    """AuthSourceContract against the source and the fake API.

    "Unknown user" is the API answering 404 with a JSON body: the source then
    returns None so the next source is asked.  (A 404 without JSON is a wrong
    HTTP_API_URL, and is "unavailable" instead.)
    """

    @pytest.fixture
    def fake_api(self) -> Iterator[FakeLoginAPI]:
        with running_api(mode="hmac") as server:
            yield server

    @pytest.fixture
    def auth_source(self, fake_api):
        from authgate_plugins.auth_httpapi import HTTPAPIAuthSource

        source = HTTPAPIAuthSource(fake_api.url, timeout=2, auth_mode="hmac", secret=SECRET,
                                   max_retries=1, retry_delay=0.01, max_retry_delay=0.01)
        yield source
        source.close()

    @pytest.fixture
    def good_credentials(self):
        return ("alice", "alice-pass")

    @pytest.fixture
    def bad_password_credentials(self):
        return ("alice", "john-pass")

    @pytest.fixture
    def unknown_username(self):
        return "carol"

    def test_identity_carries_the_api_user(self, auth_source, auth_context):
        identity = auth_source.authenticate("alice", "alice-pass", auth_context)
        assert (identity.username, identity.auth_source, identity.external_id,
                identity.email, identity.full_name, identity.user_id) == (
            "alice", "http_api", "ext-alice", "alice@api.example", "Alice Api", None)

    def test_unavailable_is_a_rejection_that_stops_the_chain(self, auth_source, auth_context,
                                                            fake_api):
        fake_api.script.extend([Step(500, {})] * 2)
        with pytest.raises(AuthUnavailable) as info:
            auth_source.authenticate("alice", "alice-pass", auth_context)
        assert isinstance(info.value, AuthRejected)
        assert info.value.message == UNAVAILABLE

    def test_local_user_is_not_mine(self, auth_source, fake_api, tmp_path):
        from authgate.testing.contracts import migrated_sqlite_session

        session, close = migrated_sqlite_session(tmp_path / "local.db")
        try:
            session.add(User(username="alice", auth_source="local",
                             password_hash=hash_password("local-pass")))
            session.commit()
            assert auth_source.authenticate("alice", "alice-pass",
                                            AuthContext(dbsession=session)) is None
            assert fake_api.seen == []
        finally:
            close()


# ---------------------------------------------------------------------------
# User sync under a race
# ---------------------------------------------------------------------------


def test_first_login_race_updates_the_row_another_request_created(make_app, api,
                                                                  monkeypatch):
    """Two first logins of one person at once: the insert that loses finds the winner's row.

    The race is staged: the row already exists, but this request's username check is
    made to miss it (as a read before the other request committed would), so the
    INSERT hits the unique constraint inside its savepoint.
    """
    from authgate.interfaces import Identity
    from authgate.services import users

    handle = make(make_app, api.url)
    add_user(handle, username="alice", auth_source="http_api", external_id="ext-alice",
             email="old@api.example")
    # The first look of each kind (before the insert) misses the row.
    monkeypatch.setattr(users, "find_by_username", _stale_once(users.find_by_username))
    find_external = _stale_once(users._find_external)
    monkeypatch.setattr(users, "_find_external", find_external)
    identity = Identity(username="alice", auth_source="http_api", external_id="ext-alice",
                        email="alice@api.example")
    with handle.db() as db:
        user = users.sync_identity(db, identity)
        assert user.email == "alice@api.example"
    assert len(find_external.calls) == 2  # again, after the INSERT lost
    with handle.db() as db:
        rows = db.scalars(select(User).where(User.username == "alice")).all()
        assert [(u.external_id, u.email) for u in rows] == [("ext-alice", "alice@api.example")]


def _stale_once(find):
    calls = []

    def finder(*args):
        calls.append(args)
        return None if len(calls) == 1 else find(*args)

    finder.calls = calls
    return finder
