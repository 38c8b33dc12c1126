"""Memberships of organisations (ORG-1, ORG-5, ACC-3, ACC-4, CON-5).

An account may belong to several organisations, as member or administrator. A person joins
by accepting an invitation and acknowledging the organisation's statement in effect (an
event in the consent ledger). Administrators must give a mobile number; nobody else is
asked for one, and it is deleted when its holder administers no organisation any more. A
child (under the age of digital consent) is never made an administrator.

An organisation publishes its own first statement: its administrators may join before any
statement exists (there is nothing to acknowledge yet), and acknowledge the first one once
it is published. Members join only once there is a statement to show them.

Outside an organisation, its members and records do not exist (NOT_FOUND, ORG-5).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent.purposes import LawfulBasis
from chatpro_privacy.domain.kernel import errors, paging, validation
from chatpro_privacy.domain.kernel.formats import rfc3339
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.kernel.vocabulary import MemberRole, MembershipState
from chatpro_privacy.domain.records import audit, deletion_feed, outbox
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    Membership,
    Organisation,
    OrganisationStatement,
    ProvisionRequest,
)
from chatpro_privacy.storage.queries import statement_in_effect, tuples

_MOBILE = re.compile(r"^\+?[0-9]{7,15}$")


@dataclass(frozen=True)
class MembershipView(View):
    organisation_id: str
    account_id: str
    role: str
    state: str
    statement_version: str | None
    joined_at: dt.datetime | None
    acknowledgement_required: str | None


def unknown(organisation_id: str) -> errors.NotFound:
    """What anyone outside an organisation is told of it: that it does not exist (ORG-5)."""
    return errors.NotFound(
        "ORGANISATION_NOT_FOUND", "no such organisation", {"organisation_id": organisation_id}
    )


def organisation(organisation_id: str) -> Organisation:
    """The organisation: INVALID_ARGUMENT without an id, NOT_FOUND for an unknown one."""
    if not organisation_id:
        raise errors.InvalidArgument(
            [errors.FieldViolation("organisation_id", "is required", "REQUIRED")]
        )
    org = Organisation.get_or_none(Organisation.id == organisation_id[:64])
    if org is None:
        raise unknown(organisation_id[:64])
    return org


def membership(organisation_id: str, account_id: str | None) -> Membership | None:
    if not account_id:
        return None
    return Membership.get_or_none(
        (Membership.organisation == organisation_id) & (Membership.account == account_id)
    )


def require_manager(principal: Principal, organisation_id: str) -> Organisation:
    """An operator, or an active administrator of this organisation. Anyone else is told the
    organisation does not exist, unless they are its member (then: not allowed)."""
    org = organisation(organisation_id)
    if principal.is_person and principal.has_role(Role.OPERATOR):
        return org
    mine = membership(org.id, principal.account_id) if principal.is_person else None
    if mine is None:
        raise unknown(org.id)
    if mine.role != MemberRole.ADMINISTRATOR or mine.state != MembershipState.ACTIVE:
        raise errors.PermissionDenied(
            "ADMINISTRATORS_ONLY", "only the organisation's administrators may do this"
        )
    return org


def require_visible(principal: Principal, organisation_id: str) -> Organisation:
    """ORG-5: an organisation exists only for its members (invited ones too: they read the
    statement before joining) and for ChatPro's staff, who manage organisations."""
    org = organisation(organisation_id)
    if principal.is_person and principal.roles & {Role.OPERATOR, Role.DATA_PRIVACY_MANAGER}:
        return org
    if principal.acts_for_subject and membership(org.id, principal.account_id) is not None:
        return org
    raise unknown(org.id)


def invite(
    principal: Principal,
    organisation_id: str,
    account_id: str,
    role: str,
    age_of_digital_consent: int,
) -> MembershipView:
    org = require_manager(principal, organisation_id)
    if role not in set(MemberRole):
        raise errors.InvalidArgument([errors.FieldViolation("role", "is required", "REQUIRED")])
    if not account_id:
        raise errors.InvalidArgument(
            [errors.FieldViolation("account_id", "is required", "REQUIRED")]
        )
    account = Account.get_or_none(Account.id == account_id[:64])
    if account is None:
        raise errors.NotFound(
            "ACCOUNT_NOT_FOUND", "no such account", {"account_id": account_id[:64]}
        )
    if role == MemberRole.ADMINISTRATOR and _is_child(account, age_of_digital_consent):
        # ACC-3, ACC-4: as ProvisionMember refuses it; no mobile number is asked of a child.
        raise errors.InvalidArgument(
            [
                errors.FieldViolation(
                    "role", "a child cannot administer an organisation", "CHILD_ADMINISTRATOR"
                )
            ]
        )
    if membership(org.id, account.id) is not None:
        raise errors.AlreadyExists("ALREADY_A_MEMBER", "the account is a member or invited already")
    with database.atomic():
        row = Membership.create(
            organisation=org.id,
            account=account.id,
            role=role,
            state=MembershipState.INVITED,
            invited_at=clock.now(),
        )
        outbox.emit(outbox.MEMBERSHIP_INVITED, account.id, organisation_id=org.id, role=role)
        audit.record(
            principal, f"membership.invite:{role}", "organisation", org.id, account.subject_ref
        )
    return MembershipView.from_row(row)


