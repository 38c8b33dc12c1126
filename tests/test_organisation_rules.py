"""Organisations' rules for people (issue 17, item 10): no child administers (ACC-3, ACC-4),
an invitation shows nothing of the organisation's deletion feed (ORG-5), and an organisation
publishes its own first statement, its first administrator joining before it exists (ORG-1,
CON-5)."""

from __future__ import annotations

from typing import Any

from chatpro.privacy.v1 import organisation_pb2, retention_service_pb2_grpc
from chatpro.privacy.v1 import organisation_service_pb2 as pb
from chatpro.privacy.v1 import retention_service_pb2 as ret
from chatpro_privacy.domain.records import deletion_feed
from chatpro_privacy.storage.db import database
from helpers import Api, Unchanged, child_birthday
from orgs import Person, build_org, person

ADMIN = organisation_pb2.MEMBER_ROLE_ADMINISTRATOR
MEMBER = organisation_pb2.MEMBER_ROLE_MEMBER


def invite(api: Api, organisation_id: str, inviter: str, account_id: str, role: int) -> None:
    api.orgs.InviteMember(
        pb.InviteMemberRequest(organisation_id=organisation_id, account_id=account_id, role=role),  # type: ignore[arg-type]
        metadata=api.auth(inviter),
    )


def accept(api: Api, organisation_id: str, token: str, version: str, mobile: str = "") -> Any:
    return api.orgs.AcceptInvitation(
        pb.AcceptInvitationRequest(
            organisation_id=organisation_id, statement_version=version, mobile_number=mobile
        ),
        metadata=api.auth(token),
    ).membership


def test_acc_3_acc_4_invite_member_refuses_to_make_a_child_an_administrator(
    api: Api, unchanged: Unchanged
) -> None:
    """ACC-3, ACC-4: as ProvisionMember does, InviteMember never makes a child (under the age
    of digital consent) an administrator; the child may still be invited as a member."""
    school = build_org(api, "c", members=())
    child = api.register(
        username="kid", date_of_birth=child_birthday(12), guardian_email="parent@example.com"
    )
    refused = unchanged(
        lambda: invite(api, school.organisation_id, school.admin.token, child.account_id, ADMIN)
    )
    assert refused.violations == {"role": "CHILD_ADMINISTRATOR"}
    invite(api, school.organisation_id, school.admin.token, child.account_id, MEMBER)
    adult = person(api, "cteacher")
    invite(api, school.organisation_id, school.admin.token, adult.account_id, ADMIN)


def test_org_5_an_invited_person_sees_nothing_of_the_organisations_deletion_feed(
    api: Api,
) -> None:
    """ORG-5, RET-5: the feed tells the apps of the organisation's members what to drop of
    an erased member; a person only invited (not joined) learns nothing of the organisation,
    not even that someone there was erased. Once joined, they read it."""
    school = build_org(api, "f", members=("pupil",))
    invited = person(api, "finvitee")
    invite(api, school.organisation_id, school.admin.token, invited.account_id, MEMBER)
    with database.atomic():  # a member erased (what an erasure writes to the feed)
        deletion_feed.member_gone(
            school.organisation_id,
            school.members["pupil"].account_id,
            deletion_feed.DeletionReason.ERASED,
        )

    def feed(who: Person) -> list[tuple[int, str]]:
        deletions = (
            retention_service_pb2_grpc.RetentionServiceStub(api.channel)
            .ListDeletions(ret.ListDeletionsRequest(), metadata=api.auth(who.token))
            .deletions
        )
        return [(d.reason, d.organisation_id) for d in deletions]

    erased = [(ret.DELETION_REASON_ERASED, school.organisation_id)]
    assert feed(school.admin) == erased
    assert feed(invited) == []
    accept(api, school.organisation_id, invited.token, "2026-01-01")
    assert feed(invited) == erased


def test_org_1_con_5_an_organisation_publishes_its_own_first_statement(
    api: Api, unchanged: Unchanged
) -> None:
    """ORG-1, CON-5: the operator creates the organisation and invites its first
    administrator, who joins before any statement exists (with a mobile number, ACC-4),
    publishes the organisation's first statement and acknowledges it; members then join
    with it shown. Before it exists a member cannot join."""
    operator = api.staff("operator", "soperator")
    org_id = api.orgs.CreateOrganisation(
        pb.CreateOrganisationRequest(name="Selby School", privacy_contact_email="dpo@selby.org"),
        metadata=api.auth(operator),
    ).organisation.organisation_id
    head, pupil = person(api, "shead"), person(api, "spupil")
    invite(api, org_id, operator, head.account_id, ADMIN)
    invite(api, org_id, operator, pupil.account_id, MEMBER)
    too_soon = unchanged(lambda: accept(api, org_id, pupil.token, ""))
    assert too_soon.reason == "NO_STATEMENT_PUBLISHED"
    assert unchanged(lambda: accept(api, org_id, head.token, "")).violations == {
        "mobile_number": "REQUIRED"
    }
    joined = accept(api, org_id, head.token, "", "+447700900123")
    assert (joined.state, joined.acknowledged_statement_version) == (
        organisation_pb2.MEMBERSHIP_STATE_ACTIVE,
        "",
    )
    api.orgs.PublishStatement(
        pb.PublishStatementRequest(organisation_id=org_id, version="2026-02-01", text="Ours."),
        metadata=api.auth(head.token),
    )
    mine = api.orgs.ListMyMemberships(
        pb.ListMyMembershipsRequest(), metadata=api.auth(head.token)
    ).memberships
    assert [m.acknowledgement_required_version for m in mine] == ["2026-02-01"]
    told = [
        e.statement_acknowledgement_requested.statement_version
        for e in api.outbox_events(api.service_token()).events
        if e.HasField("statement_acknowledgement_requested")
    ]
    assert told == ["2026-02-01"]
    api.orgs.AcknowledgeStatement(
        pb.AcknowledgeStatementRequest(organisation_id=org_id, statement_version="2026-02-01"),
        metadata=api.auth(head.token),
    )
    joined = accept(api, org_id, pupil.token, "2026-02-01")
    assert joined.acknowledged_statement_version == "2026-02-01"
