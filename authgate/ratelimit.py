"""Per-endpoint rate limiting: a tween on the `limits` library (moving window).

Limited (all POST, per minute, each endpoint its own counter):

==========================  ==========================================
/login                      LOGIN_RATE_LIMIT (5)
/oauth/device/code          DEVICE_CODE_RATE_LIMIT (10)
/oauth/token                TOKEN_RATE_LIMIT (20)
/device/verify              DEVICE_VERIFY_RATE_LIMIT (10)
/oauth/introspect           INTROSPECT_RATE_LIMIT (20)
/oauth/register             DYNAMIC_CLIENT_REGISTRATION_RATE_LIMIT (5)
==========================  ==========================================

The key is the endpoint plus the client address (``request.client_ip``: the
socket peer, or ``X-Forwarded-For`` only through a host in TRUSTED_PROXIES),
so a client cannot pick its own key.  Device polling (the device-code grant at
``/oauth/token``) is keyed by the device code instead; see
:meth:`RateLimiter.classify`.

Counters live in memory (one process) or in Redis (``RATE_LIMIT_STORE=redis``:
every process and host sharing the Redis shares the counters).  The storage is
built, and Redis pinged, once at start-up.

Every limited response carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``
and ``X-RateLimit-Reset`` (Unix time, seconds).  Over the limit: HTTP 429 with
``Retry-After`` and the troubleshooting guide's JSON body, or the HTML page
``rate_limited.jinja2`` when the client prefers HTML (a browser form post),
plus a RATE_LIMIT_EXCEEDED audit event.

Wiring: ``config.include("authgate.ratelimit")`` in the app assembly (the tween
goes under pyramid_tm so the audit event joins the request's transaction) and
``"authgate.ratelimit"`` in ``authgate.settings.CORE_SETTING_MODULES``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from pyramid.response import Response

from authgate.errors import ConfigurationError
from authgate.settings import Setting

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.request import Request

    from authgate.settings import Settings

log = logging.getLogger("authgate.ratelimit")

SECTION = "Rate limiting"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MESSAGE = "Too many requests. Please try again later."
ENVIRON_KEY = "authgate.ratelimit"
REGISTRY_ATTR = "authgate_ratelimiter"
# After a store failure, skip the store this long (fail open) before trying again,
# so a dead Redis costs one failed call per interval, not one per request.
STORE_RETRY_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 2.0


def _check_redis_addr(value: str) -> None:
    if not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]@]+):\d{1,5}", value):
        raise ValueError("HOST:PORT, such as localhost:6379 or [::1]:6379")


def _limit(name: str, env: str, default: int, what: str) -> Setting:
    return Setting(name, env, "int", default, minimum=1, section=SECTION,
                   help=f"Requests per minute per client address to {what}.")


SETTINGS: list[Setting] = [
    Setting("enable_rate_limit", "ENABLE_RATE_LIMIT", "bool", True, section=SECTION,
            help="Limit requests per client address on the login, device and OAuth "
                 "endpoints below (429 Too Many Requests when exceeded). Don't turn it off "
                 "in production."),
    Setting("rate_limit_store", "RATE_LIMIT_STORE", "str", "memory",
            choices=("memory", "redis"), section=SECTION,
            help="Where counters live: `memory` (per process) or `redis` (shared by every "
                 "process using the same Redis; start-up fails when Redis is unreachable). "
                 "If Redis fails later, requests are let through unlimited and the error "
                 "is logged, until it is back."),
    _limit("login_rate_limit", "LOGIN_RATE_LIMIT", 5, "`POST /login`"),
    _limit("device_code_rate_limit", "DEVICE_CODE_RATE_LIMIT", 10,
           "`POST /oauth/device/code`"),
    _limit("token_rate_limit", "TOKEN_RATE_LIMIT", 20,
           "`POST /oauth/token`. Device-code polling is counted per device code instead "
           "(at least twice the rate POLLING_INTERVAL allows), so devices polling behind "
           "one address never block each other; failed device-code requests (unknown "
           "code, bad client credentials) still count against the address"),
    _limit("device_verify_rate_limit", "DEVICE_VERIFY_RATE_LIMIT", 10,
           "`POST /device/verify`"),
    _limit("introspect_rate_limit", "INTROSPECT_RATE_LIMIT", 20, "`POST /oauth/introspect`"),
    _limit("dynamic_client_registration_rate_limit",
           "DYNAMIC_CLIENT_REGISTRATION_RATE_LIMIT", 5, "`POST /oauth/register`"),
    Setting("redis_addr", "REDIS_ADDR", "str", "localhost:6379", check=_check_redis_addr,
            section=SECTION, help="Redis server (HOST:PORT) for `RATE_LIMIT_STORE=redis`."),
    Setting("redis_password", "REDIS_PASSWORD", "str", "", secret=True, section=SECTION,
            help="Redis password (empty: none)."),
    Setting("redis_db", "REDIS_DB", "int", 0, minimum=0, section=SECTION,
            help="Redis database number."),
    Setting("rate_limit_key_prefix", "RATE_LIMIT_KEY_PREFIX", "str", "authgate:ratelimit",
            section=SECTION,
            help="Prefix of the Redis keys; servers that should share counters use the "
                 "same prefix, deployments sharing one Redis use different ones."),
]


@dataclasses.dataclass(frozen=True)
class Rule:
    path: str  # PATH_INFO of the limited POST endpoint; also the audit/metric label
    setting: str  # name of the per-minute limit setting
    name: str  # counter namespace
    # A browser page (its 429's audit event names the signed-in person); an API
    # endpoint's answer never loads the session, which would re-issue the cookie.
    page: bool = False


RULES: tuple[Rule, ...] = (
    Rule("/login", "login_rate_limit", "login", page=True),
    Rule("/oauth/device/code", "device_code_rate_limit", "device-code"),
    Rule("/oauth/token", "token_rate_limit", "token"),
    Rule("/device/verify", "device_verify_rate_limit", "device-verify", page=True),
    Rule("/oauth/introspect", "introspect_rate_limit", "introspect"),
    Rule("/oauth/register", "dynamic_client_registration_rate_limit", "register"),
)

# Device-grant answers that are part of normal polling (RFC 8628 §3.5); any other
# error means a bad device code or bad client credentials.
POLLING_ERRORS = frozenset({"authorization_pending", "slow_down", "access_denied",
                            "expired_token"})


@dataclasses.dataclass
class Decision:
    """What the limiter decided for one request (kept across pyramid_retry attempts)."""

    rule: Rule
    item: RateLimitItem | None = None  # None: not limited (store unavailable)
    allowed: bool = True
    remaining: int = 0
    reset: float = 0.0
    key_kind: str = "ip"  # "ip" or "device_code"
    client_ip: str = ""
    charge_failure: bool = False  # device grant: count a failure against the address
    failure_charged: bool = False

    def headers(self) -> dict[str, str]:
        if self.item is None:
            return {}
        return {"X-RateLimit-Limit": str(self.item.amount),
                "X-RateLimit-Remaining": str(max(0, self.remaining)),
                "X-RateLimit-Reset": str(math.ceil(self.reset))}

    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset - time.time()))


def redis_url(settings: Settings) -> str:
    auth = f":{quote(settings.redis_password, safe='')}@" if settings.redis_password else ""
    return f"redis://{auth}{settings.redis_addr}/{settings.redis_db}"


def redis_pool(settings: Settings):
    """With RATE_LIMIT_STORE=redis, the process's one Redis connection pool (shared by
    the rate limiter and the device-polling pace); None otherwise."""
    if settings.get("rate_limit_store", "memory") != "redis":
        return None
    import redis

    return redis.ConnectionPool.from_url(
        redis_url(settings), socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS)


def build_storage(settings: Settings, pool=None):
    """The `limits` storage for the settings; Redis is pinged (start-up fails clearly).

    ``pool``: the runtime's Redis connection pool (one is made when None)."""
    if settings.rate_limit_store == "memory":
        return storage_from_string("memory://")
    where = f"REDIS_ADDR={settings.redis_addr}, REDIS_DB={settings.redis_db}"
    try:
        storage = storage_from_string(
            redis_url(settings), key_prefix=settings.rate_limit_key_prefix,
            connection_pool=pool if pool is not None else redis_pool(settings))
        storage.get_connection().ping()
    except Exception as exc:
        # The message names the setting, never the password.
        detail = str(exc).rstrip(".")
        if settings.redis_password:
            detail = detail.replace(settings.redis_password, "***")
        raise ConfigurationError(
            f"RATE_LIMIT_STORE=redis but Redis is unreachable ({where}): {detail}. "
            "Start Redis, fix REDIS_ADDR / REDIS_PASSWORD / REDIS_DB, or set "
            "RATE_LIMIT_STORE=memory") from None
    return storage


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _single(params: Any, key: str) -> str | None:
    """The one string value of ``key``; None when absent, repeated or not a string."""
    if isinstance(params, Mapping) and not hasattr(params, "getall"):
        value = params.get(key)
        return value if isinstance(value, str) else None
    values = params.getall(key)
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


