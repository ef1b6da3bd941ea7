"""SQL statements per request on the hot paths (issue #11: "the minimum number of
queries per request (count them in a test)").

Every statement the app sends through its engine is counted: with a SQLAlchemy
``before_cursor_execute`` listener for the ORM sessions, and with
``authgate.rawsql.on_statement`` for the prebuilt statements the API lane and
the audit sink run on raw connections (the request's own statements and the
audit row after it).  Each test pins the current count.  Fewer is welcome:
lower the number in the same change.  More needs a reason -- these are the
endpoints a fleet of devices and resource servers call thousands of times a
second (see docs/performance.md and ``python -m bench``).
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote_plus

import pytest
from sqlalchemy import event, select

from authgate import rawsql
from authgate.cli import create_oauth_client
from authgate.models import OAuthClient, User
from authgate.services import tokens
from authgate.testing import form

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class StatementLog:
    """The statements sent through ``engine`` while recording."""

    def __init__(self, engine):
        self.engine = engine
        self.statements: list[str] = []
        self.recording = False
        event.listen(engine, "before_cursor_execute", self._record)
        # The API lane's statements run on the raw DB-API connection (authgate.rawsql).
        self._remove_raw_hook = rawsql.on_statement(engine, self._record_raw)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        self._record_raw(statement)

    def _record_raw(self, statement: str) -> None:
        if self.recording:
            self.statements.append(" ".join(statement.split()))

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)
        self._remove_raw_hook()

    def during(self, action):
        self.statements = []
        self.recording = True
        try:
            result = action()
        finally:
            self.recording = False
        return result

    def summary(self) -> list[str]:
        """``"SELECT oauth_clients"``, ``"INSERT audit_logs"``, ... in order."""
        out = []
        for sql in self.statements:
            verb = sql.split(" ", 1)[0].upper()
            match = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", sql, re.IGNORECASE)
            out.append(f"{verb} {match.group(1)}" if match and verb != "SAVEPOINT"
                       and verb != "RELEASE" else verb)
        return out

    def check(self, expected: list[str]) -> None:
        got = self.summary()
        assert got == expected, (
            f"{len(got)} statements instead of {len(expected)}:\n  " + "\n  ".join(got)
            + "\n(fewer is welcome: update the expected list; more needs a reason)")


@pytest.fixture
def app(make_app, request):
    # A client cache that cannot expire between the warm-up and the measured request
    # on a slow machine (the default CLIENT_CACHE_TTL is 5 s).  Device-poll tests
    # run with each DEVICE_POLL_PACE that changes the statements (indirect param).
    pace = getattr(request, "param", "auto")
    return make_app(environ={"CLIENT_CACHE_TTL": "1h", "DEVICE_POLL_PACE": pace})


# The device-poll tests: with the pace in memory (the default on either store;
# Redis gives the same statements) and in the device_codes row.
each_pace = pytest.mark.parametrize("app", ["auto", "database"], indirect=True)


@pytest.fixture
def sql(app):
    log = StatementLog(app.runtime.engine)
    yield log
    log.close()


@pytest.fixture
def ids(app):
    """The default (public, device-flow) client, a confidential client with client
    credentials enabled, its Basic header, and a token pair issued to admin."""
    with app.db() as db:
        device = db.scalars(select(OAuthClient).order_by(OAuthClient.id)).first()
        service, secret = create_oauth_client(db, name="Resource server", confidential=True,
                                              device=True, client_credentials=True)
        admin = db.scalars(select(User.id).where(User.username == "admin")).one()
        issued = tokens.issue(db, app.runtime.signer, app.runtime.settings, subject=admin,
                              client=device, scopes=["email", "profile"], grant_type=GRANT)
        raw = f"{quote_plus(service.client_id)}:{quote_plus(secret)}".encode()
        return {"device": device.client_id, "service": service.client_id,
                "basic": {"Authorization": "Basic " + base64.b64encode(raw).decode()},
                "access": issued.access_token, "refresh": issued.refresh_token}


def new_device_code(app, client_id: str) -> dict:
    return app.testapp.post("/oauth/device/code", {"client_id": client_id}, status=200).json


def pacing_write(app) -> list[str]:
    """The statement that records a poll when there is no pacer (authgate.pacing)."""
    return [] if app.runtime.pacer is not None else ["UPDATE device_codes"]


@each_pace
def test_polls_are_paced_in_memory_unless_the_row_is_asked_for(app):
    database = app.runtime.settings.device_poll_pace == "database"
    assert (app.runtime.pacer is None) == database


def test_device_code_request(app, sql, ids):
    # The client's first request loads it; later ones find it in the client cache
    # (authgate.clientcache).
    sql.during(lambda: new_device_code(app, ids["device"]))
    sql.check(["SELECT oauth_clients", "SAVEPOINT", "INSERT device_codes", "RELEASE",
               "INSERT audit_logs"])
    sql.during(lambda: new_device_code(app, ids["device"]))
    sql.check(["SAVEPOINT", "INSERT device_codes", "RELEASE", "INSERT audit_logs"])


def test_a_client_change_is_seen_by_the_next_request(app, sql, ids):
    new_device_code(app, ids["device"])  # cached now
    with app.db() as db:
        db.scalars(select(OAuthClient).where(OAuthClient.client_id == ids["device"])).one() \
            .status = "inactive"
    sql.during(lambda: app.testapp.post("/oauth/device/code", {"client_id": ids["device"]},
                                        status=400))
    sql.check(["SELECT oauth_clients"])  # loaded again, and refused


@each_pace
def test_device_poll_while_pending(app, sql, ids):
    code = new_device_code(app, ids["device"])
    response = sql.during(lambda: app.testapp.post("/oauth/token", {
        "grant_type": GRANT, "device_code": code["device_code"], "client_id": ids["device"]},
        status=400))
    assert response.json["error"] == "authorization_pending"
    # The code only (the client is cached since the code request); no audit event.
    # The pace is kept in memory or Redis; only with DEVICE_POLL_PACE=database
    # is it a write to the row (last_polled_at).
    sql.check(["SELECT device_codes", *pacing_write(app)])


@each_pace
def test_device_poll_too_fast(app, sql, ids):
    code = new_device_code(app, ids["device"])
    params = {"grant_type": GRANT, "device_code": code["device_code"],
              "client_id": ids["device"]}
    app.testapp.post("/oauth/token", params, status=400)
    response = sql.during(lambda: app.testapp.post("/oauth/token", params, status=400))
    assert response.json["error"] == "slow_down"
    # ... and the raised interval, which is kept in the row.
    sql.check(["SELECT device_codes", *pacing_write(app), "UPDATE device_codes"])


@each_pace
def test_device_token_issuance(app, sql, ids):
    code = new_device_code(app, ids["device"])
    app.login()
    page = app.testapp.get(f"/device?user_code={code['user_code']}")
    form(page, "/device/verify").submit("action", value="approve")
    app.rewind_poll(code["device_code"])  # the client waited its interval
    response = sql.during(lambda: app.testapp.post("/oauth/token", {
        "grant_type": GRANT, "device_code": code["device_code"], "client_id": ids["device"]},
        status=200))
    assert response.json["access_token"] and response.json["refresh_token"]
    # Code, pacing write, the winning conditional UPDATE, the row reloaded, the
    # user's grant for this client, both tokens (one executemany), both events.
    sql.check(["SELECT device_codes", *pacing_write(app),
               "UPDATE device_codes", "SELECT device_codes", "SELECT user_authorizations",
               "INSERT tokens", "INSERT audit_logs"])


def test_client_credentials_issuance(app, sql, ids):
    def issue():
        return app.testapp.post("/oauth/token", {"grant_type": "client_credentials"},
                                headers=ids["basic"], status=200)

    assert sql.during(issue).json["access_token"]
    # One client lookup although the view asks twice (public? then authenticate) ...
    sql.check(["SELECT oauth_clients", "INSERT tokens", "INSERT audit_logs"])
    # ... and none once the client is cached.
    assert sql.during(issue).json["access_token"]
    sql.check(["INSERT tokens", "INSERT audit_logs"])


def warm(app, ids) -> None:
    """Both clients in the client cache, as on a running server."""
    new_device_code(app, ids["device"])
    app.testapp.post("/oauth/introspect", {"token": "warm-up"}, headers=ids["basic"],
                     status=200)


def test_introspection(app, sql, ids):
    warm(app, ids)
    response = sql.during(lambda: app.testapp.post(
        "/oauth/introspect", {"token": ids["access"]}, headers=ids["basic"], status=200))
    assert response.json["active"] is True and response.json["username"] == "admin"
    # Token with its user's name (one statement, an outer join), the audit event; the
    # caller is cached.
    sql.check(["SELECT tokens", "INSERT audit_logs"])


def test_introspection_of_an_unknown_token(app, sql, ids):
    warm(app, ids)
    response = sql.during(lambda: app.testapp.post(
        "/oauth/introspect", {"token": "not-a-token"}, headers=ids["basic"], status=200))
    assert response.json == {"active": False}
    sql.check(["SELECT tokens"])


def test_refresh_fixed_mode(app, sql, ids):
    warm(app, ids)
    response = sql.during(lambda: app.testapp.post("/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": ids["refresh"],
        "client_id": ids["device"]}, status=200))
    assert response.json["refresh_token"] == ids["refresh"]
    # The refresh token is not reloaded after its UPDATE (its new values are set on
    # the loaded row).
    sql.check(["SELECT tokens", "SELECT users", "UPDATE tokens",
               "INSERT tokens", "INSERT audit_logs"])


def test_jwks_and_health(app, sql):
    sql.during(lambda: app.testapp.get("/.well-known/jwks.json", status=200))
    sql.check([])
    sql.during(lambda: app.testapp.get("/health", status=200))
    sql.check(["SELECT"])  # SELECT 1, outside the request transaction
