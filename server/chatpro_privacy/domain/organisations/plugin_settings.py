"""Which plugins each organisation enables, with what configuration (PLG-4), and what the
host needs of those settings: it reads them, and counts faults in them, through the
``PluginStore`` it is given, so that the host itself knows no storage.

Managing an organisation's plugins is for operators and its own active administrators.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import peewee

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, FieldViolation, InvalidArgument
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.organisations import memberships
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.plugin.faults import FaultKind, PluginError, PluginFault
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.store import OrganisationSettings, PluginSetting
from chatpro_privacy.plugin.types import ContentKind, OrganisationView
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Organisation, OrganisationPlugin
from chatpro_privacy.storage.queries import statement_in_effect

MAX_CONFIG_BYTES = 64 * 1024
MAX_POSITION = 1000


class PluginState(enum.StrEnum):
    AVAILABLE = "available"  # not enabled for the organisation: shown, never stored
    ENABLED = "enabled"
    FAULTED = "faulted"  # stopped by the host after repeated faults, until enabled again


@dataclass(frozen=True)
class PluginStatus:
    name: str
    state: PluginState
    config: str  # JSON text, as stored
    fault_reason: str
    distribution: str
    position: int = 0  # the organisation's order: lower first, then name; 0 when available


def plugins(principal: Principal, host: PluginHost, organisation_id: str) -> list[PluginStatus]:
    org = memberships.require_manager(principal, organisation_id)
    rows = {
        r.plugin_name: r
        for r in OrganisationPlugin.select().where(OrganisationPlugin.organisation == org.id)
    }
    statuses = []
    for name in sorted(set(host.installed) | set(rows)):
        row = rows.get(name)
        installed = host.installed.get(name)
        statuses.append(
            PluginStatus(
                name=name,
                state=PluginState(row.state) if row else PluginState.AVAILABLE,
                config=OrganisationPlugin.config.db_value(row.config) if row else "{}",
                fault_reason=(row.fault_reason or "")
                if row and row.state == PluginState.FAULTED
                else "",
                distribution=installed.distribution if installed else "not installed",
                position=int(row.position) if row else 0,
            )
        )
    return statuses


def _config(text: str) -> dict[str, Any]:
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise InvalidArgument(
            [FieldViolation("config_json", "must be at most 64 KiB", "TOO_LARGE")]
        )
    try:
        value = json.loads(text or "{}")
    except ValueError:
        raise InvalidArgument(
            [FieldViolation("config_json", "is not JSON", "INVALID_JSON")]
        ) from None
    if not isinstance(value, dict):
        raise InvalidArgument(
            [FieldViolation("config_json", "must be a JSON object", "INVALID_JSON")]
        )
    return value


async def enable(
    principal: Principal,
    host: PluginHost,
    organisation_id: str,
    name: str,
    config_json: str,
    *,
    only_reconfigure: bool = False,
    position: int = 0,
) -> PluginStatus:
    org = memberships.require_manager(principal, organisation_id)
    if host.find(name) is None:  # looked for again: installed since the server started?
        raise InvalidArgument(
            [FieldViolation("plugin_name", "is not installed on this server", "UNKNOWN_PLUGIN")]
        )
    config = _config(config_json)
    if not 0 <= position <= MAX_POSITION:
        raise InvalidArgument(
            [FieldViolation("position", f"must be 0 to {MAX_POSITION}", "OUT_OF_RANGE")]
        )
    existing = OrganisationPlugin.get_or_none(_row(org.id, name))
    if only_reconfigure and existing is None:
        raise FailedPrecondition("PLUGIN_NOT_ENABLED", "enable the plugin before configuring it")
    view = OrganisationView(org.id, org.name, _announced_retention(org.id))
    await _try(host, org.id, name, view, config)
    with database.atomic():
        if existing is None:
            OrganisationPlugin.create(
                organisation=org.id,
                plugin_name=name,
                config=config,
                state=PluginState.ENABLED,
                consecutive_faults=0,
                updated_at=clock.now(),
                position=position or _next_position(org.id),
            )
        else:
            OrganisationPlugin.update(
                config=config,
                state=PluginState.ENABLED,
                consecutive_faults=0,
                fault_reason=None,
                updated_at=clock.now(),
                position=position or existing.position,
            ).where(_row(org.id, name)).execute()
        audit.record(principal, f"plugin.enable:{name}", "organisation", org.id)
    host.invalidate(org.id)
    return next(p for p in plugins(principal, host, org.id) if p.name == name)


async def _try(
    host: PluginHost, organisation_id: str, name: str, view: OrganisationView, config: Any
) -> None:
    """Make the plugin once with ``config`` in the organisation's worker: a ValueError from
    its constructor refuses the configuration; a plugin that cannot start, or whose hooks
    are written wrong, is refused naming why (the hook, the argument)."""
    try:
        await host.trial(organisation_id, name, view, config)
    except PluginFault as fault:
        if fault.kind == FaultKind.BUSY:
            raise PluginError(organisation_id, fault) from None
        if fault.stage == "config":
            message = fault.detail.split(": ", 1)[-1]
            raise InvalidArgument(
                [FieldViolation("config_json", message[:200], "PLUGIN_CONFIG_INVALID")]
            ) from None
        raise InvalidArgument(
            [
                FieldViolation(
                    "plugin_name",
                    f"the plugin could not start ({fault.kind}: {fault.detail})"[:300],
                    "PLUGIN_BROKEN",
                )
            ]
        ) from None


def disable(
    principal: Principal, host: PluginHost, organisation_id: str, name: str
) -> PluginStatus:
    org = memberships.require_manager(principal, organisation_id)
    with database.atomic():
        removed = OrganisationPlugin.delete().where(_row(org.id, name)).execute()
        if not removed:
            raise FailedPrecondition(
                "PLUGIN_NOT_ENABLED", "the plugin is not enabled for this organisation"
            )
        audit.record(principal, f"plugin.disable:{name}", "organisation", org.id)
    host.invalidate(org.id)
    return next(
        (p for p in plugins(principal, host, org.id) if p.name == name),
        PluginStatus(name, PluginState.AVAILABLE, "{}", "", "not installed"),
    )


async def export_formats(
    principal: Principal, host: PluginHost, organisation_id: str
) -> list[tuple[str, Any]]:
    org = memberships.require_manager(principal, organisation_id)
    return await host.export_formats(org.id)


def _next_position(organisation_id: str) -> int:
    """After every plugin the organisation has enabled."""
    last = (
        OrganisationPlugin.select(peewee.fn.MAX(OrganisationPlugin.position))
        .where(OrganisationPlugin.organisation == organisation_id)
        .scalar()
    )
    return min(int(last or 0) + 1, MAX_POSITION)


def _row(organisation_id: str, plugin: str) -> Any:
    """A condition: the organisation's setting for ``plugin``."""
    return (OrganisationPlugin.organisation == organisation_id) & (
        OrganisationPlugin.plugin_name == plugin
    )