def _token_params(request: Request) -> Any:
    """The token request's parameters as the view reads them (form or JSON object)."""
    if request.content_type == "application/json":
        try:
            body = request.json_body
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
    return request.POST


class RateLimiter:
    """The per-app limiter: storage, limits and the decisions of the tween."""

    def __init__(self, settings: Settings, storage) -> None:
        self.settings = settings
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(storage)
        self.rules = {rule.path: rule for rule in RULES}
        self.items = {rule.name: RateLimitItemPerMinute(settings[rule.setting])
                      for rule in RULES}
        interval = max(1.0, settings.polling_interval.total_seconds())
        # A device polling at the advertised interval makes 60/interval requests a
        # minute (plus one at the window's edge); allow twice that.
        self.device_item = RateLimitItemPerMinute(
            max(settings.token_rate_limit, 2 * math.ceil(60 / interval)))
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._degraded = False
        self.store_errors = 0

    # -- classification --------------------------------------------------------------

    def rule_for(self, request: Request) -> Rule | None:
        if request.method == "POST":
            return self.rules.get(request.path_info)
        # ``GET /device?user_code=`` answers differently for a live code (the
        # approval page, with the client's name) and an unknown one: a guessing
        # oracle like ``POST /device/verify``, so it is charged to the same
        # per-address counter, or the form's limit could be bypassed.
        if request.method == "GET" and request.path_info == "/device":
            try:
                typed = request.GET.get("user_code")
            except UnicodeDecodeError:  # the view refuses such a query string (400)
                return None
            if typed:
                return self.rules.get("/device/verify")
        return None

    def classify(self, request: Request, rule: Rule) -> tuple[str, str]:
        """(key kind, key) for this request.

        Device polling.  RFC 8628 clients poll ``/oauth/token`` every ``interval``
        seconds until the user decides; many devices behind one NAT address
        would quickly exhaust a per-address TOKEN_RATE_LIMIT and block each
        other.  So a device-grant request is counted against its *device code*
        (hashed: the key never holds a usable code), with a limit of at least
        twice the advertised polling rate; the grant's own ``slow_down`` paces
        each device.  Exempting polls altogether would let any client go
        unlimited by sending grant_type=device_code, so instead failed device
        requests (unknown code, bad client credentials: nothing a well-behaved
        poller gets) are also charged to a per-address failure counter with
        TOKEN_RATE_LIMIT, and once that is exhausted the address's device
        requests get 429 too.  Normal polling answers (authorization_pending,
        slow_down, access_denied, expired_token, success) are never charged.
        """
        ip = request.client_ip
        if rule.name == "token":
            try:
                params = _token_params(request)
            except Exception:  # a body the view will refuse: keyed by address
                return "ip", ip
            if _single(params, "grant_type") == DEVICE_GRANT:
                device_code = _single(params, "device_code")
                if device_code:
                    return "device_code", _hash(device_code)
        return "ip", ip

    # -- storage calls (fail open) ------------------------------------------------------

    def _store_available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _store_failed(self, request: Request, exc: Exception) -> None:
        with self._lock:
            first = not self._degraded
            self._degraded = True
            self._down_until = time.monotonic() + STORE_RETRY_SECONDS
            self.store_errors += 1
        _count(request, "store_error")
        # Failing open is deliberate: the limiter protects the server, and turning a
        # Redis outage into a total outage (every login and token request a 500) would
        # hurt far more than a few minutes without limits.  Logged loudly, counted in
        # rate_limit_store_errors_total; the store is retried every few seconds.
        if first:
            log.error("rate-limit store (%s) failed: %s; letting requests through without "
                      "rate limiting until it recovers", self.settings.rate_limit_store, exc)
        else:
            log.warning("rate-limit store (%s) still failing: %s",
                        self.settings.rate_limit_store, exc)

    def _store_ok(self) -> None:
        if self._degraded:
            with self._lock:
                was, self._degraded = self._degraded, False
            if was:
                log.warning("rate-limit store (%s) is back; rate limiting resumed",
                            self.settings.rate_limit_store)

    def decide(self, request: Request, rule: Rule) -> Decision:
        decision = Decision(rule, client_ip=request.client_ip)
        if not self._store_available():
            return decision
        # Classified outside the store's try block: only store errors fail open.
        kind, key = self.classify(request, rule)
        decision.key_kind = kind
        try:
            if kind == "device_code":
                failures = self.items[rule.name]
                if not self.strategy.test(failures, "token-device-failures",
                                          decision.client_ip):
                    stats = self.strategy.get_window_stats(failures, "token-device-failures",
                                                           decision.client_ip)
                    decision.item, decision.allowed = failures, False
                    decision.remaining, decision.reset = 0, stats.reset_time
                    self._store_ok()
                    return decision
                item, namespace = self.device_item, "token-device"
                decision.charge_failure = True
            else:
                item, namespace = self.items[rule.name], rule.name
            allowed = self.strategy.hit(item, namespace, key)
            stats = self.strategy.get_window_stats(item, namespace, key)
        except Exception as exc:
            self._store_failed(request, exc)
            return Decision(rule, client_ip=decision.client_ip)
        self._store_ok()
        decision.item, decision.allowed = item, allowed
        decision.remaining, decision.reset = stats.remaining, stats.reset_time
        return decision

    def charge_device_failure(self, request: Request, decision: Decision,
                              response: Response) -> None:
        """Count a failed device-grant request against the client address."""
        if not decision.charge_failure or decision.failure_charged:
            return
        if response.status_code == 401:
            failed = True
        elif response.status_code == 400:
            try:
                error = json.loads(response.body).get("error")
            except (ValueError, AttributeError):
                error = None
            failed = error not in POLLING_ERRORS
        else:
            failed = False
        if not failed:
            return
        decision.failure_charged = True
        try:
            self.strategy.hit(self.items["token"], "token-device-failures", decision.client_ip)
        except Exception as exc:
            self._store_failed(request, exc)

    def close(self) -> None:
        connection = getattr(self.storage, "get_connection", None)
        if connection is not None and self.settings.rate_limit_store == "redis":
            try:
                connection().close()
            except Exception:  # closing at shutdown: nothing more to do
                log.debug("closing the Redis connection failed", exc_info=True)


