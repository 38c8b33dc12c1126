"""Builds organisations with administrators, members and conversations over gRPC, and the
content and monitoring requests made in them, for the content, monitoring, rights and
authorisation tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from chatpro.privacy.v1 import account_service_pb2, messaging_pb2, organisation_pb2
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro.privacy.v1 import monitoring_service_pb2 as mon
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro_privacy.clock import clock
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, Membership
from helpers import Api, child_birthday, timestamp

STATEMENT_VERSION = "2026-01-01"
SAFEGUARDING = mon.MONITORING_REASON_SAFEGUARDING_CONCERN


@dataclass
class Person:
    account_id: str
    token: str


@dataclass
class Org:
    organisation_id: str
    operator: str
    admin: Person
    members: dict[str, Person] = field(default_factory=dict)


def join(
    api: Api,
    organisation_id: str,
    inviter: str,
    person: Person,
    role: organisation_pb2.MemberRole.ValueType,
) -> None:
    api.orgs.InviteMember(
        org_pb.InviteMemberRequest(
            organisation_id=organisation_id, account_id=person.account_id, role=role
        ),
        metadata=api.auth(inviter),
    )
    api.orgs.AcceptInvitation(
        org_pb.AcceptInvitationRequest(
            organisation_id=organisation_id,
            statement_version=STATEMENT_VERSION,
            mobile_number="+447700900123"
            if role == organisation_pb2.MEMBER_ROLE_ADMINISTRATOR
            else "",
        ),
        metadata=api.auth(person.token),
    )


def person(api: Api, username: str) -> Person:
    account, token = api.adult(username)
    return Person(account.account_id, token)


def build_org(
    api: Api,
    prefix: str = "a",
    members: tuple[str, ...] = ("pupil1", "pupil2"),
    operator: str | None = None,
    retention_months: dict[str, int] | None = None,
) -> Org:
    """An organisation with a statement, one administrator ``{prefix}admin`` and members
    ``{prefix}{name}``, all joined."""
    operator = operator or api.staff("operator", f"{prefix}operator")
    created = api.orgs.CreateOrganisation(
        org_pb.CreateOrganisationRequest(
            name=f"Organisation {prefix}", privacy_contact_email=f"dpo@{prefix}.example.org"
        ),
        metadata=api.auth(operator),
    ).organisation
    org_id = created.organisation_id
    api.orgs.PublishStatement(
        org_pb.PublishStatementRequest(
            organisation_id=org_id,
            version=STATEMENT_VERSION,
            text="Our rules.",
            retention_months=retention_months or {},
        ),
        metadata=api.auth(operator),
    )
    admin = person(api, f"{prefix}admin")
    join(api, org_id, operator, admin, organisation_pb2.MEMBER_ROLE_ADMINISTRATOR)
    built = Org(org_id, operator, admin)
    for name in members:
        member = person(api, f"{prefix}{name}")
        join(api, org_id, operator, member, organisation_pb2.MEMBER_ROLE_MEMBER)
        built.members[name] = member
    return built


def conversation(
    api: Api,
    creator: Person,
    organisation_id: str,
    others: list[Person],
    *,
    broadcast: bool = False,
    kind: messaging_pb2.ConversationKind.ValueType = messaging_pb2.CONVERSATION_KIND_GROUP,
) -> str:
    response = api.messaging.CreateConversation(
        msg.CreateConversationRequest(
            organisation_id=organisation_id,
            kind=kind,
            mode=messaging_pb2.CONVERSATION_MODE_BROADCAST
            if broadcast
            else messaging_pb2.CONVERSATION_MODE_TWO_WAY,
            participant_account_ids=[p.account_id for p in others],
        ),
        metadata=api.auth(creator.token),
    )
    return str(response.conversation.conversation_id)


def send(api: Api, sender: Person, conversation_id: str, text: str) -> messaging_pb2.ChatMessage:
    return api.messaging.SendMessage(
        msg.SendMessageRequest(conversation_id=conversation_id, text=text),
        metadata=api.auth(sender.token),
    ).message


def upload(
    api: Api, token: str, conversation_id: str, chunks: list[bytes], request_id: str = ""
) -> messaging_pb2.CallRecording:
    """A call recording of ``chunks`` uploaded to a conversation as ``token``'s holder."""

    def requests() -> Iterator[msg.UploadCallRecordingRequest]:
        yield msg.UploadCallRecordingRequest(
            metadata=msg.CallRecordingMetadata(
                conversation_id=conversation_id,
                start_time=timestamp(dt.datetime(2026, 11, 1, 9, 0)),
                duration_seconds=60,
                media_type="audio/ogg",
                request_id=request_id,
            )
        )
        for chunk in chunks:
            yield msg.UploadCallRecordingRequest(chunk=chunk)

    return api.messaging.UploadCallRecording(requests(), metadata=api.auth(token)).recording


