"""Organisations as far as their plugins need them (issue 4): creation, the Privacy and
Rules statement with the retention it announces (CON-5, PLG-1), and which plugins each
organisation enables with what configuration (PLG-4).

Creating an organisation is for operators; managing one is for operators and its own
active administrators (anyone else is told it does not exist, ORG-5).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent.notices import NoticeHistory, NoticeVersion
from chatpro_privacy.domain.kernel import validation
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Violations,
)
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.organisations import memberships
from chatpro_privacy.domain.records import audit
from chatpro_privacy.plugin.host import ENABLED, FAULTED, PluginFault, PluginHost
from chatpro_privacy.plugin.types import CONTENT_KINDS, DEFAULT_RETENTION_MONTHS, OrganisationView
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Organisation, OrganisationPlugin, OrganisationStatement

MAX_CONFIG_BYTES = 64 * 1024


@dataclass(frozen=True)
class PluginStatus:
    name: str
    state: str  # "available" | "enabled" | "faulted"
    config: str
    fault_reason: str
    distribution: str


def _require_operator(principal: Principal) -> None:
    if not (principal.is_person and principal.has_role(Role.OPERATOR)):
        raise PermissionDenied("OPERATORS_ONLY", "only an operator manages organisations for now")


def get(principal: Principal, organisation_id: str) -> Organisation:
    return memberships.require_visible(principal, organisation_id)


def create(principal: Principal, name: str, privacy_contact_email: str) -> Organisation:
    _require_operator(principal)
    v = Violations()
    clean = validation.required_text(v, "name", name, 200)
    contact, _ = validation.email(v, privacy_contact_email, "privacy_contact_email")
    v.raise_if_any()
    with database.atomic():
        org = Organisation.create(
            id=new_id(), name=clean, privacy_contact_email=contact, created_at=clock.now()
        )
        audit.record(principal, "organisation.create", "organisation", org.id)
    return org


def _statements(organisation_id: str) -> list[OrganisationStatement]:
    return list(
        OrganisationStatement.select()
        .where(OrganisationStatement.organisation == organisation_id)
        .order_by(OrganisationStatement.effective_at)
    )


def publish_statement(
    principal: Principal,
    host: PluginHost,
    organisation_id: str,
    version: str,
    text: str,
    retention_months: dict[str, int],
    effective_at: dt.datetime | None,
) -> OrganisationStatement:
    org = memberships.require_manager(principal, organisation_id)
    now = clock.now()
    effective = effective_at or now
    history = NoticeHistory(
        NoticeVersion(s.version, s.effective_at, False) for s in _statements(org.id)
    )
    v = Violations()
    history.validate_new(v, version, effective, text, "statement", now)
    for kind, months in retention_months.items():
        if kind not in CONTENT_KINDS:
            v.add(
                "retention_months",
                f"{kind[:32]!r} is not a kind of content",
                "UNKNOWN_CONTENT_KIND",
            )
        elif not DEFAULT_RETENTION_MONTHS <= months <= 120:
            v.add("retention_months", "months must be 12 to 120", "OUT_OF_RANGE")
    v.raise_if_any()
    longer = _announces_longer(org.id, effective, retention_months)
    with database.atomic():
        statement = OrganisationStatement.create(
            organisation=org.id,
            version=version,
            text=text,
            text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            retention_months=json.dumps(dict(sorted(retention_months.items()))),
            effective_at=effective,
            published_at=now,
            requires_reacknowledgement=longer,
        )
        if longer:
            memberships.require_reacknowledgement(org.id, version, effective)
        audit.record(principal, "organisation.statement.publish", "organisation", org.id)
    host.invalidate(org.id)
    return statement


def announced(statement: OrganisationStatement | None) -> dict[str, int]:
    """Months per kind a statement announces, 12 for what it leaves out."""
    months = json.loads(statement.retention_months) if statement is not None else {}
    return {kind: int(months.get(kind, DEFAULT_RETENTION_MONTHS)) for kind in CONTENT_KINDS}


def _announces_longer(organisation_id: str, effective: dt.datetime, months: dict[str, int]) -> bool:
    """CON-5: a version announcing a longer period than the one it follows is acknowledged
    again by the members."""
    before = [s for s in _statements(organisation_id) if s.effective_at <= effective]
    if not before:
        return False  # the first statement is acknowledged on joining anyway
    previous = announced(before[-1])
    return any(
        months.get(kind, DEFAULT_RETENTION_MONTHS) > previous[kind] for kind in CONTENT_KINDS
    )


def longer_since(organisation_id: str, kind: str, months: int) -> dt.datetime | None:
    """When the statements in effect first announced ``months`` of ``kind`` without a break:
    content created before then keeps the shorter period it was created under (RET-1)."""
    if months <= DEFAULT_RETENTION_MONTHS:
        return None
    since = None
    for s in _statements(organisation_id):
        if s.effective_at > clock.now():
            break
        # The run of statements announcing at least ``months`` starts again after a break.
        since = (since or s.effective_at) if announced(s)[kind] >= months else None
    return since


def statement_in_effect(principal: Principal, organisation_id: str) -> OrganisationStatement:
    org = get(principal, organisation_id)
    effective = [s for s in _statements(org.id) if s.effective_at <= clock.now()]
    if not effective:
        raise FailedPrecondition(
            "NO_STATEMENT_PUBLISHED", "the organisation has published no statement"
        )
    return effective[-1]


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
                state=row.state if row else "available",
                config=row.config if row else "{}",
                fault_reason=(row.fault_reason or "") if row and row.state == FAULTED else "",
                distribution=installed.distribution if installed else "not installed",
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
) -> PluginStatus:
    org = memberships.require_manager(principal, organisation_id)
    if name not in host.installed:
        raise InvalidArgument(
            [FieldViolation("plugin_name", "is not installed on this server", "UNKNOWN_PLUGIN")]
        )
    config = _config(config_json)
    existing = OrganisationPlugin.get_or_none(
        (OrganisationPlugin.organisation == org.id) & (OrganisationPlugin.plugin_name == name)
    )
    if only_reconfigure and existing is None:
        raise FailedPrecondition("PLUGIN_NOT_ENABLED", "enable the plugin before configuring it")
    view = OrganisationView(org.id, org.name)
    try:
        await host.run_isolated(lambda tracker: host.check_config(name, view, config))
    except PluginFault as fault:
        cause = fault.__cause__
        if isinstance(cause, ValueError):
            raise InvalidArgument(
                [FieldViolation("config_json", str(cause)[:200], "PLUGIN_CONFIG_INVALID")]
            ) from None
        raise InvalidArgument(
            [
                FieldViolation(
                    "plugin_name", f"the plugin could not start ({fault.detail})", "PLUGIN_BROKEN"
                )
            ]
        ) from None
    text = json.dumps(config, sort_keys=True)
    with database.atomic():
        if existing is None:
            OrganisationPlugin.create(
                organisation=org.id,
                plugin_name=name,
                config=text,
                state=ENABLED,
                consecutive_faults=0,
                updated_at=clock.now(),
            )
        else:
            OrganisationPlugin.update(
                config=text,
                state=ENABLED,
                consecutive_faults=0,
                fault_reason=None,
                updated_at=clock.now(),
            ).where(
                (OrganisationPlugin.organisation == org.id)
                & (OrganisationPlugin.plugin_name == name)
            ).execute()
        audit.record(principal, f"plugin.enable:{name}", "organisation", org.id)
    host.invalidate(org.id)
    return next(p for p in plugins(principal, host, org.id) if p.name == name)


def disable(
    principal: Principal, host: PluginHost, organisation_id: str, name: str
) -> PluginStatus:
    org = memberships.require_manager(principal, organisation_id)
    with database.atomic():
        removed = (
            OrganisationPlugin.delete()
            .where(
                (OrganisationPlugin.organisation == org.id)
                & (OrganisationPlugin.plugin_name == name)
            )
            .execute()
        )
        if not removed:
            raise FailedPrecondition(
                "PLUGIN_NOT_ENABLED", "the plugin is not enabled for this organisation"
            )
        audit.record(principal, f"plugin.disable:{name}", "organisation", org.id)
    host.invalidate(org.id)
    return next(
        (p for p in plugins(principal, host, org.id) if p.name == name),
        PluginStatus(name, "available", "{}", "", "not installed"),
    )


@dataclass(frozen=True)
class RetentionDecision:
    kind: str
    months: int
    decided_by: str
    applies_to_content_after: dt.datetime | None = None


async def retention_policy(
    principal: Principal, host: PluginHost, organisation_id: str
) -> list[RetentionDecision]:
    """Each kind of content's period, as the organisation's plugins decide within what its
    statement announces. Reading it calls the organisation's plugins, so it is not public."""
    org = memberships.require_manager(principal, organisation_id)
    decisions = []
    for kind in CONTENT_KINDS:
        months, plugin = await host.retention(org.id, kind)
        decisions.append(
            RetentionDecision(kind, months, plugin, longer_since(org.id, kind, months))
        )
    return decisions


async def export_formats(
    principal: Principal, host: PluginHost, organisation_id: str
) -> list[tuple[str, Any]]:
    org = memberships.require_manager(principal, organisation_id)
    return await host.export_formats(org.id)
