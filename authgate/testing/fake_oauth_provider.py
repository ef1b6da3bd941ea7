"""A small fake social-login provider for tests: a real WSGI app on 127.0.0.1.

One server plays all four upstream shapes, each under its own prefix:

==========  ================================================  =========================
kind        authorize / token                                 profile
==========  ================================================  =========================
github      ``/github/login/oauth/authorize``, ``…/access_token``  ``/github-api/user``,
                                                              ``/github-api/user/emails``
gitea       ``/gitea/login/oauth/authorize``, ``…/access_token``   ``/gitea/api/v1/user``
gitlab      ``/gitlab/oauth/authorize``, ``/gitlab/oauth/token``   ``/gitlab/api/v4/user``
microsoft   ``/ms/<tenant>/oauth2/v2.0/authorize``, ``…/token``    ``/graph/v1.0/me``
==========  ================================================  =========================

It behaves like a strict provider: the authorize endpoint requires the
registered client id and redirect URI, a ``state`` and a PKCE S256 challenge;
the token endpoint requires the client secret (HTTP Basic or form), the same
redirect URI and a ``code_verifier`` that matches the challenge; codes are
single-use; profile endpoints need the bearer token.  Nothing of AuthGate is
faked: AuthGate talks to it over real HTTP.

Who signs in: ``sign_in_as(kind, user)`` makes the authorize endpoint approve at
once (a person already signed in at the provider who consented before); with
``auto_approve = False`` it shows a small consent page with a "Continue as …"
button per user and a "Deny" button, for a browser to click.
``fail_next(kind, error)`` makes the next authorize answer ``?error=…``.

    with FakeOAuthProvider() as fake:
        alice = fake.add_user("github", login="alice", email="alice@example.com")
        fake.sign_in_as("github", alice)
        settings = fake.settings("github")        # ini keys for make_app
        environ = fake.environ("github")          # env vars for a live server
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

KINDS = ("github", "gitea", "gitlab", "microsoft")
CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret-0123456789"
TENANT = "fake-tenant"


@dataclass
class FakeUser:
    """An account at the fake provider.

    ``email_verified`` is what GitHub's ``/user/emails`` says (the other kinds
    have no such flag); ``public_email`` puts the address in GitHub's ``/user``.
    ``other_emails`` are more GitHub addresses (``(address, verified)``).
    Microsoft: ``mail`` is ``email`` (``upn`` is used when ``email`` is empty).
    """

    kind: str
    id: int | str
    login: str
    email: str = ""
    name: str = ""
    email_verified: bool = True
    public_email: bool = True
    avatar_url: str = ""
    upn: str = ""
    sam_account_name: str = ""
    sync_enabled: bool = False
    other_emails: list[tuple[str, bool]] = field(default_factory=list)  # GitHub (addr, verified)


@dataclass
class _Grant:
    kind: str
    user: FakeUser
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    created: float = field(default_factory=time.monotonic)
    used: bool = False


class _Threaded(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class FakeOAuthProvider:
    """GitHub, Gitea, GitLab and Microsoft Graph shapes on one local server."""

    def __init__(self, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET,
                 host: str = "127.0.0.1", port: int = 0):
        self.client_id = client_id
        self.client_secret = client_secret
        self.auto_approve = True
        self.users: dict[str, dict[str, FakeUser]] = {kind: {} for kind in KINDS}
        self.current: dict[str, FakeUser | None] = dict.fromkeys(KINDS)
        self.pending_errors: dict[str, tuple[str, str]] = {}
        self.token_failures: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, params)
        self.authorize_params: list[dict[str, str]] = []
        self.token_params: list[dict[str, str]] = []
        self._grants: dict[str, _Grant] = {}
        self._tokens: dict[str, FakeUser] = {}
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self._server = make_server(host, port, self, server_class=_Threaded,
                                   handler_class=_QuietHandler)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> FakeOAuthProvider:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOAuthProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ------------------------------------------------------------------

    def add_user(self, kind: str, *, login: str, id: int | str | None = None,  # noqa: A002
                 **fields: Any) -> FakeUser:
        assert kind in KINDS, kind
        if id is None:
            id = next(self._ids) if kind != "microsoft" else (  # noqa: A001
                f"00000000-0000-0000-0000-{next(self._ids):012d}")
        user = FakeUser(kind=kind, id=id, login=login, **fields)
        with self._lock:
            self.users[kind][str(id)] = user
        return user

    def sign_in_as(self, kind: str, user: FakeUser | None) -> None:
        """The account the authorize endpoint approves at once (None: ask)."""
        self.current[kind] = user

    def fail_next(self, kind: str, error: str = "access_denied", description: str = "") -> None:
        """The next authorize request of ``kind`` redirects back with ``error``."""
        self.pending_errors[kind] = (error, description)

    def fail_token(self, kind: str, times: int = 1) -> None:
        """The next ``times`` token requests of ``kind`` answer HTTP 500."""
        self.token_failures[kind] = times

    # -- configuration for AuthGate --------------------------------------------------

    def endpoints(self, kind: str) -> dict[str, str]:
        """The endpoint settings (env names) that point ``kind`` at this server."""
        return {
            "github": {"GITHUB_URL": f"{self.url}/github",
                       "GITHUB_API_URL": f"{self.url}/github-api"},
            "gitea": {"GITEA_URL": f"{self.url}/gitea"},
            "gitlab": {"GITLAB_URL": f"{self.url}/gitlab"},
            "microsoft": {"MICROSOFT_LOGIN_URL": f"{self.url}/ms",
                          "MICROSOFT_GRAPH_URL": f"{self.url}/graph",
                          "MICROSOFT_TENANT_ID": TENANT},
        }[kind]

    def environ(self, *kinds: str) -> dict[str, str]:
        """Environment variables that enable ``kinds`` (default: all) against this fake."""
        env: dict[str, str] = {}
        for kind in kinds or KINDS:
            prefix = kind.upper()
            env[f"{prefix}_OAUTH_ENABLED"] = "true"
            env[f"{prefix}_CLIENT_ID"] = self.client_id
            env[f"{prefix}_CLIENT_SECRET"] = self.client_secret
            env.update(self.endpoints(kind))
        return env

    def settings(self, *kinds: str) -> dict[str, str]:
        """The same as ini keys (``authgate.github_oauth_enabled`` …)."""
        return {f"authgate.{name.lower()}": value
                for name, value in self.environ(*kinds).items()}

    # -- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        params = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length).decode("utf-8") if length else ""
            params.update({k: v[0] for k, v in parse_qs(body).items()})
        with self._lock:
            self.requests.append((method, path, dict(params)))
        try:
            status, headers, payload = self._route(method, path, params, environ)
        except Exception as exc:  # a bug in the fake must show, not hang the test
            status, headers, payload = "500 Internal Server Error", [
                ("Content-Type", "text/plain")], f"fake provider error: {exc!r}".encode()
        start_response(status, headers)
        return [payload]

    def _route(self, method: str, path: str, params: dict[str, str],
               environ: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        kind, action = self._match(path)
        if kind is None:
            return _text("404 Not Found", "no such fake endpoint")
        if action == "authorize":
            return self._authorize(kind, method, params)
        if action == "token":
            if method != "POST":
                return _text("405 Method Not Allowed", "POST only")
            return self._token(kind, params, environ)
        return self._profile(kind, action, environ)

    @staticmethod
    def _match(path: str) -> tuple[str | None, str]:
        routes = {
            "/github/login/oauth/authorize": ("github", "authorize"),
            "/github/login/oauth/access_token": ("github", "token"),
            "/github-api/user": ("github", "user"),
            "/github-api/user/emails": ("github", "emails"),
            "/gitea/login/oauth/authorize": ("gitea", "authorize"),
            "/gitea/login/oauth/access_token": ("gitea", "token"),
            "/gitea/api/v1/user": ("gitea", "user"),
            "/gitlab/oauth/authorize": ("gitlab", "authorize"),
            "/gitlab/oauth/token": ("gitlab", "token"),
            "/gitlab/api/v4/user": ("gitlab", "user"),
            f"/ms/{TENANT}/oauth2/v2.0/authorize": ("microsoft", "authorize"),
            f"/ms/{TENANT}/oauth2/v2.0/token": ("microsoft", "token"),
            "/graph/v1.0/me": ("microsoft", "user"),
        }
        return routes.get(path, (None, ""))

    # -- authorize --------------------------------------------------------------------

    def _authorize(self, kind: str, method: str, params: dict[str, str]):
        with self._lock:
            self.authorize_params.append(dict(params))
        problems = []
        if params.get("client_id") != self.client_id:
            problems.append("unknown client_id")
        if params.get("response_type") != "code":
            problems.append("response_type must be code")
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            problems.append("redirect_uri missing")
        if not params.get("state"):
            problems.append("state missing")
        if params.get("code_challenge_method") != "S256" or len(
                params.get("code_challenge", "")) != 43:
            problems.append("PKCE S256 code_challenge missing")
        if problems:
            return _text("400 Bad Request", "fake provider refuses: " + "; ".join(problems))
        error = self.pending_errors.pop(kind, None)
        if error is not None:
            return _redirect(redirect_uri, {"error": error[0], "state": params["state"],
                                            **({"error_description": error[1]}
                                               if error[1] else {})})
        if method == "POST":
            if params.get("action") == "deny":
                return _redirect(redirect_uri, {"error": "access_denied",
                                                "error_description": "The user denied access",
                                                "state": params["state"]})
            user = self.users[kind].get(params.get("user_id", ""))
            if user is None:
                return _text("400 Bad Request", "pick a user")
            return self._approve(kind, user, params)
        user = self.current[kind]
        if self.auto_approve and user is not None:
            return self._approve(kind, user, params)
        return self._consent_page(kind, params)

    def _approve(self, kind: str, user: FakeUser, params: dict[str, str]):
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = _Grant(kind, user, params["client_id"], params["redirect_uri"],
                                        params["code_challenge"], params.get("scope", ""))
        return _redirect(params["redirect_uri"], {"code": code, "state": params["state"]})

    def _consent_page(self, kind: str, params: dict[str, str]):
        keep = ("client_id", "response_type", "redirect_uri", "state", "scope",
                "code_challenge", "code_challenge_method")
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(params[k])}">'
            for k in keep if k in params)
        buttons = "".join(
            f'<button type="submit" name="user_id" value="{html.escape(str(u.id))}" '
            f'id="fake-continue-{html.escape(u.login)}">Continue as {html.escape(u.login)}'
            "</button>"
            for u in self.users[kind].values())
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Fake {kind} - authorize</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}
button{{display:block;width:100%;margin:.5rem 0;padding:.7rem;font-size:1rem}}</style>
</head><body><h1 id="fake-title">Fake {kind}</h1>
<p>The application <strong>{html.escape(params.get("client_id", ""))}</strong> asks for
<code>{html.escape(params.get("scope", ""))}</code>.</p>
<form method="post"><input type="hidden" name="action" value="approve">{hidden}{buttons}</form>
<form method="post"><input type="hidden" name="action" value="deny">{hidden}
<button type="submit" id="fake-deny">Deny</button></form></body></html>"""
        return "200 OK", [("Content-Type", "text/html; charset=utf-8")], page.encode()

    # -- token --------------------------------------------------------------------------

    def _token(self, kind: str, params: dict[str, str], environ: Mapping[str, Any]):
        with self._lock:
            self.token_params.append(dict(params))
            failures = self.token_failures.get(kind, 0)
            if failures:
                self.token_failures[kind] = failures - 1
        if failures:
            return _text("500 Internal Server Error", "fake provider: scripted failure")
        client_id, secret = params.get("client_id"), params.get("client_secret")
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        if header.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        if client_id != self.client_id or secret != self.client_secret:
            return self._token_error(kind, "invalid_client", "bad client credentials", 401)
        if params.get("grant_type") != "authorization_code":
            return self._token_error(kind, "unsupported_grant_type", "authorization_code only")
        with self._lock:
            grant = self._grants.get(params.get("code", ""))
            fresh = grant is not None and not grant.used
            if fresh:
                grant.used = True
        if not fresh or grant.kind != kind or time.monotonic() - grant.created > 600:
            return self._token_error(kind, "invalid_grant", "unknown or used code")
        if params.get("redirect_uri") != grant.redirect_uri:
            return self._token_error(kind, "invalid_grant", "redirect_uri mismatch")
        verifier = params.get("code_verifier", "")
        if not verifier or s256(verifier) != grant.challenge:
            return self._token_error(kind, "invalid_grant", "PKCE verification failed")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = grant.user
        body = {"access_token": token, "token_type": "bearer", "scope": grant.scope}
        if kind != "github":
            body.update(expires_in=3600, refresh_token=secrets.token_urlsafe(24))
        return _json("200 OK", body)

    @staticmethod
    def _token_error(kind: str, error: str, description: str, status: int = 400):
        if kind == "github":  # GitHub answers 200 with an error body
            return _json("200 OK", {"error": error, "error_description": description})
        return _json(f"{status} Error", {"error": error, "error_description": description})

    # -- profiles -------------------------------------------------------------------------

    def _profile(self, kind: str, action: str, environ: Mapping[str, Any]):
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        token = header[7:] if header.lower().startswith("bearer ") else ""
        with self._lock:
            user = self._tokens.get(token)
        if user is None or user.kind != kind:
            return _json("401 Unauthorized", {"message": "Bad credentials"})
        if kind == "github" and action == "emails":
            emails = [{"email": user.email, "primary": True, "verified": user.email_verified,
                       "visibility": "public" if user.public_email else "private"}
                      ] if user.email else []
            emails += [{"email": address, "primary": False, "verified": verified,
                        "visibility": None} for address, verified in user.other_emails]
            return _json("200 OK", emails)
        if kind == "github":
            return _json("200 OK", {"id": user.id, "login": user.login,
                                    "name": user.name or None,
                                    "email": user.email if user.public_email else None,
                                    "avatar_url": user.avatar_url})
        if kind == "gitea":
            return _json("200 OK", {"id": user.id, "login": user.login,
                                    "full_name": user.name, "email": user.email,
                                    "avatar_url": user.avatar_url})
        if kind == "gitlab":
            return _json("200 OK", {"id": user.id, "username": user.login,
                                    "name": user.name, "email": user.email,
                                    "avatar_url": user.avatar_url, "state": "active"})
        given, _, surname = user.name.partition(" ")
        return _json("200 OK", {
            "id": user.id, "userPrincipalName": user.upn or user.email,
            "displayName": user.name or None, "mail": user.email or None,
            "givenName": given or None, "surname": surname or None,
            "onPremisesSamAccountName": user.sam_account_name or None,
            "onPremisesSyncEnabled": user.sync_enabled or None,
            "mailNickname": user.login})


def _text(status: str, message: str):
    return status, [("Content-Type", "text/plain; charset=utf-8")], message.encode()


def _json(status: str, body: Any):
    return status, [("Content-Type", "application/json"),
                    ("Cache-Control", "no-store")], json.dumps(body).encode()


def _redirect(target: str, params: dict[str, str]):
    parts = urlsplit(target)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return "302 Found", [("Location", urlunsplit(parts._replace(query=query)))], b""
