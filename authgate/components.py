"""Component selection: plugins offer components, the ini file picks them.

``authgate_register_*`` results are collected into catalogues; the selected
names are looked up there.  An unknown name stops start-up with a message that
lists every available name and the distribution offering it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from authgate.errors import ConfigurationError
from authgate.interfaces import IAuditSink, IAuthSource, ISigner, IStore

if TYPE_CHECKING:
    import pluggy

    from authgate.settings import Settings


@dataclass(frozen=True)
class ComponentSpec:
    """One component a plugin offers.

    ``factory(ctx)`` builds it at start-up; ``ctx`` is a :class:`BuildContext`.
    ``includeme`` (a dotted name or callable) is included in the Pyramid
    configuration only when this component is selected.
    """

    name: str
    factory: Callable[[BuildContext], Any]
    description: str = ""
    includeme: str | Callable[..., None] | None = None


@dataclass
class BuildContext:
    """What a component factory receives."""

    settings: Settings
    store: IStore | None = None
    engine: Any = None  # sqlalchemy Engine, once the store is built
    extra: dict[str, Any] = field(default_factory=dict)


KINDS: dict[str, tuple[str, type]] = {
    # kind: (hook name, protocol)
    "store": ("authgate_register_stores", IStore),
    "signer": ("authgate_register_signers", ISigner),
    "auth_source": ("authgate_register_auth_sources", IAuthSource),
    "audit_sink": ("authgate_register_audit_sinks", IAuditSink),
}


@dataclass(frozen=True)
class Offered:
    spec: ComponentSpec
    plugin: str  # plugin (entry point) name
    distribution: str  # e.g. "authgate 0.1.0"


def catalogue(pm: pluggy.PluginManager, kind: str) -> dict[str, Offered]:
    """Every component of ``kind`` offered by the loaded plugins, by name."""
    hook_name, _ = KINDS[kind]
    hook = getattr(pm.hook, hook_name)
    dists = {id(plugin): f"{dist.project_name} {dist.version}"
             for plugin, dist in pm.list_plugin_distinfo()}
    found: dict[str, Offered] = {}
    for impl in hook.get_hookimpls():
        result = impl.function()
        for spec in result or ():
            if not isinstance(spec, ComponentSpec):
                raise ConfigurationError(
                    f"Plugin {impl.plugin_name} returned {spec!r} from {hook_name}; "
                    "expected authgate.components.ComponentSpec"
                )
            dist = dists.get(id(impl.plugin), "authgate (built in)")
            if spec.name in found:
                other = found[spec.name]
                raise ConfigurationError(
                    f"Two plugins offer a {kind} named {spec.name!r}: {other.plugin} "
                    f"({other.distribution}) and {impl.plugin_name} ({dist})"
                )
            found[spec.name] = Offered(spec, impl.plugin_name, dist)
    return found


def _available(found: Mapping[str, Offered]) -> str:
    if not found:
        return "none is installed"
    return ", ".join(f"{name} (from {o.distribution}, plugin {o.plugin})"
                     for name, o in sorted(found.items()))


def select(pm: pluggy.PluginManager, kind: str, names: Sequence[str],
           setting: str) -> list[Offered]:
    found = catalogue(pm, kind)
    chosen = []
    for name in names:
        if name not in found:
            raise ConfigurationError(
                f"Unknown {kind.replace('_', ' ')} {name!r} in {setting}. "
                f"Available: {_available(found)}"
            )
        chosen.append(found[name])
    return chosen


def build(offered: Offered, kind: str, ctx: BuildContext) -> Any:
    _, protocol = KINDS[kind]
    component = offered.spec.factory(ctx)
    if not isinstance(component, protocol):
        missing = [a for a in dir(protocol) if not a.startswith("_")
                   and not hasattr(component, a)]
        raise ConfigurationError(
            f"The {kind.replace('_', ' ')} {offered.spec.name!r} from plugin {offered.plugin} "
            f"does not provide {protocol.__name__} (missing: {', '.join(missing) or '?'})"
        )
    return component
