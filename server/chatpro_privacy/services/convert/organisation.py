"""Organisations, statements, plugins, memberships and retention periods -> organisation.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import organisation_pb2

from chatpro_privacy.domain.kernel.vocabulary import MemberRole, MembershipState
from chatpro_privacy.domain.organisations import (
    memberships,
    organisations,
    plugin_settings,
    retention_periods,
    statements,
)
from chatpro_privacy.services.convert.common import timestamp

PLUGIN_STATES = {
    plugin_settings.PluginState.AVAILABLE: organisation_pb2.PLUGIN_STATE_AVAILABLE,
    plugin_settings.PluginState.ENABLED: organisation_pb2.PLUGIN_STATE_ENABLED,
    plugin_settings.PluginState.FAULTED: organisation_pb2.PLUGIN_STATE_FAULTED,
}
# Keyed by the stored text, which each member equals.
MEMBER_ROLES: dict[str, organisation_pb2.MemberRole.ValueType] = {
    MemberRole.MEMBER: organisation_pb2.MEMBER_ROLE_MEMBER,
    MemberRole.ADMINISTRATOR: organisation_pb2.MEMBER_ROLE_ADMINISTRATOR,
}
MEMBER_ROLE_NAMES = {v: k for k, v in MEMBER_ROLES.items()}
MEMBERSHIP_STATES: dict[str, organisation_pb2.MembershipState.ValueType] = {
    MembershipState.INVITED: organisation_pb2.MEMBERSHIP_STATE_INVITED,
    MembershipState.ACTIVE: organisation_pb2.MEMBERSHIP_STATE_ACTIVE,
}


def organisation(o: organisations.OrganisationView) -> organisation_pb2.Organisation:
    return organisation_pb2.Organisation(
        organisation_id=o.id,
        name=o.name,
        privacy_contact_email=o.privacy_contact_email,
        create_time=timestamp(o.created_at),
    )


def statement(s: statements.StatementView) -> organisation_pb2.OrganisationStatement:
    return organisation_pb2.OrganisationStatement(
        organisation_id=s.organisation_id,
        version=s.version,
        text=s.text,
        text_sha256=s.text_sha256,
        retention_months=s.retention_months,
        effective_time=timestamp(s.effective_at),
        requires_reacknowledgement=bool(s.requires_reacknowledgement),
    )


def plugin_status(p: plugin_settings.PluginStatus) -> organisation_pb2.OrganisationPlugin:
    return organisation_pb2.OrganisationPlugin(
        plugin_name=p.name,
        state=PLUGIN_STATES[p.state],
        config_json=p.config,
        fault_reason=p.fault_reason,
        distribution=p.distribution,
        position=p.position,
    )


def membership(m: memberships.MembershipView) -> organisation_pb2.Membership:
    return organisation_pb2.Membership(
        organisation_id=m.organisation_id,
        account_id=m.account_id,
        role=MEMBER_ROLES[m.role],
        state=MEMBERSHIP_STATES[m.state],
        acknowledged_statement_version=m.statement_version or "",
        join_time=timestamp(m.joined_at),
        acknowledgement_required_version=m.acknowledgement_required or "",
    )


def retention_period(d: retention_periods.RetentionDecision) -> organisation_pb2.RetentionPeriod:
    return organisation_pb2.RetentionPeriod(
        content_kind=d.kind,
        months=d.months,
        decided_by=d.decided_by,
        applies_to_content_after=timestamp(d.applies_to_content_after),
    )
