"""Prometheus metrics (authgate.metrics): /metrics after real flows, the token, the
multiprocess mode in real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client.parser import text_string_to_metric_families

from authgate import hookimpl
from authgate.components import ComponentSpec
from authgate.testing import form

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TOKEN = "metrics-token-0123456789abcdef"


class IncludeMetrics:
    """Includes authgate.metrics and authgate.ratelimit (no-ops once the app assembly
    includes them itself)."""

    __name__ = "include_metrics"

    @hookimpl
    def authgate_pyramid_includes(self, settings):
        return ["authgate.ratelimit", "authgate.metrics"]


class BrokenSink:
    name = "broken"

    def write(self, events):
        raise OSError("disk full")


class BrokenSinkPlugin:
    __name__ = "broken_sink"

    @hookimpl
    def authgate_register_audit_sinks(self):
        return [ComponentSpec("broken", lambda ctx: BrokenSink(), "Always fails")]


@pytest.fixture
def metered(make_app):
    def factory(environ=None, settings=None, plugins=()):
        env = {"METRICS_ENABLED": "true", **(environ or {})}
        return make_app(settings=settings, environ=env, plugins=[IncludeMetrics(), *plugins])

    return factory


def scrape(app, **kwargs) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from GET /metrics."""
    response = app.testapp.get("/metrics", **kwargs)
    assert response.content_type == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def device_flow(app) -> dict:
    code = app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id}).json
    poll = {"grant_type": GRANT, "device_code": code["device_code"],
            "client_id": app.default_client_id}
    assert app.testapp.post("/oauth/token", poll, status=400).json["error"] == (
        "authorization_pending")
    app.login()
    page = app.testapp.get(f"/device?user_code={code['user_code']}")
    assert "Device authorized" in form(page, "/device/verify").submit(
        "action", value="approve").text
    app.rewind_poll(code["device_code"])  # the device waited its interval
    return app.testapp.post("/oauth/token", poll, status=200).json


def test_device_flow_shows_device_code_and_token_counters(metered):
    app = metered()
    tokens = device_flow(app)
    app.testapp.post("/oauth/device/code", {"client_id": "nope"}, status=400)
    app.testapp.post("/oauth/token", {"grant_type": "refresh_token",
                                      "refresh_token": tokens["refresh_token"],
                                      "client_id": app.default_client_id}, status=200)
    app.testapp.post("/oauth/revoke", {"token": tokens["refresh_token"],
                                       "client_id": app.default_client_id}, status=200)
    app.testapp.post("/logout", {"csrf_token": app.csrf_token("/device")}, status=302)

    samples = scrape(app)
    assert value(samples, "oauth_device_codes_total", result="success") == 1
    assert value(samples, "oauth_device_codes_total", result="error") == 1
    assert value(samples, "oauth_device_codes_authorized_total") == 1
    assert value(samples, "oauth_device_code_validation_total", result="pending") == 1
    assert value(samples, "oauth_device_code_validation_total", result="success") == 1
    assert value(samples, "oauth_tokens_issued_total", token_type="access",
                 grant_type="device_code") == 1
    assert value(samples, "oauth_tokens_issued_total", token_type="refresh",
                 grant_type="device_code") == 1
    assert value(samples, "oauth_tokens_issued_total", token_type="access",
                 grant_type="refresh_token") == 1
    assert value(samples, "oauth_tokens_refreshed_total", result="success") == 1
    assert value(samples, "oauth_tokens_revoked_total", reason="client_request") >= 1
    assert value(samples, "auth_login_total", auth_source="local", result="success") == 1
    assert value(samples, "auth_attempts_total", method="password", result="success") == 1
    assert value(samples, "auth_logout_total") == 1
    assert value(samples, "http_requests_total", method="POST", path="/oauth/token",
                 status="200") == 2
    assert value(samples, "http_requests_total", method="POST", path="/oauth/device/code",
                 status="200") == 1
    assert value(samples, "http_request_duration_seconds_count", method="POST",
                 path="/oauth/token") == 3
    assert value(samples, "http_requests_in_flight") == 0
    # The database gauges: the refresh token was revoked (with its access tokens).
    assert value(samples, "oauth_device_codes_pending_authorization") == 0
    assert ("oauth_tokens_active", (("token_type", "refresh"),)) in samples
    # /metrics itself is not counted.
    assert not any(dict(labels).get("path") == "/metrics" for _, labels in samples)


def test_failed_login_and_unknown_paths(metered):
    app = metered()
    page = app.testapp.get("/login")
    login = form(page, "/login")
    login["username"], login["password"] = "admin", "wrong"
    login.submit(status=401)
    app.testapp.get("/no/such/page", status=404)
    app.testapp.get("/.env", status=404)
    samples = scrape(app)
    assert value(samples, "auth_login_total", auth_source="unknown", result="failure") == 1
    assert value(samples, "auth_attempts_total", method="password", result="failure") == 1
    assert value(samples, "http_requests_total", method="GET", path="unknown",
                 status="404") == 2
    assert value(samples, "http_requests_total", method="GET", path="/login",
                 status="200") == 1


def test_rate_limit_exceeded_counter(metered):
    app = metered(environ={"LOGIN_RATE_LIMIT": "1"})
    app.testapp.post("/login", {}, status=400)
    app.testapp.post("/login", {}, status=429)
    app.testapp.post("/login", {}, status=429)
    samples = scrape(app)
    assert value(samples, "rate_limit_exceeded_total", endpoint="/login") == 2
    # A 429 answered before routing still carries its route's pattern.
    assert value(samples, "http_requests_total", method="POST", path="/login",
                 status="429") == 2


