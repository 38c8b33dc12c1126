"""Breaches and their notices <-> breach_service.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import breach_service_pb2 as pb

from chatpro_privacy.domain.compliance import breaches
from chatpro_privacy.services.convert.common import timestamp

# Keyed by the stored text, which each member equals.
RISKS: dict[str, pb.BreachRisk.ValueType] = {
    breaches.BreachRisk.LOW: pb.BREACH_RISK_LOW,
    breaches.BreachRisk.MEDIUM: pb.BREACH_RISK_MEDIUM,
    breaches.BreachRisk.HIGH: pb.BREACH_RISK_HIGH,
}
RISK_NAMES = {v: k for k, v in RISKS.items()}


def breach(v: breaches.BreachView) -> pb.Breach:
    b = v.breach
    return pb.Breach(
        breach_id=b.id,
        summary=b.summary,
        known_time=timestamp(b.known_at),
        deadline_time=timestamp(b.deadline_at),
        risk=RISKS.get(b.risk or "", pb.BREACH_RISK_UNSPECIFIED),
        data_categories=b.data_categories,
        people_affected=v.people_affected,
        organisation_ids=v.organisation_ids,
        regulator_notification_required=v.regulator_required,
        regulator_notify_time=timestamp(b.regulator_notified_at),
        regulator_reference=b.regulator_reference or "",
        deadline_met=v.deadline_met,
        close_time=timestamp(b.closed_at),
        notices=[
            pb.BreachNotice(
                kind=n.kind,
                target=n.target,
                outbox_sequence=n.outbox_seq,
                create_time=timestamp(n.created_at),
            )
            for n in v.notices
        ],
    )
