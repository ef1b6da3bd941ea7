"""AuthGate: an OAuth 2.0 / OpenID Connect authorization server.

``main`` is the PasteDeploy app factory (``use = egg:authgate``).  Nothing runs
at import time: the plugin manager, settings and components are built per app.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pluggy

hookimpl = pluggy.HookimplMarker("authgate")

try:
    __version__ = version("authgate")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"


def main(global_config, **settings):
    """PasteDeploy entry point: ``pserve development.ini``."""
    from authgate.app import make_wsgi_app
    from authgate.settings import read_environ

    return make_wsgi_app(settings, environ=read_environ())


__all__ = ["__version__", "hookimpl", "main"]
