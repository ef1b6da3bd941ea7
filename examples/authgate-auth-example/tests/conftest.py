from __future__ import annotations

import authgate_auth_example
import pytest

from authgate.plugins import installed_plugin_names

# The make_app / app fixtures (opt in; AuthGate does not register a pytest11 plugin).
pytest_plugins = ["authgate.testing"]


@pytest.fixture
def example_plugins() -> list[object]:
    """What to pass as ``make_app(plugins=...)`` so the example is loaded exactly once.

    Installed (``pip install .`` or ``-e .``), its entry point already loads it;
    run from a plain checkout, it is registered directly.
    """
    if "auth_example" in installed_plugin_names():
        return []
    return [authgate_auth_example]
