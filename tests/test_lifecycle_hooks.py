"""The lifecycle hooks are called on every change they name (issue 16, Deliver item 3;
PLG-4, ORG-1): joining by invitation and by provisioning (ACC-6), leaving, removal by the
administrators, erasure (RGT-3), expiry (RET-2) and restriction (RGT-5). A recording plugin
enabled for the organisation shows which hooks it was asked or told, with which change and
which member, in order; nothing else is told (an invitation withdrawn, a statement
acknowledged again)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chatpro.privacy.v1 import account_service_pb2, organisation_pb2, outbox_service_pb2, rights_pb2
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro.privacy.v1 import rights_service_pb2 as rights_pb
from chatpro_privacy.storage.models import Account
from helpers import Api, ExpirySweep, child_birthday
from helpers import request_right as request
from helpers import verify_requester as verify
from orgs import STATEMENT_VERSION, Org, Person, build_org, conversation, join, person, send
from plugin_samples import Lifecycle, TellFails

MEMBER = organisation_pb2.MEMBER_ROLE_MEMBER


@pytest.fixture
def dpm(api: Api) -> str:
    return api.staff("data_privacy_manager", "dpm")


def _school(api: Api, server: Any, prefix: str, members: tuple[str, ...] = ("one", "two")) -> Org:
    """An organisation whose members are all joined, then the recording plugin enabled."""
    server.runtime.plugins.install("lifecycle", Lifecycle)
    org = build_org(api, prefix, members=members)
    api.orgs.EnablePlugin(
        org_pb.EnablePluginRequest(
            organisation_id=org.organisation_id, plugin_name="lifecycle", config_json=json.dumps({})
        ),
        metadata=api.auth(org.operator),
    )
    return org


def _seen(api: Api, org: Org) -> list[str]:
    """What the plugin was asked and told, in order ("hook:change:role:subject_ref")."""
    formats = api.orgs.ListExportFormats(
        org_pb.ListExportFormatsRequest(organisation_id=org.organisation_id),
        metadata=api.auth(org.operator),
    ).formats
    return [f.name for f in formats if f.name.count(":") == 3]


def _ref(who: Person) -> str:
    return str(Account.get_by_id(who.account_id).subject_ref)


def _remove(api: Api, org: Org, token: str, account_id: str = "") -> None:
    api.orgs.RemoveMember(
        org_pb.RemoveMemberRequest(organisation_id=org.organisation_id, account_id=account_id),
        metadata=api.auth(token),
    )


def test_plg_4_an_invited_person_who_accepts_has_joined(api: Api, server: Any) -> None:
    org = _school(api, server, "j", members=())
    newcomer = person(api, "jnew")
    join(api, org.organisation_id, org.operator, newcomer, MEMBER)
    deputy = person(api, "jdeputy")
    join(api, org.organisation_id, org.operator, deputy, organisation_pb2.MEMBER_ROLE_ADMINISTRATOR)
    assert _seen(api, org) == [
        f"changed:joined:member:{_ref(newcomer)}",
        f"changed:joined:administrator:{_ref(deputy)}",
    ]


def test_plg_4_a_provisioned_person_joins_when_accepting_and_only_then(
    api: Api, server: Any
) -> None:
    """ACC-6: provisioning and set-up are not a joining; accepting the invitation (with the
    statement) is, once; acknowledging the statement again later tells nothing."""
    org = _school(api, server, "p", members=())
    account_id = api.orgs.ProvisionMember(
        org_pb.ProvisionMemberRequest(
            organisation_id=org.organisation_id,
            name="Pat Pupil",
            date_of_birth=child_birthday(20),
            email="pat@example.org",
            role=MEMBER,
            request_id="11111111-life",
        ),
        metadata=api.auth(org.admin.token),
    ).account_id
    events = api.outbox_events(api.service_token("mailer")).events
    (setup,) = [e for e in events if e.HasField("account_setup_requested")]
    api.accounts.CompleteAccountSetup(
        account_service_pb2.CompleteAccountSetupRequest(
            token=setup.account_setup_requested.token,
            username="patp",
            password="a long pupil passphrase",
            accepted_policy_version=api.current_policy(),
        )
    )
    assert _seen(api, org) == []
    pat = Person(account_id, api.sign_in("patp", "a long pupil passphrase"))
    api.orgs.AcceptInvitation(
        org_pb.AcceptInvitationRequest(
            organisation_id=org.organisation_id, statement_version=STATEMENT_VERSION
        ),
        metadata=api.auth(pat.token),
    )
    api.orgs.AcknowledgeStatement(
        org_pb.AcknowledgeStatementRequest(
            organisation_id=org.organisation_id, statement_version=STATEMENT_VERSION
        ),
        metadata=api.auth(pat.token),
    )
    assert _seen(api, org) == [f"changed:joined:member:{_ref(pat)}"]


def test_plg_4_a_member_who_leaves_is_asked_about_then_told(api: Api, server: Any) -> None:
    org = _school(api, server, "l")
    one = org.members["one"]
    ref = _ref(one)
    _remove(api, org, one.token)  # their own membership
    assert _seen(api, org) == [f"departed:left:member:{ref}", f"changed:left:member:{ref}"]


def test_plg_4_an_administrator_removed_is_asked_about_then_told(api: Api, server: Any) -> None:
    """ORG-1: the operator removes the administrator; the plugins hear the role they had."""
    org = _school(api, server, "x")
    ref = _ref(org.admin)
    _remove(api, org, org.operator, org.admin.account_id)
    assert _seen(api, org) == [
        f"departed:left:administrator:{ref}",
        f"changed:left:administrator:{ref}",
    ]


def test_plg_4_a_plugin_failing_when_told_never_undoes_the_change(api: Api, server: Any) -> None:
    """PLG-4 fails safe: the joining and the leaving stand; the failure is only logged."""
    server.runtime.plugins.install("tell_fails", TellFails)
    org = build_org(api, "f", members=())
    api.orgs.EnablePlugin(
        org_pb.EnablePluginRequest(organisation_id=org.organisation_id, plugin_name="tell_fails"),
        metadata=api.auth(org.operator),
    )
    newcomer = person(api, "fnew")
    join(api, org.organisation_id, org.operator, newcomer, MEMBER)

    def members() -> set[str]:
        return {
            m.account_id
            for m in api.orgs.ListMembers(
                org_pb.ListMembersRequest(organisation_id=org.organisation_id),
                metadata=api.auth(org.admin.token),
            ).memberships
            if m.state == organisation_pb2.MEMBERSHIP_STATE_ACTIVE
        }

    assert newcomer.account_id in members()
    _remove(api, org, newcomer.token)
    assert newcomer.account_id not in members()


def test_plg_4_withdrawing_an_invitation_nobody_accepted_tells_nothing(
    api: Api, server: Any
) -> None:
    org = _school(api, server, "w", members=())
    invited = person(api, "winvited")
    api.orgs.InviteMember(
        org_pb.InviteMemberRequest(
            organisation_id=org.organisation_id, account_id=invited.account_id, role=MEMBER
        ),
        metadata=api.auth(org.admin.token),
    )
    _remove(api, org, org.admin.token, invited.account_id)
    assert _seen(api, org) == []


def test_plg_4_an_erased_member_is_asked_about_then_told(api: Api, server: Any, dpm: str) -> None:
    """RGT-3: the plugin is asked before the erasure, told after it."""
    org = _school(api, server, "e")
    one, two = org.members["one"], org.members["two"]
    send(api, one, conversation(api, one, org.organisation_id, [two]), "my last words")
    ref = _ref(one)
    made = request(api, one.token, rights_pb2.RIGHTS_REQUEST_TYPE_ERASURE)
    verify(api, dpm, made.rights_request_id)
    assert _seen(api, org) == [f"departed:erased:member:{ref}"]
    api.rights.CompleteRightsRequest(
        rights_pb.CompleteRightsRequestRequest(rights_request_id=made.rights_request_id),
        metadata=api.auth(dpm),
    )
    mailer = api.service_token("mailer")
    events = api.outbox_events(mailer).events
    api.outbox.AcknowledgeOutboxEvents(
        outbox_service_pb2.AcknowledgeOutboxEventsRequest(
            consumer="mailer", through_sequence=events[-1].sequence
        ),
        metadata=api.auth(mailer),
    )
    server.run(server.runtime.rights.resume())
    assert Account.get_or_none(Account.id == one.account_id) is None
    assert _seen(api, org) == [f"departed:erased:member:{ref}", f"changed:erased:member:{ref}"]


def test_plg_4_a_restricted_member_is_asked_about_then_told(
    api: Api, server: Any, dpm: str
) -> None:
    """RGT-5: whether monitoring stops is asked, then the restriction is told."""
    org = _school(api, server, "r")
    one = org.members["one"]
    made = request(
        api,
        one.token,
        rights_pb2.RIGHTS_REQUEST_TYPE_RESTRICTION,
        restriction_case=rights_pb2.RESTRICTION_CASE_ACCURACY_CONTESTED,
    )
    done = verify(api, dpm, made.rights_request_id)
    assert done.state == rights_pb2.RIGHTS_REQUEST_STATE_COMPLETED
    ref = _ref(one)
    assert _seen(api, org) == [f"restriction:-:member:{ref}", f"changed:restricted:member:{ref}"]


def test_plg_4_an_expired_account_is_asked_about_then_told(api: Api, server: Any) -> None:
    """RET-2: the expiry asks the organisation about the content, then tells it."""
    org = _school(api, server, "t")
    ref, admin_ref = _ref(org.members["one"]), _ref(org.admin)
    assert ExpirySweep(server).after_unused() > 0
    assert Account.get_or_none(Account.id == org.members["one"].account_id) is None
    org.operator = api.staff("operator", "toperator2")  # the first one's account expired too
    mine = [s for s in _seen(api, org) if s.endswith(ref)]
    assert mine == [f"departed:expired:member:{ref}", f"changed:expired:member:{ref}"]
    theirs = [s for s in _seen(api, org) if s.endswith(admin_ref)]  # their role, as it was
    assert theirs == [
        f"departed:expired:administrator:{admin_ref}",
        f"changed:expired:administrator:{admin_ref}",
    ]
