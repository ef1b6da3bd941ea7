"""Social login (plugin ``auth_oauth``) against a fake provider over real HTTP.

The fake (:mod:`authgate.testing.fake_oauth_provider`) is a WSGI server on
127.0.0.1 in the GitHub, Gitea, GitLab and Microsoft Graph shapes.  It checks
the client secret, the redirect URI, single-use codes and the PKCE verifier
itself.  AuthGate's callback exchanges the code server-side with Authlib over
real HTTP; only the browser is played by webtest (for AuthGate) and requests
(for the provider's authorize redirect).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from sqlalchemy import func, select, update

from authgate.errors import ConfigurationError
from authgate.interfaces import AuthContext
from authgate.models import AuditLog, OAuthConnection, User
from authgate.services.passwords import hash_password
from authgate.testing import form
from authgate.testing.fake_oauth_provider import KINDS, FakeOAuthProvider

PLUGINS = ["authgate_plugins.auth_oauth"]
DISABLED = "Your account has been disabled. Please contact an administrator."
VERIFIED = {"github": True, "gitea": False, "gitlab": False, "microsoft": True}
LABELS = {"github": "GitHub", "gitea": "Gitea", "gitlab": "GitLab", "microsoft": "Microsoft"}


@pytest.fixture
def fake():
    with FakeOAuthProvider() as provider:
        yield provider


@pytest.fixture
def oauth_app(make_app, fake):
    def factory(*kinds: str, **settings: str):
        return make_app(settings={**fake.settings(*kinds),
                                  "authgate.auth_sources": "local oauth",
                                  **{f"authgate.{k}": v for k, v in settings.items()}},
                        plugins=PLUGINS)
    return factory


def start(app, kind: str, redirect: str = ""):
    """GET /auth/login/<kind>: the 302 to the provider."""
    query = f"?redirect={quote(redirect, safe='')}" if redirect else ""
    response = app.testapp.get(f"/auth/login/{kind}{query}", status=302)
    assert response.headers["Cache-Control"] == "no-store"
    return response


def at_provider(location: str) -> str:
    """The browser at the provider (which approves at once): the callback path+query."""
    answer = requests.get(location, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    callback = urlsplit(answer.headers["Location"])
    return f"{callback.path}?{callback.query}"


def sign_in(app, kind: str, redirect: str = "", status: int | None = None):
    """The whole round trip; returns AuthGate's answer to the callback."""
    callback = at_provider(start(app, kind, redirect).location)
    return app.testapp.get(callback, status=status or "*")


def link(app, kind: str, redirect: str = "", status: int | None = None):
    """Signed in: GET asks first, the confirmation POST goes to the provider and back."""
    query = f"?redirect={quote(redirect, safe='')}" if redirect else ""
    page = app.testapp.get(f"/auth/login/{kind}{query}", status=200)
    assert f"Link your {LABELS[kind]} account" in page.text
    to_provider = form(page, f"/auth/login/{kind}").submit(status=302)
    return app.testapp.get(at_provider(to_provider.location), status=status or "*")


def users(app) -> dict[str, User]:
    with app.db() as db:
        rows = db.scalars(select(User)).all()
        for row in rows:
            db.expunge(row)
    return {row.username: row for row in rows}


def connections(app) -> list[tuple[str, str, str, str]]:
    with app.db() as db:
        return [(c.provider, c.provider_user_id, c.user_id, c.provider_username)
                for c in db.scalars(select(OAuthConnection)).all()]


def oauth_events(app) -> list[AuditLog]:
    with app.db() as db:
        rows = db.scalars(select(AuditLog).where(
            AuditLog.event_type == "OAUTH_AUTHENTICATION").order_by(AuditLog.event_time)).all()
        for row in rows:
            db.expunge(row)
    return list(rows)


def add_local_user(app, username: str, email: str, password: str = "pw-for-tests-123",
                   **fields) -> str:
    with app.db() as db:
        user = User(username=username, email=email, password_hash=hash_password(password),
                    **fields)
        db.add(user)
        db.flush()
        return user.id


def signed_in_as(app) -> str | None:
    page = app.testapp.get("/device", status="*")
    if page.status_int != 200:
        return None
    marker = 'class="nav-username">'
    text = page.text
    return text[text.index(marker) + len(marker):].split("<", 1)[0]


