"""The ``authgate`` command.

::

    authgate -v                                  print the version
    authgate server [-c FILE.ini]                serve with waitress
    authgate migrate [-c FILE.ini]               bring the schema to the head revision
    authgate cleanup [-c FILE.ini]               delete expired rows and old audit events
    authgate db copy --from DSN --to DSN         copy every table (SQLite <-> PostgreSQL)
    authgate keys generate --alg ES256 --out F   write a new signing key (mode 0600)
    authgate create-user NAME [...]              add a local user, or --reset a password
    authgate create-client NAME [...]            register an OAuth client
    authgate device-login --client-id ID [...]   try the device flow against a server

Settings come from the ini file's ``[app:main]`` section (``-c``), then ``.env`` in
the working directory, then the environment.  Exit status: 0 success, 1 failure,
2 configuration error (``authgate: configuration error: ...`` on stderr).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import gc
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from authgate import __version__
from authgate.errors import ConfigurationError
from authgate.security import MAX_BODY_BYTES

if TYPE_CHECKING:
    import requests
    from sqlalchemy.orm import Session

    from authgate.models import OAuthClient, User
    from authgate.runtime import Runtime
    from authgate.settings import Settings

log = logging.getLogger("authgate.cli")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
MIN_PASSWORD_LENGTH = 8
ROLES = ("user", "admin")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
HTTP_TIMEOUT = 30  # seconds, per request of device-login


class CommandError(Exception):
    """A failure the user can act on: ``authgate: <message>`` on stderr, exit 1."""


# ---------------------------------------------------------------------------
# Configuration: the ini file, the environment, logging
# ---------------------------------------------------------------------------


def load_app_settings(config: str | None) -> tuple[dict[str, Any], str | None]:
    """``[app:main]`` of the ini file (with ``here`` and ``__file__``), or nothing."""
    if not config:
        return {}, None
    path = os.path.abspath(config)
    if not os.path.isfile(path):
        raise ConfigurationError(f"config file not found: {config}")
    from pyramid.paster import get_appsettings

    try:
        settings = get_appsettings(path, name="main")
    except Exception as exc:  # plaster/PasteDeploy/configparser: all mean a bad file
        raise ConfigurationError(f"cannot read [app:main] from {config}: {exc}") from None
    return dict(settings), path


def read_server_section(path: str | None) -> dict[str, str]:
    """The waitress options of the ini's ``[server:main]`` (without ``use``).

    ``authgate server -c production.ini`` honours the same tuning as
    ``pserve production.ini``.  A section that needs pserve variables
    (``%(http_port)s``) or serves with something other than waitress is ignored.
    """
    if not path:
        return {}
    parser = configparser.ConfigParser(
        defaults={"here": os.path.dirname(path), "__file__": path})
    try:
        parser.read(path, encoding="utf-8")
        if not parser.has_section("server:main"):
            return {}
        defaults = set(parser.defaults())
        options = {key: parser.get("server:main", key)
                   for key in parser.options("server:main") if key not in defaults}
    except configparser.InterpolationError as exc:
        log.warning("Ignoring [server:main] of %s (%s); set SERVER_ADDR and SERVER_THREADS "
                    "instead", path, exc)
        return {}
    except configparser.Error as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    use = options.pop("use", "")
    if "waitress" not in use:
        log.warning("[server:main] of %s does not use waitress (use = %s); only SERVER_ADDR "
                    "and SERVER_THREADS apply to `authgate server`", path, use)
        return {}
    return options


def setup_logging(config_path: str | None, environ: Mapping[str, str], *,
                  one_shot: bool = False) -> None:
    from authgate.logsetup import configure_logging

    try:
        configure_logging(config_path, environ, one_shot=one_shot)
    except ConfigurationError:
        raise
    except Exception as exc:  # logging.config reports a bad section this way
        raise ConfigurationError(f"bad logging configuration in {config_path}: {exc!r}") from None


_ADDR = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]*):(?P<port>\d{1,5})$")


def listen_address(value: str) -> str:
    """SERVER_ADDR -> a waitress ``listen`` value: ``:8080`` means localhost:8080."""
    match = _ADDR.match(value.strip())
    if not match or int(match["port"]) > 65535:
        raise ConfigurationError(
            f"Invalid value for SERVER_ADDR (authgate.server_addr): {value!r}; expected :PORT "
            "(localhost only) or HOST:PORT, such as :8080, 127.0.0.1:8080 or 0.0.0.0:8080")
    return f"{match['host'] or 'localhost'}:{int(match['port'])}"


# waitress's own body limit: a backstop well above the app's (security.MAX_BODY_BYTES),
# so an oversized body gets the app's JSON error or page, not waitress's plain text.
MAX_REQUEST_BODY_SIZE = 4 * MAX_BODY_BYTES


def waitress_options(settings: Settings, server_section: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``waitress.create_server``.

    SERVER_ADDR / SERVER_THREADS set in the environment, ``.env`` or the app
    section win; otherwise the ini's ``[server:main]`` listen/threads; otherwise
    the defaults (``:8080``, 8 threads).  Other ``[server:main]`` keys
    (connection_limit, channel_timeout, trusted_proxy, ...) pass through.
    """
    options: dict[str, Any] = dict(server_section)
    ini_listen = options.pop("listen", "").strip()
    host, port = options.pop("host", "").strip(), options.pop("port", "").strip()
    if not ini_listen and (host or port):
        host = host or "0.0.0.0"  # noqa: S104 - waitress's own default for host/port
        ini_listen = f"[{host}]:{port or 8080}" if ":" in host else f"{host}:{port or 8080}"
    if settings.source("server_addr") == "default" and ini_listen:
        options["listen"] = ini_listen
    else:
        options["listen"] = listen_address(settings.server_addr)
    ini_threads = options.pop("threads", "").strip()
    if settings.source("server_threads") == "default" and ini_threads:
        try:
            options["threads"] = int(ini_threads)
        except ValueError:
            raise ConfigurationError(f"Invalid threads in [server:main]: {ini_threads!r}; "
                                     "expected a whole number") from None
    else:
        options["threads"] = settings.server_threads
    # waitress removes X-Forwarded-For from every request unless told otherwise;
    # the app itself trusts the header only from TRUSTED_PROXIES
    # (authgate.security.client_ip), so let it through unless the ini configures
    # waitress's own proxy handling.
    if "trusted_proxy" not in options:
        options.setdefault("clear_untrusted_proxy_headers", False)
    # A backstop against disk/memory abuse (waitress's own default is 1 GiB); the
    # app itself refuses bodies over 1 MiB with an OAuth error or a page
    # (authgate.security.MAX_BODY_BYTES), so this is set above that.
    options.setdefault("max_request_body_size", MAX_REQUEST_BODY_SIZE)
    return options


