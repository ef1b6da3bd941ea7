"""Prometheus metrics at ``GET /metrics`` (prometheus_client), when METRICS_ENABLED.

HTTP metrics come from a tween (outermost, so they time the whole request):
``http_requests_total{method,path,status}`` (path = the route pattern, or
``unknown`` when no route matched, so scanners cannot blow up the label set),
``http_request_duration_seconds{method,path}`` and ``http_requests_in_flight``.
``/metrics`` itself is not counted.

Domain metrics are counted off the audit events as they are delivered (the
dispatcher's in-process observers, :class:`authgate.audit.AuditDispatcher`), so
no view needs to know about metrics and only what was committed is counted:

=====================================================  ==============================
``oauth_device_codes_total{result}``                   DEVICE_CODE_GENERATED (success);
                                                       a refused device-code request
                                                       (4xx) is ``error``
``oauth_device_codes_authorized_total``                DEVICE_CODE_AUTHORIZED
``oauth_device_code_validation_total{result}``         device-grant polls: success,
                                                       pending, expired, denied, invalid
``oauth_tokens_issued_total{token_type,grant_type}``   ACCESS/REFRESH/ID_TOKEN_ISSUED,
                                                       CLIENT_CREDENTIALS_TOKEN_ISSUED,
                                                       TOKEN_REFRESHED (access)
``oauth_tokens_revoked_total{reason}``                 TOKEN_REVOKED,
                                                       CLIENT_TOKENS_REVOKED_ALL,
                                                       SUSPICIOUS_ACTIVITY (family)
``oauth_tokens_refreshed_total{result}``               TOKEN_REFRESHED (success),
                                                       refresh reuse (reuse_detected),
                                                       other refresh errors (error)
``auth_attempts_total{method,result}``                 AUTHENTICATION_SUCCESS/FAILURE
                                                       (method password),
                                                       OAUTH_AUTHENTICATION (oauth)
``auth_login_total{auth_source,result}``               the same events
``auth_logout_total``                                  LOGOUT
``audit_events_dropped_total``                         events an audit sink failed to take
``rate_limit_exceeded_total{endpoint}``                429s from authgate.ratelimit
``rate_limit_store_errors_total``                      rate-limit store failures (fail open)
=====================================================  ==============================

Gauges read from the database when scraped, at most once per
METRICS_GAUGE_UPDATE_INTERVAL (no background thread):
``oauth_tokens_active{token_type}``, ``oauth_device_codes_active``,
``oauth_device_codes_pending_authorization``.

Each app has its own ``CollectorRegistry`` (the global one is never touched).

Several processes (gunicorn workers and the like): set the environment variable
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory writable by every worker
*before* the processes start (it must be in the real environment, not only in
``.env``; clear the directory at each deployment).  prometheus_client then keeps
the values in files there and ``/metrics`` sums every process's values
(``multiprocess.MultiProcessCollector``); ``http_requests_in_flight`` sums live
processes only.  With gunicorn, call
``prometheus_client.multiprocess.mark_process_dead(worker.pid)`` in its
``child_exit`` hook.  waitress (``authgate server``) is one process with
threads and needs none of this.

Wiring: ``config.include("authgate.metrics")`` in the app assembly and
``"authgate.metrics"`` in ``authgate.settings.CORE_SETTING_MODULES``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily
from pyramid.interfaces import IRoutesMapper
from pyramid.response import Response
from pyramid.tweens import INGRESS

from authgate.errors import ConfigurationError
from authgate.settings import Setting

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.request import Request

    from authgate.interfaces import AuditEvent
    from authgate.runtime import Runtime

log = logging.getLogger("authgate.metrics")

SECTION = "Metrics"
REGISTRY_ATTR = "authgate_metrics"
METRICS_PATH = "/metrics"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _positive(value: dt.timedelta) -> None:
    if value <= dt.timedelta(0):
        raise ValueError("a duration greater than 0")


SETTINGS: list[Setting] = [
    Setting("metrics_enabled", "METRICS_ENABLED", "bool", False, section=SECTION,
            help="Serve Prometheus metrics at `GET /metrics` (not registered at all when "
                 "false). With several worker processes set `PROMETHEUS_MULTIPROC_DIR` in "
                 "the environment (prometheus_client's multiprocess mode)."),
    Setting("metrics_token", "METRICS_TOKEN", "str", "", secret=True, section=SECTION,
            help="When set, `/metrics` requires `Authorization: Bearer <METRICS_TOKEN>` "
                 "(compared in constant time); empty: open to anyone who can reach it."),
    Setting("metrics_gauge_update_enabled", "METRICS_GAUGE_UPDATE_ENABLED", "bool", True,
            section=SECTION,
            help="Report the database gauges (active tokens, active and pending device "
                 "codes)."),
    Setting("metrics_gauge_update_interval", "METRICS_GAUGE_UPDATE_INTERVAL", "duration",
            dt.timedelta(minutes=5), check=_positive, section=SECTION,
            help="How long the database gauges are reused before a scrape counts again."),
]


def multiprocess_mode() -> bool:
    """Whether prometheus_client chose its multiprocess values (decided at its import)."""
    return bool(getattr(prometheus_values.ValueClass, "_multiprocess", False))


class Metrics:
    """The app's metric objects."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.registry = registry
        self.http_requests = counter("http_requests_total", "HTTP requests",
                                     ("method", "path", "status"))
        self.http_duration = Histogram("http_request_duration_seconds",
                                       "HTTP request duration in seconds", ("method", "path"),
                                       buckets=DURATION_BUCKETS, registry=registry)
        self.http_in_flight = Gauge("http_requests_in_flight", "HTTP requests being served",
                                    registry=registry, multiprocess_mode="livesum")
        self.device_codes = counter("oauth_device_codes_total",
                                    "Device authorization requests", ("result",))
        self.device_codes_authorized = counter("oauth_device_codes_authorized_total",
                                               "Device codes authorized by a user")
        self.device_code_validation = counter("oauth_device_code_validation_total",
                                              "Device-code grant polls by outcome",
                                              ("result",))
        self.tokens_issued = counter("oauth_tokens_issued_total", "Tokens issued",
                                     ("token_type", "grant_type"))
        self.tokens_revoked = counter("oauth_tokens_revoked_total", "Tokens revoked",
                                      ("reason",))
        self.tokens_refreshed = counter("oauth_tokens_refreshed_total",
                                        "Refresh-token grants by outcome", ("result",))
        self.auth_attempts = counter("auth_attempts_total", "Authentication attempts",
                                     ("method", "result"))
        self.auth_login = counter("auth_login_total", "Sign-ins by authentication source",
                                  ("auth_source", "result"))
        self.auth_logout = counter("auth_logout_total", "Sign-outs")
        self.audit_dropped = counter("audit_events_dropped_total",
                                     "Audit events an audit sink failed to take")
        self.rate_limit_exceeded = counter("rate_limit_exceeded_total",
                                           "Requests refused by the rate limiter",
                                           ("endpoint",))
        self.rate_limit_store_errors = counter(
            "rate_limit_store_errors_total",
            "Rate-limit store failures (requests let through unlimited)")
        self.handlers: dict[str, Callable[[AuditEvent], None]] = {
            "DEVICE_CODE_GENERATED":
                lambda e: self.device_codes.labels(result="success").inc(),
            "DEVICE_CODE_AUTHORIZED": lambda e: self.device_codes_authorized.inc(),
            "ACCESS_TOKEN_ISSUED": lambda e: self._issued("access", e),
            "REFRESH_TOKEN_ISSUED": lambda e: self._issued("refresh", e),
            "ID_TOKEN_ISSUED": lambda e: self._issued("id", e),
            "CLIENT_CREDENTIALS_TOKEN_ISSUED":
                lambda e: self._issued("access", e, "client_credentials"),
            "TOKEN_REFRESHED": self._refreshed,
            "TOKEN_REVOKED": lambda e: self._revoked(e, "client_request" if str(
                e.actor_user_id or "").startswith("client:") else "user_request"),
            "CLIENT_TOKENS_REVOKED_ALL": lambda e: self._revoked(e, "client_revoke_all"),
            "SUSPICIOUS_ACTIVITY": self._suspicious,
            "AUTHENTICATION_SUCCESS": lambda e: self._auth("password", e),
            "AUTHENTICATION_FAILURE": lambda e: self._auth("password", e),
            "OAUTH_AUTHENTICATION": lambda e: self._auth("oauth", e),
            "LOGOUT": lambda e: self.auth_logout.inc(),
        }

    # -- audit observer ---------------------------------------------------------------

    def observe(self, events: Sequence[AuditEvent], failed: int) -> None:
        for event in events:
            handler = self.handlers.get(event.event_type)
            if handler is not None:
                handler(event)
        if failed:
            self.audit_dropped.inc(failed)

    def _issued(self, token_type: str, event: AuditEvent, grant_type: str | None = None) -> None:
        grant = grant_type or str(event.details.get("grant_type") or "unknown")
        self.tokens_issued.labels(token_type=token_type, grant_type=grant).inc()

    def _refreshed(self, event: AuditEvent) -> None:
        self.tokens_refreshed.labels(result="success").inc()
        self.tokens_issued.labels(token_type="access", grant_type="refresh_token").inc()

    def _revoked(self, event: AuditEvent, reason: str) -> None:
        count = event.details.get("tokens_revoked", 1)
        amount = count if isinstance(count, int) and not isinstance(count, bool) else 1
        if amount > 0:
            self.tokens_revoked.labels(reason=str(event.details.get("reason") or reason)).inc(
                amount)

    def _suspicious(self, event: AuditEvent) -> None:
        if event.details.get("reason") == "refresh_token_reuse":
            self.tokens_refreshed.labels(result="reuse_detected").inc()
            self._revoked(event, "refresh_token_reuse")

    def _auth(self, method: str, event: AuditEvent) -> None:
        if event.success:
            result = "success"
        else:
            result = "error" if event.severity in ("ERROR", "CRITICAL") else "failure"
        source = str(event.details.get("auth_source") or event.details.get("provider")
                     or "unknown")
        self.auth_attempts.labels(method=method, result=result).inc()
        self.auth_login.labels(auth_source=source, result=result).inc()

    # -- per-request outcomes the audit trail does not carry --------------------------

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        """The HTTP request metrics of one answered request."""
        self.http_requests.labels(method=method, path=path, status=str(status)).inc()
        self.http_duration.labels(method=method, path=path).observe(seconds)

    def observe_response(self, request: Request, route: str | None, status: int,
                         body: Callable[[], bytes]) -> None:
        if route == "device_code" and 400 <= status < 500 and status != 429:
            self.device_codes.labels(result="error").inc()
        elif route == "token" and status != 429:
            grant = _form_value(request, "grant_type")
            if grant == DEVICE_GRANT:
                self.device_code_validation.labels(result=_poll_result(status, body)).inc()
            elif grant == "refresh_token" and status >= 400:
                self.tokens_refreshed.labels(result="error").inc()


