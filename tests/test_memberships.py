"""Memberships (ORG-1, ORG-5, ACC-4, CON-5): invitations, joining with the statement
acknowledged, administrators' mobile numbers, several organisations, removal."""

from __future__ import annotations

from functools import partial

import grpc
import pytest
from chatpro.privacy.v1 import organisation_pb2, organisation_service_pb2_grpc
from chatpro.privacy.v1 import organisation_service_pb2 as pb
from chatpro_privacy.storage.models import Account, ConsentEvent
from helpers import Api, Unchanged, rpc_error


@pytest.fixture
def org_stub(api: Api) -> organisation_service_pb2_grpc.OrganisationServiceStub:
    return organisation_service_pb2_grpc.OrganisationServiceStub(api.channel)


def new_org(
    api: Api, stub: organisation_service_pb2_grpc.OrganisationServiceStub, operator: str, name: str
) -> str:
    org = stub.CreateOrganisation(pb.CreateOrganisationRequest(name=name, privacy_contact_email="dpo@example.org"),
                                  metadata=api.auth(operator)).organisation  # fmt: skip
    stub.PublishStatement(pb.PublishStatementRequest(organisation_id=org.organisation_id, version="2026-01-01",
                                                     text="Our rules."), metadata=api.auth(operator))  # fmt: skip
    return str(org.organisation_id)


def test_joining_acknowledges_the_statement_and_admins_give_a_mobile(
    api: Api, org_stub: organisation_service_pb2_grpc.OrganisationServiceStub, unchanged: Unchanged
) -> None:
    operator = api.staff("operator")
    school = new_org(api, org_stub, operator, "Ashford School")
    alice, alice_token = api.adult("alice")
    bob, bob_token = api.adult("bob")
    for account, role in (
        (alice, organisation_pb2.MEMBER_ROLE_MEMBER),
        (bob, organisation_pb2.MEMBER_ROLE_ADMINISTRATOR),
    ):
        invited = org_stub.InviteMember(pb.InviteMemberRequest(organisation_id=school, account_id=account.account_id, role=role),
                                        metadata=api.auth(operator)).membership  # fmt: skip
        assert invited.state == organisation_pb2.MEMBERSHIP_STATE_INVITED
    service = api.service_token()
    invitations = [
        e.membership_invited
        for e in api.outbox_events(service).events
        if e.HasField("membership_invited")
    ]
    assert [(i.email, i.role, i.organisation_name) for i in invitations] == [
        ("alice@example.com", "member", "Ashford School"),
        ("bob@example.com", "administrator", "Ashford School"),
    ]

    def accept(
        token: str, version: str = "2026-01-01", mobile: str = ""
    ) -> organisation_pb2.Membership:
        return org_stub.AcceptInvitation(
            pb.AcceptInvitationRequest(
                organisation_id=school, statement_version=version, mobile_number=mobile
            ),
            metadata=api.auth(token),
        ).membership

    assert (
        unchanged(lambda: accept(alice_token, "2020-01-01")).reason
        == "STATEMENT_VERSION_NOT_CURRENT"
    )
    assert unchanged(lambda: accept(alice_token, mobile="07700900123")).violations == {
        "mobile_number": "NOT_COLLECTED"
    }
    joined = accept(alice_token)
    assert (joined.state, joined.acknowledged_statement_version) == (
        organisation_pb2.MEMBERSHIP_STATE_ACTIVE,
        "2026-01-01",
    )
    event = ConsentEvent.get(ConsentEvent.purpose == "organisation_statement")
    assert (event.notice_version, event.event_type) == (f"{school}/2026-01-01", "acknowledged")
    assert unchanged(lambda: accept(bob_token)).violations == {"mobile_number": "REQUIRED"}
    accept(bob_token, mobile="+44 7700 900123")
    assert Account.get_by_id(bob.account_id).mobile_number == "+447700900123"
    assert Account.get_by_id(alice.account_id).mobile_number is None

    # The administrator manages the school; a member may not; an outsider does not see it.
    listed = org_stub.ListMembers(
        pb.ListMembersRequest(organisation_id=school), metadata=api.auth(bob_token)
    ).memberships
    assert {m.account_id for m in listed} == {alice.account_id, bob.account_id}
    member = unchanged(
        lambda: org_stub.ListMembers(
            pb.ListMembersRequest(organisation_id=school), metadata=api.auth(alice_token)
        )
    )
    assert (member.code, member.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ADMINISTRATORS_ONLY",
    )
    _, carol = api.adult("carol")
    outsider = unchanged(
        lambda: org_stub.ListMembers(
            pb.ListMembersRequest(organisation_id=school), metadata=api.auth(carol)
        )
    )
    assert (outsider.code, outsider.reason) == (grpc.StatusCode.NOT_FOUND, "ORGANISATION_NOT_FOUND")

    # ORG-5: an administrator of one organisation gets NOT_FOUND for another.
    other = new_org(api, org_stub, operator, "Bexley Academy")
    cross = unchanged(
        lambda: org_stub.ListMembers(
            pb.ListMembersRequest(organisation_id=other), metadata=api.auth(bob_token)
        )
    )
    assert (cross.code, cross.reason) == (grpc.StatusCode.NOT_FOUND, "ORGANISATION_NOT_FOUND")

    # Several organisations; leaving one; removal of the last administration drops the mobile number.
    org_stub.InviteMember(pb.InviteMemberRequest(organisation_id=other, account_id=alice.account_id,
                                                 role=organisation_pb2.MEMBER_ROLE_MEMBER), metadata=api.auth(operator))  # fmt: skip
    org_stub.AcceptInvitation(pb.AcceptInvitationRequest(organisation_id=other, statement_version="2026-01-01"),
                              metadata=api.auth(alice_token))  # fmt: skip
    mine = org_stub.ListMyMemberships(
        pb.ListMyMembershipsRequest(), metadata=api.auth(alice_token)
    ).memberships
    assert {m.organisation_id for m in mine} == {school, other}
    org_stub.RemoveMember(
        pb.RemoveMemberRequest(organisation_id=other), metadata=api.auth(alice_token)
    )
    org_stub.RemoveMember(
        pb.RemoveMemberRequest(organisation_id=school, account_id=bob.account_id),
        metadata=api.auth(operator),
    )
    assert Account.get_by_id(bob.account_id).mobile_number is None