@contextlib.contextmanager
def open_runtime(config: str | None, *, prepare_db: bool = True) -> Iterator[Runtime]:
    """Settings -> logging -> runtime (closed at the end)."""
    from authgate.app import build_runtime
    from authgate.settings import read_environ

    raw, path = load_app_settings(config)
    environ = read_environ()
    setup_logging(path, environ, one_shot=True)
    runtime = build_runtime(raw, environ, prepare_db=prepare_db)
    try:
        yield runtime
    finally:
        runtime.close()


# ---------------------------------------------------------------------------
# Database helpers (one short transaction each, like authgate.app.seed_database)
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def db_transaction(runtime: Runtime) -> Iterator[Session]:
    """A session in its own transaction: committed when the block ends, else aborted."""
    import transaction
    from sqlalchemy.exc import IntegrityError

    from authgate.db import get_tm_session

    tm = transaction.TransactionManager(explicit=True)
    try:
        with tm:
            yield get_tm_session(runtime.session_factory, tm)
    except IntegrityError as exc:
        raise CommandError(f"the database refused the change (was it made concurrently?): "
                           f"{exc.orig}") from None


def require_current_schema(runtime: Runtime) -> None:
    from authgate.db import current_revision, head_revision, schema_is_current

    if schema_is_current(runtime.engine):
        return
    current, head = current_revision(runtime.engine), head_revision(runtime.engine)
    if current != head:
        raise CommandError(f"the database schema is at revision {current or '(none)'} but this "
                           f"version of AuthGate needs {head}: run `authgate migrate` first")


def count_users(runtime: Runtime) -> int:
    from sqlalchemy import func, select

    from authgate.models import User

    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(User)).scalar_one())