def test_gauges_count_the_database(metered):
    app = metered(environ={"METRICS_GAUGE_UPDATE_INTERVAL": "1h"})
    for _ in range(2):
        app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id})
    samples = scrape(app)
    assert value(samples, "oauth_device_codes_active") == 2
    assert value(samples, "oauth_device_codes_pending_authorization") == 2
    assert value(samples, "oauth_tokens_active", token_type="access") == 0
    # Reused for METRICS_GAUGE_UPDATE_INTERVAL: a new code is not seen yet.
    app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id})
    assert value(scrape(app), "oauth_device_codes_active") == 2
    off = metered(environ={"METRICS_GAUGE_UPDATE_ENABLED": "false"})
    assert ("oauth_device_codes_active", ()) not in scrape(off)


def test_audit_sink_failures_are_counted(metered):
    app = metered(settings={"authgate.audit_sinks": "database broken"},
                  plugins=[BrokenSinkPlugin()])
    app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id}, status=200)
    samples = scrape(app)
    assert value(samples, "audit_events_dropped_total") == 1
    # The counting itself does not depend on the sinks.
    assert value(samples, "oauth_device_codes_total", result="success") == 1


def test_metrics_token(metered):
    app = metered(environ={"METRICS_TOKEN": TOKEN})
    missing = app.testapp.get("/metrics", status=401)
    assert missing.json == {"error": "unauthorized", "message": "Bearer token required"}
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="Metrics"'
    basic = app.testapp.get("/metrics", headers={"Authorization": "Basic eDp5"}, status=401)
    assert basic.json["message"] == "Bearer token required"
    wrong = app.testapp.get("/metrics", headers={"Authorization": "Bearer nope"}, status=401)
    assert wrong.json == {"error": "unauthorized", "message": "Invalid token"}
    assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="Metrics"'
    prefix = app.testapp.get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}"},
                             status=401)
    assert prefix.json["message"] == "Invalid token"
    ok = scrape(app, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ("http_requests_in_flight", ()) in ok
    assert "Set-Cookie" not in app.testapp.get(
        "/metrics", headers={"Authorization": f"bearer {TOKEN}"}).headers


def test_metrics_off_means_no_route(make_app):
    app = make_app(plugins=[IncludeMetrics()])  # METRICS_ENABLED defaults to false
    app.testapp.get("/metrics", status=404)
    app = make_app(environ={"METRICS_ENABLED": "false", "METRICS_TOKEN": TOKEN},
                   plugins=[IncludeMetrics()])
    app.testapp.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, status=404)


def test_each_app_has_its_own_registry(metered):
    one, two = metered(), metered()
    one.testapp.get("/health")
    one.testapp.get("/health")
    two.testapp.get("/health")
    assert value(scrape(one), "http_requests_total", method="GET", path="/health",
                 status="200") == 2
    assert value(scrape(two), "http_requests_total", method="GET", path="/health",
                 status="200") == 1


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path

    from authgate import hookimpl
    from authgate.testing import build_app

    class IncludeMetrics:
        __name__ = "include_metrics"

        @hookimpl
        def authgate_pyramid_includes(self, settings):
            return ["authgate.metrics"]

    workdir, hits = Path(sys.argv[1]), int(sys.argv[2])
    workdir.mkdir()
    handle = build_app(workdir, {"authgate.metrics_enabled": "true"},
                       plugins=[IncludeMetrics()])
    for _ in range(hits):
        handle.testapp.get("/health")
    if len(sys.argv) > 3:
        sys.stdout.write(handle.testapp.get("/metrics").text)
    handle.runtime.close()
""")


def test_multiprocess_mode_sums_every_process(tmp_path):
    """PROMETHEUS_MULTIPROC_DIR set: two worker processes count /health, a third
    one's /metrics shows the sum (prometheus_client's multiprocess collector)."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}

    def run(name, hits, scrape_it=False):
        args = [sys.executable, "-c", CHILD, str(tmp_path / name), str(hits)]
        result = subprocess.run(args + (["scrape"] if scrape_it else []), env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("worker1", 3)
    run("worker2", 2)
    text = run("worker3", 1, scrape_it=True)
    assert any(p.name.startswith("counter_") for p in shared.iterdir())
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert value(samples, "http_requests_total", method="GET", path="/health",
                 status="200") == 6
    assert value(samples, "oauth_device_codes_active") == 0  # the DB gauges are there too


def test_multiprocess_dir_must_exist(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing")}
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "w"), "0"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR=" in result.stderr and "is not a directory" in (
        result.stderr)


def test_published_documents_are_counted_and_logged(metered, caplog):
    """JWKS and discovery are answered in front of the router, but still counted in the
    HTTP metrics and written to the access log like every other request."""
    app = metered()
    with caplog.at_level("INFO", logger="authgate.access"):
        app.testapp.get("/.well-known/jwks.json", headers={"User-Agent": "probe/1"},
                        extra_environ={"REMOTE_ADDR": "192.0.2.7"})
        app.testapp.head("/.well-known/openid-configuration")
    lines = [r.getMessage() for r in caplog.records if r.name == "authgate.access"]
    assert any(line.startswith('192.0.2.7 "GET /.well-known/jwks.json" 200 ')
               and line.endswith('"probe/1"') for line in lines), lines
    assert any('"HEAD /.well-known/openid-configuration" 200' in line for line in lines)
    samples = scrape(app)
    assert value(samples, "http_requests_total", method="GET",
                 path="/.well-known/jwks.json", status="200") == 1
    assert value(samples, "http_requests_total", method="HEAD",
                 path="/.well-known/openid-configuration", status="200") == 1
    assert value(samples, "http_request_duration_seconds_count", method="GET",
                 path="/.well-known/jwks.json") == 1
