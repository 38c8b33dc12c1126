"""What a restriction of processing (RGT-5) or an upheld objection (RGT-4) stops.

While restricted, ChatPro's own processing of the person's data stops: analytics from
device data, disclosures to third parties, statistics. The data is kept. A restriction for
legal claims also holds the data from every deletion (RET-1).
"""

from __future__ import annotations

import enum

from chatpro_privacy.domain.kernel.errors import FailedPrecondition
from chatpro_privacy.storage.models import ProcessingObjection, ProcessingRestriction


class RestrictionCase(enum.StrEnum):
    """The four cases in which a person may restrict processing (UK GDPR Art. 18)."""

    ACCURACY_CONTESTED = "accuracy_contested"
    UNLAWFUL_PROCESSING = "unlawful_processing"
    LEGAL_CLAIMS = "legal_claims"  # also holds the data from every deletion
    OBJECTION_PENDING = "objection_pending"


class ObjectionGround(enum.StrEnum):
    LEGITIMATE_INTEREST = "legitimate_interest"  # stops analytics and statistics
    DIRECT_MARKETING = "direct_marketing"


def restriction(account_id: str) -> str | None:
    """The case of the restriction in force, if any."""
    row = ProcessingRestriction.get_or_none(ProcessingRestriction.account == account_id)
    return str(row.restriction_case) if row else None


def require_unrestricted(account_id: str, what: str) -> None:
    if restriction(account_id) is not None:
        raise FailedPrecondition(
            "PROCESSING_RESTRICTED",
            f"the person has restricted the processing of their data: no {what}",
            {"account_id": account_id},
        )


def objected(account_id: str, ground: ObjectionGround) -> bool:
    return (
        ProcessingObjection.select()
        .where((ProcessingObjection.account == account_id) & (ProcessingObjection.ground == ground))
        .exists()
    )


def held_for_legal_claims(account_id: str) -> bool:
    return restriction(account_id) == RestrictionCase.LEGAL_CLAIMS
