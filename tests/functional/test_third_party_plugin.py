"""Third-party plugins through real packaging: build a wheel, pip-install it, select it.

Each distribution is built with ``pip wheel`` and installed with ``pip install
--target`` into a private site directory of this test, which is put on
``sys.path`` (and ``PYTHONPATH`` for subprocesses).  Entry points are found
through ``importlib.metadata`` exactly as in a virtualenv's site-packages, but
the shared virtualenv is never modified: other test runs in the same tree do
not see the plugin, and a crashed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from authgate import docs
from authgate.errors import ConfigurationError
from authgate.interfaces import AuthContext, AuthRejected
from authgate.plugins import installed_plugin_names
from authgate.testing import ADMIN_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "authgate-auth-example"


def write_users(path: Path, site: Path) -> Path:
    """A users file for the example, made with the installed package's own command."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    lines = [run(sys.executable, "-m", "authgate_auth_example", name, env=env,
                 input=password + "\n").stdout.strip()
             for name, password in (("alice", "secret1"), ("bob", "secret2"))]
    path.write_text("# example users\n" + "\n".join(lines) + "\n")
    return path


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600, check=False, input=input)
    assert result.returncode == 0, (f"{' '.join(args)} failed ({result.returncode}):\n"
                                    f"{result.stdout}\n{result.stderr}")
    return result


def build_wheel(source: Path, out: Path) -> Path:
    """``pip wheel`` a source tree (an isolated build: setuptools comes from the index)."""
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out),
        str(source))
    (wheel,) = out.glob("*.whl")
    return wheel


def pip_install(wheel: Path, site: Path) -> None:
    run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
        "--target", str(site), str(wheel))


@contextlib.contextmanager
def importable(site: Path, *modules: str) -> Iterator[None]:
    """Make a pip-installed site directory visible to imports and entry points."""
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(site))
        for module in modules:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()


def auth(handle, username: str, password: str):
    with handle.db() as dbsession:
        return handle.runtime.auth.authenticate(username, password,
                                                AuthContext(dbsession=dbsession))


@pytest.fixture(scope="module")
def example_build(tmp_path_factory) -> tuple[Path, Path]:
    """(the built wheel, a copy of the example's tests without its source module)."""
    base = tmp_path_factory.mktemp("example")
    source = base / "src"
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    wheel = build_wheel(source, base / "dist")
    # The tests must import the *installed* module, never the source next to them.
    (source / "authgate_auth_example.py").unlink()
    return wheel, source


def test_example_plugin_from_a_wheel(make_app, example_build, tmp_path):
    wheel, tests_dir = example_build
    bundled = installed_plugin_names()
    assert "auth_example" not in bundled
    documented = docs.render()
    site = tmp_path / "site"
    pip_install(wheel, site)
    users = str(write_users(tmp_path / "users.txt", site))

    with importable(site, "authgate_auth_example"):
        assert "auth_example" in installed_plugin_names()

        # Installed is not enabled: nothing changes until the ini names it.
        handle = make_app()
        assert [s.name for s in handle.runtime.auth.sources] == ["local"]

        handle = make_app(settings={"authgate.auth_sources": "local example",
                                    "authgate.example_auth_users_file": users})
        offers = handle.runtime.selected["auth_source"]
        assert [(o.spec.name, o.plugin) for o in offers] == [("local", "auth_local"),
                                                            ("example", "auth_example")]
        assert offers[1].distribution == "authgate-auth-example 0.1.0"
        assert handle.runtime.spec.owners["example_auth_users_file"] == "auth_example"

        identity = auth(handle, "alice", "secret1")
        assert (identity.username, identity.auth_source, identity.external_id) == (
            "alice", "example", "example:alice")
        with pytest.raises(AuthRejected):
            auth(handle, "bob", "secret1")  # the example's user, the wrong password
        assert auth(handle, "admin", ADMIN_PASSWORD).auth_source == "local"  # still first
        with pytest.raises(AuthRejected):
            auth(handle, "carol", "x")  # nobody's user

        # A pinned allow-list that names it loads it ...
        pinned = " ".join([*bundled, "auth_example"])
        handle = make_app(settings={"authgate.plugins": pinned,
                                    "authgate.auth_sources": "example local",
                                    "authgate.example_auth_users_file": users})
        assert auth(handle, "bob", "secret2").auth_source == "example"

        # ... one that does not name it keeps it out, and says what is available.
        with pytest.raises(ConfigurationError) as info:
            make_app(settings={"authgate.plugins": " ".join(bundled),
                               "authgate.auth_sources": "local example",
                               "authgate.example_auth_users_file": users})
        message = str(info.value)
        assert "Unknown auth source 'example'" in message
        assert "Available: " in message and "local (from authgate " in message

        # docs/configuration.md documents the bundled plugins only.
        assert docs.render() == documented

    # The example's own test suite, in another process, against the installed wheel.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    where = run(sys.executable, "-c", "import authgate_auth_example as m; print(m.__file__)",
                cwd=tests_dir, env=env)
    assert where.stdout.strip().startswith(str(site))
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                 cwd=tests_dir, env=env)
    assert " passed" in result.stdout and "failed" not in result.stdout
    assert "TestExampleAuthSource" in run(
        sys.executable, "-m", "pytest", "-q", "--collect-only", "tests", cwd=tests_dir,
        env=env).stdout

    assert "auth_example" not in installed_plugin_names()  # gone with the site directory