def _count(request: Request, what: str, **labels: str) -> None:
    from authgate import metrics

    recorder = metrics.get_metrics(request.registry)
    if recorder is not None:
        if what == "exceeded":
            recorder.rate_limit_exceeded.labels(**labels).inc()
        elif what == "store_error":
            recorder.rate_limit_store_errors.inc()


def wants_html(request: Request) -> bool:
    offers = request.accept.acceptable_offers(["application/json", "text/html"])
    return bool(offers) and offers[0][0] == "text/html"


def too_many_requests(request: Request, decision: Decision) -> Response:
    from authgate.audit import WARNING, record

    rule, item = decision.rule, decision.item
    assert item is not None
    retry_after = decision.retry_after()
    _count(request, "exceeded", endpoint=rule.path)
    # ``endpoint`` is the counter (GET /device?user_code= is charged to /device/verify).
    log.info("rate limit exceeded: %s %s from %s (%d/min, key %s)", request.method,
             request.path, decision.client_ip, item.amount, decision.key_kind)
    record(request, "RATE_LIMIT_EXCEEDED", severity=WARNING, success=False,
           action=f"Rate limit exceeded on {request.method} {request.path}",
           error_message=MESSAGE,
           details={"endpoint": rule.path, "method": request.method, "limit": item.amount,
                    "window": "1m", "key": decision.key_kind},
           **({} if rule.page else {"actor_user_id": ""}))
    if wants_html(request):
        from pyramid.renderers import render_to_response

        response = render_to_response("authgate:templates/rate_limited.jinja2",
                                      {"retry_after": retry_after}, request=request,
                                      response=Response())
        response.status = 429
    else:
        response = Response(json_body={"error": "rate_limit_exceeded", "message": MESSAGE,
                                       "error_description": MESSAGE},
                            status=429, charset="utf-8")
    response.headers["Retry-After"] = str(retry_after)
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(decision.headers())
    return response


