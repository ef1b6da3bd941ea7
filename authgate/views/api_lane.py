"""The API lane: the busiest OAuth calls answered in front of the Pyramid router.

Issue #11: a fleet of devices polls ``POST /oauth/token`` every few seconds,
services fetch client-credentials tokens, and resource servers introspect on
every API call.  Through the full stack each of these paid for Pyramid's
tweens, pyramid_tm and the transaction package, an ORM session and
SQLAlchemy's statement execution -- several times the work of the answer
itself.  This WSGI middleware runs **the same view functions** for them
(``views.oauth.token`` for the device-code and client-credentials grants,
``views.token_api.introspect``; and ``GET /health``, which load balancers ask every
few seconds, through ``views.health.check``) with

* a :class:`LaneRequest`: the part of a Pyramid request those views read,
  built straight from the WSGI environ;
* a :class:`~authgate.rawsql.RawUnit` as ``request.dbsession``: one pooled
  DB-API connection running the services' prebuilt statements, committed when
  the view returns, rolled back on an exception -- or, on waitress's I/O thread,
  a unit that wrote only rows (a token, an audit event) committed with the other
  requests' of the event loop's turn, its answer held until then
  (authgate.inline_serving; if that commit fails the request is answered again
  by the full stack);
* what the tweens add to every response: rate limiting (the same limiter and
  decision), the security headers, the HTTP metrics, the access-log line; and
  the audit events delivered after the commit, as pyramid_tm's hook does.

Everything else goes through Pyramid untouched, and so does any request the
lane cannot answer exactly as Pyramid would:

* another method or path, a body that is not a UTF-8 urlencoded form of at
  most ``MAX_BODY_BYTES``, a CORS request (Origin) when CORS is on, a request
  mounted under a SCRIPT_NAME, other grant types (authorization code,
  refresh: rarer, and written for the ORM session);
* a request the rate limiter refuses (the tween answers it from the decision
  the lane stored in the environ, so it is counted once);
* a view that needs the ORM (a client not yet in the client cache, an
  imported bcrypt secret to re-store): :class:`~authgate.rawsql.NeedsSession`;
* any database error (a locked SQLite file, a lost PostgreSQL connection, a
  NUL character PostgreSQL refuses): the full stack retries or answers it
  with its error views (503, 400).

A request handed over after the lane started on it has had no effect: its
unit of work is rolled back and its audit events are dropped (the full stack
records its own).  The one thing the lane cannot take back is the in-memory
polling pace of a device poll (``authgate.pacing``); the services run every
statement that could need a session before it.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from pyramid.registry import Registry
from pyramid.response import Response
from webob.headers import EnvironHeaders
from webob.multidict import MultiDict

from authgate import ratelimit
from authgate.db import CLIENT_CACHE_KEY
from authgate.inline_serving import HELD_KEY, TURN_KEY
from authgate.metrics import get_metrics
from authgate.net import client_ip
from authgate.rawsql import NeedsSession, RawUnit
from authgate.security import (
    MAX_BODY_BYTES,
    access_log,
    account_before_router,
    log_access,
    security_headers,
)
from authgate.services import clientcreds, devices
from authgate.views import health
from authgate.views._common import oauth_json

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
# Grants answered on the lane; the others are left to the full stack.
LANE_GRANTS = frozenset({devices.DEVICE_GRANT, clientcreds.GRANT_TYPE})
PENDING_AUDIT = "authgate.audit_pending"  # authgate.audit keeps a request's events here
# Set on a request whose rows could not be committed: answered again by the full stack.
REPLAYED = "authgate.lane.replayed"


class HandOver(Exception):
    """This request must go through the full stack."""


class LaneTransaction:
    """What ``authgate.audit`` asks of a transaction: after-commit hooks."""

    __slots__ = ("hooks",)

    def __init__(self) -> None:
        self.hooks: list[tuple[Callable[..., Any], tuple, dict]] = []

    def addAfterCommitHook(self, hook: Callable[..., Any], args: tuple = (),  # noqa: N802
                           kws: dict | None = None) -> None:
        self.hooks.append((hook, args, kws or {}))

    def finish(self, committed: bool) -> None:
        hooks, self.hooks = self.hooks, []
        for hook, args, kws in hooks:
            try:
                hook(committed, *args, **kws)
            except Exception:  # as the transaction package: logged, the others still run
                log.exception("after-commit hook %r failed", hook)


class LaneTransactionManager:
    __slots__ = ("_transaction",)

    def __init__(self, transaction: LaneTransaction) -> None:
        self._transaction = transaction

    def get(self) -> LaneTransaction:
        return self._transaction


class LaneRequest:
    """The attributes of a Pyramid request that the lane's views, the audit
    recorder, the rate limiter and the metrics read; nothing else."""

    method = "POST"
    content_type = FORM
    current_user = None  # API calls never load a browser session

    def __init__(self, environ: dict, registry: Registry, params: MultiDict, unit: RawUnit,
                 transaction: LaneTransaction, ip: str) -> None:
        self.environ = environ
        self.registry = registry
        self.authgate = registry.authgate
        self.POST = params
        self.dbsession = unit
        self.tm = LaneTransactionManager(transaction)
        self.client_ip = ip
        self.path = self.path_info = environ["PATH_INFO"]
        self.headers = EnvironHeaders(environ)
        self.user_agent = environ.get("HTTP_USER_AGENT")
        self.remote_addr = environ.get("REMOTE_ADDR")
        self.finished_callbacks: list[Callable[[Any], None]] = []

    def add_finished_callback(self, callback: Callable[[Any], None]) -> None:
        self.finished_callbacks.append(callback)

    def finish(self) -> None:
        for callback in self.finished_callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("finished callback %r failed", callback)


def _form_length(environ: dict) -> int | None:
    """The body length of a UTF-8 urlencoded form the lane may read, else None."""
    content_type = environ.get("CONTENT_TYPE", "")
    media, _, parameters = content_type.partition(";")
    if media.strip() != FORM:  # exactly as the security tween tells forms apart
        return None
    if parameters:
        name, _, value = parameters.strip().partition("=")
        if (name.strip().lower() != "charset" or ";" in value
                or value.strip().strip('"').lower() not in ("utf-8", "utf8")):
            return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if 0 <= length <= MAX_BODY_BYTES else None


def _grant(pairs: list[tuple[str, str]]) -> str | None:
    """The one grant_type of a token request (None when missing or repeated)."""
    grants = [value for key, value in pairs if key == "grant_type"]
    return grants[0] if len(grants) == 1 else None


class ApiLane:
    """WSGI middleware answering the hot OAuth calls (see the module docstring)."""

    def __init__(self, app, registry: Registry) -> None:
        from authgate.views import oauth, token_api

        self.app = app
        self.registry = registry
        runtime = registry.authgate
        settings = runtime.settings
        self._runtime = runtime  # its engine is read per request, like request.authgate
        self._client_cache = runtime.client_cache
        self._dbapi_error = runtime.engine.dialect.loaded_dbapi.Error
        self._trusted = tuple(settings.trusted_proxies)
        self._cors = getattr(registry, "authgate_cors", None) is not None
        self._limiter = ratelimit.get_limiter(registry)
        self._metrics = get_metrics(registry)
        self._security = security_headers(settings.base_url.startswith("https://"))
        self._security_names = frozenset(name.lower() for name, _ in self._security)
        # path -> (route name, view); the route names the metrics label them with.
        self._views: dict[str, tuple[str, Callable[[Any], Response]]] = {
            "/oauth/token": ("token", oauth.token),
            "/oauth/introspect": ("introspect", token_api.introspect),
        }

    def __getattr__(self, name: str):
        return getattr(self.app, name)  # the router's attributes (tests, pserve)

    def __call__(self, environ, start_response):
        if (environ.get("PATH_INFO") == "/health" and not environ.get("SCRIPT_NAME")
                and environ.get("REQUEST_METHOD") in ("GET", "HEAD")):
            return self._health(environ, start_response)
        route = self._views.get(environ.get("PATH_INFO", ""))
        if (route is None or environ.get("REQUEST_METHOD") != "POST"
                or environ.get("SCRIPT_NAME") or "app.dbsession" in environ
                or REPLAYED in environ
                or (self._cors and "HTTP_ORIGIN" in environ)):
            return self.app(environ, start_response)
        length = _form_length(environ)
        if length is None:
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(length) if length else b""
        # Readable again by the full stack should the request be handed over.
        environ["wsgi.input"] = io.BytesIO(body)
        # As the security tween parses forms (authgate.security._parse_urlencoded).
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                          encoding="utf-8", errors="replace")
        name, view = route
        if name == "token" and _grant(pairs) not in LANE_GRANTS:
            return self.app(environ, start_response)
        try:
            response = self._answer(environ, name, view, pairs)
        except HandOver:
            environ.pop(PENDING_AUDIT, None)
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        start_response(response.status, response.headerlist)
        return response.app_iter

    def _answer(self, environ: dict, name: str, view: Callable[[Any], Response],
                pairs: list[tuple[str, str]]) -> Response:
        started = time.perf_counter()
        ip = client_ip(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"),
                       self._trusted)
        # Token rows of a unit that writes nothing else (client credentials) are
        # committed with other requests' rows (authgate.rawsql.GroupWriter).
        unit = RawUnit(self._runtime.engine, {CLIENT_CACHE_KEY: self._client_cache}
                       if self._client_cache is not None else {}, group_inserts=True,
                       sticky=True, turn=environ.get(TURN_KEY))
        transaction = LaneTransaction()
        request = LaneRequest(environ, self.registry, MultiDict(pairs), unit, transaction, ip)
        metrics = self._metrics
        if metrics is not None:
            metrics.http_in_flight.inc()
        status = 500
        try:
            decision = self._rate_limit(request)
            response, events = self._run(request, view, unit, transaction)
            status = response.status_code
            if decision is not None:
                self._limiter.charge_device_failure(request, decision, response)
                response.headers.update(decision.headers())
            self._decorate(response)
        finally:
            if metrics is not None:
                metrics.http_in_flight.dec()

        def account() -> None:
            if metrics is not None:
                metrics.observe_request("POST", request.path_info, status,
                                        time.perf_counter() - started)
                try:
                    metrics.observe_response(request, name, status, lambda: response.body)
                except Exception:
                    log.exception("counting a response failed")
            if access_log.isEnabledFor(logging.INFO):
                log_access(ip, "POST", request.path, status, started,
                           environ.get("HTTP_USER_AGENT", ""))

        pending = unit.pending
        if pending is None:
            account()
            return response

        # The rows are committed at the end of the event loop's turn
        # (authgate.inline_serving): until then the answer is held, and what follows a
        # commit (the audit events' other sinks, the metrics, the access line) waits.
        def committed() -> None:
            transaction.finish(True)
            request.finish()
            account()

        def failed(error: BaseException) -> None:
            request.authgate.audit.forget(events)
            log.warning("Storing the rows of %s %s failed (%s): the request is answered "
                        "again by the full stack", request.method, request.path,
                        error.__class__.__name__)
            environ.pop(PENDING_AUDIT, None)
            environ[REPLAYED] = True
            environ["wsgi.input"].seek(0)

        pending.on_commit, pending.on_failure = committed, failed
        environ[HELD_KEY] = pending
        return response

    def _health(self, environ, start_response):
        """``GET /health`` as the view and Pyramid's JSON renderer answer it, with the
        security tween's headers, the metrics and the access line: load balancers
        ask it every few seconds, and it needs nothing of the full stack."""
        started = time.perf_counter()
        status, document = health.check(self._runtime.engine)
        body = json.dumps(document).encode()  # the renderer's json.dumps, its separators
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   *self._security]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        account_before_router(environ, self._metrics, self._trusted, status, started)
        return [body] if environ["REQUEST_METHOD"] == "GET" else []

    def _rate_limit(self, request: LaneRequest):
        """The limiter's decision (None when rate limiting is off); a refused
        request is handed over: the tween answers it from the stored decision."""
        limiter = self._limiter
        if limiter is None:
            return None
        rule = limiter.rule_for(request)
        if rule is None:
            return None
        environ = request.environ
        decision = environ.get(ratelimit.ENVIRON_KEY)
        if decision is None:
            decision = environ[ratelimit.ENVIRON_KEY] = limiter.decide(request, rule)
        if not decision.allowed:
            raise HandOver()
        return decision

    def _run(self, request: LaneRequest, view: Callable[[Any], Response], unit: RawUnit,
             transaction: LaneTransaction) -> tuple[Response, list]:
        """The view in one unit of work: committed when it returns, then the audit
        events delivered (pyramid_tm's order); rolled back on an exception.  A unit
        whose rows wait for the loop's turn (``unit.pending``) is committed later:
        the caller then delivers the events.  Returns the answer and the events."""
        audit = request.authgate.audit
        events: list = []
        try:
            try:
                response = view(request)
                # The audit rows join the request's transaction (one commit for both).
                events = list(request.environ.get(PENDING_AUDIT) or ())
                audit.enlist(unit, events)
                unit.commit()
            except BaseException:
                audit.forget(events)
                unit.rollback()
                raise
            finally:
                unit.close()
        except (NeedsSession, self._dbapi_error) as exc:
            log.debug("%s %s handed to the full stack: %s", request.method, request.path,
                      exc.__class__.__name__)
            raise HandOver() from exc
        except Exception:
            # A bug: answered as the full stack's server_error view would be, and the
            # failure events recorded so far are delivered as after an abort.
            transaction.finish(False)
            request.finish()
            log.exception("unhandled error on %s %s", request.method, request.path)
            return oauth_json({"error": "server_error",
                               "error_description": "An internal error occurred"}, 500), []
        if unit.pending is None:
            transaction.finish(True)
            request.finish()
        return response, events

    def _decorate(self, response: Response) -> None:
        """The security tween's headers: each one unless the view set it."""
        headerlist = response.headerlist
        present = {name.lower() for name, _ in headerlist}
        for name, value in self._security:
            if name.lower() not in present:
                headerlist.append((name, value))
        if "cache-control" not in present:
            headerlist.append(("Cache-Control", "no-store"))