def sign_out(app) -> None:
    app.testapp.reset()  # a new browser: no session cookie


# ---------------------------------------------------------------------------
# The login page and the routes
# ---------------------------------------------------------------------------


def test_login_page_has_a_button_per_active_provider(make_app, fake, caplog):
    caplog.set_level(logging.WARNING)
    app = make_app(settings={**fake.settings("github", "microsoft"),
                             "authgate.auth_sources": "local oauth",
                             "authgate.gitea_oauth_enabled": "true",  # no URL, no id: skipped
                             "authgate.gitlab_client_id": "id-but-not-enabled"},
                   plugins=PLUGINS)
    page = app.testapp.get("/login?redirect=" + quote("/device?user_code=ABCD-EFGH", safe=""))
    assert 'id="social-github"' in page.text and 'id="social-microsoft"' in page.text
    assert "social-gitea" not in page.text and "social-gitlab" not in page.text
    assert "Sign in with GitHub" in page.text and "Sign in with Microsoft" in page.text
    # The redirect survives the detour through the provider.
    assert ('href="/auth/login/github?redirect=%2Fdevice%3Fuser_code%3DABCD-EFGH"'
            in page.text)
    assert ("Gitea sign-in is enabled but GITEA_CLIENT_ID and GITEA_CLIENT_SECRET and "
            "GITEA_URL are not set" in caplog.text)
    # The local form is still there and still works.
    assert app.login().status_int == 302


def test_without_a_redirect_the_buttons_carry_none(oauth_app):
    page = oauth_app("gitlab").testapp.get("/login")
    assert 'href="/auth/login/gitlab"' in page.text


def test_nothing_changes_when_the_source_is_not_selected(make_app, fake, caplog):
    caplog.set_level(logging.WARNING)
    app = make_app(settings=fake.settings(), plugins=PLUGINS)  # loaded, not selected
    assert "Sign in with" not in app.testapp.get("/login").text
    app.testapp.get("/auth/login/github", status=404)
    assert ("GitHub, Gitea, GitLab, Microsoft sign-in is enabled, but the auth source "
            "`oauth` is not selected" in caplog.text)


def test_unknown_or_inactive_provider_is_404(oauth_app):
    app = oauth_app("github")
    page = app.testapp.get("/auth/login/gitlab", status=404)
    assert "Unknown sign-in provider" in page.text
    app.testapp.get("/auth/login/nope", status=404)
    app.testapp.get("/auth/callback/gitlab?code=x&state=y", status=404)


def test_the_source_never_takes_a_password(oauth_app):
    app = oauth_app("github")
    (source,) = [s for s in app.runtime.auth.sources if s.name == "oauth"]
    with app.db() as db:
        assert source.authenticate("admin", "anything", AuthContext(dbsession=db)) is None
    login = form(app.testapp.get("/login"), "/login")
    login["username"], login["password"] = "nobody", "whatever"
    assert "Invalid username or password" in login.submit(status=401).text


def test_upstream_request_carries_state_and_pkce(oauth_app, fake):
    app = oauth_app("github")
    location = start(app, "github").location
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.startswith(fake.url + "/github/login/oauth/authorize?")
    assert params["client_id"] == fake.client_id
    assert params["redirect_uri"] == "http://localhost:8080/auth/callback/github"
    assert params["scope"] == "user:email"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 32


def test_redirect_url_setting_is_sent(oauth_app):
    app = oauth_app("gitlab", gitlab_redirect_url="https://auth.example.com/auth/callback/gitlab")
    params = parse_qs(urlsplit(start(app, "gitlab").location).query)
    assert params["redirect_uri"] == ["https://auth.example.com/auth/callback/gitlab"]
    assert params["scope"] == ["read_user"]


def test_microsoft_uses_the_tenant_and_scopes(oauth_app, fake):
    app = oauth_app("microsoft")
    location = start(app, "microsoft").location
    assert location.startswith(fake.url + "/ms/fake-tenant/oauth2/v2.0/authorize?")
    assert parse_qs(urlsplit(location).query)["scope"] == ["openid profile email User.Read"]


