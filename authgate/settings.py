"""Settings: one declaration per setting, parsed from the ini file and the environment.

Every setting has an ini key (``authgate.<name>``), an environment variable (the
Go original's names, verbatim), a type, a default, help text and a secret flag.
Precedence, lowest first: default, ini file, ``.env`` in the working directory,
the real environment.  ``docs/configuration.md`` is generated from these
declarations (``python -m authgate.docs``) and a test fails when it is stale.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from authgate.errors import ConfigurationError

# ---------------------------------------------------------------------------
# Value parsers: each returns the typed value or raises ValueError(<what is accepted>)
# ---------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> dt.timedelta:
    """Parse Go-style durations: ``30s``, ``10m``, ``720h``, ``1h30m``, ``0``."""
    raw = text.strip()
    if raw == "0":
        return dt.timedelta(0)
    pos, seconds = 0, 0.0
    for match in _DURATION_PART.finditer(raw):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or not raw:
        raise ValueError("a duration such as 30s, 10m, 1h30m or 720h")
    return dt.timedelta(seconds=seconds)


def format_duration(value: dt.timedelta) -> str:
    total = int(value.total_seconds())
    if total == 0:
        return "0"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("true or false (also 1/0, yes/no, on/off)")


def parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("a whole number") from None


def parse_list(text: str) -> tuple[str, ...]:
    """Comma- or whitespace-separated words; empties dropped."""
    return tuple(part for part in re.split(r"[\s,]+", text.strip()) if part)


def parse_str(text: str) -> str:
    return text.strip()


PARSERS: dict[str, Callable[[str], Any]] = {
    "str": parse_str,
    "int": parse_int,
    "bool": parse_bool,
    "duration": parse_duration,
    "list": parse_list,
}


@dataclass(frozen=True)
class Setting:
    """The declaration of one setting."""

    name: str  # attribute name, e.g. "jwt_secret"
    env: str  # environment variable, e.g. "JWT_SECRET"
    type: str = "str"  # str, int, bool, duration, list
    default: Any = None
    help: str = ""
    secret: bool = False
    choices: tuple[str, ...] | None = None
    minimum: Any = None  # for int / duration
    section: str = "General"
    # Extra check run on the parsed value; raise ValueError(<what is accepted>).
    check: Callable[[Any], None] | None = None

    @property
    def ini_key(self) -> str:
        return f"authgate.{self.name}"

    def parse(self, raw: str) -> Any:
        value = PARSERS[self.type](raw)
        if self.choices is not None:
            lowered = {c.lower(): c for c in self.choices}
            key = value.lower() if isinstance(value, str) else value
            if key not in lowered:
                raise ValueError("one of " + ", ".join(self.choices))
            value = lowered[key]
        if self.minimum is not None and value < self.minimum:
            shown = format_duration(self.minimum) if self.type == "duration" else self.minimum
            raise ValueError(f"a value of at least {shown}")
        if self.check is not None:
            self.check(value)
        return value

    def shown_default(self) -> str:
        if self.default is None or self.default == "" or self.default == ():
            return ""
        if self.type == "duration":
            return format_duration(self.default)
        if self.type == "bool":
            return "true" if self.default else "false"
        if self.type == "list":
            return " ".join(self.default)
        return str(self.default)


class SettingsSpec:
    """The registry plugins add their declarations to (``authgate_add_settings``)."""

    def __init__(self) -> None:
        self._settings: dict[str, Setting] = {}
        self.owners: dict[str, str] = {}

    def add(self, setting: Setting, *, owner: str = "authgate") -> None:
        if setting.name in self._settings:
            raise ConfigurationError(
                f"Setting {setting.env} ({setting.ini_key}) is declared twice: "
                f"by {self.owners[setting.name]} and by {owner}"
            )
        self._settings[setting.name] = setting
        self.owners[setting.name] = owner

    def extend(self, settings: Iterable[Setting], *, owner: str = "authgate") -> None:
        for setting in settings:
            self.add(setting, owner=owner)

    def __iter__(self) -> Iterator[Setting]:
        return iter(self._settings.values())

    def __contains__(self, name: str) -> bool:
        return name in self._settings

    def __getitem__(self, name: str) -> Setting:
        return self._settings[name]

    def load(self, ini: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        secrets_from_env_only = parse_bool(str(ini.get("authgate.secrets_from_env_only", "false")))
        for setting in self:
            raw, source = None, "default"
            if setting.ini_key in ini and str(ini[setting.ini_key]).strip() != "":
                raw, source = str(ini[setting.ini_key]), "ini"
                if setting.secret and secrets_from_env_only:
                    raise ConfigurationError(
                        f"{setting.env} is a secret: set it in the environment, not in the "
                        f"ini file ({setting.ini_key})"
                    )
            if environ.get(setting.env, "").strip() != "":
                raw, source = environ[setting.env], "env"
            if raw is None:
                values[setting.name] = setting.default
            else:
                try:
                    values[setting.name] = setting.parse(raw)
                except ValueError as exc:
                    shown = "<hidden>" if setting.secret else repr(raw)
                    raise ConfigurationError(
                        f"Invalid value for {setting.env} ({setting.ini_key}): {shown}; "
                        f"expected {exc}"
                    ) from None
            sources[setting.name] = source
        return Settings(values, sources, ini)


class Settings(Mapping[str, Any]):
    """Parsed settings: ``settings.jwt_secret`` or ``settings["jwt_secret"]``."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str], raw: Mapping[str, Any]):
        self._values = values
        self._sources = sources
        self.raw = raw

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def source(self, key: str) -> str:
        """Where a value came from: default, ini or env."""
        return self._sources[key]

    def override(self, **values: Any) -> None:
        """Used by start-up resolution (component selection), never per request."""
        self._values.update(values)


