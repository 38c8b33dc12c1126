"""Which plugins this server has: those installed as packages with an entry point (looked
for at start and again whenever a plugin not yet known is asked for), and the plugin
manager of the built-in defaults.

The server never imports a plugin's code: it knows each plugin by its ``module:attribute``
target, which only the organisation's worker process imports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy

from chatpro_privacy.plugin import defaults, hookspecs
from chatpro_privacy.plugin.types import PluginContext

Factory = Callable[[PluginContext], object]


@dataclass(frozen=True)
class Installed:
    name: str
    target: str  # "module:attribute", imported in the worker
    distribution: str


def discover() -> dict[str, Installed]:
    """Installed plugins: the entry points of the group ``chatpro_privacy``."""
    found: dict[str, Installed] = {}
    for ep in entry_points(group=hookspecs.PROJECT):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown"
        target = ep.value.split("[", 1)[0].strip()  # without any extras
        found[ep.name] = Installed(ep.name, target, dist)
    return found


def target_of(factory: Factory) -> str:
    """The ``module:attribute`` a worker imports ``factory`` by: it must be defined at a
    module's top level (not inside a function), since it is made in another process."""
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or module == "__main__":
        raise ValueError(
            f"plugin factory {factory!r} must be importable: define it at the top level of "
            "a module (it is made in the organisation's worker process)"
        )
    return f"{module}:{qualname}"


def new_manager() -> pluggy.PluginManager:
    """A manager with the specs and the built-in defaults, which run in the server."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(defaults.Defaults(), name=defaults.NAME)
    return manager
