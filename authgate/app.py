"""Application assembly: plugins -> settings -> components -> Pyramid app."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import transaction
from pyramid.config import Configurator
from pyramid.session import SignedCookieSessionFactory

from authgate import __version__, components
from authgate.audit import AuditDispatcher
from authgate.auth import AuthChain
from authgate.components import BuildContext
from authgate.db import (
    get_session_factory,
    get_tm_session,
    is_empty,
    migrate,
    schema_is_current,
)
from authgate.errors import ConfigurationError
from authgate.plugins import get_plugin_manager
from authgate.runtime import Runtime
from authgate.services.tokens import check_settings as check_token_settings
from authgate.settings import Settings, SettingsSpec, core_spec, parse_bool, parse_list

log = logging.getLogger("authgate")

ALGORITHM_SIGNERS = {"HS256": "hs256", "RS256": "asym", "ES256": "asym"}
AUTH_MODE_SOURCES = {"local": ("local",), "http_api": ("local", "httpapi")}


def load_settings(pm, raw: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[
        Settings, SettingsSpec]:
    spec = core_spec()
    for impl in pm.hook.authgate_add_settings.get_hookimpls():
        before = {s.name for s in spec}
        impl.function(spec)
        for setting in spec:
            if setting.name not in before:
                spec.owners[setting.name] = impl.plugin_name
    settings = spec.load(raw, environ)
    resolve_selection(settings)
    return settings, spec


def resolve_selection(settings: Settings) -> None:
    """Turn the original's environment names into component selections.

    An explicit AUTHGATE_* variable wins; otherwise a seed-style variable set in
    the environment (DATABASE_DRIVER, JWT_SIGNING_ALGORITHM, AUTH_MODE) beats
    the ini file's component key, so `DATABASE_DRIVER=postgres` in .env works.
    """

    def pick(key: str, driver_key: str, mapped: Any) -> None:
        src, driver_src = settings.source(key), settings.source(driver_key)
        if src == "env":
            return
        if src == "default" or driver_src == "env":
            settings.override(**{key: mapped})

    pick("store", "database_driver", settings.database_driver)
    pick("signer", "jwt_signing_algorithm", ALGORITHM_SIGNERS[settings.jwt_signing_algorithm])
    pick("auth_sources", "auth_mode", AUTH_MODE_SOURCES[settings.auth_mode])


def ensure_dev_secrets(raw: Mapping[str, Any], environ: dict[str, str], cwd: str) -> None:
    """Outside production, generate missing secrets once and keep them in .env.

    Tokens and sessions must survive restarts, so a generated secret is written
    to ``.env`` (mode 0600) where `grep JWT_SECRET .env` finds it.
    """
    if parse_bool(str(raw.get("authgate.secrets_from_env_only", "false"))):
        return
    missing = [name for name in ("JWT_SECRET", "SESSION_SECRET")
               if not environ.get(name, "").strip()
               and not str(raw.get(f"authgate.{name.lower()}", "")).strip()]
    algorithm = (environ.get("JWT_SIGNING_ALGORITHM")
                 or str(raw.get("authgate.jwt_signing_algorithm", "")) or "HS256").upper()
    if algorithm != "HS256" and "JWT_SECRET" in missing:
        missing.remove("JWT_SECRET")
    if not missing:
        return
    path = os.path.join(cwd, ".env")
    new = {name: secrets.token_urlsafe(48) for name in missing}
    existed = os.path.exists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as handle:
        if existed and os.path.getsize(path) > 0:
            handle.write("\n")
        for name, value in new.items():
            handle.write(f"{name}={value}\n")
    environ.update(new)
    log.warning("Generated %s and saved to %s (keep this file private; set them in the "
                "environment in production)", " and ".join(missing), path)


def build_runtime(raw: Mapping[str, Any], environ: Mapping[str, str],
                  extra_plugins: Iterable[object] = (), cwd: str | None = None,
                  prepare_db: bool = True) -> Runtime:
    """Build everything a running app needs.

    With ``prepare_db`` (the default) pending migrations run when AUTO_MIGRATE
    is on or the database is empty, and an empty database is seeded.
    """
    environ = dict(environ)
    cwd = cwd or os.getcwd()
    allow = parse_list(environ.get("AUTHGATE_PLUGINS") or str(raw.get("authgate.plugins", "*")))
    pm = get_plugin_manager(allow or ("*",), extra_plugins=extra_plugins,
                            trace=bool(environ.get("AUTHGATE_TRACE_PLUGINS")))
    ensure_dev_secrets(raw, environ, cwd)
    settings, spec = load_settings(pm, raw, environ)
    check_token_settings(settings)
    from authgate.services import passwords

    passwords.configure(settings)
    if not settings.session_secret:
        raise ConfigurationError("SESSION_SECRET is required (at least 32 bytes); set it in "
                                 "the environment")
    if len(settings.session_secret.encode()) < 32:
        raise ConfigurationError(
            f"SESSION_SECRET must be at least 32 bytes (got "
            f"{len(settings.session_secret.encode())})")

    ctx = BuildContext(settings=settings)
    selected: dict[str, list] = {}
    (store_offer,) = components.select(pm, "store", [settings.store], "authgate.store "
                                       "(or DATABASE_DRIVER)")
    store = components.build(store_offer, "store", ctx)
    engine = store.create_engine()
    ctx.store, ctx.engine = store, engine
    selected["store"] = [store_offer]

    (signer_offer,) = components.select(pm, "signer", [settings.signer],
                                        "authgate.signer (or JWT_SIGNING_ALGORITHM)")
    signer = components.build(signer_offer, "signer", ctx)
    selected["signer"] = [signer_offer]
    if (settings.source("jwt_signing_algorithm") != "default"
            and signer.alg != settings.jwt_signing_algorithm):
        raise ConfigurationError(
            f"The signer {settings.signer!r} signs with {signer.alg} but JWT_SIGNING_ALGORITHM "
            f"is {settings.jwt_signing_algorithm}; make them agree")

    source_offers = components.select(pm, "auth_source", settings.auth_sources,
                                      "authgate.auth_sources (or AUTH_MODE)")
    sources = [components.build(o, "auth_source", ctx) for o in source_offers]
    selected["auth_source"] = source_offers

    sink_offers = components.select(pm, "audit_sink", settings.audit_sinks,
                                    "authgate.audit_sinks")
    sinks = [components.build(o, "audit_sink", ctx) for o in sink_offers]
    selected["audit_sink"] = sink_offers

    from authgate.clientcache import ClientCache, watch_writes

    client_cache = ClientCache(settings.client_cache_ttl.total_seconds())
    watch_writes(engine, client_cache)
    runtime = Runtime(settings=settings, spec=spec, pm=pm, store=store, engine=engine,
                      session_factory=get_session_factory(engine, client_cache), signer=signer,
                      auth=AuthChain(sources), audit=AuditDispatcher(
                          sinks, enabled=settings.enable_audit_logging),
                      selected=selected, client_cache=client_cache)
    from authgate.pacing import build_pacer
    from authgate.ratelimit import redis_pool

    runtime.redis_pool = redis_pool(settings)
    runtime.pacer = build_pacer(settings, runtime.redis_pool)
    if prepare_db and (settings.auto_migrate or is_empty(engine)):
        if not schema_is_current(engine):  # Alembic is imported only to migrate
            migrate(engine)
        seed_database(runtime, cwd)
    return runtime


def seed_database(runtime: Runtime, cwd: str) -> None:
    from authgate.services.seed import seed

    tm = transaction.TransactionManager(explicit=True)
    with tm:
        dbsession = get_tm_session(runtime.session_factory, tm)
        path = runtime.settings.credentials_file
        seed(dbsession, admin_password=runtime.settings.default_admin_password,
             credentials_file=path if os.path.isabs(path) else os.path.join(cwd, path))


def make_wsgi_app(raw: Mapping[str, Any], environ: Mapping[str, str],
                  extra_plugins: Iterable[object] = (), cwd: str | None = None):
    runtime = build_runtime(raw, environ, extra_plugins=extra_plugins, cwd=cwd)
    app = make_app_from_runtime(runtime, raw)
    runtime.start_jobs()
    return app


def bake_request_properties(registry) -> None:
    """Put the ``add_request_method(..., reify=True)`` properties on one request class.

    Pyramid applies them per request by creating a new subclass of the request
    class for every request (``InstancePropertyHelper.apply_properties``): a
    ``type()`` call, a class that only the cycle collector frees, and cold
    attribute caches on every request (~6 % of a device poll's CPU under load).
    The same descriptors on a class built once behave identically; the
    registry's request factory becomes that class and the per-request list is
    emptied.  Called after the configuration is committed, before the router
    reads both.
    """
    from pyramid.interfaces import IRequestExtensions, IRequestFactory
    from pyramid.request import Request

    extensions = registry.queryUtility(IRequestExtensions)
    if extensions is None or not extensions.descriptors:
        return
    base = registry.queryUtility(IRequestFactory, default=Request)
    attrs = {**extensions.descriptors, "__module__": base.__module__}
    request_class = type(base.__name__, (base,), attrs)
    registry.registerUtility(request_class, IRequestFactory)
    extensions.descriptors = {}


def make_app_from_runtime(runtime: Runtime, raw: Mapping[str, Any] | None = None):
    settings = runtime.settings
    pyramid_settings = {k: v for k, v in (raw or {}).items() if not k.startswith("authgate.")}
    pyramid_settings.setdefault("jinja2.directories", "authgate:templates")
    with Configurator(settings=pyramid_settings) as config:
        config.registry.authgate = runtime
        config.add_request_method(lambda r: r.registry.authgate, "authgate", reify=True)
        config.include("authgate.db")
        config.include("pyramid_jinja2")
        config.add_jinja2_renderer(".jinja2")
        config.set_session_factory(SignedCookieSessionFactory(
            settings.session_secret, cookie_name="session", httponly=True, samesite="Lax",
            secure=settings.base_url.startswith("https://"),
            max_age=int(settings.session_max_age.total_seconds()),
            timeout=int(settings.session_max_age.total_seconds()),
            hashalg="sha512",
        ))
        config.set_default_csrf_options(require_csrf=True)
        config.include("authgate.security")
        config.include("authgate.views")
        config.include("authgate.views.admin")  # admin console, account pages, self-service apps
        config.include("authgate.openapi")  # GET /openapi.json
        config.include("authgate.ratelimit")
        config.include("authgate.metrics")
        config.include("authgate.cors")  # CORS_ENABLED: the /oauth/* API, preflight included
        config.include("authgate.logsetup")  # LOG_LEVEL over the ini's logging levels
        for offered_list in runtime.selected.values():
            for offered in offered_list:
                if offered.spec.includeme is not None:
                    config.include(offered.spec.includeme)
        for targets in runtime.pm.hook.authgate_pyramid_includes(settings=settings):
            for target in targets or ():
                config.include(target)
        config.add_static_view("static", "authgate:static", cache_max_age=3600)
        config.commit()
        bake_request_properties(config.registry)
        router = config.make_wsgi_app()
    from authgate.views.api_lane import ApiLane
    from authgate.views.wellknown import PublishedDocuments

    # JWKS and discovery, precomputed, and the hot OAuth calls (device polls, client
    # credentials, introspection) in front of the router (see their docstrings).
    app = PublishedDocuments(ApiLane(router, router.registry), router.registry)
    log.info("AuthGate %s ready: store=%s (%s), signer=%s, auth_sources=%s, audit_sinks=%s",
             __version__, settings.store, runtime.store.describe(), runtime.signer.alg,
             " ".join(settings.auth_sources), " ".join(settings.audit_sinks))
    return app
