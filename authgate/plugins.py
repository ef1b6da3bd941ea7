"""The plugin manager, built per application (never at import time)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Sequence

import pluggy

from authgate import hookspecs
from authgate.errors import ConfigurationError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "authgate"


def get_plugin_manager(
    allow: Sequence[str] = ("*",),
    extra_plugins: Iterable[object] = (),
    trace: bool = False,
) -> pluggy.PluginManager:
    """Build a plugin manager with the hook specs and the allowed plugins.

    :param allow: entry-point names allowed to load; ``*`` loads every
        installed plugin.  A name that is not installed is an error.
    :param extra_plugins: plugin objects registered directly (tests).
    """
    pm = pluggy.PluginManager("authgate")
    pm.add_hookspecs(hookspecs)
    allowed = list(allow)
    if "*" in allowed:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    else:
        for name in allowed:
            if pm.get_plugin(name) is not None:
                continue
            if pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name) == 0:
                raise ConfigurationError(
                    f"Plugin {name!r} listed in authgate.plugins is not installed. "
                    f"Installed: {', '.join(installed_plugin_names()) or 'none'}"
                )
    for plugin in extra_plugins:
        if isinstance(plugin, str):
            plugin = importlib.import_module(plugin)
        if pm.is_registered(plugin):
            continue  # already loaded through its entry point (an installed plugin under test)
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"Plugin error in {pm.get_name(exc.plugin)!r}: {exc}") from exc
    if trace:
        pm.trace.root.setwriter(log.debug)
        pm.enable_tracing()
    return pm


def installed_plugin_names() -> list[str]:
    from importlib.metadata import entry_points

    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
