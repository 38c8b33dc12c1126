"""Withdrawing consent at any time (RGT-7, ACC-1), the consent the account rests on included.

Withdrawing consent to a purpose stops that purpose (``consent.ledger``). Withdrawing the
consent to the policy, on which the account itself rests, closes the account at once, in one
transaction: the withdrawal in the ledger, the account closed (no sign-in), every session
revoked (the person's and a guardian's), and an erasure request recorded with the signed-in
person as its requester. Nothing waits for an identity check: the session that withdrew is
the evidence. The request then runs as any erasure does, each organisation deciding about
its content; ChatPro itself keeps nothing back, since the person asked for none of it to be
kept and no decision of the data privacy manager stands between them and the erasure.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.kernel.errors import PermissionDenied
from chatpro_privacy.domain.kernel.principals import Principal, PrincipalKind
from chatpro_privacy.domain.kernel.vocabulary import (
    AccountState,
    RequestChannel,
    RequestState,
    RequestType,
)
from chatpro_privacy.domain.records import audit
from chatpro_privacy.domain.rights.intake import (
    MAX_DETAILS,
    Intake,
    NewRequest,
    request_violations,
)
from chatpro_privacy.domain.rights.workflow import RequestStep, RequestView
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, Session

CLOSURE_DETAILS = "consent to the privacy policy withdrawn: the account is closed and erased"


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawal's event, the services no longer provided, and, when it closed the
    account, the erasure request that carries its data away."""

    event: consent.ConsentEventView
    services_lost: list[str]
    rights_request_id: str = ""


class Closure(Intake):
    """``WithdrawConsent``: any purpose; the policy's closes the account."""

    async def withdraw_consent(
        self, principal: Principal, purpose_id: str, method: str
    ) -> Withdrawal:
        if purpose_id != consent.PURPOSE_POLICY:
            event, lost = self.consents.withdraw(principal, purpose_id, method)
            return Withdrawal(event, lost)
        return await self._close(
            principal, method, NewRequest(RequestType.ERASURE, CLOSURE_DETAILS)
        )

    async def create(self, principal: Principal, r: NewRequest) -> RequestView:
        """A withdrawal of consent to the policy made as a rights request by the person
        signed in (or a guardian) closes the account as ``WithdrawConsent`` does; the request
        returned is the erasure that follows. From correspondence, the data privacy manager
        enters an erasure request instead, which waits for the requester's identity."""
        own = principal.acts_for_subject and r.account_id in ("", principal.account_id)
        if not (
            own
            and r.type == RequestType.WITHDRAWAL_OF_CONSENT
            and r.purpose_id == consent.PURPOSE_POLICY
        ):
            return await super().create(principal, r)
        self._subject(principal, r)
        request_violations(r).raise_if_any()
        # No replay by request_id: the closure revokes the session a retry would come from.
        details = (CLOSURE_DETAILS + "; " + r.details)[:MAX_DETAILS]
        erasure = NewRequest(RequestType.ERASURE, details, request_id=r.request_id)
        closed = await self._close(principal, "rights_request", erasure)
        return self.view(self._load(closed.rights_request_id))

    async def _close(self, principal: Principal, method: str, erasure: NewRequest) -> Withdrawal:
        if principal.account_id is None or not principal.acts_for_subject:
            raise PermissionDenied("PEOPLE_ONLY", "only the person (or a guardian) withdraws")
        with database.atomic():
            event, lost = self.consents.withdraw_policy(principal, method)
            account = Account.get_by_id(principal.account_id)
            now = clock.now()
            Account.update(state=AccountState.CLOSED).where(Account.id == account.id).execute()
            Session.update(revoked_at=now).where(
                (Session.account == account.id) & Session.revoked_at.is_null()
            ).execute()
            channel = RequestChannel.GUARDIAN if principal.is_guardian else RequestChannel.PERSON
            row = self._received(principal, account, channel, erasure)
            self._move(
                row,
                RequestState.IN_PROGRESS,
                PrincipalKind.SYSTEM,
                "account closed at once; its data goes as an erasure would, each organisation "
                "deciding about its content",
                step=RequestStep.ORGANISATIONS,
                purpose_id=consent.PURPOSE_POLICY,
                identity_method="signed-in session",
                identity_evidence="consent to the policy withdrawn from a signed-in session",
            )
            audit.record(principal, "account.close", "account", account.id, account.subject_ref)
        await self.advance(row.id)
        return Withdrawal(event, lost, row.id)
