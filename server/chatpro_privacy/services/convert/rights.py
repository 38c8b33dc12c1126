"""Rights requests <-> rights.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import rights_pb2

from chatpro_privacy.domain.consent.restrictions import ObjectionGround, RestrictionCase
from chatpro_privacy.domain.kernel.vocabulary import RequestChannel, RequestState, RequestType
from chatpro_privacy.domain.rights import workflow as rights
from chatpro_privacy.domain.rights.lifting import RestrictionView
from chatpro_privacy.domain.rights.workflow import RequestView
from chatpro_privacy.services.convert.common import calendar_date, timestamp

TYPES = {
    rights_pb2.RIGHTS_REQUEST_TYPE_ACCESS: RequestType.ACCESS,
    rights_pb2.RIGHTS_REQUEST_TYPE_PORTABILITY: RequestType.PORTABILITY,
    rights_pb2.RIGHTS_REQUEST_TYPE_RECTIFICATION: RequestType.RECTIFICATION,
    rights_pb2.RIGHTS_REQUEST_TYPE_ERASURE: RequestType.ERASURE,
    rights_pb2.RIGHTS_REQUEST_TYPE_RESTRICTION: RequestType.RESTRICTION,
    rights_pb2.RIGHTS_REQUEST_TYPE_OBJECTION: RequestType.OBJECTION,
    rights_pb2.RIGHTS_REQUEST_TYPE_WITHDRAWAL_OF_CONSENT: RequestType.WITHDRAWAL_OF_CONSENT,
}
STATES = {
    rights_pb2.RIGHTS_REQUEST_STATE_RECEIVED: RequestState.RECEIVED,
    rights_pb2.RIGHTS_REQUEST_STATE_IDENTITY_VERIFICATION: RequestState.IDENTITY_VERIFICATION,
    rights_pb2.RIGHTS_REQUEST_STATE_IN_PROGRESS: RequestState.IN_PROGRESS,
    rights_pb2.RIGHTS_REQUEST_STATE_AWAITING_ORGANISATION: RequestState.AWAITING_ORGANISATION,
    rights_pb2.RIGHTS_REQUEST_STATE_COMPLETED: RequestState.COMPLETED,
    rights_pb2.RIGHTS_REQUEST_STATE_PARTIALLY_COMPLETED: RequestState.PARTIALLY_COMPLETED,
    rights_pb2.RIGHTS_REQUEST_STATE_REFUSED: RequestState.REFUSED,
    rights_pb2.RIGHTS_REQUEST_STATE_CANCELLED: RequestState.CANCELLED,
}
# Keyed by the stored text, which each member equals.
CHANNELS: dict[str, rights_pb2.RightsRequestChannel.ValueType] = {
    RequestChannel.PERSON: rights_pb2.RIGHTS_REQUEST_CHANNEL_PERSON,
    RequestChannel.GUARDIAN: rights_pb2.RIGHTS_REQUEST_CHANNEL_GUARDIAN,
    RequestChannel.CORRESPONDENCE: rights_pb2.RIGHTS_REQUEST_CHANNEL_CORRESPONDENCE,
}
CASES = {
    rights_pb2.RESTRICTION_CASE_ACCURACY_CONTESTED: RestrictionCase.ACCURACY_CONTESTED,
    rights_pb2.RESTRICTION_CASE_UNLAWFUL_PROCESSING: RestrictionCase.UNLAWFUL_PROCESSING,
    rights_pb2.RESTRICTION_CASE_LEGAL_CLAIMS: RestrictionCase.LEGAL_CLAIMS,
    rights_pb2.RESTRICTION_CASE_OBJECTION_PENDING: RestrictionCase.OBJECTION_PENDING,
}
GROUNDS = {
    rights_pb2.OBJECTION_GROUND_LEGITIMATE_INTEREST: ObjectionGround.LEGITIMATE_INTEREST,
    rights_pb2.OBJECTION_GROUND_DIRECT_MARKETING: ObjectionGround.DIRECT_MARKETING,
}
TYPE_VALUES: dict[str, rights_pb2.RightsRequestType.ValueType] = {v: k for k, v in TYPES.items()}
STATE_VALUES: dict[str, rights_pb2.RightsRequestState.ValueType] = {v: k for k, v in STATES.items()}
CASE_VALUES: dict[str, rights_pb2.RestrictionCase.ValueType] = {v: k for k, v in CASES.items()}
GROUND_VALUES: dict[str, rights_pb2.ObjectionGround.ValueType] = {v: k for k, v in GROUNDS.items()}


def rights_request(view: RequestView) -> rights_pb2.RightsRequest:
    r = view.row
    return rights_pb2.RightsRequest(
        rights_request_id=r.id,
        account_id=r.account_id or "",
        type=TYPE_VALUES[r.type],
        state=STATE_VALUES[r.state],
        channel=CHANNELS[r.channel],
        details=r.details,
        receive_time=timestamp(r.received_at),
        due_date=calendar_date(r.due_date),
        extension_months=r.extension_months,
        extension_reason=r.extension_reason,
        identity_method=r.identity_method,
        identity_evidence=r.identity_evidence,
        refusal_reason=r.refusal_reason,
        complaint_notice=rights.COMPLAINT_NOTICE if r.state == RequestState.REFUSED else "",
        corrections=[
            rights_pb2.Correction(field=name, value=value) for name, value in r.corrections
        ],
        restriction_case=CASE_VALUES.get(r.restriction_case, 0),  # type: ignore[arg-type]
        objection_ground=GROUND_VALUES.get(r.objection_ground, 0),  # type: ignore[arg-type]
        purpose_id=r.purpose_id,
        recipient_id=r.recipient_id,
        organisation_parts=[
            rights_pb2.OrganisationPart(
                organisation_id=p.organisation_id,
                answered=bool(p.answered),
                decision=p.decision,
                reason=p.reason,
                decided_by=p.decided_by,
                answer_time=timestamp(p.answered_at),
            )
            for p in view.organisations
        ],
        kept_parts=[
            rights_pb2.KeptPart(what=k.what, reason=k.reason, decided_by=k.decided_by)
            for k in view.kept
        ],
        history=[
            rights_pb2.RightsRequestEvent(
                from_state=STATE_VALUES.get(e.from_state, 0),  # type: ignore[arg-type]
                to_state=STATE_VALUES[e.to_state],
                actor=e.actor,
                note=e.note,
                event_time=timestamp(e.created_at),
            )
            for e in view.history
        ],
        outcome=r.outcome,
    )


def restriction(view: RestrictionView) -> rights_pb2.Restriction:
    return rights_pb2.Restriction(
        account_id=view.account_id,
        restriction_case=CASE_VALUES.get(
            view.restriction_case, rights_pb2.RESTRICTION_CASE_UNSPECIFIED
        ),
        rights_request_id=view.rights_request_id,
        create_time=timestamp(view.created_at),
        lift_reason=view.lift_reason,
        lift_request_time=timestamp(view.lift_requested_at),
        lifted=view.lifted,
    )


def listed_rights_request(message: rights_pb2.RightsRequest) -> rights_pb2.RightsRequest:
    """A request too large for a page of a list, listed without its corrections and history
    (its state, dates and parts stay; GetRightsRequest reads the whole of it)."""
    listed = rights_pb2.RightsRequest()
    listed.CopyFrom(message)
    listed.ClearField("corrections")
    listed.ClearField("history")
    return listed