def read_environ(cwd: str | None = None) -> dict[str, str]:
    """The process environment over the ``.env`` file of the working directory."""
    from dotenv import dotenv_values

    path = os.path.join(cwd or os.getcwd(), ".env")
    merged: dict[str, str] = {}
    if os.path.exists(path):
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


# ---------------------------------------------------------------------------
# Core declarations.  Plugins declare theirs through authgate_add_settings.
# ---------------------------------------------------------------------------


def _check_base_url(value: str) -> None:
    if not re.match(r"^https?://[^/\s]+(/.*)?$", value):
        raise ValueError("an absolute http:// or https:// URL such as https://auth.example.com")


def _positive(value: dt.timedelta) -> None:
    if value <= dt.timedelta(0):
        raise ValueError("a duration greater than 0")


CORE_SETTINGS: list[Setting] = [
    # -- Plugins and components ---------------------------------------------------
    Setting("plugins", "AUTHGATE_PLUGINS", "list", ("*",), section="Plugins",
            help="Entry-point names of the plugins allowed to load (`*` = every installed "
                 "plugin). production.ini pins the list."),
    Setting("store", "AUTHGATE_STORE", "str", "", section="Plugins",
            help="The store component. Empty: chosen by DATABASE_DRIVER."),
    Setting("database_driver", "DATABASE_DRIVER", "str", "sqlite", section="Database",
            help="Selects the store: `sqlite` or `postgres` (or any installed store's name). "
                 "Set in the environment it overrides `authgate.store` from the ini file."),
    Setting("signer", "AUTHGATE_SIGNER", "str", "", section="Plugins",
            help="The signer component. Empty: chosen by JWT_SIGNING_ALGORITHM "
                 "(HS256 -> `hs256`, RS256/ES256 -> `asym`)."),
    Setting("jwt_signing_algorithm", "JWT_SIGNING_ALGORITHM", "str", "HS256",
            choices=("HS256", "RS256", "ES256"), section="Tokens",
            help="Token signing algorithm. Set in the environment it overrides "
                 "`authgate.signer` from the ini file."),
    Setting("auth_sources", "AUTHGATE_AUTH_SOURCES", "list", (), section="Plugins",
            help="Authentication sources in the order they are tried. Empty: chosen by "
                 "AUTH_MODE (`local` -> `local`; `http_api` -> `local httpapi`)."),
    Setting("auth_mode", "AUTH_MODE", "str", "local", choices=("local", "http_api"),
            section="Authentication",
            help="`local` or `http_api`. Set in the environment it overrides "
                 "`authgate.auth_sources` from the ini file."),
    Setting("audit_sinks", "AUTHGATE_AUDIT_SINKS", "list", ("database", "log"),
            section="Plugins", help="Audit sinks; every sink receives every event."),
    # -- Server -------------------------------------------------------------------
    Setting("server_addr", "SERVER_ADDR", "str", ":8080", section="Server",
            help="Listen address for `authgate server` (`:8080` = localhost:8080; "
                 "`0.0.0.0:8080` for every interface)."),
    Setting("base_url", "BASE_URL", "str", "http://localhost:8080", section="Server",
            check=_check_base_url,
            help="Public URL of this server: issuer, verification URIs, cookie Secure flag "
                 "(https) and HSTS."),
    Setting("trusted_proxies", "TRUSTED_PROXIES", "list", (), section="Server",
            help="Addresses of reverse proxies whose X-Forwarded-For is trusted for the "
                 "client IP (rate limits, audit). Empty: the socket peer is the client."),
    Setting("server_threads", "SERVER_THREADS", "int", 8, minimum=1, section="Server",
            help="waitress worker threads for `authgate server`."),
    Setting("server_inline_api", "SERVER_INLINE_API", "bool", True, section="Server",
            help="`authgate server` answers the API's hot requests (device-code "
                 "requests and polls, token issuance and refresh, introspection, /health, "
                 "JWKS, discovery) on waitress's I/O thread instead of handing each to a "
                 "worker thread: fewer thread hand-offs, more requests per second per "
                 "process. The rows they write are committed together once per turn of "
                 "the event loop, before their answers are sent (on PostgreSQL, "
                 "device-code requests still go to the workers: docs/deployment.md). "
                 "A request or commit that takes longer than 250 ms there, or two that "
                 "take longer than 50 ms within a second, send every request to the "
                 "worker threads for 5 s."),
    # -- Database -----------------------------------------------------------------
    Setting("database_dsn", "DATABASE_DSN", "str", "", section="Database",
            help="SQLite: a file path (default DATABASE_PATH). PostgreSQL: libpq keywords "
                 "(`host=... user=... dbname=...`) or a postgresql:// URL."),
    Setting("database_path", "DATABASE_PATH", "str", "oauth.db", section="Database",
            help="SQLite file used when DATABASE_DSN is empty."),
    Setting("auto_migrate", "AUTO_MIGRATE", "bool", True, section="Database",
            help="Run pending migrations at start-up. When false, run `authgate migrate`."),
    Setting("default_admin_password", "DEFAULT_ADMIN_PASSWORD", "str", "", secret=True,
            section="Database",
            help="Password of the `admin` user created on first start. Empty: generated and "
                 "written to authgate-credentials.txt."),
    Setting("credentials_file", "CREDENTIALS_FILE", "str", "authgate-credentials.txt",
            section="Database",
            help="Where first start writes the generated admin password and client id "
                 "(mode 0600, never overwritten)."),
    # -- Tokens -------------------------------------------------------------------
    Setting("jwt_expiration", "JWT_EXPIRATION", "duration", dt.timedelta(hours=10),
            check=_positive, section="Tokens", help="Access-token lifetime."),
    Setting("jwt_audience", "JWT_AUDIENCE", "list", (), section="Tokens",
            help="`aud` claim of access tokens (one value -> string, several -> array)."),
    Setting("refresh_token_expiration", "REFRESH_TOKEN_EXPIRATION", "duration",
            dt.timedelta(hours=720), check=_positive, section="Tokens",
            help="Refresh-token lifetime."),
    Setting("enable_refresh_tokens", "ENABLE_REFRESH_TOKENS", "bool", True, section="Tokens",
            help="Issue refresh tokens."),
    Setting("enable_token_rotation", "ENABLE_TOKEN_ROTATION", "bool", False, section="Tokens",
            help="Rotation mode: every refresh returns a new refresh token and revokes the old."),
    # -- Tokens: lifetimes, caps and per-client profiles (reference 3.2) --------
    Setting("jwt_expiration_jitter", "JWT_EXPIRATION_JITTER", "duration",
            dt.timedelta(minutes=30), minimum=dt.timedelta(0), section="Tokens",
            help="Random extra lifetime in [0, value) added to standard-profile access "
                 "tokens left at the default lifetime, so a fleet does not refresh all at "
                 "once. Must be less than JWT_EXPIRATION; `0` turns it off."),
    Setting("jwt_expiration_max", "JWT_EXPIRATION_MAX", "duration", dt.timedelta(hours=24),
            check=_positive, section="Tokens",
            help="Upper bound for every profile's access-token lifetime; a larger value "
                 "stops start-up."),
    Setting("refresh_token_expiration_max", "REFRESH_TOKEN_EXPIRATION_MAX", "duration",
            dt.timedelta(hours=2160), check=_positive, section="Tokens",
            help="Upper bound for every profile's refresh-token lifetime; a larger value "
                 "stops start-up."),
    Setting("token_profile_short_access_ttl", "TOKEN_PROFILE_SHORT_ACCESS_TTL", "duration",
            dt.timedelta(minutes=15), check=_positive, section="Tokens",
            help="Access-token lifetime for clients with token profile `short`."),
    Setting("token_profile_short_refresh_ttl", "TOKEN_PROFILE_SHORT_REFRESH_TTL", "duration",
            dt.timedelta(hours=24), check=_positive, section="Tokens",
            help="Refresh-token lifetime for clients with token profile `short`."),
    Setting("token_profile_standard_access_ttl", "TOKEN_PROFILE_STANDARD_ACCESS_TTL",
            "duration", None, check=_positive, section="Tokens",
            help="Access-token lifetime for clients with token profile `standard` (the "
                 "default profile). Empty: JWT_EXPIRATION, plus jitter."),
    Setting("token_profile_standard_refresh_ttl", "TOKEN_PROFILE_STANDARD_REFRESH_TTL",
            "duration", None, check=_positive, section="Tokens",
            help="Refresh-token lifetime for clients with token profile `standard`. Empty: "
                 "REFRESH_TOKEN_EXPIRATION."),
    Setting("token_profile_long_access_ttl", "TOKEN_PROFILE_LONG_ACCESS_TTL", "duration",
            dt.timedelta(hours=24), check=_positive, section="Tokens",
            help="Access-token lifetime for clients with token profile `long`."),
    Setting("token_profile_long_refresh_ttl", "TOKEN_PROFILE_LONG_REFRESH_TTL", "duration",
            dt.timedelta(hours=2160), check=_positive, section="Tokens",
            help="Refresh-token lifetime for clients with token profile `long`."),
    # -- Device flow --------------------------------------------------------------
    Setting("device_code_expiration", "DEVICE_CODE_EXPIRATION", "duration",
            dt.timedelta(minutes=30), check=_positive, section="Device flow",
            help="How long a device code / user code pair stays valid."),
    Setting("polling_interval", "POLLING_INTERVAL", "duration", dt.timedelta(seconds=5),
            check=_positive, section="Device flow",
            help="Minimum seconds between polls (RFC 8628 `interval`); faster polls get "
                 "`slow_down` and the interval grows by 5s."),
    # -- Sessions -----------------------------------------------------------------
    Setting("session_secret", "SESSION_SECRET", "str", "", secret=True, section="Sessions",
            help="Key that signs the session cookie (at least 32 bytes). Must stay the same "
                 "across restarts and processes."),
    Setting("session_max_age", "SESSION_MAX_AGE", "duration", dt.timedelta(hours=1),
            check=_positive, section="Sessions", help="Session lifetime."),
]


# Core feature modules that declare their own settings in a module-level
# ``SETTINGS`` list (kept beside the code that reads them).
CORE_SETTING_MODULES: tuple[str, ...] = ("authgate.services.cleanup", "authgate.ratelimit",
                                          "authgate.metrics", "authgate.services.authorize",
                                          "authgate.services.clientcreds",
                                          "authgate.services.registration", "authgate.cors",
                                          "authgate.audit", "authgate.db", "authgate.logsetup",
                                          "authgate.shutdown", "authgate.clientcache",
                                          "authgate.pacing", "authgate.services.passwords")


def core_spec() -> SettingsSpec:
    from importlib import import_module

    spec = SettingsSpec()
    spec.extend(CORE_SETTINGS)
    for module in CORE_SETTING_MODULES:
        spec.extend(import_module(module).SETTINGS)
    return spec