def _is_child(account: Account, age_of_digital_consent: int) -> bool:
    """Under the age of digital consent today (ACC-3)."""
    return validation.age_on(account.date_of_birth, clock.today()) < age_of_digital_consent


def accept(
    principal: Principal, organisation_id: str, statement_version: str, mobile_number: str
) -> MembershipView:
    if not principal.is_person:
        raise errors.PermissionDenied("PEOPLE_ONLY", "the invited person accepts")
    org = organisation(organisation_id)
    mine = membership(org.id, principal.account_id)
    if mine is None:
        raise unknown(org.id)
    if mine.state == MembershipState.ACTIVE:
        raise errors.AlreadyExists("ALREADY_A_MEMBER", "you are a member already")
    statement = statement_in_effect(org.id, clock.now())
    first_administrator = (
        statement is None and mine.role == MemberRole.ADMINISTRATOR and not statement_version
    )
    if statement is None and not first_administrator:
        raise errors.FailedPrecondition(
            "NO_STATEMENT_PUBLISHED", "the organisation has published no statement yet"
        )
    if statement is not None and statement_version != statement.version:
        raise errors.FailedPrecondition(
            "STATEMENT_VERSION_NOT_CURRENT",
            f"acknowledge the statement in effect ({statement.version})",
            {"current_version": statement.version},
        )
    mobile = mobile_number.replace(" ", "")
    if mine.role == MemberRole.ADMINISTRATOR and not _MOBILE.match(mobile):
        raise errors.InvalidArgument(
            [
                errors.FieldViolation(
                    "mobile_number", "an administrator must give a mobile number", "REQUIRED"
                )
            ]
        )
    if mine.role != MemberRole.ADMINISTRATOR and mobile_number:
        raise errors.InvalidArgument(
            [
                errors.FieldViolation(
                    "mobile_number", "is only collected from administrators", "NOT_COLLECTED"
                )
            ]
        )
    now = clock.now()
    # A published version not yet in effect that announces longer retention still needs
    # this newcomer's acknowledgement when it arrives.
    upcoming = (
        OrganisationStatement.select()
        .where(
            (OrganisationStatement.organisation == org.id)
            & (OrganisationStatement.effective_at > now)
            & (OrganisationStatement.requires_reacknowledgement == True)  # noqa: E712
        )
        .order_by(OrganisationStatement.effective_at.desc())
        .first()
    )
    with database.atomic():
        Membership.update(
            state=MembershipState.ACTIVE,
            statement_version=statement.version if statement else None,
            joined_at=now,
            acknowledgement_required=upcoming.version if upcoming else None,
        ).where(
            (Membership.organisation == org.id) & (Membership.account == principal.account_id)
        ).execute()
        if mine.role == MemberRole.ADMINISTRATOR:
            Account.update(mobile_number=mobile).where(Account.id == principal.account_id).execute()
        if statement is not None:  # the first administrator acknowledges the first one later
            _acknowledged(principal, org.id, statement.version, "joining")
        audit.record(principal, "membership.join", "organisation", org.id, principal.subject_ref)
    joined = Membership.get(
        (Membership.organisation == org.id) & (Membership.account == principal.account_id)
    )
    return MembershipView.from_row(joined)


def _acknowledged(principal: Principal, organisation_id: str, version: str, how: str) -> None:
    """The acknowledgement, as an event in the consent ledger (CON-5)."""
    consent.append(
        subject_ref=str(principal.subject_ref),
        notice_version=f"{organisation_id}/{version}",
        purpose="organisation_statement",
        lawful_basis=LawfulBasis.ORGANISATION,
        data_categories=[],
        collection_method=how,
        event_type=consent.ConsentEventType.ACKNOWLEDGED,
        given_by=consent.ConsentActor.PERSON,
    )


def require_reacknowledgement(
    organisation_id: str, version: str, effective_at: dt.datetime, *, first: bool = False
) -> None:
    """Inside the publishing transaction: every active member must acknowledge ``version``
    before posting once it is in effect, and is told so through the outbox. For the first
    statement, those are the administrators who joined before it existed."""
    concerned = (Membership.organisation == organisation_id) & (
        Membership.state == MembershipState.ACTIVE
    )
    if first:
        concerned &= Membership.statement_version.is_null()
    Membership.update(acknowledgement_required=version).where(concerned).execute()
    for (account_id,) in tuples(Membership.select(Membership.account).where(concerned)):
        outbox.emit(
            outbox.STATEMENT_ACKNOWLEDGEMENT_REQUESTED,
            account_id,
            organisation_id=organisation_id,
            statement_version=version,
            effective_at=rfc3339(effective_at),
        )