# ---------------------------------------------------------------------------
# New users, returning users
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_first_sign_in_creates_the_user(oauth_app, fake, kind):
    person = fake.add_user(kind, login="Octo.Cat", email="octo@example.com", name="Octo Cat",
                           avatar_url="https://avatars.example.com/octo.png")
    fake.sign_in_as(kind, person)
    app = oauth_app(kind)
    response = sign_in(app, kind, status=302)
    assert response.location == "http://localhost/device"
    assert signed_in_as(app) == "octo-cat"

    user = users(app)["octo-cat"]
    assert user.email == "octo@example.com" and user.full_name == "Octo Cat"
    assert (user.role, user.auth_source, user.password_hash, user.is_active) == (
        "user", "local", "", True)
    assert user.email_verified is VERIFIED[kind]
    assert connections(app) == [(kind, str(person.id), user.id, "Octo.Cat")]
    (event,) = oauth_events(app)
    assert event.success and event.actor_user_id == user.id
    assert event.details["provider"] == kind and event.details["outcome"] == "new_user"

    # The code went back with the PKCE verifier and the secret (the fake checked both).
    (exchange,) = fake.token_params
    assert exchange["code_verifier"] and exchange["client_secret"] == fake.client_secret


def test_returning_user_is_found_by_the_connection(oauth_app, fake):
    person = fake.add_user("gitlab", login="dev", email="dev@example.com")
    fake.sign_in_as("gitlab", person)
    app = oauth_app("gitlab")
    sign_in(app, "gitlab", status=302)
    sign_out(app)
    person.email = "new-address@example.com"  # changed at the provider: still the same person
    person.avatar_url = "https://avatars.example.com/new.png"
    sign_in(app, "gitlab", status=302)
    assert signed_in_as(app) == "dev"
    assert len(users(app)) == 2  # admin + dev
    assert users(app)["dev"].avatar_url == "https://avatars.example.com/new.png"
    with app.db() as db:
        conn = db.scalars(select(OAuthConnection)).one()
        assert conn.provider_email == "new-address@example.com" and conn.last_used_at
    assert [e.details["outcome"] for e in oauth_events(app)] == ["new_user", "existing_user"]


def test_session_is_fresh_after_social_sign_in(oauth_app, fake):
    fake.sign_in_as("github", fake.add_user("github", login="rot", email="rot@example.com"))
    app = oauth_app("github")
    app.testapp.get("/login")
    before = app.testapp.cookies["session"]
    sign_in(app, "github", status=302)
    assert app.testapp.cookies["session"] != before


def test_redirect_is_kept_and_must_be_safe(oauth_app, fake):
    fake.sign_in_as("gitea", fake.add_user("gitea", login="r", email="r@example.com"))
    app = oauth_app("gitea")
    response = sign_in(app, "gitea", redirect="/device?user_code=ABCD-EFGH", status=302)
    assert response.location == "http://localhost/device?user_code=ABCD-EFGH"
    sign_out(app)
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        assert sign_in(app, "gitea", redirect=evil, status=302).location == (
            "http://localhost/device")
        sign_out(app)


def test_usernames_are_sanitised_and_made_unique(oauth_app, fake):
    app = oauth_app()
    add_local_user(app, "alice", "alice-local@example.com")
    for kind in ("github", "gitlab", "gitea"):
        fake.sign_in_as(kind, fake.add_user(kind, login="alice",
                                            email=f"alice-{kind}@example.com"))
        sign_in(app, kind, status=302)
        sign_out(app)
    assert {"alice", "alice-github", "alice-gitlab", "alice-gitea"} <= set(users(app))
    fake.sign_in_as("microsoft", fake.add_user("microsoft", login="x", email="m@example.com",
                                               sam_account_name="Mary O'Neil",
                                               sync_enabled=True))
    sign_in(app, "microsoft", status=302)
    assert "mary-o-neil" in users(app)


def test_microsoft_without_mail_uses_the_upn(oauth_app, fake):
    fake.sign_in_as("microsoft", fake.add_user("microsoft", login="jdoe", email="",
                                               upn="jdoe@contoso.example", name="J Doe"))
    app = oauth_app("microsoft")
    sign_in(app, "microsoft", status=302)
    user = users(app)["jdoe"]
    assert user.email == "jdoe@contoso.example" and user.full_name == "J Doe"