_USERNAME = re.compile(r"^[^\s\x00-\x1f\x7f]{1,255}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CommandError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    return password


def check_user_fields(*, username: str, email: str | None = None, role: str = "user") -> None:
    if not _USERNAME.match(username):
        raise CommandError("the username must be 1-255 characters without spaces")
    if role not in ROLES:
        raise CommandError(f"the role must be one of: {', '.join(ROLES)}")
    if email is not None and not _EMAIL.match(email):
        raise CommandError(f"{email!r} is not an email address")


def create_local_user(db: Session, *, username: str, password: str, email: str | None = None,
                      full_name: str = "", role: str = "user") -> User:
    """Add a local user with an argon2id password hash (flushed, not committed)."""
    from sqlalchemy import func, select

    from authgate.models import User
    from authgate.services.passwords import hash_password

    check_user_fields(username=username, email=email, role=role)
    check_password(password)
    if db.scalars(select(User).where(User.username == username)).first() is not None:
        raise CommandError(f"a user named {username!r} already exists (to set a new password: "
                           f"authgate create-user {username} --reset)")
    if email is not None and db.scalars(
            select(User).where(func.lower(User.email) == email.lower())).first() is not None:
        raise CommandError(f"another user already has the email address {email!r}")
    user = User(username=username, email=email, full_name=full_name, role=role,
                password_hash=hash_password(password), is_active=True, auth_source="local")
    db.add(user)
    db.flush()
    return user


def reset_local_password(db: Session, *, username: str, password: str) -> tuple[User, int]:
    """Set a new password on a local user and revoke their active tokens.

    Returns the user and how many tokens were revoked.
    """
    from sqlalchemy import select, update

    from authgate.models import Token, User
    from authgate.models.token import ACTIVE, REVOKED
    from authgate.services.passwords import hash_password

    user = db.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise CommandError(f"there is no user named {username!r} (leave out --reset to create "
                           "one)")
    if user.auth_source != "local":
        raise CommandError(f"user {username!r} signs in through {user.auth_source!r}, not with a "
                           "local password; change the password at that source")
    user.password_hash = hash_password(check_password(password))
    user.end_sessions()  # every browser signed in with the old password is signed out
    result = db.execute(update(Token).where(Token.user_id == user.id, Token.status == ACTIVE)
                        .values(status=REVOKED))
    db.flush()
    return user, int(result.rowcount or 0)


_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 section 3.3


def parse_scopes(text: str) -> str:
    scopes: list[str] = []
    for scope in re.split(r"[\s,]+", text.strip()):
        if not scope:
            continue
        if not _SCOPE_TOKEN.match(scope):
            raise CommandError(f"{scope!r} is not a valid scope")
        if scope not in scopes:
            scopes.append(scope)
    if not scopes:
        raise CommandError("--scopes needs at least one scope, such as \"email profile\"")
    return " ".join(scopes)


def check_redirect_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"redirect URI {uri!r} must be an absolute http:// or https:// URI")
    if parts.fragment or "#" in uri:
        raise CommandError(f"redirect URI {uri!r} must not contain a fragment (#...)")
    if any(ch.isspace() for ch in uri):
        raise CommandError(f"redirect URI {uri!r} must not contain spaces")
    return uri


def check_client_options(*, name: str, confidential: bool = False, device: bool = True,
                         auth_code: bool = False, client_credentials: bool = False,
                         redirect_uris: Sequence[str] = (),
                         scopes: str = "email profile") -> tuple[str, list[str], str]:
    """Validate a new client's options; returns the clean name, redirect URIs and scopes."""
    name = name.strip()
    if not name or len(name) > 255:
        raise CommandError("the client name must be 1-255 characters")
    if client_credentials and not confidential:
        raise CommandError("--client-credentials needs --confidential: a public client cannot "
                           "keep a secret")
    if not (device or auth_code or client_credentials):
        raise CommandError("enable at least one grant: --device, --auth-code or "
                           "--client-credentials")
    uris = list(dict.fromkeys(check_redirect_uri(u.strip()) for u in redirect_uris
                              if u.strip()))
    if auth_code and not uris:
        raise CommandError("--auth-code needs at least one --redirect-uri")
    return name, uris, parse_scopes(scopes)


