from __future__ import annotations

import authgate_auth_example
import pytest
from authgate_auth_example import hash_password

from authgate.plugins import installed_plugin_names

# The make_app / app fixtures (opt in; AuthGate does not register a pytest11 plugin).
pytest_plugins = ["authgate.testing"]

PASSWORDS = {"alice": "secret1", "bob": "secret2"}


@pytest.fixture
def example_plugins() -> list[object]:
    """What to pass as ``make_app(plugins=...)`` so the example is loaded exactly once.

    Installed (``pip install .`` or ``-e .``), its entry point already loads it;
    run from a plain checkout, it is registered directly.
    """
    if "auth_example" in installed_plugin_names():
        return []
    return [authgate_auth_example]


@pytest.fixture(scope="session")
def users_text() -> str:
    """A users file: alice with argon2id, bob with a bcrypt hash (as htpasswd -B makes)."""
    import bcrypt

    bob = bcrypt.hashpw(PASSWORDS["bob"].encode(), bcrypt.gensalt(rounds=4)).decode()
    return ("# example users\n"
            f"alice:{hash_password(PASSWORDS['alice'])}\n"
            "\n"
            f"bob:{bob.replace('$2b$', '$2y$', 1)}\n")


@pytest.fixture
def users_file(tmp_path, users_text):
    path = tmp_path / "users.txt"
    path.write_text(users_text)
    return path
