"""Log in through an external HTTP API: the ``httpapi`` auth source.

AuthGate POSTs ``{"username": ..., "password": ...}`` as JSON to ``HTTP_API_URL``
and reads ``{"success", "user_id", "email", "full_name", "message"}`` back
(reference 7.2); an optional ``"username"`` in the answer names the account,
else the typed username is used.  ``AUTH_MODE=http_api`` selects ``local
httpapi``: people who have a local account (``admin``) keep logging in locally,
everybody else is asked to the API, and the core creates or updates their user
row with ``auth_source='http_api'`` and ``external_id=<user_id>``.

How an answer is read:

============================================  ==========================================
the API answers                               the source
============================================  ==========================================
2xx, ``success: true`` and a ``user_id``      ``Identity`` (logged in)
2xx, ``success: false``; 401; 403             raises ``AuthRejected`` (generic message)
404 with a JSON object body                   ``None``: "no such user", the next source
                                              is asked
other 4xx with a JSON body                    raises ``AuthRejected``
429, 5xx (after the retries), a timeout, a    raises ``AuthUnavailable``: "The
refused connection, a redirect, a body that   authentication service is unavailable.
is not the JSON above                         Please try again later."
============================================  ==========================================

Service-to-service authentication (``HTTP_API_AUTH_MODE``): ``none``; ``simple``
sends the secret in ``HTTP_API_AUTH_HEADER``; ``hmac`` sends ``X-Timestamp``,
``X-Nonce`` and ``X-Signature`` = lowercase hex HMAC-SHA256(secret, timestamp +
method + path [+ ``?`` + query] + body).

Retries are urllib3's (:class:`LoginRetry`): refused connections, 429 and 5xx are
retried up to ``HTTP_API_MAX_RETRIES`` times with exponential back-off starting
at ``HTTP_API_RETRY_DELAY`` and capped at ``HTTP_API_MAX_RETRY_DELAY`` (a
``Retry-After`` header is honoured, capped the same way).  A retry re-sends the
same request, headers included: under ``hmac`` the receiver sees the same
timestamp and nonce again, so its clock-skew window must cover the whole retry
budget, and a nonce cache must not treat a retried request as a replay.  A read
timeout is not retried: the API has the request and may have counted the
attempt, and the person would wait ``(retries + 1) x timeout``.

Neither the password nor the secret is ever logged or put in an error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.cookiejar
import ipaddress
import json
import logging
import re
import socket
import ssl
import time
import uuid
from collections.abc import Iterator, Mapping
from itertools import takewhile
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import select
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    NameResolutionError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from authgate import __version__, hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.errors import ConfigurationError
from authgate.interfaces import AuthContext, AuthRejected, AuthUnavailable, Identity
from authgate.models import User
from authgate.settings import Setting

__all__ = ["AUTH_SOURCE", "SOURCE_NAME", "HTTPAPIAuthSource", "LoginRetry", "sign"]

log = logging.getLogger(__name__)

SOURCE_NAME = "httpapi"  # the word in authgate.auth_sources
AUTH_SOURCE = "http_api"  # recorded in users.auth_source (the seed's value)
GENERIC = "Invalid username or password"
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_ANSWER_BYTES = 64 * 1024
AUTH_MODES = ("none", "simple", "hmac")


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


def _check_url(value: str) -> None:
    if value and not re.match(r"^https?://[^/\s?#]+(/[^\s#]*)?$", value):
        raise ValueError("an absolute http:// or https:// URL such as "
                         "https://auth.example.com/api/verify")


def _check_header(value: str) -> None:
    if not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", value):
        raise ValueError("an HTTP header name such as X-API-Secret")


def _check_positive(value: dt.timedelta) -> None:
    if value <= dt.timedelta(0):
        raise ValueError("a duration greater than 0")


SETTINGS = [
    Setting("http_api_url", "HTTP_API_URL", "str", "", section="Authentication",
            check=_check_url,
            help="URL of the external login API (`AUTH_MODE=http_api`, auth source "
                 "`httpapi`): AuthGate POSTs `{\"username\", \"password\"}` as JSON to it. "
                 "Required when the source is selected."),
    Setting("http_api_timeout", "HTTP_API_TIMEOUT", "duration", dt.timedelta(seconds=10),
            check=_check_positive, section="Authentication",
            help="Connect timeout, and the longest wait for the API's answer, per attempt. "
                 "A read timeout is not retried."),
    Setting("http_api_insecure_skip_verify", "HTTP_API_INSECURE_SKIP_VERIFY", "bool", False,
            section="Authentication",
            help="Skip TLS certificate verification of the API (testing only: passwords "
                 "then go to whoever answers)."),
    Setting("http_api_auth_mode", "HTTP_API_AUTH_MODE", "str", "none", choices=AUTH_MODES,
            section="Authentication",
            help="How AuthGate authenticates itself to the API: `none`; `simple` (the "
                 "secret in HTTP_API_AUTH_HEADER); `hmac` (`X-Signature` = hex "
                 "HMAC-SHA256(secret, timestamp + method + path + body), with `X-Timestamp` "
                 "and `X-Nonce`)."),
    Setting("http_api_auth_secret", "HTTP_API_AUTH_SECRET", "str", "", secret=True,
            section="Authentication",
            help="Shared secret for HTTP_API_AUTH_MODE `simple` or `hmac` (required then)."),
    Setting("http_api_auth_header", "HTTP_API_AUTH_HEADER", "str", "X-API-Secret",
            check=_check_header, section="Authentication",
            help="Header that carries the secret in `simple` mode."),
    Setting("http_api_max_retries", "HTTP_API_MAX_RETRIES", "int", 3, minimum=0,
            section="Authentication",
            help="Extra attempts after a refused connection, a 429 or a 5xx answer "
                 "(`0` = one attempt only)."),
    Setting("http_api_retry_delay", "HTTP_API_RETRY_DELAY", "duration",
            dt.timedelta(seconds=1), minimum=dt.timedelta(0), section="Authentication",
            help="Wait before the first retry; doubles with each further retry."),
    Setting("http_api_max_retry_delay", "HTTP_API_MAX_RETRY_DELAY", "duration",
            dt.timedelta(seconds=10), minimum=dt.timedelta(0), section="Authentication",
            help="Longest wait between two attempts (also caps a `Retry-After` header)."),
]


# ---------------------------------------------------------------------------
# Transport
# ---------------------------------------------------------------------------


class LoginRetry(Retry):
    """urllib3's ``Retry``, with three changes for a login call.

    - The first retry waits ``backoff_factor`` (urllib3's own formula retries
      the first time at once), then the wait doubles: delay, 2 x delay,
      4 x delay ... capped at ``backoff_max``.
    - ``Retry-After`` is capped at ``backoff_max`` too (a person is waiting), and
      an unreadable one is ignored rather than ending the attempt.
    - A read timeout is not retried (the API has the request; see the module).

    Everything else (what is retried, the counting, the sleeping, re-sending
    the body) is urllib3's.
    """

    def get_backoff_time(self) -> float:
        errors = len(list(takewhile(lambda h: h.redirect_location is None,
                                    reversed(self.history))))
        if errors == 0:
            return 0.0
        return float(min(self.backoff_max, self.backoff_factor * 2 ** (errors - 1)))

    def get_retry_after(self, response) -> float | None:
        try:
            seconds = super().get_retry_after(response)
        except InvalidHeader:
            return None  # unreadable: the normal back-off applies
        return None if seconds is None else min(seconds, self.backoff_max)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                  _stacktrace=None):
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method=method, url=url, response=response, error=error,
                                 _pool=_pool, _stacktrace=_stacktrace)


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The ``X-Signature`` value: lowercase hex HMAC-SHA256 of timestamp+method+path+body.

    ``path`` is the URL's path, plus ``?`` and the raw query when there is one.
    """
    message = timestamp.encode() + method.upper().encode() + path.encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _safe_url(url: str) -> str:
    """The URL for logs: no user-info, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps (requests and urllib3 nest errors deeply)."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None),
                      *item.args])


class _Unavailable(Exception):
    """Internal: the API could not give an answer (reason for operators)."""


# ---------------------------------------------------------------------------
# The source
# ---------------------------------------------------------------------------


class HTTPAPIAuthSource:
    """Asks an external HTTP API whether a username and password are right."""

    name = SOURCE_NAME

    def __init__(self, url: str, *, timeout: float = 10.0, verify_tls: bool = True,
                 auth_mode: str = "none", secret: str = "", header: str = "X-API-Secret",
                 max_retries: int = 3, retry_delay: float = 1.0,
                 max_retry_delay: float = 10.0, pool_size: int = 10):
        if not url:
            raise ConfigurationError("HTTP_API_URL is empty")
        if auth_mode not in AUTH_MODES:
            raise ConfigurationError(f"HTTP_API_AUTH_MODE must be one of {', '.join(AUTH_MODES)}")
        if auth_mode != "none" and not secret:
            raise ConfigurationError(f"HTTP_API_AUTH_MODE={auth_mode} needs HTTP_API_AUTH_SECRET")
        self.url = url
        self.safe_url = _safe_url(url)
        # What is signed is the path and query exactly as sent (requests percent-encodes).
        self._signed_path = requests.Request("POST", url).prepare().path_url
        self.timeout = timeout
        self.auth_mode = auth_mode
        self._secret = secret
        self._header = header
        self.max_retries = max_retries
        self.retry = LoginRetry(
            total=max_retries, backoff_factor=retry_delay, backoff_max=max_retry_delay,
            status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"POST"}),
            respect_retry_after_header=True, raise_on_status=False, redirect=False,
        )
        self._verify = verify_tls
        session = requests.Session()
        # One session serves every request thread: never carry a cookie from one
        # person's login into another's.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        adapter = HTTPAdapter(max_retries=self.retry, pool_connections=1,
                              pool_maxsize=max(pool_size, 1))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    # -- IAuthSource ------------------------------------------------------------

    def authenticate(self, username: str, password: str, ctx: AuthContext) -> Identity | None:
        local = ctx.dbsession.scalars(select(User).where(User.username == username)).first()
        if local is not None and local.auth_source == "local":
            return None  # a local account (admin): the local source decides
        if not password:
            raise AuthRejected(GENERIC, reason=f"{SOURCE_NAME}: empty password")
        started = time.monotonic()
        try:
            status, data, attempts = self._call(username, password)
        except _Unavailable as exc:
            reason = self._redact(str(exc), password)
            log.error("Authentication failed: %s (user %r, %.0f ms)", reason, username,
                      (time.monotonic() - started) * 1000)
            raise AuthUnavailable(reason=f"{SOURCE_NAME}: {reason}") from None
        elapsed = (time.monotonic() - started) * 1000
        return self._interpret(username, password, status, data, attempts, elapsed)

    def close(self) -> None:
        self._session.close()

    # -- the HTTP call ------------------------------------------------------------

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": f"AuthGate/{__version__}"}
        if self.auth_mode == "simple":
            headers[self._header] = self._secret
        elif self.auth_mode == "hmac":
            timestamp = str(int(time.time()))
            headers["X-Timestamp"] = timestamp
            headers["X-Nonce"] = str(uuid.uuid4())
            headers["X-Signature"] = sign(self._secret, timestamp, "POST", self._signed_path,
                                          body)
        return headers

    def _call(self, username: str, password: str) -> tuple[int, Any, int]:
        """(status, parsed JSON body or None, attempts); _Unavailable when no answer."""
        body = json.dumps({"username": username, "password": password},
                          separators=(",", ":")).encode()
        try:
            response = self._session.post(self.url, data=body, headers=self._headers(body),
                                          timeout=(self.timeout, self.timeout),
                                          # Per request: a session-level False would lose
                                          # to REQUESTS_CA_BUNDLE in the environment.
                                          verify=self._verify,
                                          allow_redirects=False, stream=True)
        except requests.RequestException as exc:
            raise _Unavailable(self._describe(exc)) from None
        try:
            retries = getattr(response.raw, "retries", None)
            attempts = len(retries.history) + 1 if retries is not None else 1
            raw = self._read(response)
        finally:
            response.close()
        data = None
        if raw:
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
        return response.status_code, data, attempts

    def _read(self, response: requests.Response) -> bytes:
        """The answer's body, at most MAX_ANSWER_BYTES, within the timeout."""
        deadline = time.monotonic() + self.timeout
        chunks, size = [], 0
        try:
            for chunk in response.iter_content(8192):
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise _Unavailable(f"answer from {self.safe_url} is larger than "
                                       f"{MAX_ANSWER_BYTES // 1024} KiB")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _Unavailable(
                        f"timeout waiting for authentication response from {self.safe_url} "
                        f"(the answer took longer than {self.timeout:g}s to arrive)")
        except requests.RequestException as exc:
            raise _Unavailable(self._describe(exc)) from None
        return b"".join(chunks)

    def _describe(self, exc: requests.RequestException) -> str:
        """An operator's reason for a failed call: no URL query, no secret."""
        attempts = self.max_retries + 1
        causes = list(_causes(exc))
        if any(isinstance(c, ConnectionRefusedError) for c in causes):
            return (f"connection refused by {self.safe_url} "
                    f"(tried {attempts} time{'s' if attempts > 1 else ''})")
        if any(isinstance(c, NameResolutionError | socket.gaierror) for c in causes):
            return f"cannot resolve the host of {self.safe_url}"
        if isinstance(exc, requests.ConnectTimeout) or any(
                isinstance(c, ConnectTimeoutError) for c in causes):
            return (f"timeout waiting for authentication response: no connection to "
                    f"{self.safe_url} within {self.timeout:g}s (tried {attempts} times)")
        if isinstance(exc, requests.ReadTimeout) or any(
                isinstance(c, ReadTimeoutError | TimeoutError) for c in causes):
            return (f"timeout waiting for authentication response from {self.safe_url} "
                    f"after {self.timeout:g}s")
        if isinstance(exc, requests.exceptions.SSLError) or any(
                isinstance(c, ssl.SSLError) for c in causes):
            return f"TLS error talking to {self.safe_url}: {self._scrub(exc)}"
        return f"cannot reach {self.safe_url}: {type(exc).__name__}: {self._scrub(exc)}"

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc).replace(self.url, self.safe_url)
        return text[:300]

    def _redact(self, text: str, password: str) -> str:
        for secret in (password, self._secret):
            if secret:
                text = text.replace(secret, "***")
        return text

    # -- the answer ---------------------------------------------------------------

    def _interpret(self, username: str, password: str, status: int, data: Any,
                   attempts: int, elapsed: float) -> Identity | None:
        def api_message() -> str:
            if isinstance(data, Mapping) and isinstance(data.get("message"), str):
                return self._redact(data["message"], password)[:200]
            return ""

        def unavailable(why: str) -> AuthUnavailable:
            reason = self._redact(why, password)
            log.error("Authentication failed: %s (user %r, %d attempt%s, %.0f ms)", reason,
                      username, attempts, "s" if attempts > 1 else "", elapsed)
            return AuthUnavailable(reason=f"{SOURCE_NAME}: {reason}")

        def rejected(why: str) -> AuthRejected:
            message = api_message()
            reason = f"{SOURCE_NAME}: {why}" + (f": {message}" if message else "")
            log.info("HTTP API rejected user %r: %s", username, reason)
            return AuthRejected(GENERIC, reason=reason)

        answer = data if isinstance(data, Mapping) else None
        if 300 <= status < 400:
            raise unavailable(f"HTTP {status} redirect from {self.safe_url}; redirects are "
                              "not followed (credentials go to HTTP_API_URL only): set it to "
                              "the final URL")
        if status in RETRY_STATUSES:
            raise unavailable(f"HTTP {status} from {self.safe_url} after {attempts} "
                              f"attempt{'s' if attempts > 1 else ''}"
                              + (f": {api_message()}" if api_message() else ""))
        if 200 <= status < 300:
            if answer is None or not isinstance(answer.get("success"), bool):
                raise unavailable(f"HTTP {status} from {self.safe_url} is not the expected "
                                  'JSON object with a boolean "success"')
            if not answer["success"]:
                raise rejected(f"API answered success=false (HTTP {status})")
            user_id = answer.get("user_id")
            if isinstance(user_id, int) and not isinstance(user_id, bool):
                user_id = str(user_id)
            if not isinstance(user_id, str) or not user_id.strip():
                raise unavailable(f"HTTP {status} from {self.safe_url} says success but has "
                                  "no user_id")
            if len(user_id) > 255:
                raise unavailable("the API's user_id is longer than 255 characters")
            email = answer.get("email")
            email = email.strip() if isinstance(email, str) else ""
            if email and (len(email) > 255 or "@" not in email):
                log.warning("HTTP API returned an unusable email for user %r; ignored",
                            username)
                email = ""
            full_name = answer.get("full_name")
            full_name = full_name.strip()[:255] if isinstance(full_name, str) else ""
            # The API may name the account itself ("username": "john@company.com", the
            # troubleshooting guide's way out of a username conflict); else the typed name.
            canonical = answer.get("username")
            canonical = canonical.strip() if isinstance(canonical, str) else ""
            if len(canonical) > 255:
                raise unavailable("the API's username is longer than 255 characters")
            log.info("HTTP API accepted user %r%s (external id %s, %d attempt%s, %.0f ms)",
                     username, f" as {canonical!r}" if canonical and canonical != username
                     else "", user_id, attempts, "s" if attempts > 1 else "", elapsed)
            return Identity(username=canonical or username, auth_source=AUTH_SOURCE,
                            external_id=user_id.strip(), email=email or None,
                            full_name=full_name or None)
        if status == 404 and answer is not None:
            log.info("HTTP API does not know user %r (HTTP 404)%s", username,
                     f": {api_message()}" if api_message() else "")
            return None
        if status in (401, 403):
            raise rejected(f"HTTP {status}")
        if 400 <= status < 500 and answer is not None:
            raise rejected(f"HTTP {status}")
        raise unavailable(f"HTTP {status} from {self.safe_url} without a JSON answer "
                          "(is HTTP_API_URL right?)")