def create_oauth_client(db: Session, *, name: str, confidential: bool = False,
                        device: bool = True, auth_code: bool = False,
                        client_credentials: bool = False,
                        redirect_uris: Sequence[str] = (), scopes: str = "email profile",
                        description: str = "") -> tuple[OAuthClient, str | None]:
    """Add an active client (flushed, not committed); returns it and its raw secret."""
    from authgate.models import OAuthClient
    from authgate.services.secrets import generate_client_secret, hash_client_secret

    name, uris, scope_text = check_client_options(
        name=name, confidential=confidential, device=device, auth_code=auth_code,
        client_credentials=client_credentials, redirect_uris=redirect_uris, scopes=scopes)
    secret = generate_client_secret() if confidential else None
    client = OAuthClient(
        client_id=str(uuid.uuid4()), name=name, description=description.strip(),
        client_secret_hash=hash_client_secret(secret) if secret else "",
        scopes=scope_text, client_type="confidential" if confidential else "public",
        enable_device_flow=device, enable_auth_code_flow=auth_code,
        enable_client_credentials_flow=client_credentials, status="active",
        token_profile="standard", user_id="", created_by="",
    )
    client.redirect_uris = uris
    client.refresh_grant_types()
    db.add(client)
    db.flush()
    return client, secret


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def _shown(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def log_routes(app: Any) -> None:
    """At DEBUG, one line per route: ``GET  /health --> authgate.views.health.health``."""
    from pyramid.interfaces import IRoutesMapper

    if not log.isEnabledFor(logging.DEBUG):
        return
    registry = app.registry
    views: dict[str, list[tuple[str, str]]] = {}
    for entry in registry.introspector.get_category("views") or ():
        intr = entry["introspectable"]
        if not intr["route_name"]:
            continue
        methods = intr["request_methods"] or "ANY"
        if not isinstance(methods, str):
            methods = ",".join(sorted(methods))
        target = intr["callable"]
        name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"
        views.setdefault(intr["route_name"], []).append((methods, name))
    mapper = registry.queryUtility(IRoutesMapper)
    for route in mapper.get_routes() if mapper else ():
        for methods, name in views.get(route.name, [("ANY", "(no view)")]):
            log.debug("%-8s %-40s --> %s", methods, route.pattern, name)


def _check_base_url(base_url: str, ports: Sequence[int]) -> None:
    """Warn when a loopback BASE_URL points at a port this server does not listen on.

    The verification URL shown to people is built from BASE_URL; behind a proxy
    the ports differ on purpose, so only a localhost BASE_URL is checked.
    """
    parts = urlsplit(base_url)
    if parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if port not in ports:
        log.warning("BASE_URL is %s but this server listens on port %s: the verification "
                    "URL and redirects will point to the wrong place; set BASE_URL to the "
                    "address people use", base_url, ", ".join(str(p) for p in ports))


def cmd_server(args: argparse.Namespace) -> int:
    from authgate.app import build_runtime, make_app_from_runtime
    from authgate.settings import read_environ

    raw, path = load_app_settings(args.config)
    environ = read_environ()
    setup_logging(path, environ)
    server_section = read_server_section(path)
    runtime = build_runtime(raw, environ)
    app = None
    try:
        settings = runtime.settings
        options = waitress_options(settings, server_section)
        app = make_app_from_runtime(runtime, raw)
        runtime.start_jobs()
        log_routes(app)

        from waitress.server import create_server

        try:
            if settings.server_inline_api:
                from authgate import inline_serving

                server = inline_serving.create_server(
                    app, post_paths=inline_serving.post_paths_for(runtime.engine.dialect.name),
                    **options)
            else:
                server = create_server(app, **options)
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['listen']}: "
                               f"{exc.strerror or exc}") from None
        except ValueError as exc:  # an unknown or malformed waitress option
            raise ConfigurationError(f"waitress: {exc}") from None
        addresses = getattr(server, "effective_listen", None) or [
            (server.effective_host, server.effective_port)]
        for host, port in addresses:
            log.info("Listening on %s (%d threads)", _shown(str(host), int(port)),
                     options["threads"])
        log.info("Auth sources: %s", " ".join(settings.auth_sources))
        _check_base_url(settings.base_url, [int(port) for _, port in addresses])
        log.info("Verification URL: %s/device", settings.base_url.rstrip("/"))
        log.info("Users open the verification URL and enter the user_code their device "
                 "shows; admins sign in at %s/login", settings.base_url.rstrip("/"))
        from authgate.shutdown import GracefulServer

        # SIGTERM / SIGINT: stop accepting, let requests in progress finish (up to
        # SERVER_SHUTDOWN_TIMEOUT), then close Redis, the audit sinks and the database.
        graceful = GracefulServer(server, settings.server_shutdown_timeout.total_seconds())
        previous = graceful.install_signal_handlers()
        # Everything built at start-up (modules, the app, its caches) lives as long
        # as the process: out of the cyclic garbage collector's sight, a full
        # collection no longer walks it -- under load those took 100-140 ms, a stall
        # of every connection while the API is answered on the I/O thread.
        gc.collect()
        gc.freeze()
        try:
            graceful.serve()
        finally:
            # Collectable again, so that shutting down closes every database
            # connection (SQLite merges and removes its -wal and -shm files when
            # the last one closes).
            gc.unfreeze()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        log.info("Server stopped")
    finally:
        from authgate.shutdown import close_runtime

        close_runtime(runtime, app.registry if app is not None else None)
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Delete expired tokens, device codes, authorization codes and old audit events."""
    from authgate.services import cleanup

    with open_runtime(args.config, prepare_db=False) as runtime:
        require_current_schema(runtime)
        report = cleanup.run_all(runtime.engine, runtime.settings)
    print(f"Deleted {report.total()} rows ({report})")
    return EXIT_OK


def cmd_db_copy(args: argparse.Namespace) -> int:
    """Copy every table from one database to another, verifying row counts."""
    from authgate.services import dbcopy

    try:
        source, target = dbcopy.engine_for(args.source), dbcopy.engine_for(args.target)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
    try:
        report = dbcopy.copy(source, target)
    except dbcopy.CopyError as exc:
        raise CommandError(f"db copy: {exc}") from None
    finally:
        source.dispose()
        target.dispose()
    for table, count in report.rows.items():
        print(f"{table}: {count} rows")
    print("Copy complete; row counts verified.")
    return EXIT_OK


def cmd_keys_generate(args: argparse.Namespace) -> int:
    """Write a new private key for RS256 or ES256 (PKCS#8 PEM, mode 0600)."""
    from authgate_plugins.signer_asym.keys import derive_kid
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if args.alg == "RS256":
        if args.bits < 2048:
            raise CommandError("RS256 needs an RSA key of at least 2048 bits")
        key = rsa.generate_private_key(public_exponent=65537, key_size=args.bits)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{args.out} already exists; choose another --out") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(args.out, 0o600)
    print(f"Wrote {args.alg} key to {args.out} (mode 0600), kid={derive_kid(key.public_key())}")
    print(f"Use it:    JWT_SIGNING_ALGORITHM={args.alg} "
          f"JWT_PRIVATE_KEY_PATH={os.path.abspath(args.out)}")
    print("Rotating?  add the old key file to JWT_PREVIOUS_KEY_PATHS so tokens it signed "
          "keep verifying, then restart.")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from alembic.util.exc import CommandError as AlembicError

    from authgate.db import current_revision, head_revision, migrate

    with open_runtime(args.config, prepare_db=False) as runtime:
        engine = runtime.engine
        before, head = current_revision(engine), head_revision(engine)
        print(f"Database: {runtime.store.describe()}")
        print(f"Current revision: {before or '(none: empty database)'}")
        print(f"Head revision: {head}")
        if before == head:
            print("The schema is up to date; nothing to do.")
        else:
            try:
                migrate(engine)
            except AlembicError as exc:
                raise CommandError(f"migration failed: {exc} (is the database from a newer "
                                   "version of AuthGate?)") from None
            print(f"Migrated: {before or '(none)'} -> {current_revision(engine)}")
        if count_users(runtime) == 0:
            print("The database has no users yet: run `authgate server` to seed the admin user "
                  "and the default client.")
    return EXIT_OK


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password to set and whether it was generated."""
    from authgate.services.passwords import generate_password

    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CommandError("--password-stdin: no password on standard input")
        return line, False
    if args.password is not None:
        return args.password, False
    return generate_password(), True


def cmd_create_user(args: argparse.Namespace) -> int:
    from authgate.audit import WARNING

    if args.password is not None and args.password_stdin:
        raise CommandError("use either --password or --password-stdin, not both")
    if args.reset and any(v is not None for v in (args.email, args.full_name, args.role)):
        raise CommandError("--reset only sets a new password; leave out --email, --full-name "
                           "and --role")
    password, generated = _read_password(args)
    username = args.username.strip()
    email = (args.email or "").strip() or None
    if not args.reset:
        check_user_fields(username=username, email=email, role=args.role or "user")
    check_password(password)
    with open_runtime(args.config) as runtime:
        require_current_schema(runtime)
        audit = runtime.audit
        with db_transaction(runtime) as db:
            if args.reset:
                user, revoked = reset_local_password(db, username=username, password=password)
                event = audit.make_event(
                    "USER_PASSWORD_RESET", severity=WARNING, actor_username="cli",
                    action=f"Reset the password of user {user.username} from the command line",
                    resource_type="USER", resource_id=user.id, resource_name=user.username,
                    details={"username": user.username, "tokens_revoked": revoked,
                             "generated": generated, "source": "cli"})
            else:
                user = create_local_user(db, username=username, password=password,
                                         email=email,
                                         full_name=(args.full_name or "").strip(),
                                         role=args.role or "user")
                revoked = 0
                event = audit.make_event(
                    "USER_CREATED", actor_username="cli",
                    action=f"Created user {user.username} from the command line",
                    resource_type="USER", resource_id=user.id, resource_name=user.username,
                    details={"username": user.username, "email": user.email or "",
                             "role": user.role, "auth_source": "local", "source": "cli"})
            user_id, role, active = user.id, user.role, user.is_active
        audit.deliver([event])
    if args.reset:
        print(f"Password reset for user {username!r} (id {user_id}).")
        if revoked:
            print(f"Revoked {revoked} active token(s) of this user.")
        if not active:
            print("Note: this account is disabled; enable it before the user can sign in.")
    else:
        print(f"Created user {username!r} (id {user_id}, role {role}).")
    if generated:
        print(f"Password: {password}")
        print("This password is shown only once; store it now.")
    return EXIT_OK


def cmd_create_client(args: argparse.Namespace) -> int:
    check_client_options(  # before touching the database
        name=args.name, confidential=args.confidential, device=args.device,
        auth_code=args.auth_code, client_credentials=args.client_credentials,
        redirect_uris=args.redirect_uri or (), scopes=args.scopes)
    with open_runtime(args.config) as runtime:
        require_current_schema(runtime)
        with db_transaction(runtime) as db:
            client, secret = create_oauth_client(
                db, name=args.name, confidential=args.confidential, device=args.device,
                auth_code=args.auth_code, client_credentials=args.client_credentials,
                redirect_uris=args.redirect_uri or (), scopes=args.scopes,
                description=args.description or "")
            shown = {"client_id": client.client_id, "name": client.name,
                     "client_type": client.client_type, "grant_types": client.grant_types,
                     "redirect_uris": client.redirect_uris, "scopes": client.scopes}
            event = runtime.audit.make_event(
                "CLIENT_CREATED", actor_username="cli",
                action=f"Created OAuth client {client.name} from the command line",
                resource_type="CLIENT", resource_id=client.client_id, resource_name=client.name,
                details={**shown, "source": "cli"})
        runtime.audit.deliver([event])
    print(f"Created OAuth client {shown['name']!r}")
    print(f"Client ID:     {shown['client_id']}")
    print(f"Client type:   {shown['client_type']}")
    print(f"Grant types:   {shown['grant_types']}")
    print(f"Scopes:        {shown['scopes']}")
    if shown["redirect_uris"]:
        print(f"Redirect URIs: {' '.join(shown['redirect_uris'])}")
    if secret:
        print(f"Client Secret: {secret}")
        print("WARNING: store the client secret now. It is kept only as a hash and cannot be "
              "shown again.")
    elif args.auth_code:
        print("Public client: the authorization code flow requires PKCE (S256).")
    return EXIT_OK


# -- device-login: a small RFC 8628 client ----------------------------------------


def _json_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _describe_error(what: str, response: requests.Response, body: Mapping[str, Any]) -> str:
    error = body.get("error")
    if error:
        description = body.get("error_description") or body.get("message") or ""
        return f"{what}: {error}" + (f": {description}" if description else "")
    snippet = " ".join(response.text.split())[:200]
    return f"{what}: HTTP {response.status_code}" + (f": {snippet}" if snippet else "")


def _retry_after(response: requests.Response, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else default


def poll_for_token(session: requests.Session, token_url: str, *, client_id: str,
                   device_code: str, interval: float, expires_in: float,
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic,
                   out: TextIO | None = None) -> dict[str, Any]:
    """Poll the token endpoint (RFC 8628 section 3.4) until a decision or expiry."""
    import requests

    out = out or sys.stderr
    deadline = clock() + expires_in
    interval = max(1.0, interval)
    wait = interval
    while True:
        if clock() + wait > deadline:
            raise CommandError("expired_token: the device code expired before it was "
                               "authorized; run the command again")
        sleep(wait)
        wait = interval
        try:
            response = session.post(token_url, timeout=HTTP_TIMEOUT, data={
                "grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id})
        except requests.RequestException as exc:
            print(f"Token request failed ({exc.__class__.__name__}); retrying...", file=out)
            continue
        body = _json_body(response)
        error = body.get("error")
        if response.status_code == 200 and body.get("access_token"):
            return body
        if error == "authorization_pending":
            print("Waiting for authorization... (authorization_pending)", file=out, flush=True)
        elif error == "slow_down":
            interval += 5
            wait = interval
            print(f"Polling too fast (slow_down); now polling every {interval:g}s", file=out)
        elif response.status_code == 429 or response.status_code >= 500:
            wait = max(interval, _retry_after(response, interval))
            print(f"Server answered HTTP {response.status_code}; retrying in {wait:g}s",
                  file=out)
        elif error == "access_denied":
            raise CommandError("access_denied: the authorization request was denied")
        elif error == "expired_token":
            raise CommandError("expired_token: the device code expired; run the command again")
        else:
            raise CommandError(_describe_error("token request failed", response, body))


def cmd_device_login(args: argparse.Namespace) -> int:
    import requests

    from authgate.settings import read_environ

    environ = read_environ()
    server = (args.server or environ.get("SERVER_URL") or "http://localhost:8080").rstrip("/")
    client_id = args.client_id or environ.get("CLIENT_ID", "").strip()
    if not client_id:
        raise CommandError("--client-id is required (or set CLIENT_ID in the environment or "
                           ".env); the seeded client id is in authgate-credentials.txt")
    session = requests.Session()
    session.headers.update({"Accept": "application/json",
                            "User-Agent": f"authgate-device-login/{__version__}"})
    data = {"client_id": client_id}
    if args.scope.strip():
        data["scope"] = args.scope.strip()
    try:
        response = session.post(f"{server}/oauth/device/code", data=data, timeout=HTTP_TIMEOUT)
    except requests.RequestException as exc:
        raise CommandError(f"cannot reach {server}: {exc}") from None
    body = _json_body(response)
    if response.status_code != 200 or not body.get("device_code"):
        raise CommandError(_describe_error("device authorization request failed", response,
                                           body))
    out = sys.stderr
    verification_uri = body.get("verification_uri", f"{server}/device")
    print("", file=out)
    print("To sign in, open this page in a browser:", file=out)
    print(f"\n    {verification_uri}\n", file=out)
    print(f"and enter the code:  {body.get('user_code', '')}", file=out)
    if body.get("verification_uri_complete"):
        print(f"\nOr open this link, which fills in the code for you:\n\n"
              f"    {body['verification_uri_complete']}", file=out)
    expires_in = float(body.get("expires_in") or 1800)
    print(f"\nThe code expires in {int(expires_in // 60)} minutes.\n", file=out, flush=True)
    token = poll_for_token(session, f"{server}/oauth/token", client_id=client_id,
                           device_code=str(body["device_code"]),
                           interval=float(body.get("interval") or 5), expires_in=expires_in,
                           out=out)
    print("Authorized.", file=out, flush=True)
    print(json.dumps(token, indent=2))
    return EXIT_OK


# ---------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE.ini",
                        help="PasteDeploy ini file: its [app:main] settings and logging "
                             "sections (default: none; settings from .env and the environment)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authgate",
        description="AuthGate: OAuth 2.0 / OpenID Connect authorization server.",
        epilog="Settings: the ini file's [app:main], then .env in the working directory, "
               "then the environment.  Exit status: 0 ok, 1 failure, 2 configuration error.")
    parser.add_argument("-v", "--version", action="store_true", help="print the version")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    server = commands.add_parser(
        "server", help="serve AuthGate with waitress",
        description="Serve AuthGate with waitress.  On an empty database: migrate, create the "
                    "admin user and the default client.  Listens on SERVER_ADDR (:8080 = "
                    "localhost:8080) unless the ini's [server:main] says otherwise.")
    _add_config(server)
    server.set_defaults(func=cmd_server)

    mig = commands.add_parser("migrate", help="bring the database schema up to date",
                              description="Run pending database migrations (Alembic).")
    _add_config(mig)
    mig.set_defaults(func=cmd_migrate)

    clean = commands.add_parser(
        "cleanup", help="delete expired rows and old audit events",
        description="Delete expired tokens, device codes and authorization codes, and audit "
                    "events older than AUDIT_LOG_RETENTION, in batches of CLEANUP_BATCH_SIZE.")
    _add_config(clean)
    clean.set_defaults(func=cmd_cleanup)

    db = commands.add_parser("db", help="database utilities")
    db_commands = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    db_copy = db_commands.add_parser(
        "copy", help="copy every table to another database (SQLite <-> PostgreSQL)",
        description="Copy every table from --from to --to inside one transaction and verify "
                    "the row counts.  The target is migrated first and must be empty.  A DSN is "
                    "a SQLite file path or a PostgreSQL DSN (libpq keywords or a URL).")
    db_copy.add_argument("--from", dest="source", required=True, metavar="DSN")
    db_copy.add_argument("--to", dest="target", required=True, metavar="DSN")
    db_copy.set_defaults(func=cmd_db_copy)

    keys = commands.add_parser("keys", help="signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND",
                                       required=True)
    gen = key_commands.add_parser(
        "generate", help="write a new RS256 or ES256 private key",
        description="Write a new private key (PKCS#8 PEM, mode 0600, never overwriting) and "
                    "print its kid.  For rotation, list the previous key in "
                    "JWT_PREVIOUS_KEY_PATHS.")
    gen.add_argument("--alg", choices=("ES256", "RS256"), required=True)
    gen.add_argument("--out", required=True, help="the file to write")
    gen.add_argument("--bits", type=int, default=3072, help="RSA key size (default 3072)")
    gen.set_defaults(func=cmd_keys_generate)

    user = commands.add_parser(
        "create-user", help="create a local user, or --reset a password",
        description="Create a local user (argon2id password hash).  Without --password a "
                    "password is generated and printed once.")
    user.add_argument("username")
    _add_config(user)
    user.add_argument("--password", help="the password (visible in the process list and "
                                         "shell history; prefer --password-stdin)")
    user.add_argument("--password-stdin", action="store_true",
                      help="read the password from the first line of standard input")
    user.add_argument("--email")
    user.add_argument("--full-name")
    user.add_argument("--role", choices=ROLES, help="default: user")
    user.add_argument("--reset", action="store_true",
                      help="set a new password on an existing local user (and revoke their "
                           "tokens) instead of creating one")
    user.set_defaults(func=cmd_create_user)

    client = commands.add_parser(
        "create-client", help="register an OAuth client",
        description="Register an active OAuth client.  A confidential client's secret is "
                    "printed once.")
    client.add_argument("name")
    _add_config(client)
    kind = client.add_mutually_exclusive_group()
    kind.add_argument("--public", dest="confidential", action="store_false",
                      help="a public client, no secret (default)")
    kind.add_argument("--confidential", dest="confidential", action="store_true",
                      help="a confidential client with a generated secret")
    client.add_argument("--device", action=argparse.BooleanOptionalAction, default=True,
                        help="the device authorization grant (default: on)")
    client.add_argument("--auth-code", action="store_true",
                        help="the authorization code grant (needs --redirect-uri)")
    client.add_argument("--client-credentials", action="store_true",
                        help="the client credentials grant (confidential clients only)")
    client.add_argument("--redirect-uri", action="append", metavar="URI",
                        help="an allowed redirect URI (repeat for several)")
    client.add_argument("--scopes", default="email profile",
                        help='space-separated scopes (default: "email profile")')
    client.add_argument("--description", default="")
    client.set_defaults(func=cmd_create_client, confidential=False)

    device = commands.add_parser(
        "device-login", help="sign in with the device flow (an example client)",
        description="An example RFC 8628 device client: asks the server for a code, shows "
                    "where to enter it, polls for the token and prints the token response "
                    "as JSON on stdout.")
    device.add_argument("--server", help="AuthGate base URL (default: $SERVER_URL or "
                                         "http://localhost:8080)")
    device.add_argument("--client-id", help="the OAuth client id (default: $CLIENT_ID)")
    device.add_argument("--scope", default="email profile",
                        help='scopes to request (default: "email profile")')
    device.set_defaults(func=cmd_device_login)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    if args.version:
        print(f"authgate {__version__}")
        return EXIT_OK
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_FAILURE
    try:
        return int(args.func(args))
    except ConfigurationError as exc:
        print(f"authgate: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CommandError as exc:
        print(f"authgate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("authgate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
