"""The authorisation matrix (SEC-3, ORG-4, ORG-5): every RPC of every service, called by every
kind of caller against organisation A's resources, answers with the status its rule names.

The rules are written down here, not derived from the server, so that a changed answer is
seen; the list of RPCs is derived from the service descriptors, so that an RPC without a
rule fails. A cell's expectation is a status code, or a code with the ErrorInfo reason where
the code alone cannot tell "refused" from "allowed, then found nothing".
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import chatpro.privacy.v1
import grpc
import pytest
from chatpro.privacy.v1 import (
    account_pb2,
    account_service_pb2,
    breach_service_pb2,
    breach_service_pb2_grpc,
    common_pb2,
    consent_pb2,
    disclosure_service_pb2,
    messaging_pb2,
    messaging_service_pb2,
    monitoring_service_pb2,
    organisation_pb2,
    organisation_service_pb2,
    retention_service_pb2,
    rights_pb2,
    rights_service_pb2,
)
from chatpro_privacy.app import SERVICE_NAMES
from google.protobuf import descriptor, field_mask_pb2, message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from helpers import PASSWORD, POLICY_VERSION, Api, child_birthday, timestamp
from orgs import STATEMENT_VERSION, build_org, conversation, person, send

Code = grpc.StatusCode
Expected = Code | tuple[Code, str]
Outcome = tuple[Code, str]  # (code, ErrorInfo reason; "" when OK or absent)

OK = Code.OK
UNAUTHENTICATED = Code.UNAUTHENTICATED
PERMISSION_DENIED = Code.PERMISSION_DENIED
NOT_FOUND = Code.NOT_FOUND
INVALID_ARGUMENT = Code.INVALID_ARGUMENT
FAILED_PRECONDITION = Code.FAILED_PRECONDITION
ALREADY_EXISTS = Code.ALREADY_EXISTS

ROLES = (
    "anonymous",  # no token
    "service",  # an internal service credential without scopes
    "outbox_service",  # an internal service with the "outbox" scope
    "guardian",  # a child's guardian, acting for the child (ACC-11)
    "person",  # a signed-in adult with no membership
    "member_a",  # an active member of organisation A
    "admin_a",  # an active administrator of organisation A
    "invited_a",  # invited to administer organisation A, not yet joined
    "admin_b",  # an active administrator of organisation B, acting on A (ORG-5)
    "operator",  # ChatPro's operator (ORG-4)
    "dpm",  # ChatPro's data privacy manager (ORG-4)
)
GROUPS = {
    "services": ("service", "outbox_service"),
    "people": ("person", "member_a", "admin_a", "invited_a", "admin_b", "operator", "dpm"),
    "staff": ("operator", "dpm"),
}


def rule(default: Expected, /, **cells: Expected) -> dict[str, Expected]:
    """One RPC's row. Credentials are checked first at the edge, so a caller without any gets
    UNAUTHENTICATED and a guardian's session PERMISSION_DENIED unless the row names them;
    every other role gets ``default`` unless named, directly or by group."""
    row: dict[str, Expected] = {role: default for role in ROLES}
    row.update(anonymous=UNAUTHENTICATED, guardian=PERMISSION_DENIED)
    for name, expected in cells.items():
        for role in GROUPS.get(name, (name,)):
            row[role] = expected
    return row


def public(expected: Expected) -> dict[str, Expected]:
    """A method that needs no credentials (SEC-3's list): the same answer for everyone."""
    return {role: expected for role in ROLES}


def manage(allowed: Expected) -> dict[str, Expected]:
    """Managing organisation A: its active administrators and operators; its other members
    (an administrator who has not joined yet too) are refused; to anyone else it does not
    exist (ORG-5)."""
    return rule(
        NOT_FOUND,
        member_a=PERMISSION_DENIED,
        invited_a=PERMISSION_DENIED,
        admin_a=allowed,
        operator=allowed,
    )


def content(member: Expected, admin: Expected) -> dict[str, Expected]:
    """Organisation A's content: never ChatPro's staff or services (ORG-4); outside A's
    active members it does not exist (ORG-5)."""
    return rule(
        PERMISSION_DENIED,
        person=NOT_FOUND,
        invited_a=NOT_FOUND,
        admin_b=NOT_FOUND,
        member_a=member,
        admin_a=admin,
    )


PARTICIPANTS = content(OK, NOT_FOUND)  # administrators read content only by monitoring
MEMBERS = content(OK, OK)
ADMINISTRATORS = content(PERMISSION_DENIED, OK)

_RULES: dict[str, dict[str, dict[str, Expected]]] = {
    "AccountService": {
        "Register": public(INVALID_ARGUMENT),  # an empty registration
        "ConfirmGuardianConsent": public(INVALID_ARGUMENT),  # no token
        "SignIn": public(OK),
        "CompleteAccountSetup": public(INVALID_ARGUMENT),  # no token
        "SignOut": rule(PERMISSION_DENIED, people=OK, guardian=OK),
        "GetAccount": rule(PERMISSION_DENIED, member_a=OK, dpm=OK),
        "UpdateProfile": rule(PERMISSION_DENIED, people=OK),
        "ConfirmEmailChange": rule(PERMISSION_DENIED, people=INVALID_ARGUMENT),  # no token
        "ChangePassword": rule(PERMISSION_DENIED, people=INVALID_ARGUMENT),  # no password
        "RecordDeviceUse": rule(PERMISSION_DENIED, services=OK, member_a=OK),
        "ListDevices": rule(PERMISSION_DENIED, member_a=OK, dpm=OK),
        "RecordInstallationEvent": rule(PERMISSION_DENIED, services=OK, member_a=OK),
        "SubmitCorrespondence": rule(PERMISSION_DENIED, people=OK),
        "RequestGuardianAccess": public(OK),  # the same answer whether the child exists
        "StartGuardianSession": public(INVALID_ARGUMENT),  # no token
    },
    "AuditService": {
        "VerifyAudit": rule(PERMISSION_DENIED, staff=OK),
        "ListAuditEntries": rule(PERMISSION_DENIED, staff=OK),
    },
    "BreachService": {
        "RecordBreach": rule(PERMISSION_DENIED, dpm=OK),
        "AssessBreach": rule(PERMISSION_DENIED, dpm=INVALID_ARGUMENT),  # no risk given
        "RecordRegulatorNotification": rule(PERMISSION_DENIED, dpm=OK),
        "CloseBreach": rule(PERMISSION_DENIED, dpm=FAILED_PRECONDITION),  # not assessed
        "GetBreach": rule(PERMISSION_DENIED, dpm=OK),
        "ListBreaches": rule(PERMISSION_DENIED, dpm=OK),
    },
    "ConsentService": {
        # These act on the caller's own consent, and a service has none: PEOPLE_ONLY.
        "ListPurposes": public(OK),
        "GrantConsent": rule(
            PERMISSION_DENIED,
            people=OK,
            guardian=OK,
            services=PERMISSION_DENIED,
        ),
        "WithdrawConsent": rule(
            PERMISSION_DENIED,
            people=OK,
            guardian=OK,
            services=PERMISSION_DENIED,
        ),
        "PreviewWithdrawal": rule(
            PERMISSION_DENIED,
            people=OK,
            guardian=OK,
            services=PERMISSION_DENIED,
        ),
        "GetConsentState": rule(PERMISSION_DENIED, member_a=OK, dpm=OK),
        "ListConsentEvents": rule(PERMISSION_DENIED, member_a=OK, dpm=OK),
        "GetConsentReceipt": rule(
            PERMISSION_DENIED,
            people=OK,
            guardian=OK,
            services=PERMISSION_DENIED,
        ),
        "GetReceiptSigningKeys": public(OK),
        "GetLegitimateInterestAssessment": public(OK),  # CON-4: anyone may read it
    },
    "DisclosureService": {
        "CreateRecipient": rule(PERMISSION_DENIED, operator=OK),
        "ListRecipients": rule(OK),
        "RecordDisclosure": rule(PERMISSION_DENIED, services=OK, dpm=OK),
        "ListDisclosures": rule(PERMISSION_DENIED, member_a=OK, dpm=OK),
    },
    "MessagingService": {
        "CreateConversation": MEMBERS,
        "GetConversation": PARTICIPANTS,
        "ListConversations": MEMBERS,
        "SendMessage": PARTICIPANTS,
        "ListMessages": PARTICIPANTS,
        "UploadCallRecording": PARTICIPANTS,
        "GetCallRecording": PARTICIPANTS,
        "ListCallRecordings": PARTICIPANTS,
        "StreamCallRecordingAudio": PARTICIPANTS,
    },
    "MonitoringService": {
        "SearchContent": ADMINISTRATORS,
        "GetContentStatistics": ADMINISTRATORS,
        "RandomCheck": ADMINISTRATORS,
        "StreamRecordingAudio": ADMINISTRATORS,
        "ListAccessRecords": ADMINISTRATORS,
        "ListMonitoringChecks": MEMBERS,  # members see the checks made (ORG-3)
    },
    "OrganisationService": {
        "CreateOrganisation": rule(PERMISSION_DENIED, operator=OK),
        # Read by its people (invited ones too: the statement is read before joining, CON-5)
        # and ChatPro's staff; to anyone else it does not exist (ORG-5).
        "GetOrganisation": rule(NOT_FOUND, member_a=OK, admin_a=OK, invited_a=OK, staff=OK),
        "PublishStatement": manage(INVALID_ARGUMENT),  # no version
        "GetStatement": rule(NOT_FOUND, member_a=OK, admin_a=OK, invited_a=OK, staff=OK),
        "ListOrganisationPlugins": manage(OK),
        "EnablePlugin": manage(INVALID_ARGUMENT),  # no plugin named
        "ConfigurePlugin": manage(INVALID_ARGUMENT),  # no plugin named
        "DisablePlugin": manage(FAILED_PRECONDITION),  # none enabled
        "GetRetentionPolicy": manage(OK),
        "ListExportFormats": manage(OK),
        "InviteMember": manage(INVALID_ARGUMENT),  # no role
        "AcceptInvitation": rule(
            NOT_FOUND,
            services=PERMISSION_DENIED,
            member_a=ALREADY_EXISTS,
            admin_a=ALREADY_EXISTS,
            invited_a=FAILED_PRECONDITION,  # the statement's version is not given
        ),
        # Of an account that is no member: allowed callers are told so, not of the organisation.
        "RemoveMember": rule(
            (NOT_FOUND, "ORGANISATION_NOT_FOUND"),
            member_a=PERMISSION_DENIED,
            invited_a=PERMISSION_DENIED,
            admin_a=(NOT_FOUND, "MEMBER_NOT_FOUND"),
            operator=(NOT_FOUND, "MEMBER_NOT_FOUND"),
        ),
        "ListMembers": manage(OK),
        "ListMyMemberships": rule(PERMISSION_DENIED, people=OK),
        "ProvisionMember": manage(OK),
        "AcknowledgeStatement": rule(
            NOT_FOUND, services=PERMISSION_DENIED, member_a=OK, admin_a=OK
        ),
        # Legal holds and the dry run are the organisation's administrators' (RET-1).
        "PlaceLegalHold": ADMINISTRATORS,
        "ReleaseLegalHold": ADMINISTRATORS,
        "ListLegalHolds": ADMINISTRATORS,
        "PreviewRetentionChange": ADMINISTRATORS,
    },
    "RetentionService": {
        "GetRetentionSchedule": public(OK),
        "ListDeletions": rule(PERMISSION_DENIED, people=OK),  # a guardian: consent and rights
        "GetAnonymisedStatistics": rule(PERMISSION_DENIED, staff=OK),
    },
    "RightsService": {
        # Member A's own request; the data privacy manager may enter one for them (RGT-8).
        "CreateRightsRequest": rule(PERMISSION_DENIED, member_a=OK, dpm=OK),
        # A request exists for its requester and the data privacy manager alone.
        "GetRightsRequest": rule(NOT_FOUND, member_a=OK, dpm=OK, guardian=NOT_FOUND),
        "ListRightsRequests": rule(PERMISSION_DENIED, people=OK, guardian=OK),
        "CancelRightsRequest": rule(
            NOT_FOUND, member_a=OK, dpm=PERMISSION_DENIED, guardian=NOT_FOUND
        ),
        # The data privacy manager's decisions; the requests are past verification.
        "VerifyRequesterIdentity": rule(PERMISSION_DENIED, dpm=FAILED_PRECONDITION),
        "ExtendRightsRequest": rule(PERMISSION_DENIED, dpm=OK),
        "RefuseRightsRequest": rule(PERMISSION_DENIED, dpm=OK),
        "CompleteRightsRequest": rule(PERMISSION_DENIED, dpm=FAILED_PRECONDITION),
        # RGT-5: the data privacy manager lifts a restriction (there is none to lift here).
        "LiftRestriction": rule(PERMISSION_DENIED, dpm=NOT_FOUND),
        # Organisation A's part: its administrators (never ChatPro's staff, ORG-4/5).
        "ListOrganisationRightsRequests": ADMINISTRATORS,
        "AnswerRightsRequest": ADMINISTRATORS,
        # The export goes to the requester alone, never to ChatPro's staff.
        "StreamRightsExport": rule(
            NOT_FOUND, member_a=OK, dpm=PERMISSION_DENIED, guardian=NOT_FOUND
        ),
    },
    "OutboxService": {
        "ListOutboxEvents": rule(PERMISSION_DENIED, outbox_service=OK),
        "AcknowledgeOutboxEvents": rule(PERMISSION_DENIED, outbox_service=OK),
    },
    "PolicyService": {
        "GetCurrentPolicy": public(OK),
        "GetControllerInfo": public(OK),
        "ListPolicyVersions": public(OK),
        "GetPolicyVersion": public(OK),
        "PublishPolicyVersion": rule(PERMISSION_DENIED, operator=INVALID_ARGUMENT),  # empty
        "AcceptPolicy": rule(PERMISSION_DENIED, people=OK, guardian=OK),
        "ListPendingAcceptances": rule(PERMISSION_DENIED, services=OK, operator=OK),
    },
}
PACKAGE = "chatpro.privacy.v1"
RULES: dict[str, dict[str, Expected]] = {
    f"/{PACKAGE}.{service}/{method}": row
    for service, rows in _RULES.items()
    for method, row in rows.items()
}


def _path(method: descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def served_methods() -> dict[str, descriptor.MethodDescriptor]:
    """Every method of every service in the client package, by its gRPC path."""
    found: dict[str, descriptor.MethodDescriptor] = {}
    for info in pkgutil.iter_modules(chatpro.privacy.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            found.update({_path(m): m for m in service.methods})
    return found


# -- the world: organisations A and B, and a session for each role -----------------------------


@dataclass
class World:
    ids: dict[str, str]  # a request's resource-id field -> organisation A's resource
    tokens: dict[str, str | None]  # role -> bearer token
    person_login: str
    second_member: str  # another participant of the group conversation


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _recording(conversation_id: str) -> messaging_service_pb2.UploadCallRecordingRequest:
    return messaging_service_pb2.UploadCallRecordingRequest(
        metadata=messaging_service_pb2.CallRecordingMetadata(
            conversation_id=conversation_id,
            start_time=timestamp(_now() - dt.timedelta(hours=1)),
            duration_seconds=60,
            media_type="audio/ogg",
        )
    )


AUDIO = messaging_service_pb2.UploadCallRecordingRequest(chunk=b"OggS audio")


# Disclosures to it rest on a legal obligation, so no one's consent is needed first.
REGULATOR = consent_pb2.Recipient(
    name="HM Revenue and Customs",
    category="hmrc_and_regulators",
    country_code="GB",
    lawful_basis=consent_pb2.LAWFUL_BASIS_LEGAL_OBLIGATION,
)


def _guardian(api: Api, outbox_token: str) -> str:
    """A guardian's session, from confirming consent for a 12-year-old's registration."""
    api.register(username="kid", date_of_birth=child_birthday(), guardian_email="mum@example.com")
    event = next(
        e
        for e in api.outbox_events(outbox_token).events
        if e.HasField("guardian_consent_requested")
    )
    confirmed = api.accounts.ConfirmGuardianConsent(
        account_service_pb2.ConfirmGuardianConsentRequest(
            token=event.guardian_consent_requested.token
        )
    )
    return str(confirmed.guardian_session_token)


def _rights_requests(
    api: Api, member: str, dpm: str, admin: str, organisation_id: str
) -> dict[str, str]:
    """Member A's requests: one awaiting organisation A, one completed (its export ready),
    and fresh ones to cancel, refuse and extend."""

    def make() -> str:
        return str(
            api.rights.CreateRightsRequest(
                rights_service_pb2.CreateRightsRequestRequest(type=ACCESS),
                metadata=api.auth(member),
            ).rights_request.rights_request_id
        )

    def verify(rights_request_id: str) -> None:
        api.rights.VerifyRequesterIdentity(
            rights_service_pb2.VerifyRequesterIdentityRequest(
                rights_request_id=rights_request_id, verified=True, method="session", evidence="ok"
            ),
            metadata=api.auth(dpm),
        )

    waiting, done = make(), make()
    verify(waiting)
    verify(done)
    api.rights.AnswerRightsRequest(
        rights_service_pb2.AnswerRightsRequestRequest(
            rights_request_id=done, organisation_id=organisation_id, decision="exported"
        ),
        metadata=api.auth(admin),
    )
    return {
        "rights_request_id": waiting,
        "completed_request": done,
        "request_to_cancel": make(),
        "request_to_refuse": make(),
        "request_to_extend": make(),
    }


def build_world(api: Api) -> World:
    """Organisation A (an administrator, two members in a group conversation with a message
    and a call recording, an invited administrator) and B (an administrator); a breach and a
    recipient on record."""
    org_a = build_org(api, "a", members=("pupil1", "pupil2"))
    org_b = build_org(api, "b", members=(), operator=org_a.operator)
    member, second = org_a.members["pupil1"], org_a.members["pupil2"]
    group = conversation(api, member, org_a.organisation_id, [second])
    send(api, member, group, "hello from organisation A")
    recording = api.messaging.UploadCallRecording(
        iter([_recording(group), AUDIO]), metadata=api.auth(member.token)
    ).recording.recording_id
    outsider = person(api, "outsider")
    invited = person(api, "invited")
    api.orgs.InviteMember(
        organisation_service_pb2.InviteMemberRequest(
            organisation_id=org_a.organisation_id,
            account_id=invited.account_id,
            role=organisation_pb2.MEMBER_ROLE_ADMINISTRATOR,
        ),
        metadata=api.auth(org_a.operator),
    )
    dpm = api.staff("data_privacy_manager", "dpm")
    outbox_token = api.service_token("matrix-outbox", scopes=("outbox",))
    breach = (
        breach_service_pb2_grpc.BreachServiceStub(api.channel)
        .RecordBreach(
            breach_service_pb2.RecordBreachRequest(summary="A laptop was lost."),
            metadata=api.auth(dpm),
        )
        .breach.breach_id
    )
    recipient = api.disclosures.CreateRecipient(
        disclosure_service_pb2.CreateRecipientRequest(recipient=REGULATOR),
        metadata=api.auth(org_a.operator),
    ).recipient.recipient_id
    requests = _rights_requests(api, member.token, dpm, org_a.admin.token, org_a.organisation_id)
    hold = api.orgs.PlaceLegalHold(
        organisation_service_pb2.PlaceLegalHoldRequest(
            organisation_id=org_a.organisation_id, conversation_id=group, reason="claim"
        ),
        metadata=api.auth(org_a.admin.token),
    ).legal_hold.legal_hold_id
    return World(
        ids={
            **requests,
            "legal_hold_id": hold,
            "organisation_id": org_a.organisation_id,
            "conversation_id": group,
            "recording_id": recording,
            "account_id": member.account_id,
            "breach_id": breach,
            "recipient_id": recipient,
        },
        tokens={
            "anonymous": None,
            "service": api.service_token("matrix-plain", scopes=()),
            "outbox_service": outbox_token,
            "guardian": _guardian(api, outbox_token),
            "person": outsider.token,
            "member_a": member.token,
            "admin_a": org_a.admin.token,
            "invited_a": invited.token,
            "admin_b": org_b.admin.token,
            "operator": org_a.operator,
            "dpm": dpm,
        },
        person_login="outsider",
        second_member=second.account_id,
    )


# -- requests: resource ids from the world, plus what a few RPCs need past validation --------


def _scope() -> monitoring_service_pb2.MonitoringScope:
    return monitoring_service_pb2.MonitoringScope(
        start_time=timestamp(_now() - dt.timedelta(days=7)),
        end_time=timestamp(_now() + dt.timedelta(days=1)),
    )


ROUTINE = monitoring_service_pb2.MONITORING_REASON_ROUTINE_CHECK
ACCESS = rights_pb2.RIGHTS_REQUEST_TYPE_ACCESS
OVERRIDES: dict[str, Callable[[World], dict[str, Any]]] = {
    "AccountService/SignIn": lambda w: {"login": w.person_login, "password": PASSWORD},
    "AccountService/UpdateProfile": lambda w: {
        "profile": account_service_pb2.ProfileUpdate(name="Alice Example"),
        "update_mask": field_mask_pb2.FieldMask(paths=["name"]),
    },
    "AccountService/RecordDeviceUse": lambda w: {"device": account_pb2.DeviceInfo(device_id="d1")},
    "AccountService/RecordInstallationEvent": lambda w: {
        "application_number": "app-1",
        "operating_system_type": "android",
        "event_type": account_pb2.INSTALLATION_EVENT_TYPE_INSTALL,
    },
    "AccountService/SubmitCorrespondence": lambda w: {
        "kind": account_pb2.CORRESPONDENCE_KIND_CONTACT,
        "subject": "Hello",
        "body": "A question.",
    },
    "AccountService/RequestGuardianAccess": lambda w: {"child_login": "nobody"},
    "BreachService/RecordBreach": lambda w: {"summary": "Another laptop was lost."},
    "BreachService/RecordRegulatorNotification": lambda w: {"reference": "ICO-1"},
    "ConsentService/GrantConsent": lambda w: {"purpose_id": "analytics"},
    "ConsentService/WithdrawConsent": lambda w: {"purpose_id": "analytics"},
    "ConsentService/PreviewWithdrawal": lambda w: {"purpose_id": "analytics"},
    "DisclosureService/CreateRecipient": lambda w: {"recipient": REGULATOR},
    "DisclosureService/RecordDisclosure": lambda w: {
        "data_categories": ["identity"],
        "reason": "a statutory return",
    },
    "MessagingService/CreateConversation": lambda w: {
        "kind": messaging_pb2.CONVERSATION_KIND_GROUP,
        "mode": messaging_pb2.CONVERSATION_MODE_TWO_WAY,
        "participant_account_ids": [w.second_member],
    },
    "MessagingService/SendMessage": lambda w: {"text": "hello again"},
    "MessagingService/UploadCallRecording": lambda w: {
        "metadata": _recording(w.ids["conversation_id"]).metadata
    },
    "MonitoringService/SearchContent": lambda w: {"reason": ROUTINE, "scope": _scope()},
    "MonitoringService/GetContentStatistics": lambda w: {"reason": ROUTINE, "scope": _scope()},
    "MonitoringService/RandomCheck": lambda w: {"scope": _scope(), "sample_size": 1},
    "MonitoringService/StreamRecordingAudio": lambda w: {"reason": ROUTINE},
    "OrganisationService/CreateOrganisation": lambda w: {
        "name": "Organisation C",
        "privacy_contact_email": "dpo@c.example.org",
    },
    "OrganisationService/RemoveMember": lambda w: {"account_id": "no-such-account"},
    "RightsService/CreateRightsRequest": lambda w: {"type": ACCESS, "recipient_id": ""},
    "OrganisationService/PlaceLegalHold": lambda w: {"account_id": "", "reason": "claim"},
    "OrganisationService/PreviewRetentionChange": lambda w: {
        "content_kind": "message",
        "months": 12,
    },
    "RetentionService/GetAnonymisedStatistics": lambda w: {
        "table": retention_service_pb2.STATISTICS_TABLE_ACTIVE_ACCOUNTS_BY_AGE_BAND,
        "start_time": timestamp(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        "end_time": timestamp(dt.datetime(2026, 2, 1, tzinfo=dt.UTC)),
    },
    "RightsService/CancelRightsRequest": lambda w: {
        "rights_request_id": w.ids["request_to_cancel"]
    },
    "RightsService/VerifyRequesterIdentity": lambda w: {
        "verified": True,
        "method": "passport",
        "evidence": "seen",
    },
    "RightsService/ExtendRightsRequest": lambda w: {
        "rights_request_id": w.ids["request_to_extend"],
        "months": 1,
        "reason": "complex",
    },
    "RightsService/RefuseRightsRequest": lambda w: {
        "rights_request_id": w.ids["request_to_refuse"],
        "reason": "manifestly unfounded",
    },
    "RightsService/AnswerRightsRequest": lambda w: {"decision": "exported"},
    "RightsService/LiftRestriction": lambda w: {"reason": "accuracy verified"},
    "ConsentService/GetLegitimateInterestAssessment": lambda w: {"purpose_id": "device_security"},
    "RightsService/StreamRightsExport": lambda w: {"rights_request_id": w.ids["completed_request"]},
    "OrganisationService/ProvisionMember": lambda w: {
        "name": "Pat Provisioned",
        "date_of_birth": common_pb2.CalendarDate(year=1990, month=1, day=1),
        "email": "pat@a.example.org",
        "role": organisation_pb2.MEMBER_ROLE_MEMBER,
        "request_id": "matrix-provision",
    },
    "OrganisationService/AcknowledgeStatement": lambda w: {"statement_version": STATEMENT_VERSION},
    "PolicyService/GetPolicyVersion": lambda w: {"version": POLICY_VERSION},
    "PolicyService/AcceptPolicy": lambda w: {"version": POLICY_VERSION},
}
# Client-streaming calls send their request, then these.
STREAM_TAILS: dict[str, list[Message]] = {"MessagingService/UploadCallRecording": [AUDIO]}
# Run after every other call: it ends the caller's session.
LAST = frozenset({f"/{PACKAGE}.AccountService/SignOut"})


def _short(path: str) -> str:
    return path.removeprefix(f"/{PACKAGE}.")


def build_request(method: descriptor.MethodDescriptor, world: World) -> list[Message]:
    """The request (with a client stream's further messages): organisation A's ids in the
    fields that name a resource, the method's overrides, the rest left empty."""
    fields: dict[str, Any] = {
        f.name: world.ids[f.name]
        for f in method.input_type.fields
        if f.name in world.ids and f.type == f.TYPE_STRING and not f.is_repeated
    }
    short = _short(_path(method))
    fields.update(OVERRIDES.get(short, lambda w: {})(world))
    request = message_factory.GetMessageClass(method.input_type)(**fields)
    return [request, *STREAM_TAILS.get(short, [])]


def _reason(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def invoke(
    api: Api, method: descriptor.MethodDescriptor, requests: list[Message], token: str | None
) -> Outcome:
    """Call the method by its path with the generic channel API, consuming any stream."""
    path = _path(method)
    serialize = message_factory.GetMessageClass(method.input_type).SerializeToString
    parse = message_factory.GetMessageClass(method.output_type).FromString
    kw: dict[str, Any] = {"request_serializer": serialize, "response_deserializer": parse}
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    streams = (method.client_streaming, method.server_streaming)
    try:
        if streams == (True, True):
            list(api.channel.stream_stream(path, **kw)(iter(requests), metadata=metadata))
        elif streams == (True, False):
            api.channel.stream_unary(path, **kw)(iter(requests), metadata=metadata)
        elif streams == (False, True):
            list(api.channel.unary_stream(path, **kw)(requests[0], metadata=metadata))
        else:
            api.channel.unary_unary(path, **kw)(requests[0], metadata=metadata)
    except grpc.RpcError as error:
        return error.code(), _reason(error)
    return OK, ""


def _code(expected: Expected) -> Code:
    return expected[0] if isinstance(expected, tuple) else expected


def _matches(expected: Expected, got: Outcome) -> bool:
    return got == expected if isinstance(expected, tuple) else got[0] == expected


def _show(value: Expected | Outcome) -> str:
    if isinstance(value, tuple):
        return f"{value[0].name}/{value[1]}" if value[1] else value[0].name
    return value.name


# -- the tests --------------------------------------------------------------------------------


def test_every_served_rpc_has_a_rule_for_every_role() -> None:
    """A new RPC, or a new service, fails here until the table says who may call it."""
    methods = served_methods()
    served = {m.containing_service.full_name for m in methods.values()}
    assert served == set(SERVICE_NAMES), "a service in the protos is not served, or vice versa"
    assert set(RULES) == set(methods), (
        f"without a rule: {sorted(set(methods) - set(RULES))}; "
        f"not an RPC: {sorted(set(RULES) - set(methods))}"
    )
    for path, row in RULES.items():
        assert tuple(row) == ROLES, path
    assert {_short(p) for p in LAST} | set(OVERRIDES) | set(STREAM_TAILS) <= {
        _short(p) for p in methods
    }


def test_the_rules_keep_chatpro_staff_out_of_content_and_organisations_apart() -> None:
    """The table itself keeps ORG-4 and ORG-5, whatever else is edited in it."""
    content = (f"/{PACKAGE}.MessagingService/", f"/{PACKAGE}.MonitoringService/")
    for path, method in served_methods().items():
        row = RULES[path]
        if path.startswith(content):
            assert row["operator"] == row["dpm"] == PERMISSION_DENIED, path  # ORG-4
        if {f.name for f in method.input_type.fields} & {
            "organisation_id",
            "conversation_id",
            "recording_id",
        }:
            for outsider in ("person", "admin_b"):  # ORG-5
                assert _code(row[outsider]) == NOT_FOUND, (path, outsider)


def _calls(methods: dict[str, descriptor.MethodDescriptor]) -> Iterator[tuple[str, str]]:
    """(path, role) in descriptor order, method by method; the LAST methods at the end."""
    order = sorted(methods, key=lambda p: p in LAST)
    for path in order:
        for role in ROLES:
            yield path, role


def test_every_role_gets_the_answer_its_rule_names(api: Api) -> None:
    world = build_world(api)
    methods = served_methods()
    mismatches = []
    for path, role in _calls(methods):
        method = methods[path]
        got = invoke(api, method, build_request(method, world), world.tokens[role])
        assert got[1] != "POLICY_ACCEPTANCE_REQUIRED", "the world is wrong: a policy is pending"
        expected = RULES[path][role]
        if not _matches(expected, got):
            mismatches.append(
                f"{_short(path)} as {role}: expected {_show(expected)}, got {_show(got)}"
            )
    if mismatches:
        pytest.fail(f"{len(mismatches)} cells differ:\n" + "\n".join(mismatches), pytrace=False)