def acknowledge(
    principal: Principal, organisation_id: str, statement_version: str
) -> MembershipView:
    """A member acknowledges the statement in effect (CON-5)."""
    if not principal.is_person:
        raise errors.PermissionDenied("PEOPLE_ONLY", "members acknowledge for themselves")
    org = organisation(organisation_id)
    mine = membership(org.id, principal.account_id)
    if mine is None or mine.state != MembershipState.ACTIVE:
        raise unknown(org.id)
    statement = statement_in_effect(org.id, clock.now())
    if statement is None or statement_version != statement.version:
        current = statement.version if statement else ""
        raise errors.FailedPrecondition(
            "STATEMENT_VERSION_NOT_CURRENT",
            f"acknowledge the statement in effect ({current})",
            {"current_version": current},
        )
    still_required = (
        mine.acknowledgement_required
        if mine.acknowledgement_required not in (None, statement.version)
        and OrganisationStatement.select()
        .where(
            (OrganisationStatement.organisation == org.id)
            & (OrganisationStatement.version == mine.acknowledgement_required)
            & (OrganisationStatement.effective_at > clock.now())
        )
        .exists()
        else None
    )
    with database.atomic():
        Membership.update(
            statement_version=statement.version, acknowledgement_required=still_required
        ).where(
            (Membership.organisation == org.id) & (Membership.account == principal.account_id)
        ).execute()
        _acknowledged(principal, org.id, statement.version, "statement_update")
        audit.record(
            principal, "membership.acknowledge", "organisation", org.id, principal.subject_ref
        )
    found = membership(org.id, principal.account_id)
    assert found is not None
    return MembershipView.from_row(found)


def leaving(principal: Principal, organisation_id: str, account_id: str) -> Membership:
    """The membership a RemoveMember call ends: one's own (leaving), or, for those who
    manage the organisation, a member's. Refuses as the call would, changing nothing."""
    own = principal.is_person and account_id in ("", principal.account_id)
    org = organisation(organisation_id) if own else require_manager(principal, organisation_id)
    target = str(principal.account_id) if own else account_id
    row = membership(org.id, target)
    if row is None and own:  # ORG-5: to an outsider the organisation does not exist
        raise unknown(org.id)
    if row is None:
        raise errors.NotFound("MEMBER_NOT_FOUND", "no such member", {"account_id": target[:64]})
    return row


def remove(principal: Principal, organisation_id: str, account_id: str) -> None:
    row = leaving(principal, organisation_id, account_id)
    org_id, target = row.organisation_id, row.account_id
    account = Account.get_by_id(target)
    with database.atomic():
        Membership.delete().where(
            (Membership.organisation == org_id) & (Membership.account == target)
        ).execute()
        deletion_feed.member_gone(org_id, target, deletion_feed.DeletionReason.REMOVED)
        # What the organisation provisioned for this member goes a set time from now (RET-1).
        ProvisionRequest.update(membership_ended_at=clock.now()).where(
            (ProvisionRequest.organisation == org_id) & (ProvisionRequest.account == target)
        ).execute()
        still_admin = (
            Membership.select()
            .where((Membership.account == target) & (Membership.role == MemberRole.ADMINISTRATOR))
            .exists()
        )
        if not still_admin and account.mobile_number is not None:
            # ACC-4: a mobile number is held only while its holder administers somewhere.
            Account.update(mobile_number=None).where(Account.id == target).execute()
        audit.record(principal, "membership.remove", "organisation", org_id, account.subject_ref)


def members(
    principal: Principal,
    organisation_id: str,
    page_size: int = 0,
    page_token: str = "",
    budget: paging.Budget[MembershipView] = paging.UNBOUNDED,
) -> paging.Page[MembershipView]:
    org = require_manager(principal, organisation_id)
    size, cursor = paging.page(page_size, page_token, "members", 1000, 1000)
    with database.atomic():
        audit.record(principal, "membership.list", "organisation", org.id)
    rows = list(
        Membership.select()
        .where(Membership.organisation == org.id)
        .order_by(Membership.invited_at, Membership.account)
        .offset(cursor or 0)
        .limit(size + 1)
    )
    views = [MembershipView.from_row(r) for r in rows[:size]]
    return paging.by_offset(views, cursor, len(rows) > size, "members", budget)


def mine(principal: Principal) -> list[MembershipView]:
    if not principal.is_person:
        raise errors.PermissionDenied("PEOPLE_ONLY", "only people have memberships")
    rows = Membership.select().where(Membership.account == principal.account_id)
    return [MembershipView.from_row(r) for r in rows]
