"""The plugin surface is documented and tested (datasette's test_plugin_hooks_are_documented
and test_plugin_hooks_have_tests): every hook has a section in docs/plugins.md headed by
its exact signature, and a ``test_hook_<hookname>`` in tests/unit/test_hooks.py."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from authgate import hookspecs, interfaces
from authgate.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_MD = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
TEST_HOOKS = ROOT / "tests" / "unit" / "test_hooks.py"


def _hook_names() -> list[str]:
    pm = get_plugin_manager(allow=())
    names = sorted(name for name in vars(pm.hook) if name.startswith("authgate_"))
    assert names, "no hooks found"
    return names


HOOKS = _hook_names()


def _signature(function, *, drop_self: bool = False) -> str:
    """``name(a, b, *, c=None)``: the signature without annotations."""
    parameters = [p.replace(annotation=inspect.Parameter.empty)
                  for p in inspect.signature(function).parameters.values()]
    if drop_self:
        parameters = parameters[1:]
    return function.__name__ + str(inspect.Signature(parameters))


def test_every_hookspec_is_collected():
    specs = sorted(name for name, value in vars(hookspecs).items()
                   if name.startswith("authgate_") and callable(value))
    assert specs == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_are_documented(hook):
    heading = f"### `{_signature(getattr(hookspecs, hook))}`"
    headings = [line for line in PLUGINS_MD.splitlines() if line.startswith("### ")]
    assert heading in headings, (
        f"docs/plugins.md has no section headed {heading!r} "
        f"(hook headings found: {[h for h in headings if 'authgate_' in h]})")


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hook_sections_say_when_and_what(hook):
    section = PLUGINS_MD.split(f"### `{_signature(getattr(hookspecs, hook))}`", 1)[1]
    section = section.split("\n### ", 1)[0].split("\n## ", 1)[0]
    assert "**When**" in section
    assert "```python" in section and f"def {hook}(" in section, "no example implementation"


def _test_functions() -> set[str]:
    tree = ast.parse(TEST_HOOKS.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_have_tests(hook):
    assert f"test_hook_{hook}" in _test_functions(), (
        f"tests/unit/test_hooks.py has no test named test_hook_{hook}")


INTERFACES = [interfaces.IStore, interfaces.ISigner, interfaces.IAuthSource,
              interfaces.IAuditSink]


def _interface_methods():
    for protocol in INTERFACES:
        for name, member in vars(protocol).items():
            if not name.startswith("_") and inspect.isfunction(member):
                yield pytest.param(protocol, member, id=f"{protocol.__name__}.{name}")


@pytest.mark.parametrize(("protocol", "method"), list(_interface_methods()))
def test_interface_methods_are_documented(protocol, method):
    assert f"### {protocol.__name__}" in PLUGINS_MD
    signature = _signature(method, drop_self=True)
    assert f"`{signature}`" in PLUGINS_MD, (
        f"docs/plugins.md does not show {protocol.__name__}.{signature}")


def test_interface_attributes_are_documented():
    for protocol in INTERFACES:
        section = PLUGINS_MD.split(f"### {protocol.__name__}", 1)[1].split("\n### ", 1)[0]
        for attribute in protocol.__annotations__:
            assert re.search(rf"^\s+{attribute}: ", section, re.MULTILINE), (
                f"{protocol.__name__}.{attribute} is not shown in docs/plugins.md")


def test_the_guide_covers_discovery_packaging_and_testing():
    for phrase in ("[project.entry-points.authgate]", "authgate.plugins", "AUTHGATE_PLUGINS",
                   "check_pending", "authgate.testing.contracts", "StoreContract",
                   "SignerContract", "AuthSourceContract", "AuditSinkContract", "make_app",
                   "AuthRejected", "Identity", "None"):
        assert phrase in PLUGINS_MD
