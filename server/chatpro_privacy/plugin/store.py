"""What the host needs of the organisations' plugin settings, as an interface: the host
reads no tables itself; whoever builds it passes something that does (the domain's
``PluginSettings``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chatpro_privacy.plugin.types import OrganisationView


@dataclass(frozen=True)
class PluginSetting:
    """One plugin an organisation enabled."""

    name: str
    config: Mapping[str, Any]
    # Set while the plugin is marked faulted: calls needing it fail until someone acts.
    fault_reason: str | None
    consecutive_faults: int


@dataclass(frozen=True)
class OrganisationSettings:
    """An organisation as its plugins see it, and the plugins it enabled."""

    view: OrganisationView
    plugins: tuple[PluginSetting, ...]


class PluginStore(Protocol):
    def load(self, organisation_id: str) -> OrganisationSettings | None:
        """The organisation's settings; None when there is no such organisation."""
        ...

    def has_plugins(self, organisation_id: str) -> bool:
        """Whether the organisation enabled any plugin, a faulted one included."""
        ...

    def record_fault(
        self, organisation_id: str, plugin: str, reason: str, limit: int
    ) -> int | None:
        """Count a fault; at ``limit`` consecutive ones mark the plugin faulted and tell the
        organisation. The count now, or None if the plugin is not enabled or already
        faulted (nothing counted)."""
        ...

    def record_success(self, organisation_id: str, plugin: str) -> None:
        """The plugin answered well: its consecutive faults start again from nought."""
        ...

    def in_transaction(self) -> bool:
        """Whether a write transaction is open: plugins are never called inside one."""
        ...
