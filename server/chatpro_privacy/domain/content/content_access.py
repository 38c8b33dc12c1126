"""Who may touch message and call-recording content (ORG-3, ORG-4, ORG-5).

Content belongs to its conversation's organisation. Its participants read and post; the
organisation's administrators look at it only through monitoring, which is recorded.
ChatPro's own staff (operators, data privacy managers) and internal services are refused
every content call: ChatPro does not access or monitor content. Outside an organisation,
its conversations do not exist (NOT_FOUND).
"""

from __future__ import annotations

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, NotFound, PermissionDenied
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.vocabulary import MemberRole, MembershipState
from chatpro_privacy.domain.organisations import memberships
from chatpro_privacy.storage import queries
from chatpro_privacy.storage.models import (
    Conversation,
    Membership,
    OrganisationStatement,
)

PLATFORM_ROLES = frozenset({Role.OPERATOR, Role.DATA_PRIVACY_MANAGER})


def refuse_platform(principal: Principal) -> str:
    """ORG-4: only people outside ChatPro's staff reach content. Returns the account id."""
    if not principal.is_person or principal.account_id is None:
        raise PermissionDenied(
            "CONTENT_PEOPLE_ONLY",
            "message and call content is reached only with a member's own session",
        )
    if principal.roles & PLATFORM_ROLES:
        raise PermissionDenied(
            "CHATPRO_STAFF_NO_CONTENT_ACCESS",
            "ChatPro's staff cannot read or monitor message and call content",
        )
    return principal.account_id


def _no_organisation(organisation_id: str) -> NotFound:
    return NotFound(
        "ORGANISATION_NOT_FOUND", "no such organisation", {"organisation_id": organisation_id[:64]}
    )


def active_membership(principal: Principal, organisation_id: str) -> Membership:
    """The caller's active membership; NOT_FOUND to anyone outside the organisation."""
    account_id = refuse_platform(principal)
    org = memberships.organisation(organisation_id)
    mine = memberships.membership(org.id, account_id)
    if mine is None or mine.state != MembershipState.ACTIVE:
        raise _no_organisation(org.id)
    return mine


def require_administrator(principal: Principal, organisation_id: str) -> Membership:
    """An active administrator of this organisation (monitoring is theirs alone)."""
    mine = active_membership(principal, organisation_id)
    if mine.role != MemberRole.ADMINISTRATOR:
        raise PermissionDenied(
            "ADMINISTRATORS_ONLY", "only the organisation's administrators may monitor content"
        )
    return mine


def administered(principal: Principal, organisation_id: str) -> str:
    """The id, as stored, of an organisation the caller administers."""
    return str(require_administrator(principal, organisation_id).organisation_id)


def participant(principal: Principal, conversation_id: str) -> tuple[Conversation, bool]:
    """(conversation, may post) for a participant who is an active member of its
    organisation. Anyone else, administrators included, is told it does not exist."""
    conversation, can_send, _ = poster(principal, conversation_id)
    return conversation, can_send


def poster(principal: Principal, conversation_id: str) -> tuple[Conversation, bool, str | None]:
    """As ``participant``, with the statement version the member must still acknowledge
    (one query: this is every message's path)."""
    account_id = refuse_platform(principal)
    row = queries.posting(conversation_id[:64], account_id, MembershipState.ACTIVE)
    if row is None:
        raise NotFound(
            "CONVERSATION_NOT_FOUND",
            "no such conversation",
            {"conversation_id": conversation_id[:64]},
        )
    conversation = Conversation(
        id=row.conversation_id,
        organisation=row.organisation_id,
        kind=row.kind,
        mode=row.mode,
        created_at=row.created_at,
    )
    return conversation, row.can_send, row.acknowledgement_required


def require_acknowledged(organisation_id: str, required_version: str | None) -> None:
    """CON-5: a member who has not acknowledged a statement announcing longer retention
    posts nothing more once it is in effect, until they do."""
    if required_version is None:
        return
    statement = OrganisationStatement.get_or_none(
        (OrganisationStatement.organisation == organisation_id)
        & (OrganisationStatement.version == required_version)
    )
    if statement is not None and statement.effective_at <= clock.now():
        raise FailedPrecondition(
            "STATEMENT_ACKNOWLEDGEMENT_REQUIRED",
            f"acknowledge the organisation's statement {statement.version} before posting",
            {"organisation_id": organisation_id, "statement_version": statement.version},
        )
