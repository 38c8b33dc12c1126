"""Portability to a third party reaches it (RGT-6, SEC-1, SEC-2).

A portability request may name a registered recipient (checked at intake: in the EEA or UK,
with the person's consent to share with its category, and with an internal service to fetch
with). When the export is ready, a single-use grant is recorded and the outbox hands its token
(``PortabilityExportReady``) to the notification service, which passes it to the recipient.
The recipient's own service credential and the token together fetch the export once: the
transfer is checked again (a consent withdrawn since stops it), the grant is spent and the
disclosure logged in one transaction before the first byte goes. The token itself is never
stored: it is an HMAC of the grant's id under the secret key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent import disclosures as disclosure_rules
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, PermissionDenied
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.tokens import ConfirmationKind, ConfirmationTokens, new_id
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.domain.rights.organisations import PartDecision
from chatpro_privacy.domain.rights.workflow import UNANSWERED, Workflow
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    ExportGrant,
    Recipient,
    RightsRequest,
    RightsRequestOrganisation,
)

# The export the state machine streams: (request, format, withheld parts by organisation).
Exporter = Callable[[RightsRequest, str, dict[str, str]], AsyncIterator[Any]]


def grant_to_recipient(row: RightsRequest, lifetime: dt.timedelta) -> None:
    """Inside the transaction that makes the export ready: the recipient's grant, and the
    outbox event that hands it over."""
    now = clock.now()
    grant = ExportGrant.create(
        id=new_id(),
        rights_request=row.id,
        recipient=row.recipient_id,
        created_at=now,
        expires_at=now + lifetime,
    )
    outbox.emit(outbox.PORTABILITY_EXPORT_READY, None, grant_id=grant.id)


def withheld_parts(parts: list[RightsRequestOrganisation]) -> dict[str, str]:
    """What an export leaves out, by organisation, and why: the parts withheld, and those
    not answered (RGT-8)."""
    return {
        p.organisation_id: p.reason if p.answered else UNANSWERED
        for p in parts
        if p.decision == PartDecision.WITHHELD or not p.answered
    }


class Delivery(Workflow):
    """``FetchPortabilityExport``: the recipient's one fetch."""

    grants: ConfirmationTokens | None
    exporter: Exporter | None

    def _grant(self, principal: Principal, token: str) -> tuple[ExportGrant, Recipient]:
        """The grant the token names, if the caller is its recipient's service."""
        if not principal.is_service:
            raise PermissionDenied(
                "RECIPIENT_SERVICE_ONLY", "a third party fetches with its own service credential"
            )
        if self.grants is None or self.exporter is None:
            raise FailedPrecondition("EXPORT_UNAVAILABLE", "exports are not configured")
        grant_id = self.grants.open(ConfirmationKind.EXPORT_GRANT, token, "grant_token")
        grant = ExportGrant.get_or_none(ExportGrant.id == grant_id)
        if grant is None:
            raise FailedPrecondition("GRANT_INVALID", "the grant no longer exists")
        recipient = Recipient.get_by_id(grant.recipient_id)
        if recipient.service_name != principal.service_name:
            raise PermissionDenied(
                "NOT_THE_RECIPIENT", "the export goes to the recipient the person chose"
            )
        return grant, recipient

    @staticmethod
    def _spend(principal: Principal, grant: ExportGrant, recipient: Recipient) -> None:
        """Spend the grant and log the disclosure, in one transaction, before a byte goes."""
        with database.atomic():
            spent = (
                ExportGrant.update(used_at=clock.now())
                .where(
                    (ExportGrant.id == grant.id)
                    & ExportGrant.used_at.is_null()
                    & (ExportGrant.expires_at > clock.now())
                )
                .execute()
            )
            if not spent:
                fresh = ExportGrant.get_by_id(grant.id)
                if fresh.used_at is not None:
                    raise FailedPrecondition("GRANT_USED", "the export was fetched already")
                raise FailedPrecondition("GRANT_EXPIRED", "the grant has expired")
            row = RightsRequest.get_by_id(grant.rights_request_id)
            # Checked again now: a consent withdrawn since stops the transfer (SEC-2).
            disclosure_rules.record_portability(principal, recipient.id, row.subject_ref, row.id)
            audit.record(
                principal, "rights.export.fetch", "rights_request", row.id, row.subject_ref
            )

    async def fetch_for_recipient(
        self, principal: Principal, token: str, format_name: str
    ) -> AsyncIterator[Any]:
        grant, recipient = self._grant(principal, token)
        row = self._load(grant.rights_request_id)
        assert self.exporter is not None  # checked by _grant
        chunks = self.exporter(
            row, format_name or "json", withheld_parts(self.view(row).organisations)
        )
        first = await anext(chunks)  # a bad format fails here, before the grant is spent
        self._spend(principal, grant, recipient)
        yield first
        async for chunk in chunks:
            yield chunk
