"""Conversations (ORG-2): individual or group, two-way or broadcast, among the active
members of one organisation, which controls their content."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.content import content_access
from chatpro_privacy.domain.kernel import paging
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument, Violations
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.kernel.vocabulary import MembershipState
from chatpro_privacy.domain.records import audit
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Conversation, ConversationParticipant
from chatpro_privacy.storage.queries import active_members, insert_participants, tuples

# A year group or a department in one conversation (a class is about 30; messaging apps cap
# groups near a thousand). The request's ids are capped at this before any work
# (edge/request_caps.py), and a conversation this large is made within 100 ms.
MAX_PARTICIPANTS = 1000
# Who may post in a broadcast besides its creator: a school's or a department's staff.
MAX_SENDERS = 200


class ConversationKind(enum.StrEnum):
    INDIVIDUAL = "individual"  # the creator and exactly one other member
    GROUP = "group"


class ConversationMode(enum.StrEnum):
    TWO_WAY = "two_way"  # every participant may post
    BROADCAST = "broadcast"  # only the creator and the named senders may post


@dataclass(frozen=True)
class ConversationView:
    conversation: Conversation
    participants: list[tuple[str, bool]]  # (account id, may post)


def _ids(v: Violations, field: str, values: list[str]) -> list[str]:
    """The ids once each, in the order given; linear in their number (a dict keeps order)."""
    seen: dict[str, None] = {}
    bad = False
    for value in values:
        if not value or len(value) > 64:
            bad = True
        else:
            seen.setdefault(value)
    if bad:
        v.add(field, "holds an empty or overlong account id", "INVALID_ACCOUNT_ID")
    return list(seen)


def create(
    principal: Principal,
    organisation_id: str,
    kind: str,
    mode: str,
    participant_ids: list[str],
    sender_ids: list[str],
) -> ConversationView:
    mine = content_access.active_membership(principal, organisation_id)
    creator = mine.account_id
    v = Violations()
    if kind not in set(ConversationKind):
        v.add("kind", "is required: individual or group", "REQUIRED")
    if mode not in set(ConversationMode):
        v.add("mode", "is required: two-way or broadcast", "REQUIRED")
    others = [a for a in _ids(v, "participant_account_ids", participant_ids) if a != creator]
    senders = _ids(v, "sender_account_ids", sender_ids)
    if kind == ConversationKind.INDIVIDUAL and len(others) != 1:
        v.add(
            "participant_account_ids",
            "an individual conversation has exactly one other participant",
            "ONE_PARTICIPANT",
        )
    if kind == ConversationKind.GROUP and not others:
        v.add("participant_account_ids", "a group needs other participants", "REQUIRED")
    if len(others) + 1 > MAX_PARTICIPANTS:
        v.add("participant_account_ids", f"at most {MAX_PARTICIPANTS} participants", "TOO_MANY")
    if senders and mode != ConversationMode.BROADCAST:
        v.add("sender_account_ids", "only broadcasts name their senders", "NOT_BROADCAST")
    if len(senders) > MAX_SENDERS:
        v.add("sender_account_ids", f"at most {MAX_SENDERS} senders", "TOO_MANY")
    participating = {creator, *others}
    if any(s not in participating for s in senders):
        v.add("sender_account_ids", "senders must be participants", "NOT_A_PARTICIPANT")
    v.raise_if_any()
    everyone = [creator, *others]
    active = active_members(mine.organisation_id, everyone, MembershipState.ACTIVE)
    missing = [a for a in others if a not in active]
    if missing:
        # Only members are named here; whether an outsider's account exists stays unsaid.
        raise InvalidArgument(
            [
                FieldViolation(
                    "participant_account_ids",
                    f"{len(missing)} of them are not active members of the organisation",
                    "NOT_A_MEMBER",
                )
            ]
        )
    may_post = set(everyone) if mode == ConversationMode.TWO_WAY else {creator, *senders}
    with database.atomic():
        conversation = Conversation.create(
            id=new_id(),
            organisation=mine.organisation_id,
            kind=kind,
            mode=mode,
            created_at=clock.now(),
        )
        insert_participants(conversation.id, [(a, a in may_post) for a in everyone])
        audit.record(
            principal, f"conversation.create:{kind}:{mode}", "conversation", conversation.id
        )
    return ConversationView(conversation, [(a, a in may_post) for a in everyone])


def _participants(conversation_ids: list[str]) -> dict[str, list[tuple[str, bool]]]:
    found: dict[str, list[tuple[str, bool]]] = {c: [] for c in conversation_ids}
    if not conversation_ids:
        return found
    rows = tuples(
        ConversationParticipant.select(
            ConversationParticipant.conversation,
            ConversationParticipant.account,
            ConversationParticipant.can_send,
        )
        .where(ConversationParticipant.conversation.in_(conversation_ids))
        .order_by(ConversationParticipant.conversation, ConversationParticipant.account)
    )
    for conversation_id, account_id, can_send in rows:
        found[conversation_id].append((account_id, bool(can_send)))
    return found


def participants_of(conversation_ids: list[str]) -> dict[str, list[tuple[str, bool]]]:
    return _participants(sorted(set(conversation_ids)))


def get(principal: Principal, conversation_id: str) -> ConversationView:
    conversation, _ = content_access.participant(principal, conversation_id)
    return ConversationView(conversation, _participants([conversation.id])[conversation.id])


def mine(
    principal: Principal,
    organisation_id: str,
    page_size: int,
    page_token: str,
    budget: paging.Budget[ConversationView] = paging.UNBOUNDED,
) -> paging.Page[ConversationView]:
    membership = content_access.active_membership(principal, organisation_id)
    size, cursor = paging.page(page_size, page_token, "conversations")
    query = (
        Conversation.select()
        .join(ConversationParticipant)
        .where(
            (Conversation.organisation == membership.organisation_id)
            & (ConversationParticipant.account == membership.account_id)
        )
        .order_by(Conversation.created_at.desc(), Conversation.id.desc())
    )
    rows = list(query.offset(cursor or 0).limit(size + 1))
    people = _participants([c.id for c in rows[:size]])
    views = [ConversationView(c, people[c.id]) for c in rows[:size]]
    return paging.by_offset(views, cursor, len(rows) > size, "conversations", budget)