def test_github_private_email_comes_from_the_emails_list(oauth_app, fake):
    fake.sign_in_as("github", fake.add_user("github", login="shy", email="shy@example.com",
                                            public_email=False))
    app = oauth_app("github")
    sign_in(app, "github", status=302)
    user = users(app)["shy"]
    assert user.email == "shy@example.com" and user.email_verified


def test_github_prefers_a_verified_address(oauth_app, fake):
    """An unverified primary is passed over for a verified secondary address."""
    fake.sign_in_as("github", fake.add_user(
        "github", login="multi", email="unverified@example.com", email_verified=False,
        other_emails=[("multi@users.noreply.github.com", True), ("old@example.com", False)]))
    app = oauth_app("github")
    sign_in(app, "github", status=302)
    user = users(app)["multi"]
    assert user.email == "multi@users.noreply.github.com" and user.email_verified


def test_provider_tokens_are_not_stored(oauth_app, fake):
    fake.sign_in_as("gitlab", fake.add_user("gitlab", login="t", email="t@example.com"))
    app = oauth_app("gitlab")
    sign_in(app, "gitlab", status=302)
    # Every row of every table, on whichever store the suite runs.
    from sqlalchemy import select

    from authgate.models import Base

    with app.db() as db:
        database = "\n".join(repr(tuple(row)) for table in Base.metadata.sorted_tables
                              for row in db.execute(select(table)))
    tokens = list(fake._tokens)
    assert tokens
    for token in tokens:
        assert token not in database


# ---------------------------------------------------------------------------
# Linking by email
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["github", "microsoft"])
def test_verified_email_links_the_existing_account(oauth_app, fake, kind):
    app = oauth_app(kind)
    alice_id = add_local_user(app, "alice", "Alice@Example.com")
    fake.sign_in_as(kind, fake.add_user(kind, login="alice-upstream", email="alice@example.com",
                                        avatar_url="https://avatars.example.com/a.png"))
    sign_in(app, kind, status=302)
    assert signed_in_as(app) == "alice"
    alice = users(app)["alice"]
    assert alice.id == alice_id and alice.email_verified
    if kind == "github":  # Graph gives no avatar
        assert alice.avatar_url == "https://avatars.example.com/a.png"
    assert [c[2] for c in connections(app)] == [alice_id]
    assert oauth_events(app)[-1].details["outcome"] == "linked_by_email"
    assert "alice-upstream" not in users(app)


@pytest.mark.parametrize("kind,person", [
    ("gitea", {}), ("gitlab", {}), ("github", {"email_verified": False})])
def test_unverified_email_matching_an_account_is_refused(oauth_app, fake, kind, person):
    app = oauth_app(kind)
    add_local_user(app, "bob", "bob@example.com", password="bob-password-123")
    fake.sign_in_as(kind, fake.add_user(kind, login="bobby", email="bob@example.com", **person))
    page = sign_in(app, kind, status=409)
    assert "An account with this email already exists" in page.text
    assert f"{LABELS[kind]} does not confirm that this address belongs to you" in page.text
    assert "sign in with your password first" in page.text
    assert set(users(app)) == {"admin", "bob"} and connections(app) == []
    assert signed_in_as(app) is None
    (event,) = oauth_events(app)
    assert not event.success and event.details["reason"] == "email_not_verified"