class PluginSettings:
    """The host's PluginStore: the organisations' plugin settings in the database."""

    def load(self, organisation_id: str) -> OrganisationSettings | None:
        org = Organisation.get_or_none(Organisation.id == organisation_id)
        if org is None:
            return None
        view = OrganisationView(org.id, org.name, _announced_retention(org.id))
        rows = (
            OrganisationPlugin.select()
            .where(OrganisationPlugin.organisation == org.id)
            .order_by(OrganisationPlugin.position, OrganisationPlugin.plugin_name)
        )
        return OrganisationSettings(
            view,
            tuple(
                PluginSetting(
                    name=row.plugin_name,
                    config=row.config,
                    fault_reason=(row.fault_reason or "faulted")
                    if row.state == PluginState.FAULTED
                    else None,
                    consecutive_faults=row.consecutive_faults,
                )
                for row in rows
            ),
        )

    def has_plugins(self, organisation_id: str) -> bool:
        return bool(
            OrganisationPlugin.select()
            .where(OrganisationPlugin.organisation == organisation_id)
            .exists()
        )

    def record_fault(
        self, organisation_id: str, plugin: str, reason: str, limit: int
    ) -> int | None:
        with database.atomic():
            row = OrganisationPlugin.get_or_none(_row(organisation_id, plugin))
            if row is None or row.state == PluginState.FAULTED:
                return None
            faults = int(row.consecutive_faults) + 1
            state = PluginState.FAULTED if faults >= limit else PluginState.ENABLED
            OrganisationPlugin.update(
                consecutive_faults=faults,
                state=state,
                fault_reason=reason,
                updated_at=clock.now(),
            ).where(_row(organisation_id, plugin)).execute()
            if state == PluginState.FAULTED:
                outbox.emit(
                    outbox.PLUGIN_FAULTED,
                    None,
                    organisation_id=organisation_id,
                    plugin_name=plugin,
                    reason=reason,
                )
        return faults

    def record_success(self, organisation_id: str, plugin: str) -> None:
        with database.atomic():
            OrganisationPlugin.update(consecutive_faults=0).where(
                _row(organisation_id, plugin)
            ).execute()

    def in_transaction(self) -> bool:
        return database.obj is not None and bool(database.in_transaction())


def _announced_retention(organisation_id: str) -> dict[str, int]:
    """Months per content kind announced by the statement in effect (none: {})."""
    statement = statement_in_effect(organisation_id, clock.now())
    if statement is None:
        return {}
    months = statement.retention_months
    return {k: int(v) for k, v in months.items() if k in set(ContentKind)}
