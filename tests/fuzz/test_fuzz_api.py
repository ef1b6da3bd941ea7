"""Property-based fuzzing of the JSON API with schemathesis, against a real server.

Every operation of /openapi.json gets a bounded number of generated requests
(valid and invalid: ``FUZZ_EXAMPLES`` per operation, fixed seed, so CI is
deterministic and fast), sent anonymously, with a wrong credential, or with a
valid one (client Basic auth, a bearer token, the admin session), and each
response must:

* not be a 5xx;
* match the document: a documented status code, content type and body schema
  (and an undocumented method on a documented path is 405 with ``Allow``);
* carry no stack trace (``Traceback``, ``File "…"``);
* carry no secret: JWT_SECRET, SESSION_SECRET, the admin password, the client
  secret.

At the end the server's log is checked for tracebacks and the same secrets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import schemathesis
from e2e_support import LiveServer, start_server
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from authgate.openapi import build_document

pytestmark = pytest.mark.e2e

# CI: 25 examples per operation, derandomized (the same cases every run).  Explore
# locally with AUTHGATE_FUZZ_EXAMPLES=500 AUTHGATE_FUZZ_RANDOM=1.
FUZZ_EXAMPLES = int(os.environ.get("AUTHGATE_FUZZ_EXAMPLES", "25"))
DERANDOMIZE = not os.environ.get("AUTHGATE_FUZZ_RANDOM")
SECRETS = {
    "JWT_SECRET": "fuzz-jwt-secret-do-not-leak-0123456789abcdef",
    "SESSION_SECRET": "fuzz-session-secret-do-not-leak-0123456789abcd",
    "DEFAULT_ADMIN_PASSWORD": "fuzz-admin-password-do-not-leak-42",
}
TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")

schema = schemathesis.openapi.from_dict(build_document("http://127.0.0.1"))


class Fuzzed:
    """The live server plus the credentials the cases may use."""

    def __init__(self, server: LiveServer, client_id: str, client_secret: str,
                 token: str, admin_cookie: str):
        self.server, self.client_id, self.client_secret = server, client_id, client_secret
        self.token, self.admin_cookie = token, admin_cookie

    @property
    def secrets(self) -> list[str]:
        return [*SECRETS.values(), self.client_secret]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, request):
    from authgate.testing import postgres

    env: dict[str, str] = {}
    database = None
    if request.config.getoption("--authgate-store") == "postgres":
        database = postgres.create_database()
        env = {"DATABASE_DRIVER": "postgres",
               "DATABASE_DSN": f"{postgres.server_dsn()} dbname={database}"}
    cwd = tmp_path_factory.mktemp("fuzz-server")
    server = start_server(cwd, {"ENABLE_RATE_LIMIT": "false", **SECRETS, **env},
                          pass_env=["PYTHONPATH"], log_name="server.log")
    try:
        made = subprocess.run([str(Path(sys.executable).with_name("authgate")),
                               "create-client", "Fuzz Service", "--confidential",
                               "--client-credentials", "--scopes", "read write"],
                              cwd=cwd, env=server.env, capture_output=True, text=True,
                              timeout=60, check=True).stdout
        client_id = re.search(r"^Client ID:\s+(\S+)$", made, re.M).group(1)
        client_secret = re.search(r"^Client Secret:\s+(\S+)$", made, re.M).group(1)
        token = requests.post(server.url + "/oauth/token", auth=(client_id, client_secret),
                              data={"grant_type": "client_credentials"},
                              timeout=10).json()["access_token"]
        admin = requests.Session()
        page = admin.get(server.url + "/login", timeout=10).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        admin.post(server.url + "/login", timeout=10, data={
            "username": "admin", "password": SECRETS["DEFAULT_ADMIN_PASSWORD"],
            "csrf_token": csrf})
        assert admin.get(server.url + "/admin/audit/api", timeout=10).status_code == 200
        yield Fuzzed(server, client_id, client_secret, token, admin.cookies["session"])
    finally:
        server.stop()
        if database:
            postgres.drop_database(database)


def _credentials(case, fuzzed: Fuzzed) -> tuple[dict, dict]:
    """(headers, cookies) for a case: anonymous, a wrong credential or the right one,
    chosen from the generated data so a run is reproducible."""
    choice = sum(map(ord, repr((case.query, case.body, case.headers)))) % 3
    security = {name for requirement in case.operation.definition.raw.get("security", [])
                for name in requirement}
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if choice == 0:
        return headers, cookies
    if "registrationAccessToken" in security:
        headers["Authorization"] = "Bearer not-a-registration-token"
    elif "bearer" in security:
        headers["Authorization"] = f"Bearer {fuzzed.token if choice == 2 else 'x.y.z'}"
    elif "adminSession" in security:
        cookies["session"] = fuzzed.admin_cookie if choice == 2 else "forged"
    elif "clientBasic" in security:
        secret = fuzzed.client_secret if choice == 2 else "wrong-secret"
        headers["Authorization"] = requests.auth._basic_auth_str(fuzzed.client_id, secret)
    return headers, cookies


def no_trace_and_no_secret(fuzzed: Fuzzed, response) -> None:
    text = response.text
    assert not TRACE.search(text), f"stack trace in the response: {text[:500]}"
    for secret in fuzzed.secrets:
        assert secret not in text, "a secret is in the response"
        for value in response.headers.values():
            assert secret not in value, "a secret is in a response header"


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, derandomize=DERANDOMIZE, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_fuzz_json_api(case, fuzzed):
    headers, cookies = _credentials(case, fuzzed)
    response = case.call(base_url=fuzzed.server.url, headers=headers, cookies=cookies,
                         timeout=30)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance,
                                             response_schema_conformance,
                                             unsupported_method])
    no_trace_and_no_secret(fuzzed, response)


def test_fuzz_left_the_server_healthy_and_its_log_clean(fuzzed):
    """Runs after the fuzzing above (pytest keeps the file's order)."""
    assert requests.get(fuzzed.server.url + "/health", timeout=10).status_code == 200
    log = fuzzed.server.log()
    assert not TRACE.search(log), log[-3000:]
    for secret in fuzzed.secrets:
        assert secret not in log, "a secret is in the server log"
    assert " 500 " not in log
