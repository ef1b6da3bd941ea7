"""Helpers shared by the security regression tests (tests/security/)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

from sqlalchemy import select

from authgate.cli import create_oauth_client
from authgate.models import OAuthClient, User
from authgate.services import tokens
from authgate.testing import ADMIN_PASSWORD, form

REDIRECT = "https://app.example.com/callback"
SIGNATURE_FAILED = "Token signature verification failed"
INVALID_OR_EXPIRED = "Token is invalid or expired"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64json(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def make_client(app, *, confidential: bool = False, redirect_uris=(REDIRECT,),
                scopes: str = "openid email profile", auth_code: bool = True,
                client_credentials: bool = False, device: bool = False,
                name: str = "Photo Printer", description: str = "Prints your photos"
                ) -> tuple[str, str | None]:
    with app.db() as db:
        client, secret = create_oauth_client(
            db, name=name, confidential=confidential,
            device=device or not (auth_code or client_credentials), auth_code=auth_code,
            client_credentials=client_credentials, redirect_uris=list(redirect_uris),
            scopes=scopes, description=description)
        client.enable_device_flow = device
        return client.client_id, secret


def issue(app, client_id: str | None = None, scopes=("email", "profile"), *,
          lifetime=None) -> tuple[str, str]:
    """(access, refresh) minted by the service in a committed transaction."""
    with app.db() as db:
        client = db.scalars(select(OAuthClient).where(
            OAuthClient.client_id == (client_id or app.default_client_id))).one()
        subject = db.scalars(select(User.id).where(User.username == "admin")).one()
        if lifetime is not None:
            access, _ = tokens.mint(db, app.runtime.signer, app.runtime.settings,
                                    subject=subject, client=client, scopes=" ".join(scopes),
                                    kind=tokens.ACCESS, lifetime=lifetime,
                                    grant_type=DEVICE_GRANT)
            return access, ""
        issued = tokens.issue(db, app.runtime.signer, app.runtime.settings, subject=subject,
                              client=client, scopes=list(scopes), grant_type=DEVICE_GRANT)
        return issued.access_token, issued.refresh_token


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def header_of(token: str) -> dict:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def add_confidential_client(app, name: str = "Resource Server") -> tuple[str, str]:
    client_id, secret = make_client(app, confidential=True, auth_code=False,
                                    client_credentials=True, scopes="read write",
                                    name=name)
    return client_id, secret


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def authorize_url(client_id: str, **params: str | None) -> str:
    query = {"client_id": client_id, "redirect_uri": REDIRECT, "response_type": "code",
             "state": "xyz", **params}
    return "/oauth/authorize?" + urlencode({k: v for k, v in query.items() if v is not None})


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def get_code(app, client_id: str, *, challenge: str | None = None, **params: str) -> str:
    """The signed-in user approves; the code from the redirect."""
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    response = app.testapp.get(authorize_url(client_id, **params))
    if response.status_int == 200:
        response = form(response, "/oauth/authorize").submit("action", value="approve",
                                                              status=302)
    assert response.status_int == 302, response.text
    query = query_of(response.location)
    assert "code" in query, response.location
    return query["code"]


def exchange(app, client_id: str, code: str, verifier: str | None = None, *,
             secret: str | None = None, redirect_uri: str = REDIRECT):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client_id}
    if verifier is not None:
        data["code_verifier"] = verifier
    if secret is not None:
        data["client_secret"] = secret
    return app.testapp.post("/oauth/token", data, status="*")


def csrf_of(text: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert match, "no csrf_token on the page"
    return match.group(1)


def new_browser(app):
    from webtest import TestApp

    return TestApp(app.testapp.app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})


def sign_in(browser, username: str = "admin", password: str = ADMIN_PASSWORD):
    page = form(browser.get("/login"), "/login")
    page["username"], page["password"] = username, password
    response = page.submit()
    assert response.status_int == 302, response.text
    return response


def add_user(app, username: str, password: str, **fields) -> str:
    from authgate.services.passwords import hash_password

    with app.db() as db:
        user = User(id=str(uuid.uuid4()), username=username,
                    password_hash=hash_password(password), **fields)
        db.add(user)
        db.flush()
        return user.id