def scope(days: int = 30, people: tuple[str, ...] = ()) -> mon.MonitoringScope:
    """A monitoring scope of the last ``days`` days (up to a minute from now), of everyone's
    content or only ``people``'s."""
    now = clock.now()
    return mon.MonitoringScope(
        start_time=timestamp(now - dt.timedelta(days=days)),
        end_time=timestamp(now + dt.timedelta(minutes=1)),
        person_account_ids=list(people),
    )


def seed_members(org: Org, count: int) -> list[str]:
    """``count`` more active members of ``org`` (copies of its administrator's rows under new
    ids), written straight to the tables: thousands of sign-ups over gRPC would take minutes."""
    model = Account.get_by_id(org.admin.account_id)
    joined = Membership.get(Membership.account == org.admin.account_id)
    ids = [f"seeded{i:06d}" for i in range(count)]
    database.connect(reuse_if_open=True)
    with database.atomic():
        for start in range(0, count, 500):
            batch = ids[start : start + 500]
            Account.insert_many(
                [
                    {
                        **model.__data__,
                        "id": a,
                        "subject_ref": f"ref-{a}",
                        "username": a,
                        "username_key": a,
                        "email": f"{a}@example.org",
                        "email_key": f"{a}@example.org",
                    }
                    for a in batch
                ]
            ).execute()
            Membership.insert_many(
                [{**joined.__data__, "account": a, "role": "member"} for a in batch]
            ).execute()
    return ids


# -- accounts an organisation provisions (ACC-6) -----------------------------------------


def provision(api: Api, org_id: str, token: str, **kw: object) -> org_pb.ProvisionMemberResponse:
    fields: dict[str, object] = {
        "name": "Pat Pupil",
        "date_of_birth": child_birthday(15),
        "email": "pat@example.com",
        "role": organisation_pb2.MEMBER_ROLE_MEMBER,
        "request_id": "11111111-aaaa",
    }
    fields.update(kw)
    return api.orgs.ProvisionMember(
        org_pb.ProvisionMemberRequest(organisation_id=org_id, **fields),  # type: ignore[arg-type]
        metadata=api.auth(token),
    )


def setup_token(api: Api, mailer: str, account_id: str) -> str:
    events = api.outbox_events(mailer).events
    (event,) = [
        e for e in events if e.HasField("account_setup_requested") and e.account_id == account_id
    ]
    return str(event.account_setup_requested.token)


def complete(
    api: Api, token: str, username: str
) -> account_service_pb2.CompleteAccountSetupResponse:
    return api.accounts.CompleteAccountSetup(
        account_service_pb2.CompleteAccountSetupRequest(
            token=token,
            username=username,
            password="a long pupil passphrase",
            accepted_policy_version=api.current_policy(),
        )
    )


def accept(api: Api, org_id: str, token: str, version: str = STATEMENT_VERSION) -> None:
    api.orgs.AcceptInvitation(
        org_pb.AcceptInvitationRequest(organisation_id=org_id, statement_version=version),
        metadata=api.auth(token),
    )