def rate_limit_tween_factory(handler, registry):
    limiter: RateLimiter = getattr(registry, REGISTRY_ATTR)

    def tween(request: Request) -> Response:
        rule = limiter.rule_for(request)
        if rule is None:
            return handler(request)
        # pyramid_retry re-runs the tweens with the same environ: count a request once.
        decision = request.environ.get(ENVIRON_KEY)
        if decision is None:
            decision = request.environ[ENVIRON_KEY] = limiter.decide(request, rule)
        if not decision.allowed:
            return too_many_requests(request, decision)
        response = handler(request)
        limiter.charge_device_failure(request, decision, response)
        response.headers.update(decision.headers())
        return response

    return tween


def get_limiter(registry) -> RateLimiter | None:
    return getattr(registry, REGISTRY_ATTR, None)


def includeme(config: Configurator) -> None:
    registry = config.registry
    if getattr(registry, "authgate_ratelimit_included", False):  # idempotent include
        return
    registry.authgate_ratelimit_included = True
    settings = registry.authgate.settings
    if not settings.enable_rate_limit:
        log.warning("Rate limiting is disabled (ENABLE_RATE_LIMIT=false); don't run like "
                    "this in production")
        return
    setattr(registry, REGISTRY_ATTR, RateLimiter(
        settings, build_storage(settings, getattr(registry.authgate, "redis_pool", None))))
    log.info("Rate limiting: store=%s, login=%d/min, device code=%d/min, token=%d/min",
             settings.rate_limit_store, settings.login_rate_limit,
             settings.device_code_rate_limit, settings.token_rate_limit)
    # Under pyramid_tm: the RATE_LIMIT_EXCEEDED audit event joins the request's
    # transaction (and the 429 page may use the session and the current user).
    config.add_tween("authgate.ratelimit.rate_limit_tween_factory",
                     under="pyramid_tm.tm_tween_factory")