def test_refusal_page_leads_to_linking_after_a_password_sign_in(oauth_app, fake):
    app = oauth_app("gitea")
    bob_id = add_local_user(app, "bob", "bob@example.com", password="bob-password-123")
    bobby = fake.add_user("gitea", login="bobby", email="bob@example.com")
    fake.sign_in_as("gitea", bobby)
    page = sign_in(app, "gitea", redirect="/device?user_code=WXYZ-2345", status=409)
    link = page.html.find(id="oauth-link-signin")["href"]
    assert link == "/login?redirect=" + quote(
        "/auth/login/gitea?redirect=" + quote("/device?user_code=WXYZ-2345", safe=""), safe="")

    # Sign in with the password; the login redirect asks to link Gitea; yes links it.
    login = form(app.testapp.get(link), "/login")
    login["username"], login["password"] = "bob", "bob-password-123"
    restart = login.submit(status=302)
    assert urlsplit(restart.location).path == "/auth/login/gitea"
    confirm = app.testapp.get(restart.location, status=200)
    assert "You are signed in as" in confirm.text and "Continue to Gitea" in confirm.text
    assert confirm.html.find(id="oauth-link-cancel")["href"] == "/device?user_code=WXYZ-2345"
    to_provider = form(confirm, "/auth/login/gitea").submit(status=302)
    done = app.testapp.get(at_provider(to_provider.location), status=302)
    assert done.location == "http://localhost/device?user_code=WXYZ-2345"
    assert connections(app) == [("gitea", str(bobby.id), bob_id, "bobby")]
    assert oauth_events(app)[-1].details["outcome"] == "linked_to_signed_in_user"

    # From now on Gitea alone signs bob in.
    sign_out(app)
    sign_in(app, "gitea", status=302)
    assert signed_in_as(app) == "bob"


def test_linking_an_identity_that_belongs_to_someone_else_is_refused(oauth_app, fake):
    app = oauth_app("gitlab")
    shared = fake.add_user("gitlab", login="shared", email="shared@example.com")
    fake.sign_in_as("gitlab", shared)
    sign_in(app, "gitlab", status=302)  # creates user "shared" with the connection
    sign_out(app)
    add_local_user(app, "carol", "carol@example.com", password="carol-password-1")
    app.login("carol", "carol-password-1")
    page = link(app, "gitlab", status=409)
    assert "already linked to another AuthGate account" in page.text
    assert [c[3] for c in connections(app)] == ["shared"]


def test_signed_in_person_links_any_provider_account(oauth_app, fake):
    app = oauth_app("github")
    add_local_user(app, "ivan", "ivan@corp.example", password="ivan-password-12")
    fake.sign_in_as("github", fake.add_user("github", login="ivan-home", email="i@home.example"))
    app.login("ivan", "ivan-password-12")
    assert link(app, "github", status=302).location == "http://localhost/device"
    assert [(c[0], c[3]) for c in connections(app)] == [("github", "ivan-home")]
    assert users(app)["ivan"].email == "ivan@corp.example"  # the account's email stays
    # Linking the same account again is harmless.
    link(app, "github", status=302)
    assert len(connections(app)) == 1


def test_a_cross_site_get_cannot_start_a_link(oauth_app, fake):
    app = oauth_app("github")
    add_local_user(app, "judy", "judy@example.com", password="judy-password-12")
    app.login("judy", "judy-password-12")
    page = app.testapp.get("/auth/login/github", status=200)  # asks; does not redirect
    assert "Continue to GitHub" in page.text and fake.authorize_params == []
    app.testapp.post("/auth/login/github", {"redirect": ""}, status=400)  # no CSRF token
    assert fake.authorize_params == []
    # Signed out, the POST is no way in either.
    sign_out(app)
    token = app.csrf_token("/login")
    assert app.testapp.post("/auth/login/github", {"csrf_token": token},
                            status=302).location == "http://localhost/login"


def test_second_account_at_the_same_provider_is_refused(oauth_app, fake):
    app = oauth_app("github")
    dave_id = add_local_user(app, "dave", "dave@example.com")
    first = fake.add_user("github", login="dave1", email="dave@example.com")
    fake.sign_in_as("github", first)
    sign_in(app, "github", status=302)
    sign_out(app)
    # Another GitHub account that also has dave's address verified.
    fake.sign_in_as("github", fake.add_user("github", login="dave2", email="DAVE@example.com"))
    page = sign_in(app, "github", status=409)
    assert "already linked to a different GitHub account" in page.text
    assert connections(app) == [("github", str(first.id), dave_id, "dave1")]


def test_two_accounts_with_the_same_email_are_refused(oauth_app, fake):
    app = oauth_app("github")
    add_local_user(app, "e1", "eve@example.com")
    add_local_user(app, "e2", "EVE@example.com")  # unique index is case-sensitive
    fake.sign_in_as("github", fake.add_user("github", login="eve", email="eve@example.com"))
    page = sign_in(app, "github", status=409)
    assert "Duplicate account detected" in page.text and connections(app) == []