NO_DRIVER = {"DATABASE_DRIVER": ""}

THROWAWAY_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "authgate-throwaway-store"
version = "0.0.1"
dependencies = ["authgate"]

[project.entry-points.authgate]
throwaway_store = "authgate_throwaway_store"

[tool.setuptools]
py-modules = ["authgate_throwaway_store"]
"""

THROWAWAY_MODULE = '''\
"""A store named throwaway_sqlite: the bundled SQLite store under another name."""

from authgate import hookimpl
from authgate.components import ComponentSpec
from authgate_plugins.store_sqlite import SQLiteStore


class ThrowawayStore(SQLiteStore):
    name = "throwaway_sqlite"

    def describe(self):
        return "throwaway " + super().describe()


def _factory(ctx):
    return ThrowawayStore(ctx.settings.database_path)


@hookimpl
def authgate_register_stores():
    return [ComponentSpec("throwaway_sqlite", _factory, "SQLite, wrapped by a test")]
'''


def test_throwaway_distribution_selected_by_the_ini(make_app, tmp_path):
    """A tiny distribution, built and pip-installed here, selected by an ini file."""
    from paste.deploy import appconfig

    source = tmp_path / "throwaway"
    source.mkdir()
    (source / "pyproject.toml").write_text(THROWAWAY_PYPROJECT)
    (source / "authgate_throwaway_store.py").write_text(THROWAWAY_MODULE)
    wheel = build_wheel(source, tmp_path / "dist")
    site = tmp_path / "site"
    pip_install(wheel, site)
    assert (site / "authgate_throwaway_store-0.0.1.dist-info" / "entry_points.txt").exists()

    ini = tmp_path / "throwaway.ini"
    ini.write_text(textwrap.dedent(f"""\
        [app:main]
        use = egg:authgate
        authgate.plugins = {" ".join(installed_plugin_names())} throwaway_store
        authgate.store = throwaway_sqlite
        """))

    with importable(site, "authgate_throwaway_store"):
        settings = dict(appconfig(f"config:{ini}"))
        assert settings["authgate.store"] == "throwaway_sqlite"
        # DATABASE_DRIVER="" (unset): the ini's store, whatever --authgate-store says.
        handle = make_app(settings=settings, environ=NO_DRIVER)
        store = handle.runtime.store
        assert store.name == "throwaway_sqlite"
        assert store.describe().startswith("throwaway sqlite:///")
        (offer,) = handle.runtime.selected["store"]
        assert (offer.plugin, offer.distribution) == ("throwaway_store",
                                                      "authgate-throwaway-store 0.0.1")
        # The core migrated and seeded the database through it, and serves from it.
        assert handle.testapp.get("/health").json == {"status": "healthy",
                                                      "database": "connected"}
        assert handle.default_client_id

        # The seed's variable selects it too: DATABASE_DRIVER beats the ini's store.
        handle = make_app(settings={"authgate.store": "sqlite"},
                          environ={"DATABASE_DRIVER": "throwaway_sqlite"})
        assert handle.runtime.store.name == "throwaway_sqlite"

    assert "throwaway_store" not in installed_plugin_names()
    with pytest.raises(ConfigurationError, match="Unknown store 'throwaway_sqlite'"):
        make_app(settings={"authgate.store": "throwaway_sqlite"}, environ=NO_DRIVER)


def test_writing_plugins_guide_quotes_the_example():
    """docs/writing-plugins.md quotes the example's code verbatim, and covers the path."""
    import re

    guide = (ROOT / "docs" / "writing-plugins.md").read_text(encoding="utf-8")
    marker = "<!-- from examples/authgate-auth-example/authgate_auth_example.py -->"
    quoted = re.findall(re.escape(marker) + r"\n```python\n(.*?)```", guide, re.S)
    assert len(quoted) >= 4
    module = (EXAMPLE / "authgate_auth_example.py").read_text(encoding="utf-8")
    for block in quoted:
        assert block in module, f"the guide's quote is out of date:\n{block}"
    pyproject = (EXAMPLE / "pyproject.toml").read_text(encoding="utf-8")
    assert '[project.entry-points.authgate]\nauth_example = "authgate_auth_example"' in guide
    assert '[project.entry-points.authgate]\nauth_example = "authgate_auth_example"' in pyproject
    for phrase in ("authgate_add_settings", "authgate_register_auth_sources",
                   "AuthSourceContract", 'pytest_plugins = ["authgate.testing"]', "make_app",
                   "authgate.auth_sources = local example", "authgate.plugins",
                   "AuthRejected", "AuthUnavailable", "Identity", "None", "(plugins.md)"):
        assert phrase in guide, phrase
