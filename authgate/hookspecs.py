"""Hook specifications: the contract between the AuthGate core and its plugins.

Implement these with ``authgate.hookimpl`` in the module named by your
``[project.entry-points.authgate]`` entry point.  Every hook is called once, at
application start-up, from :func:`authgate.main`; no hook runs per request.
Unknown ``authgate_*`` implementations are rejected at start-up
(``PluginManager.check_pending``).  Implementations may accept any subset of the
documented arguments.

The ``authgate_register_*`` hooks only *offer* components.  The ini file chooses
which ones are active (``authgate.store``, ``authgate.signer``,
``authgate.auth_sources``, ``authgate.audit_sinks``), so installing a package
never switches anything on.  docs/plugins.md documents every hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pyramid.config import Configurator

    from authgate.components import ComponentSpec
    from authgate.settings import SettingsSpec

hookspec = pluggy.HookspecMarker("authgate")


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


@hookspec
def authgate_add_settings(spec: SettingsSpec) -> None:
    """Declare the settings this plugin reads.

    Call ``spec.add(Setting(...))`` once per setting.  Each setting has an ini
    key (``authgate.<name>``), an environment variable, a type, a default, help
    text and a secret flag.  Values come from the ini file, then ``.env``, then
    the real environment (which wins).  A bad value stops start-up with a
    message naming the setting, the value and what is accepted.

    :param spec: registry of declared settings; mutate it, return nothing.

    All implementations are called, before anything else is built.
    """


# ---------------------------------------------------------------------------
# Components: plugins offer them, the ini file selects them
# ---------------------------------------------------------------------------


@hookspec
def authgate_register_stores() -> Iterable[ComponentSpec] | None:
    """Return the database stores this plugin provides.

    Each :class:`authgate.components.ComponentSpec` has a ``factory(ctx)`` that
    returns an object providing :class:`authgate.interfaces.IStore` (it creates
    the SQLAlchemy engine and tunes the dialect; the core owns the schema).

    All implementations are called and their results concatenated.
    ``authgate.store`` (or ``DATABASE_DRIVER``) selects exactly one by name.
    """


@hookspec
def authgate_register_signers() -> Iterable[ComponentSpec] | None:
    """Return the token signers this plugin provides (factory -> ``ISigner``).

    ``authgate.signer`` (or ``JWT_SIGNING_ALGORITHM``) selects exactly one.
    """


@hookspec
def authgate_register_auth_sources() -> Iterable[ComponentSpec] | None:
    """Return the authentication sources this plugin provides (factory -> ``IAuthSource``).

    ``authgate.auth_sources`` lists the enabled sources in the order they are
    tried.  ``IAuthSource.authenticate`` returns an ``Identity`` (success),
    ``None`` (not mine: try the next source) or raises ``AuthRejected`` (stop).
    Sources that do network I/O belong last.
    """


@hookspec
def authgate_register_audit_sinks() -> Iterable[ComponentSpec] | None:
    """Return the audit sinks this plugin provides (factory -> ``IAuditSink``).

    ``authgate.audit_sinks`` lists the enabled sinks; each receives every
    event.  The core's dispatcher isolates them: a failing sink is logged and
    never stops the other sinks or the request.
    """


# ---------------------------------------------------------------------------
# Pyramid: views and routes a plugin adds
# ---------------------------------------------------------------------------


@hookspec
def authgate_pyramid_includes(
    settings: Mapping[str, Any],
) -> Iterable[str | Callable[[Configurator], None]] | None:
    """Return Pyramid include targets (dotted names or callables).

    The core calls ``config.include(target)`` for each, so relative names in
    the plugin's ``includeme`` resolve against the plugin's own package.  Use it
    for routes that exist whenever the plugin is loaded (a social-login
    callback, say).  Route names should start with the plugin's name.

    :param settings: the parsed application settings (``authgate.settings.Settings``).

    All implementations are called.
    """