def test_provider_without_an_email_is_refused_with_a_page(oauth_app, fake):
    fake.sign_in_as("gitlab", fake.add_user("gitlab", login="noemail", email=""))
    app = oauth_app("gitlab")
    page = sign_in(app, "gitlab", status=400)
    assert "No email address" in page.text and "noemail" not in users(app)


# ---------------------------------------------------------------------------
# Disabled users, registration off
# ---------------------------------------------------------------------------


def test_disabled_user_is_refused_through_the_connection(oauth_app, fake):
    fake.sign_in_as("gitea", fake.add_user("gitea", login="frank", email="frank@example.com"))
    app = oauth_app("gitea")
    sign_in(app, "gitea", status=302)
    with app.db() as db:
        db.execute(update(User).where(User.username == "frank").values(is_active=False))
    assert signed_in_as(app) is None  # signed out at once
    page = sign_in(app, "gitea", status=403)
    assert "Account disabled" in page.text and DISABLED in page.text
    assert signed_in_as(app) is None
    assert oauth_events(app)[-1].details["reason"] == "account_disabled"


def test_disabled_user_is_refused_when_linking_by_email(oauth_app, fake):
    app = oauth_app("microsoft")
    add_local_user(app, "grace", "grace@example.com", is_active=False)
    fake.sign_in_as("microsoft", fake.add_user("microsoft", login="g", email="grace@example.com"))
    page = sign_in(app, "microsoft", status=403)
    assert DISABLED in page.text
    assert connections(app) == [] and signed_in_as(app) is None


def test_auto_register_off_refuses_strangers_but_not_members(oauth_app, fake):
    app = oauth_app("github", oauth_auto_register="false")
    fake.sign_in_as("github", fake.add_user("github", login="stranger", email="s@example.com"))
    page = sign_in(app, "github", status=403)
    assert "Registration disabled" in page.text
    assert "stranger" not in users(app) and connections(app) == []
    # An existing account is still linked by its verified email.
    add_local_user(app, "member", "member@example.com")
    fake.sign_in_as("github", fake.add_user("github", login="m", email="member@example.com"))
    sign_in(app, "github", status=302)
    assert signed_in_as(app) == "member"


def test_auto_register_off_from_the_environment(make_app, fake):
    app = make_app(settings={**fake.settings("gitea"), "authgate.auth_sources": "local oauth"},
                   environ={"OAUTH_AUTO_REGISTER": "false"}, plugins=PLUGINS)
    fake.sign_in_as("gitea", fake.add_user("gitea", login="x", email="x@example.com"))
    assert "Registration disabled" in sign_in(app, "gitea", status=403).text


# ---------------------------------------------------------------------------
# State, provider errors, upstream failures
# ---------------------------------------------------------------------------


def _with_state(callback: str, state: str) -> str:
    path, _, query = callback.partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    params["state"] = state
    return path + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def test_tampered_state_is_refused(oauth_app, fake):
    fake.sign_in_as("github", fake.add_user("github", login="h", email="h@example.com"))
    app = oauth_app("github")
    callback = at_provider(start(app, "github").location)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    page = app.testapp.get(_with_state(callback, state[:-1] + ("A" if state[-1] != "A" else "B")),
                           status=400)
    assert "Sign-in could not be verified" in page.text
    # The started sign-in was consumed by the failed try: the real callback is refused too.
    app.testapp.get(callback, status=400)
    assert set(users(app)) == {"admin"} and signed_in_as(app) is None
    assert {e.details["reason"] for e in oauth_events(app)} == {"invalid_state"}


@pytest.mark.parametrize("variant", ["missing", "too_long", "other_browser", "other_provider"])
def test_state_must_belong_to_this_browser_and_provider(oauth_app, fake, variant):
    for kind in ("github", "gitlab"):
        fake.sign_in_as(kind, fake.add_user(kind, login=f"i-{kind}", email=f"i@{kind}.example"))
    app = oauth_app("github", "gitlab")
    callback = at_provider(start(app, "github").location)
    if variant == "missing":
        target = _with_state(callback, "").replace("state=&", "").replace("&state=", "")
    elif variant == "too_long":
        target = _with_state(callback, "A" * 1025)
    elif variant == "other_browser":
        sign_out(app)
        target = callback
    else:
        target = callback.replace("/auth/callback/github", "/auth/callback/gitlab")
    assert "Sign-in could not be verified" in app.testapp.get(target, status=400).text
    assert set(users(app)) == {"admin"}


