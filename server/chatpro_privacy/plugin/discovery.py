"""Which plugins this server has: those installed as packages with an entry point, found
once at start, and the plugin manager every organisation's plugins join."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from chatpro_privacy.plugin import defaults, hookspecs
from chatpro_privacy.plugin.types import PluginContext

Factory = Callable[[PluginContext], object]


@dataclass(frozen=True)
class Installed:
    name: str
    factory: Factory
    distribution: str


def discover() -> dict[str, Installed]:
    """Installed plugins: the entry points of the group ``chatpro_privacy``."""
    found: dict[str, Installed] = {}
    for ep in entry_points(group=hookspecs.PROJECT):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown"
        found[ep.name] = Installed(ep.name, _lazy(ep.load), dist)
    return found


def _lazy(load: Callable[[], Any]) -> Factory:
    """Import a plugin's package only when an organisation first uses it."""

    def factory(context: PluginContext) -> object:
        return load()(context)

    return factory


def new_manager() -> pluggy.PluginManager:
    """A manager with the specs and the defaults; every hookimpl must match a spec."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(defaults.Defaults(), name=defaults.NAME)
    return manager