def test_bad_invitations_change_nothing(
    api: Api, org_stub: organisation_service_pb2_grpc.OrganisationServiceStub, unchanged: Unchanged
) -> None:
    operator = api.staff("operator")
    school = new_org(api, org_stub, operator, "Ashford School")
    alice, _ = api.adult("alice")
    for request, reason in (
        (pb.InviteMemberRequest(organisation_id=school, account_id=alice.account_id), "REQUIRED"),
        (pb.InviteMemberRequest(organisation_id=school, account_id="ghost", role=organisation_pb2.MEMBER_ROLE_MEMBER), "ACCOUNT_NOT_FOUND"),
        (pb.InviteMemberRequest(organisation_id="nope", account_id=alice.account_id, role=organisation_pb2.MEMBER_ROLE_MEMBER), "ORGANISATION_NOT_FOUND"),
    ):  # fmt: skip
        assert (
            unchanged(partial(org_stub.InviteMember, request, metadata=api.auth(operator))).reason
            == reason
        )
    invite = pb.InviteMemberRequest(
        organisation_id=school,
        account_id=alice.account_id,
        role=organisation_pb2.MEMBER_ROLE_MEMBER,
    )
    org_stub.InviteMember(invite, metadata=api.auth(operator))
    again = unchanged(lambda: org_stub.InviteMember(invite, metadata=api.auth(operator)))
    assert (again.code, again.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_A_MEMBER")


def test_an_organisation_and_its_statement_exist_only_for_its_people(
    api: Api, org_stub: organisation_service_pb2_grpc.OrganisationServiceStub
) -> None:
    """ORG-5: invited and active members and ChatPro's staff read them; nobody else does."""
    operator = api.staff("operator")
    school = new_org(api, org_stub, operator, "Ashford School")
    other = new_org(api, org_stub, operator, "Bexley Academy")
    invited, invited_token = api.adult("invited")
    outsider_token = api.adult("outsider")[1]
    other_admin, other_admin_token = api.adult("otheradmin")
    org_stub.InviteMember(pb.InviteMemberRequest(organisation_id=school, account_id=invited.account_id,
                                                 role=organisation_pb2.MEMBER_ROLE_MEMBER), metadata=api.auth(operator))  # fmt: skip
    org_stub.InviteMember(pb.InviteMemberRequest(organisation_id=other, account_id=other_admin.account_id,
                                                 role=organisation_pb2.MEMBER_ROLE_ADMINISTRATOR), metadata=api.auth(operator))  # fmt: skip
    for token in (operator, invited_token, api.staff("data_privacy_manager", "dpm")):
        statement = org_stub.GetStatement(pb.GetStatementRequest(organisation_id=school), metadata=api.auth(token))  # fmt: skip
        assert statement.statement.text == "Our rules."
        assert org_stub.GetOrganisation(pb.GetOrganisationRequest(organisation_id=school),
                                        metadata=api.auth(token)).organisation.name == "Ashford School"  # fmt: skip
    for token in (outsider_token, other_admin_token):
        for call in (
            lambda t=token: org_stub.GetStatement(pb.GetStatementRequest(organisation_id=school), metadata=api.auth(t)),
            lambda t=token: org_stub.GetOrganisation(pb.GetOrganisationRequest(organisation_id=school), metadata=api.auth(t)),
        ):  # fmt: skip
            failure = rpc_error(call)
            assert (failure.code, failure.reason) == (
                grpc.StatusCode.NOT_FOUND,
                "ORGANISATION_NOT_FOUND",
            )
    # Nor does "leaving" tell an outsider that it exists.
    failure = rpc_error(
        lambda: org_stub.RemoveMember(
            pb.RemoveMemberRequest(organisation_id=school), metadata=api.auth(outsider_token)
        )
    )
    assert failure.reason == "ORGANISATION_NOT_FOUND"