def test_expired_sign_in_is_refused(oauth_app, fake, monkeypatch):
    from authgate_plugins.auth_oauth import views

    fake.sign_in_as("gitea", fake.add_user("gitea", login="late", email="late@example.com"))
    app = oauth_app("gitea")
    callback = at_provider(start(app, "gitea").location)
    monkeypatch.setattr(views, "FLOW_TTL", -1)
    app.testapp.get(callback, status=400)
    assert "late" not in users(app)


def test_provider_access_denied_is_a_clear_page(oauth_app, fake):
    app = oauth_app("gitlab")
    fake.fail_next("gitlab", "access_denied", "The resource owner denied the request")
    page = sign_in(app, "gitlab", status=403)
    assert "Sign-in cancelled" in page.text
    assert "GitLab did not sign you in" in page.text
    assert fake.token_params == []  # no code, no exchange
    (event,) = oauth_events(app)
    assert not event.success and event.details["reason"] == "provider_error"


def test_other_provider_errors_are_shown_escaped(oauth_app, fake):
    app = oauth_app("microsoft")
    fake.fail_next("microsoft", "invalid_scope", "<b>AADSTS70011</b>")
    page = sign_in(app, "microsoft", status=502)
    assert "Microsoft reported an error" in page.text
    assert "invalid_scope" in page.text and "&lt;b&gt;AADSTS70011" in page.text


def test_error_with_a_forged_state_is_refused_as_tampering(oauth_app, fake):
    app = oauth_app("github")
    start(app, "github")
    page = app.testapp.get("/auth/callback/github?error=access_denied&state=forged", status=400)
    assert "Sign-in could not be verified" in page.text


def test_missing_code_is_refused(oauth_app, fake):
    app = oauth_app("gitea")
    fake.sign_in_as("gitea", fake.add_user("gitea", login="c", email="c@example.com"))
    callback = at_provider(start(app, "gitea").location)
    path, _, query = callback.partition("?")
    state = parse_qs(query)["state"][0]
    page = app.testapp.get(f"{path}?state={quote(state)}", status=400)
    assert "without an authorization code" in page.text


def test_token_endpoint_failure_is_a_502_page(oauth_app, fake, caplog):
    fake.sign_in_as("gitea", fake.add_user("gitea", login="u", email="u@example.com"))
    app = oauth_app("gitea")
    fake.fail_token("gitea")
    page = sign_in(app, "gitea", status=502)
    assert "Could not sign you in with Gitea" in page.text
    assert "Gitea token endpoint" in caplog.text
    (event,) = oauth_events(app)
    assert event.severity == "ERROR" and event.details["reason"] == "upstream_error"
    assert fake.client_secret not in caplog.text


def test_a_code_the_provider_refuses_is_a_502_page(oauth_app, fake):
    fake.sign_in_as("github", fake.add_user("github", login="v", email="v@example.com"))
    app = oauth_app("github")
    callback = at_provider(start(app, "github").location)
    path, _, query = callback.partition("?")
    params = parse_qs(query)
    page = app.testapp.get(f"{path}?code=not-a-code&state={quote(params['state'][0])}",
                           status=502)
    assert "Could not sign you in with GitHub" in page.text


def test_unreachable_provider_is_a_502_page(make_app, fake):
    env = fake.settings("gitlab")
    app = make_app(settings={**env, "authgate.auth_sources": "local oauth",
                             "authgate.oauth_timeout": "2s"}, plugins=PLUGINS)
    fake.sign_in_as("gitlab", fake.add_user("gitlab", login="w", email="w@example.com"))
    callback = at_provider(start(app, "gitlab").location)
    fake.stop()
    assert "Could not sign you in with GitLab" in app.testapp.get(callback, status=502).text


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key,value,expected", [
    ("MICROSOFT_TENANT_ID", "bad tenant/../x", "MICROSOFT_TENANT_ID"),
    ("GITEA_URL", "git.example.com", "GITEA_URL"),
    ("OAUTH_TIMEOUT", "0", "OAUTH_TIMEOUT"),
    ("GITHUB_OAUTH_ENABLED", "maybe", "GITHUB_OAUTH_ENABLED"),
])
def test_bad_settings_stop_start_up(make_app, key, value, expected):
    with pytest.raises(ConfigurationError, match=expected):
        make_app(settings={"authgate.auth_sources": "local oauth"}, environ={key: value},
                 plugins=PLUGINS)


