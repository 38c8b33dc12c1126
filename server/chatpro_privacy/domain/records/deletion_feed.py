"""The deletion feed (RET-5): what apps must drop from their on-device caches.

Written in the same transaction as the deletion it announces: content past its period, a
member's data erased, a member gone from an organisation. An app reads, after the last
sequence it applied, the entries that concern the person signed in: the erasures of the
organisations they have joined (an invitation not yet accepted shows nothing, ORG-5),
content of conversations they take part in, and their own removals (after which their app
drops the organisation's content altogether).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import defaultdict
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument, PermissionDenied
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.kernel.vocabulary import MembershipState
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import ConversationParticipant, DeletionFeed, Membership

MAX_PAGE = 500
DEFAULT_PAGE = 100


class DeletionReason(enum.StrEnum):
    EXPIRED = "expired"  # content past its retention period
    ERASED = "erased"  # a member's data erased: caches drop what they hold of them
    REMOVED = "removed"  # a member gone from an organisation: they drop its content


@dataclass(frozen=True)
class DeletionView(View):
    seq: int
    reason: DeletionReason
    organisation_id: str
    conversation_id: str | None
    content_ids: list[str]
    account_id: str | None
    created_at: dt.datetime


def content_deleted(
    organisation_id: str, items: list[tuple[str, str]], reason: DeletionReason
) -> None:
    """Inside the deleting transaction: (conversation id, content id) pairs, one entry per
    conversation."""
    if not database.in_transaction():
        raise RuntimeError("the feed is written in the deleting transaction")
    by_conversation: dict[str, list[str]] = defaultdict(list)
    for conversation_id, content_id in items:
        by_conversation[conversation_id].append(content_id)
    now = clock.now()
    DeletionFeed.insert_many(
        [
            {
                "reason": reason,
                "organisation_id": organisation_id,
                "conversation_id": conversation_id,
                "content_ids": ids,
                "account_id": None,
                "created_at": now,
            }
            for conversation_id, ids in sorted(by_conversation.items())
        ]
    ).execute()


def member_gone(organisation_id: str, account_id: str, reason: DeletionReason) -> None:
    """Inside the transaction: drop what the caches hold of this member here (ERASED), or,
    for the member themselves, the organisation's content (REMOVED)."""
    if not database.in_transaction():
        raise RuntimeError("the feed is written in the deleting transaction")
    DeletionFeed.create(
        reason=reason,
        organisation_id=organisation_id,
        conversation_id=None,
        content_ids=[],
        account_id=account_id,
        created_at=clock.now(),
    )


def for_person(principal: Principal, after: int, page_size: int) -> tuple[list[DeletionView], int]:
    if not principal.acts_for_subject or principal.account_id is None:
        raise PermissionDenied("PEOPLE_ONLY", "the feed is for the apps of people signed in")
    problems = []
    if after < 0:
        problems.append(
            FieldViolation(
                "after_sequence", "must be 0 or a sequence from the feed", "OUT_OF_RANGE"
            )
        )
    if not 0 <= page_size <= MAX_PAGE:
        problems.append(FieldViolation("page_size", f"must be 1 to {MAX_PAGE}", "OUT_OF_RANGE"))
    if problems:
        raise InvalidArgument(problems)
    me = principal.account_id
    # ORG-5: only organisations the person has joined; an invitation shows nothing of them.
    organisations = Membership.select(Membership.organisation).where(
        (Membership.account == me) & (Membership.state == MembershipState.ACTIVE)
    )
    conversations = ConversationParticipant.select(ConversationParticipant.conversation).where(
        ConversationParticipant.account == me
    )
    rows = list(
        DeletionFeed.select()
        .where(
            (DeletionFeed.seq > after)
            & (
                (DeletionFeed.account_id == me)
                | (
                    DeletionFeed.organisation_id.in_(organisations)
                    & (
                        DeletionFeed.reason != DeletionReason.REMOVED
                    )  # a removal concerns its member alone
                    & (
                        DeletionFeed.conversation_id.is_null()
                        | DeletionFeed.conversation_id.in_(conversations)
                    )
                )
            )
        )
        .order_by(DeletionFeed.seq)
        .limit(page_size or DEFAULT_PAGE)
    )
    last = rows[-1].seq if rows else after
    return [DeletionView.from_row(r) for r in rows], int(last)