POLL_RESULTS = {"authorization_pending": "pending", "slow_down": "pending",
                "expired_token": "expired", "access_denied": "denied"}


def _poll_result(status: int, body: Callable[[], bytes]) -> str:
    if status == 200:
        return "success"
    try:
        error = json.loads(body()).get("error")
    except (ValueError, AttributeError):
        error = None
    return POLL_RESULTS.get(error, "invalid")


def _form_value(request: Request, key: str) -> str | None:
    try:
        if request.content_type == "application/json":
            body = request.json_body
            value = body.get(key) if isinstance(body, dict) else None
        else:
            value = request.POST.get(key)
    except Exception:  # a body the view already refused; nothing to count
        return None
    return value if isinstance(value, str) else None


class DatabaseGauges:
    """Gauges counted in the database at scrape time, cached for the update interval.

    The database is shared by every process, so these are right in multiprocess
    mode too.
    """

    def __init__(self, runtime: Runtime, interval: dt.timedelta) -> None:
        self.runtime = runtime
        self.interval = interval.total_seconds()
        self._lock = threading.Lock()
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def _count(self) -> list[GaugeMetricFamily]:
        from sqlalchemy import func, select

        from authgate.models import DeviceCode, Token, utcnow
        from authgate.models.device import AUTHORIZED, PENDING
        from authgate.models.token import ACTIVE

        now = utcnow()
        with self.runtime.session_factory() as db:
            tokens = dict(db.execute(
                select(Token.token_category, func.count())
                .where(Token.status == ACTIVE, Token.expires_at > now)
                .group_by(Token.token_category)).all())
            devices = dict(db.execute(
                select(DeviceCode.status, func.count())
                .where(DeviceCode.expires_at > now, DeviceCode.status.in_(
                    (PENDING, AUTHORIZED)))
                .group_by(DeviceCode.status)).all())
        active = GaugeMetricFamily("oauth_tokens_active", "Active, unexpired tokens",
                                   labels=["token_type"])
        for category in ("access", "refresh"):
            active.add_metric([category], tokens.get(category, 0))
        return [
            active,
            GaugeMetricFamily("oauth_device_codes_active",
                              "Unexpired device codes not yet redeemed",
                              value=devices.get(PENDING, 0) + devices.get(AUTHORIZED, 0)),
            GaugeMetricFamily("oauth_device_codes_pending_authorization",
                              "Unexpired device codes waiting for the user",
                              value=devices.get(PENDING, 0)),
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.interval:
                try:
                    self._cached = (now, self._count())
                except Exception:
                    log.exception("counting the metrics gauges failed")
                    if self._cached is None:
                        return
            families = self._cached[1]
        yield from families

    def describe(self) -> list:
        return []  # collected lazily: never query the database at registration


def get_metrics(registry: Any) -> Metrics | None:
    """The app's :class:`Metrics`, or None when metrics are off."""
    return getattr(registry, REGISTRY_ATTR, None)


def metrics_tween_factory(handler, registry):
    metrics: Metrics = getattr(registry, REGISTRY_ATTR)

    def tween(request: Request) -> Response:
        if request.path_info == METRICS_PATH:
            return handler(request)
        started = time.perf_counter()
        metrics.http_in_flight.inc()
        status, response = 500, None
        try:
            response = handler(request)
            status = response.status_code
            return response
        finally:
            metrics.http_in_flight.dec()
            route = getattr(request, "matched_route", None) or _route_for(request)
            path = route.pattern if route is not None else "unknown"
            method = request.method if request.method in KNOWN_METHODS else "OTHER"
            metrics.observe_request(method, path, status, time.perf_counter() - started)
            if response is not None:
                try:
                    metrics.observe_response(request, route.name if route else None,
                                             status, lambda: response.body)
                except Exception:
                    log.exception("counting a response failed")

    return tween


def _route_for(request: Request):
    """The route a request answered before routing (a 429 from a tween) belongs to."""
    mapper = request.registry.queryUtility(IRoutesMapper)
    if mapper is None:
        return None
    for route in mapper.get_routes():
        if route.match(request.path_info) is not None:
            return route
    return None


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _unauthorized(message: str) -> Response:
    response = Response(json_body={"error": "unauthorized", "message": message}, status=401,
                        charset="utf-8")
    response.headers["WWW-Authenticate"] = 'Bearer realm="Metrics"'
    response.headers["Cache-Control"] = "no-store"
    return response


def metrics_view(request: Request) -> Response:
    settings = request.registry.authgate.settings
    expected = settings.metrics_token
    if expected:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer " or not header[7:].strip():
            return _unauthorized("Bearer token required")
        if not hmac.compare_digest(header[7:].strip().encode(), expected.encode()):
            return _unauthorized("Invalid token")
    metrics: Metrics = getattr(request.registry, REGISTRY_ATTR)
    if multiprocess_mode():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in getattr(request.registry, "authgate_metrics_collectors", ()):
            registry.register(collector)
    else:
        registry = metrics.registry
    response = Response(body=generate_latest(registry), status=200)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response


def includeme(config: Configurator) -> None:
    registry = config.registry
    if getattr(registry, "authgate_metrics_included", False):  # idempotent include
        return
    registry.authgate_metrics_included = True
    runtime = registry.authgate
    settings = runtime.settings
    if not settings.metrics_enabled:
        return
    if multiprocess_mode():
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        if not os.path.isdir(path):
            raise ConfigurationError(
                f"PROMETHEUS_MULTIPROC_DIR={path!r} is not a directory; create it (empty, "
                "writable by every worker) or unset it")
    metrics = Metrics(CollectorRegistry())
    setattr(registry, REGISTRY_ATTR, metrics)
    collectors: list[Any] = []
    if settings.metrics_gauge_update_enabled:
        collectors.append(DatabaseGauges(runtime, settings.metrics_gauge_update_interval))
    registry.authgate_metrics_collectors = collectors
    if not multiprocess_mode():
        for collector in collectors:
            metrics.registry.register(collector)
    runtime.audit.observers.append(metrics.observe)
    config.add_route("metrics", METRICS_PATH)
    config.add_view(metrics_view, route_name="metrics", request_method="GET")
    config.add_tween("authgate.metrics.metrics_tween_factory", under=INGRESS)
    log.info("Prometheus metrics at %s (%s%s)", METRICS_PATH,
             "bearer token required" if settings.metrics_token else "no token",
             ", multiprocess mode" if multiprocess_mode() else "")