def test_settings_defaults(make_app, caplog):
    caplog.set_level(logging.WARNING)
    app = make_app(settings={"authgate.auth_sources": "local oauth"}, plugins=PLUGINS)
    settings = app.runtime.settings
    assert settings.gitlab_url == "https://gitlab.com"
    assert settings.microsoft_tenant_id == "common"
    assert settings.microsoft_scopes == ("openid", "profile", "email", "User.Read")
    assert settings.oauth_auto_register is True
    assert settings.oauth_timeout.total_seconds() == 15
    assert settings.oauth_insecure_skip_verify is False
    assert "no social-login provider is configured" in caplog.text
    assert "Sign in with" not in app.testapp.get("/login").text


def test_declared_defaults_match_the_original():
    from authgate_plugins.auth_oauth import SETTINGS

    defaults = {s.env: s.shown_default() for s in SETTINGS}
    assert defaults["GITHUB_SCOPES"] == "user:email"
    assert defaults["GITEA_SCOPES"] == "read:user"
    assert defaults["GITLAB_SCOPES"] == "read_user"
    assert defaults["GITLAB_URL"] == "https://gitlab.com"
    assert defaults["MICROSOFT_TENANT_ID"] == "common"
    assert defaults["GITHUB_URL"] == "https://github.com"
    assert defaults["GITHUB_API_URL"] == "https://api.github.com"
    assert defaults["MICROSOFT_LOGIN_URL"] == "https://login.microsoftonline.com"
    assert defaults["MICROSOFT_GRAPH_URL"] == "https://graph.microsoft.com"
    assert defaults["OAUTH_TIMEOUT"] == "15s"
    assert defaults["OAUTH_AUTO_REGISTER"] == "true"
    assert defaults["OAUTH_INSECURE_SKIP_VERIFY"] == "false"
    secrets = {s.env for s in SETTINGS if s.secret}
    assert secrets == {f"{k.upper()}_CLIENT_SECRET" for k in KINDS}


def test_user_count_is_unchanged_by_refusals(oauth_app, fake):
    """Every refusal path leaves the database as it was (the transaction still commits)."""
    app = oauth_app("gitea", oauth_auto_register="false")
    add_local_user(app, "bob", "bob@example.com")
    fake.sign_in_as("gitea", fake.add_user("gitea", login="b", email="bob@example.com"))
    sign_in(app, "gitea", status=409)
    fake.sign_in_as("gitea", fake.add_user("gitea", login="n", email="n@example.com"))
    sign_in(app, "gitea", status=403)
    with app.db() as db:
        assert db.scalar(select(func.count()).select_from(User)) == 2
        assert db.scalar(select(func.count()).select_from(OAuthConnection)) == 0


def test_username_rules(oauth_app):
    from authgate_plugins.auth_oauth.accounts import _unique_username, sanitize_username
    from authgate_plugins.auth_oauth.providers import Profile

    assert sanitize_username("John.Doe") == "john-doe"
    assert sanitize_username("__x__") == "x"
    assert sanitize_username("日本") == ""
    assert len(sanitize_username("a" * 300)) == 40
    app = oauth_app("gitlab")
    taken = ["sam", "sam-gitlab"] + [f"sam-gitlab-{n}" for n in range(1, 11)]
    for name in taken:
        add_local_user(app, name, f"{name}@example.com")
    profile = Profile("gitlab", "1", "Sam", "sam@new.example", False)
    with app.db() as db:
        assert _unique_username(db, profile, random_suffix=lambda: "abc123") == "sam-abc123"
        nameless = Profile("gitlab", "2", "日本", "kanji@example.com", False)
        assert _unique_username(db, nameless) == "kanji"
        anonymous = Profile("gitlab", "3", "", "", False)
        assert _unique_username(db, anonymous) == "gitlab-user"
