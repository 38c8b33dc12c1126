"""What a restriction of processing (RGT-5) or an objection (RGT-4) stops.

While restricted, ChatPro's own processing of the person's data stops: analytics from
device data, disclosures to third parties, statistics. The data is kept. A restriction for
legal claims also holds the data from every deletion (RET-1).

An upheld objection to processing on legitimate interest stops every purpose of the register
that rests on it, each checked where its processing happens (``require_not_objected``):
device records, disclosures on that basis, statistics, direct marketing. An objection to
direct marketing stops that purpose alone, at once.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from chatpro_privacy.domain.consent.purposes import Purpose, register
from chatpro_privacy.domain.kernel import access
from chatpro_privacy.domain.kernel.errors import FailedPrecondition
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.storage import queries
from chatpro_privacy.storage.models import ProcessingObjection, ProcessingRestriction


class RestrictionCase(enum.StrEnum):
    """The four cases in which a person may restrict processing (UK GDPR Art. 18)."""

    ACCURACY_CONTESTED = "accuracy_contested"
    UNLAWFUL_PROCESSING = "unlawful_processing"
    LEGAL_CLAIMS = "legal_claims"  # also holds the data from every deletion
    OBJECTION_PENDING = "objection_pending"


class ObjectionGround(enum.StrEnum):
    LEGITIMATE_INTEREST = "legitimate_interest"  # upheld: every purpose on that basis stops
    DIRECT_MARKETING = "direct_marketing"  # absolute: stops at once, no decision needed


DIRECT_MARKETING = "direct_marketing"  # the purpose of the register an objection stops
RESTRICTED = "restricted"  # in ``standing``: the person's processing is restricted


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


def _grounds_stopping(purpose: Purpose) -> set[str]:
    """The grounds of objection that stop this purpose."""
    grounds: set[str] = set()
    if purpose.rests_on_legitimate_interest:
        grounds.add(ObjectionGround.LEGITIMATE_INTEREST)
    if purpose.id == DIRECT_MARKETING:
        grounds.add(ObjectionGround.DIRECT_MARKETING)
    return grounds


@dataclass(frozen=True)
class Standing:
    """A person's objections' grounds (``RESTRICTED`` among them if their processing is
    restricted) and the newest consent event (type, valid until) of the purposes asked."""

    grounds: frozenset[str]
    consents: dict[str, tuple[str, dt.datetime | None]]


def standing(account_id: str, subject_ref: str, purposes: Sequence[str] = ()) -> Standing:
    """In one round trip (device use is a hot path): the grounds of the person's objections
    in force, and ``RESTRICTED`` among them if their processing is restricted; with the
    newest consent event of each of ``purposes``."""
    read = queries.standing(account_id, subject_ref, purposes)
    grounds = read.grounds | {RESTRICTED} if read.restricted else read.grounds
    return Standing(grounds, read.consents)


def stops(purpose: Purpose, person_standing: frozenset[str]) -> bool:
    """Whether the person's objections, as ``standing`` read them, stop this purpose."""
    return bool(_grounds_stopping(purpose) & person_standing)


def objected_to(account_id: str, purpose: Purpose) -> bool:
    """Whether an objection in force stops this purpose for the person (RGT-4)."""
    grounds = _grounds_stopping(purpose)
    return bool(grounds) and (
        ProcessingObjection.select()
        .where(
            (ProcessingObjection.account == account_id)
            & ProcessingObjection.ground.in_(sorted(grounds))
        )
        .exists()
    )


def objected_purposes(principal: Principal, account_id: str) -> set[str]:
    """The purposes of the register an objection of the person's stops now (RGT-4)."""
    target = access.target_account(principal, account_id)
    return {p.id for p in register().purposes.values() if objected_to(target, p)}


def require_not_objected(account_id: str, purpose: Purpose) -> None:
    """The check where processing for ``purpose`` happens: refused once the person's
    objection to it is in force."""
    if objected_to(account_id, purpose):
        raise FailedPrecondition(
            "PROCESSING_OBJECTED_TO",
            f"the person objected to processing for {purpose.name}",
            {"purpose_id": purpose.id, "account_id": account_id},
        )


def held_for_legal_claims(account_id: str) -> bool:
    return restriction(account_id) == RestrictionCase.LEGAL_CLAIMS
