"""Rights requests <-> rights.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import rights_pb2

from chatpro_privacy.domain.rights import workflow as rights
from chatpro_privacy.domain.rights.workflow import RequestView
from chatpro_privacy.services.convert.common import calendar_date, timestamp

TYPES = {
    rights_pb2.RIGHTS_REQUEST_TYPE_ACCESS: rights.ACCESS,
    rights_pb2.RIGHTS_REQUEST_TYPE_PORTABILITY: rights.PORTABILITY,
    rights_pb2.RIGHTS_REQUEST_TYPE_RECTIFICATION: rights.RECTIFICATION,
    rights_pb2.RIGHTS_REQUEST_TYPE_ERASURE: rights.ERASURE,
    rights_pb2.RIGHTS_REQUEST_TYPE_RESTRICTION: rights.RESTRICTION,
    rights_pb2.RIGHTS_REQUEST_TYPE_OBJECTION: rights.OBJECTION,
    rights_pb2.RIGHTS_REQUEST_TYPE_WITHDRAWAL_OF_CONSENT: rights.WITHDRAWAL,
}
STATES = {
    rights_pb2.RIGHTS_REQUEST_STATE_RECEIVED: rights.RECEIVED,
    rights_pb2.RIGHTS_REQUEST_STATE_IDENTITY_VERIFICATION: rights.IDENTITY_VERIFICATION,
    rights_pb2.RIGHTS_REQUEST_STATE_IN_PROGRESS: rights.IN_PROGRESS,
    rights_pb2.RIGHTS_REQUEST_STATE_AWAITING_ORGANISATION: rights.AWAITING_ORGANISATION,
    rights_pb2.RIGHTS_REQUEST_STATE_COMPLETED: rights.COMPLETED,
    rights_pb2.RIGHTS_REQUEST_STATE_PARTIALLY_COMPLETED: rights.PARTIALLY_COMPLETED,
    rights_pb2.RIGHTS_REQUEST_STATE_REFUSED: rights.REFUSED,
    rights_pb2.RIGHTS_REQUEST_STATE_CANCELLED: rights.CANCELLED,
}
CHANNELS = {
    "person": rights_pb2.RIGHTS_REQUEST_CHANNEL_PERSON,
    "guardian": rights_pb2.RIGHTS_REQUEST_CHANNEL_GUARDIAN,
    "correspondence": rights_pb2.RIGHTS_REQUEST_CHANNEL_CORRESPONDENCE,
}
CASES = {
    rights_pb2.RESTRICTION_CASE_ACCURACY_CONTESTED: "accuracy_contested",
    rights_pb2.RESTRICTION_CASE_UNLAWFUL_PROCESSING: "unlawful_processing",
    rights_pb2.RESTRICTION_CASE_LEGAL_CLAIMS: "legal_claims",
    rights_pb2.RESTRICTION_CASE_OBJECTION_PENDING: "objection_pending",
}
GROUNDS = {
    rights_pb2.OBJECTION_GROUND_LEGITIMATE_INTEREST: "legitimate_interest",
    rights_pb2.OBJECTION_GROUND_DIRECT_MARKETING: "direct_marketing",
}
TYPE_VALUES = {v: k for k, v in TYPES.items()}
STATE_VALUES = {v: k for k, v in STATES.items()}
CASE_VALUES = {v: k for k, v in CASES.items()}
GROUND_VALUES = {v: k for k, v in GROUNDS.items()}


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
        complaint_notice=rights.COMPLAINT_NOTICE if r.state == rights.REFUSED else "",
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
