"""Helpers shared by the views: safe redirects, OAuth JSON errors, client credentials."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import quote, unquote_plus, urlsplit

from pyramid.httpexceptions import HTTPFound
from pyramid.response import Response

from authgate.services.errors import OAuthError


def safe_redirect(target: str | None, base_url: str) -> str:
    """``target`` if it stays on this server, else "" (no open redirects).

    Accepted: a relative path ("/device?user_code=..."), not "//host" nor a
    backslash trick; or an absolute URL with this server's scheme, host and port.
    """
    if not target or any(c in target for c in "\r\n\\\t") or len(target) > 8192:
        return ""
    if target.startswith("/"):
        return "" if target.startswith("//") else target
    parts, base = urlsplit(target), urlsplit(base_url)
    if parts.scheme in ("http", "https") and (parts.scheme, parts.netloc) == (
            base.scheme, base.netloc):
        return target
    return ""


def login_redirect(request) -> HTTPFound:
    here = request.path_qs
    return HTTPFound(location=f"/login?redirect={quote(here, safe='')}")


def oauth_json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON answer that no cache may keep.  The body and headers are those of
    ``Response(json_body=body)`` (webob's compact JSON, ``application/json``), built
    in one step: every device poll and token call ends here."""
    data = json.dumps(body, separators=(",", ":")).encode()
    fields = {"Content-Type": "application/json", "Content-Length": str(len(data)),
              "Cache-Control": "no-store", "Pragma": "no-cache"}
    if headers:
        fields.update(headers)
    return Response(body=data, status=status, headerlist=list(fields.items()))


def oauth_error(exc: OAuthError) -> Response:
    return oauth_json(exc.body(), exc.status, exc.headers)


def request_params(request) -> dict[str, str]:
    """Form fields, or a JSON object body (device-code requests accept both)."""
    if request.content_type == "application/json":
        try:
            body = request.json_body
        except ValueError:
            raise OAuthError("invalid_request", "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise OAuthError("invalid_request", "The JSON body must be an object")
        return {k: v for k, v in body.items() if isinstance(v, str)}
    params: dict[str, str] = {}
    seen: set[str] = set()
    # One pass over the fields: getall() per key would be quadratic in the number of
    # fields, and a 1 MiB body of "k1=&k2=&..." would hold a thread for minutes.
    for key, value in request.POST.items():
        if key in seen:
            # RFC 6749 §3.1: parameters must not be included more than once.
            raise OAuthError("invalid_request", f"Parameter {key!r} was sent more than once")
        seen.add(key)
        if isinstance(value, str):
            params[key] = value
    return params


def client_credentials(request, params: dict[str, str]) -> tuple[str, str | None, bool]:
    """(client_id, client_secret, used_basic) from HTTP Basic or the form (RFC 6749 §2.3)."""
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            raw_id, raw_secret = decoded.split(":", 1)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise OAuthError("invalid_client", "Malformed HTTP Basic credentials", 401,
                             {"WWW-Authenticate": 'Basic realm="authgate"'}) from None
        # §2.3.1: the id and secret are form-urlencoded before base64.
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        if params.get("client_id") and params["client_id"] != client_id:
            raise OAuthError("invalid_request", "client_id in the body differs from HTTP Basic")
        if "client_secret" in params:
            raise OAuthError("invalid_request", "Use one client authentication method, "
                                                "not HTTP Basic and client_secret together")
        return client_id, secret, True
    return params.get("client_id", ""), params.get("client_secret") or None, False
