"""ConsentService: the ledger, the purposes register and receipts (CON-2 to CON-4, CON-7)."""

from __future__ import annotations

from chatpro.privacy.v1 import consent_service_pb2 as pb
from chatpro.privacy.v1 import consent_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.consent import restrictions
from chatpro_privacy.domain.consent.ledger import Consents
from chatpro_privacy.domain.consent.purposes import register
from chatpro_privacy.domain.consent.receipts import Receipts
from chatpro_privacy.domain.rights.closure import Closure
from chatpro_privacy.services.convert import consent as convert
from chatpro_privacy.services.convert.common import time_field
from chatpro_privacy.services.page_budget import ByteBudget
from chatpro_privacy.services.servicer import Context


class ConsentService(pb_grpc.ConsentServiceServicer):
    def __init__(self, consents: Consents, receipts: Receipts, closure: Closure) -> None:
        self.consents = consents
        self.receipts = receipts
        self.closure = closure

    async def ListPurposes(
        self, request: pb.ListPurposesRequest, context: Context
    ) -> pb.ListPurposesResponse:
        reg = register()
        return pb.ListPurposesResponse(
            register_version=reg.version,
            purposes=[convert.purpose(p) for p in reg.purposes.values()],
            device_data=[convert.device_data_use(d) for d in reg.device_data],
        )

    async def GetLegitimateInterestAssessment(
        self, request: pb.GetLegitimateInterestAssessmentRequest, context: Context
    ) -> pb.GetLegitimateInterestAssessmentResponse:
        reg = register()
        return pb.GetLegitimateInterestAssessmentResponse(
            assessment=convert.assessment(reg.assessed(request.purpose_id)),
            register_version=reg.version,
        )

    async def GrantConsent(
        self, request: pb.GrantConsentRequest, context: Context
    ) -> pb.GrantConsentResponse:
        event = self.consents.grant(
            call.principal.get(), request.purpose_id, request.collection_method
        )
        return pb.GrantConsentResponse(event=convert.consent_event(event))

    async def WithdrawConsent(
        self, request: pb.WithdrawConsentRequest, context: Context
    ) -> pb.WithdrawConsentResponse:
        done = await self.closure.withdraw_consent(
            call.principal.get(), request.purpose_id, request.collection_method
        )
        return pb.WithdrawConsentResponse(
            event=convert.consent_event(done.event),
            services_lost=done.services_lost,
            rights_request_id=done.rights_request_id,
        )

    async def PreviewWithdrawal(
        self, request: pb.PreviewWithdrawalRequest, context: Context
    ) -> pb.PreviewWithdrawalResponse:
        lost, given, closes = self.consents.preview(call.principal.get(), request.purpose_id)
        return pb.PreviewWithdrawalResponse(
            services_lost=lost, currently_given=given, closes_account=closes
        )

    async def GetConsentState(
        self, request: pb.GetConsentStateRequest, context: Context
    ) -> pb.GetConsentStateResponse:
        at = time_field(request, "at_time")
        principal = call.principal.get()
        states, accepted = self.consents.state(principal, request.account_id, at)
        stopped = set() if at else restrictions.objected_purposes(principal, request.account_id)
        shown = {s.purpose.id for s in states}
        return pb.GetConsentStateResponse(
            purposes=[convert.purpose_consent(s, s.purpose.id in stopped) for s in states]
            + [convert.objected_purpose(p) for p in sorted(stopped - shown)],
            accepted_policy_version=accepted,
        )

    async def ListConsentEvents(
        self, request: pb.ListConsentEventsRequest, context: Context
    ) -> pb.ListConsentEventsResponse:
        budget = ByteBudget(convert.consent_event)
        page = self.consents.events(
            call.principal.get(),
            request.account_id,
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListConsentEventsResponse(events=budget.messages, next_page_token=page.next_token)

    async def GetConsentReceipt(
        self, request: pb.GetConsentReceiptRequest, context: Context
    ) -> pb.GetConsentReceiptResponse:
        body, jws, key_id = self.receipts.receipt(call.principal.get())
        return pb.GetConsentReceiptResponse(receipt_json=body, jws=jws, key_id=key_id)

    async def GetReceiptSigningKeys(
        self, request: pb.GetReceiptSigningKeysRequest, context: Context
    ) -> pb.GetReceiptSigningKeysResponse:
        return pb.GetReceiptSigningKeysResponse(jwks_json=self.receipts.signer.jwks())