# ---------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------


def _seconds(value: dt.timedelta) -> float:
    return value.total_seconds()


def _factory(ctx: BuildContext) -> HTTPAPIAuthSource:
    s = ctx.settings
    if not s.http_api_url:
        raise ConfigurationError(
            "The 'httpapi' auth source is selected (AUTH_MODE=http_api or "
            "authgate.auth_sources) but HTTP_API_URL (authgate.http_api_url) is empty; set "
            "it to the URL of your login API, e.g. https://auth.example.com/api/verify")
    if s.http_api_auth_mode != "none" and not s.http_api_auth_secret:
        raise ConfigurationError(
            f"HTTP_API_AUTH_MODE={s.http_api_auth_mode} needs HTTP_API_AUTH_SECRET "
            "(authgate.http_api_auth_secret); set it in the environment")
    host = urlsplit(s.http_api_url).hostname or ""
    if s.http_api_url.startswith("http://") and not _is_loopback(host):
        log.warning("HTTP_API_URL is plain http:// to %s: passwords%s travel unencrypted; "
                    "use https://", host,
                    " and the API secret" if s.http_api_auth_mode == "simple" else "")
    if s.http_api_insecure_skip_verify:
        log.warning("HTTP_API_INSECURE_SKIP_VERIFY is on: the API's TLS certificate is not "
                    "checked, so passwords go to whoever answers. Testing only.")
    if s.http_api_auth_mode == "none" and s.http_api_auth_secret:
        log.warning("HTTP_API_AUTH_SECRET is set but HTTP_API_AUTH_MODE is none: the secret "
                    "is not sent")
    source = HTTPAPIAuthSource(
        s.http_api_url, timeout=_seconds(s.http_api_timeout),
        verify_tls=not s.http_api_insecure_skip_verify, auth_mode=s.http_api_auth_mode,
        secret=s.http_api_auth_secret, header=s.http_api_auth_header,
        max_retries=s.http_api_max_retries, retry_delay=_seconds(s.http_api_retry_delay),
        max_retry_delay=_seconds(s.http_api_max_retry_delay),
        pool_size=getattr(s, "server_threads", 10))
    log.info("HTTP API auth source: %s (auth mode %s, timeout %gs, %d retries)",
             source.safe_url, s.http_api_auth_mode, source.timeout, s.http_api_max_retries)
    return source


@hookimpl
def authgate_add_settings(spec):
    spec.extend(SETTINGS)


@hookimpl
def authgate_register_auth_sources():
    return [ComponentSpec(SOURCE_NAME, _factory,
                          "Users checked by an external HTTP API (HTTP_API_URL)")]
