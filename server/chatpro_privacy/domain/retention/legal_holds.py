"""Legal holds (RET-1): an organisation's administrators keep a member's content or a
conversation past its retention period, with a reason, until they release it; the next
sweep then deletes what is overdue. A dry run tells how many items a new period would
delete before it is set."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.content import content_access
from chatpro_privacy.domain.kernel import validation
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, NotFound, Violations
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.organisations import memberships
from chatpro_privacy.domain.organisations.retention_periods import Retention, segments, served_under
from chatpro_privacy.domain.records import audit
from chatpro_privacy.plugin.types import ContentKind
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, ContentItem, Conversation, LegalHold


@dataclass(frozen=True)
class LegalHoldView(View):
    """A hold as administrators see it: the pseudonym it names and who placed or released it
    stay here."""

    id: str
    organisation_id: str
    account_id: str | None
    conversation_id: str | None
    reason: str
    placed_at: dt.datetime
    released_at: dt.datetime | None


def under_hold(organisation_id: str) -> Any:
    """A condition on ContentItem: under one of the organisation's holds still in force, on
    its author (by pseudonym, so that it outlives the account) or on its conversation."""
    active = (LegalHold.organisation == organisation_id) & LegalHold.released_at.is_null()
    people = LegalHold.select(LegalHold.subject_ref).where(
        active & LegalHold.subject_ref.is_null(False)
    )
    conversations = LegalHold.select(LegalHold.conversation).where(
        active & LegalHold.conversation.is_null(False)
    )
    return ContentItem.author_ref.in_(people) | ContentItem.conversation.in_(conversations)


def place(
    principal: Principal,
    organisation_id: str,
    account_id: str,
    conversation_id: str,
    reason: str,
) -> LegalHoldView:
    org_id = content_access.administered(principal, organisation_id)
    v = Violations()
    why = validation.required_text(v, "reason", reason, 500)
    if bool(account_id) == bool(conversation_id):
        v.add("account_id", "name a member or a conversation, not both", "ONE_TARGET")
    v.raise_if_any()
    subject_ref = None
    if account_id:
        if memberships.membership(org_id, account_id) is None:
            raise NotFound("MEMBER_NOT_FOUND", "no such member", {"account_id": account_id[:64]})
        subject_ref = Account.get_by_id(account_id).subject_ref
    elif not (
        Conversation.select()
        .where((Conversation.id == conversation_id[:64]) & (Conversation.organisation == org_id))
        .exists()
    ):
        raise NotFound(
            "CONVERSATION_NOT_FOUND",
            "no such conversation",
            {"conversation_id": conversation_id[:64]},
        )
    with database.atomic():
        hold = LegalHold.create(
            id=new_id(),
            organisation=org_id,
            subject_ref=subject_ref,
            account=account_id or None,
            conversation=conversation_id or None,
            reason=why,
            placed_by=principal.audit_ref,
            placed_at=clock.now(),
        )
        audit.record(principal, "legal_hold.place", "organisation", org_id, subject_ref)
    return LegalHoldView.from_row(hold)


def release(principal: Principal, organisation_id: str, legal_hold_id: str) -> LegalHoldView:
    org_id = content_access.administered(principal, organisation_id)
    hold = LegalHold.get_or_none(
        (LegalHold.id == legal_hold_id[:64]) & (LegalHold.organisation == org_id)
    )
    if hold is None:
        raise NotFound(
            "LEGAL_HOLD_NOT_FOUND", "no such legal hold", {"legal_hold_id": legal_hold_id[:64]}
        )
    if hold.released_at is not None:
        raise FailedPrecondition("LEGAL_HOLD_RELEASED", "the hold was released already")
    with database.atomic():
        LegalHold.update(released_at=clock.now(), released_by=principal.audit_ref).where(
            LegalHold.id == hold.id
        ).execute()
        audit.record(
            principal, "legal_hold.release", "organisation", hold.organisation_id, hold.subject_ref
        )
    return LegalHoldView.from_row(LegalHold.get_by_id(hold.id))


def holds(principal: Principal, organisation_id: str) -> list[LegalHoldView]:
    org_id = content_access.administered(principal, organisation_id)
    rows = (
        LegalHold.select()
        .where(LegalHold.organisation == org_id)
        .order_by(LegalHold.placed_at.desc(), LegalHold.id)
    )
    return [LegalHoldView.from_row(r) for r in rows]


@dataclass(frozen=True)
class Preview:
    would_delete: int
    would_keep: int
    due_now: int


async def preview(
    principal: Principal,
    retention: Retention,
    organisation_id: str,
    kind: str,
    months: int,
) -> Preview:
    """A dry run: what a sweep would delete now if ``kind`` were kept ``months``."""
    org_id = content_access.administered(principal, organisation_id)
    v = Violations()
    if kind not in set(ContentKind):
        v.add("content_kind", "must be message or call_recording", "UNKNOWN_CONTENT_KIND")
    if not 1 <= months <= 120:
        v.add("months", "must be 1 to 120", "OUT_OF_RANGE")
    v.raise_if_any()
    content_kind = ContentKind(kind)
    now = clock.now()
    considered = ~served_under(segments(org_id, content_kind, months), now)
    due = await retention.expired(org_id, now)
    base = ContentItem.select().where(
        (ContentItem.organisation == org_id) & (ContentItem.kind == content_kind) & considered
    )
    kept = base.where(under_hold(org_id)).count()
    total = base.count()
    due_now = (
        ContentItem.select()
        .where((ContentItem.organisation == org_id) & (ContentItem.kind == content_kind) & due)
        .count()
    )
    return Preview(total - kept, kept, due_now)
