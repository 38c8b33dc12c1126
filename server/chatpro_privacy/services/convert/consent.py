"""Purposes, consent events, recipients and disclosures -> consent.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import consent_pb2

from chatpro_privacy.domain.consent import disclosures, purposes
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.services.convert.common import timestamp

# Keyed by the stored text, which each member equals.
LAWFUL_BASES: dict[str, consent_pb2.LawfulBasis.ValueType] = {
    purposes.LawfulBasis.CONSENT: consent_pb2.LAWFUL_BASIS_CONSENT,
    purposes.LawfulBasis.CONTRACT: consent_pb2.LAWFUL_BASIS_CONTRACT,
    purposes.LawfulBasis.LEGITIMATE_INTEREST: consent_pb2.LAWFUL_BASIS_LEGITIMATE_INTEREST,
    purposes.LawfulBasis.LEGAL_OBLIGATION: consent_pb2.LAWFUL_BASIS_LEGAL_OBLIGATION,
    purposes.LawfulBasis.ORGANISATION: consent_pb2.LAWFUL_BASIS_ORGANISATION,
}
LAWFUL_BASIS_NAMES = {v: k for k, v in LAWFUL_BASES.items()}
CONSENT_EVENT_TYPES: dict[str, consent_pb2.ConsentEventType.ValueType] = {
    consent.ConsentEventType.GIVEN: consent_pb2.CONSENT_EVENT_TYPE_GIVEN,
    consent.ConsentEventType.WITHDRAWN: consent_pb2.CONSENT_EVENT_TYPE_WITHDRAWN,
    consent.ConsentEventType.RENEWED: consent_pb2.CONSENT_EVENT_TYPE_RENEWED,
    consent.ConsentEventType.EXPIRED: consent_pb2.CONSENT_EVENT_TYPE_EXPIRED,
    consent.ConsentEventType.ACKNOWLEDGED: consent_pb2.CONSENT_EVENT_TYPE_ACKNOWLEDGED,
}
CONSENT_ACTORS: dict[str, consent_pb2.ConsentActor.ValueType] = {
    consent.ConsentActor.PERSON: consent_pb2.CONSENT_ACTOR_PERSON,
    consent.ConsentActor.GUARDIAN: consent_pb2.CONSENT_ACTOR_GUARDIAN,
}
CONSENT_STATUSES = {
    consent.ConsentStatus.GIVEN: consent_pb2.CONSENT_STATUS_GIVEN,
    consent.ConsentStatus.WITHDRAWN: consent_pb2.CONSENT_STATUS_WITHDRAWN,
    consent.ConsentStatus.NOT_GIVEN: consent_pb2.CONSENT_STATUS_NOT_GIVEN,
}


def lawful_basis(name: str) -> consent_pb2.LawfulBasis.ValueType:
    return LAWFUL_BASES.get(name, consent_pb2.LAWFUL_BASIS_UNSPECIFIED)


def purpose(p: purposes.Purpose) -> consent_pb2.Purpose:
    return consent_pb2.Purpose(
        purpose_id=p.id,
        name=p.name,
        lawful_basis=LAWFUL_BASES[p.lawful_basis],
        data_categories=list(p.data_categories),
        services_lost_on_withdrawal=list(p.services_lost_on_withdrawal),
        third_party_category=p.third_party_category,
        consent_required=p.rests_on_consent,
    )


def consent_event(e: consent.ConsentEventView) -> consent_pb2.ConsentEvent:
    return consent_pb2.ConsentEvent(
        record_id=e.id,
        subject_id=e.subject_ref,
        notice_version=e.notice_version,
        purpose_id=e.purpose,
        lawful_basis=lawful_basis(e.lawful_basis),
        data_categories=e.data_categories,
        collection_method=e.collection_method,
        event_type=CONSENT_EVENT_TYPES.get(
            e.event_type, consent_pb2.CONSENT_EVENT_TYPE_UNSPECIFIED
        ),
        event_time=timestamp(e.occurred_at),
        valid_until=timestamp(e.valid_until),
        actor=CONSENT_ACTORS.get(e.given_by, consent_pb2.CONSENT_ACTOR_UNSPECIFIED),
    )


def assessment(p: purposes.Purpose) -> consent_pb2.LegitimateInterestAssessment:
    assert p.assessment is not None  # Register.assessed gives only assessed purposes
    return consent_pb2.LegitimateInterestAssessment(
        purpose_id=p.id,
        name=p.name,
        interest=p.assessment.interest,
        necessity=p.assessment.necessity,
        balance=p.assessment.balance,
    )


def device_data_use(d: purposes.DeviceDataUse) -> consent_pb2.DeviceDataUse:
    return consent_pb2.DeviceDataUse(
        field_name=d.field,
        technology=d.technology,
        strictly_necessary=d.need == purposes.DeviceNeed.STRICTLY_NECESSARY,
        purpose_id=d.purpose_id,
        why=d.why,
    )


def purpose_consent(
    state: consent.PurposeState, objected: bool = False
) -> consent_pb2.PurposeConsent:
    event = state.event
    return consent_pb2.PurposeConsent(
        objected=objected,
        purpose_id=state.purpose.id,
        status=CONSENT_STATUSES[state.status],
        record_id=event.id if event else "",
        since_time=timestamp(event.occurred_at) if event else None,
        notice_version=event.notice_version if event else "",
    )


def recipient(r: disclosures.RecipientView) -> consent_pb2.Recipient:
    return consent_pb2.Recipient(
        recipient_id=r.id,
        name=r.name,
        category=r.category,
        country_code=r.country_code,
        lawful_basis=lawful_basis(r.lawful_basis),
        create_time=timestamp(r.created_at),
    )


def disclosure(d: disclosures.DisclosureView) -> consent_pb2.Disclosure:
    return consent_pb2.Disclosure(
        disclosure_id=d.id,
        recipient_id=d.recipient_id,
        subject_id=d.subject_ref,
        data_categories=d.data_categories,
        lawful_basis=lawful_basis(d.lawful_basis),
        disclose_time=timestamp(d.disclosed_at),
        reason=d.reason,
    )


def objected_purpose(purpose_id: str) -> consent_pb2.PurposeConsent:
    """A purpose not resting on consent that the person's objection stops (RGT-4)."""
    return consent_pb2.PurposeConsent(
        purpose_id=purpose_id, status=consent_pb2.CONSENT_STATUS_NOT_GIVEN, objected=True
    )
