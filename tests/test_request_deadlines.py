"""A rights request never stalls (RGT-8): each organisation whose part waits is told through
the outbox and reminded; the data privacy manager is warned before the due date; on the due
date ChatPro's part completes and the request ends partially completed, naming the
organisation that did not answer, whose part stays open; a decided erasure goes as soon as
its notice is acknowledged; a revoked service's outbox consumer goes with it."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pytest
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro.privacy.v1 import outbox_pb2, outbox_service_pb2, rights_pb2
from chatpro.privacy.v1 import rights_service_pb2 as pb
from chatpro_privacy.app import sweeps_of
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts import roles
from chatpro_privacy.settings import SettingsError, from_env
from chatpro_privacy.storage.models import (
    Account,
    MonitoringStop,
    OutboxConsumer,
    RightsRequestOrganisation,
)
from helpers import Api, set_clock
from orgs import build_org, conversation, send

S = rights_pb2


def events(api: Api, service: str) -> list[outbox_pb2.OutboxEvent]:
    return list(api.outbox_events(service, page_size=500).events)


def awaits(api: Api, service: str) -> list[outbox_pb2.RightsRequestAwaitsOrganisation]:
    return [
        e.rights_request_awaits_organisation
        for e in events(api, service)
        if e.HasField("rights_request_awaits_organisation")
    ]


def due_soon(api: Api, service: str) -> list[outbox_pb2.RightsRequestDueSoon]:
    return [e.rights_request_due_soon for e in events(api, service) if e.HasField("rights_request_due_soon")]  # fmt: skip


def make(api: Api, token: str, kind: S.RightsRequestType.ValueType) -> str:
    made = api.rights.CreateRightsRequest(
        pb.CreateRightsRequestRequest(type=kind), metadata=api.auth(token)
    )
    return str(made.rights_request.rights_request_id)


def verify(api: Api, dpm: str, rights_request_id: str) -> S.RightsRequest:
    return api.rights.VerifyRequesterIdentity(
        pb.VerifyRequesterIdentityRequest(
            rights_request_id=rights_request_id, verified=True, method="session", evidence="ok"
        ),
        metadata=api.auth(dpm),
    ).rights_request


def get(api: Api, token: str, rights_request_id: str) -> S.RightsRequest:
    return api.rights.GetRightsRequest(
        pb.GetRightsRequestRequest(rights_request_id=rights_request_id), metadata=api.auth(token)
    ).rights_request


def sweep(api: Api) -> dict[str, Any]:
    report = api.server.run(sweeps_of(api.server.runtime).run())
    return dict(report["rights_deadlines"])


def test_rgt_8_organisations_are_told_and_reminded_and_chatpros_part_completes_on_the_due_date(
    api: Api,
) -> None:
    """RGT-8: the organisation without a plugin is told its part waits, reminded a week on;
    the data privacy manager is warned seven days before the due date, once; on the due date
    the export is ready without the silent organisation's part, the request ends partially
    completed naming it, and its part stays open: its late answer is taken and told."""
    set_clock(dt.datetime(2027, 2, 10, 9, 0))
    dpm = api.staff("data_privacy_manager", "dpm")
    school = build_org(api, "s", members=("pupil",))
    pupil = school.members["pupil"]
    service = api.service_token()
    request_id = make(api, pupil.token, S.RIGHTS_REQUEST_TYPE_ACCESS)
    waiting = verify(api, dpm, request_id)
    assert waiting.state == S.RIGHTS_REQUEST_STATE_AWAITING_ORGANISATION
    assert (waiting.due_date.month, waiting.due_date.day) == (3, 10)
    (told,) = awaits(api, service)
    assert (told.organisation_id, told.rights_request_id, told.type, told.reminder) == (
        school.organisation_id,
        request_id,
        "access",
        False,
    )
    assert told.due_date == "2027-03-10"
    assert list(told.emails) == ["dpo@s.example.org", "sadmin@example.com"]
    assert sweep(api)["organisations_reminded"] == 0  # told just now

    clock.advance(dt.timedelta(days=7, minutes=1))
    assert sweep(api) == {"organisations_reminded": 1, "managers_warned": 0, "due": 0}
    assert [a.reminder for a in awaits(api, service)] == [False, True]

    set_clock(dt.datetime(2027, 3, 3, 9, 0))  # seven days before the due date
    report = sweep(api)
    assert report["managers_warned"] == 1
    (warning,) = due_soon(api, service)
    assert (warning.rights_request_id, warning.due_date, list(warning.waiting_for)) == (
        request_id,
        "2027-03-10",
        [school.organisation_id],
    )
    assert list(warning.emails) == ["dpm@example.com"]
    assert sweep(api)["managers_warned"] == 0  # once per due date

    set_clock(dt.datetime(2027, 3, 10, 0, 30))  # the due date
    sweep(api)
    ended = get(api, pupil.token, request_id)
    assert ended.state == S.RIGHTS_REQUEST_STATE_PARTIALLY_COMPLETED
    assert school.organisation_id in ended.outcome and "did not answer" in ended.outcome
    (part,) = ended.organisation_parts
    assert not part.answered  # open, for the data privacy manager to chase
    chunks = list(
        api.rights.StreamRightsExport(
            pb.StreamRightsExportRequest(rights_request_id=request_id),
            metadata=api.auth(pupil.token),
        )
    )
    assert b"did not answer by the due date" in b"".join(c.data for c in chunks)
    # The organisation still sees its part, and answers late: taken, and the person told.
    listed = api.rights.ListOrganisationRightsRequests(
        pb.ListOrganisationRightsRequestsRequest(organisation_id=school.organisation_id),
        metadata=api.auth(school.admin.token),
    ).rights_requests
    assert [r.rights_request_id for r in listed] == [request_id]
    api.rights.AnswerRightsRequest(
        pb.AnswerRightsRequestRequest(
            rights_request_id=request_id,
            organisation_id=school.organisation_id,
            decision="exported",
        ),
        metadata=api.auth(school.admin.token),
    )
    late = get(api, pupil.token, request_id)
    assert late.organisation_parts[0].answered
    assert "answered after the due date" in late.history[-1].note
    clock.advance(dt.timedelta(days=8))
    assert sweep(api)["organisations_reminded"] == 0  # answered: no more reminders


def test_rgt_8_an_erasure_goes_once_its_notice_is_acknowledged_and_a_silent_organisation_keeps_its_content(
    api: Api,
) -> None:
    """RGT-8: on the due date an erasure nobody finished deciding goes ahead (nothing of
    ChatPro's kept back; the silent organisation's content kept, pseudonymised, until it
    answers); the notice acknowledged by the one live consumer is enough (a revoked service's
    consumer went with its credential), and the acknowledgement itself carries the erasure
    out; the organisation's late "delete" then erases what it kept."""
    set_clock(dt.datetime(2027, 2, 10, 9, 0))
    dpm = api.staff("data_privacy_manager", "dpm")
    club = build_org(api, "c", members=("leaver", "friend"))
    leaver, friend = club.members["leaver"], club.members["friend"]
    chat = conversation(api, leaver, club.organisation_id, [friend])
    send(api, leaver, chat, "so long")
    # A consumer that once acknowledged, then its service was revoked.
    old = api.service_token("old-mailer")
    api.outbox.AcknowledgeOutboxEvents(
        outbox_service_pb2.AcknowledgeOutboxEventsRequest(consumer="old-mailer.email"),
        metadata=api.auth(old),
    )
    assert roles.revoke_service("old-mailer")
    assert not OutboxConsumer.select().where(OutboxConsumer.name.startswith("old-mailer")).exists()

    request_id = make(api, leaver.token, S.RIGHTS_REQUEST_TYPE_ERASURE)
    verify(api, dpm, request_id)
    set_clock(dt.datetime(2027, 3, 10, 0, 30))
    # The due date: the club never answered, the DPM never decided; ChatPro's part goes ahead
    # with nothing of its own kept back, the club's content kept until it answers.
    sweep(api)
    decided = get(api, dpm, request_id)
    assert decided.state == S.RIGHTS_REQUEST_STATE_IN_PROGRESS
    assert [e.actor for e in decided.history][-1] == "system"
    mailer = api.service_token("mailer")
    notice = [e for e in events(api, mailer) if e.HasField("rights_request_updated")][-1]
    assert (
        "content kept by organisation " + club.organisation_id in notice.rights_request_updated.note
    )
    api.outbox.AcknowledgeOutboxEvents(
        outbox_service_pb2.AcknowledgeOutboxEventsRequest(through_sequence=notice.sequence),
        metadata=api.auth(mailer),
    )
    done = get(api, dpm, request_id)
    assert done.state == S.RIGHTS_REQUEST_STATE_PARTIALLY_COMPLETED
    assert Account.get_or_none(Account.id == leaver.account_id) is None
    kept = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=chat), metadata=api.auth(friend.token)
    ).messages
    assert [(m.text, m.sender_account_id) for m in kept] == [("so long", "")]
    assert not RightsRequestOrganisation.get().answered

    api.rights.AnswerRightsRequest(
        pb.AnswerRightsRequestRequest(
            rights_request_id=request_id, organisation_id=club.organisation_id, decision="delete"
        ),
        metadata=api.auth(club.admin.token),
    )
    gone = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=chat), metadata=api.auth(friend.token)
    ).messages
    assert list(gone) == []
    (entry,) = api.server.runtime.ledger.entries()
    assert entry.action_for(club.organisation_id) == "delete"


def test_rgt_8_a_restriction_completes_chatpros_part_and_takes_a_late_organisation_answer(
    api: Api,
) -> None:
    """RGT-8: on the due date ChatPro's own processing is restricted and the request ends
    partially completed naming the silent organisation; its later answer that monitoring
    stops is carried out then."""
    set_clock(dt.datetime(2027, 2, 10, 9, 0))
    dpm = api.staff("data_privacy_manager", "dpm")
    school = build_org(api, "s", members=("pupil",))
    pupil = school.members["pupil"]
    made = api.rights.CreateRightsRequest(
        pb.CreateRightsRequestRequest(
            type=S.RIGHTS_REQUEST_TYPE_RESTRICTION,
            restriction_case=S.RESTRICTION_CASE_ACCURACY_CONTESTED,
        ),
        metadata=api.auth(pupil.token),
    ).rights_request
    verify(api, dpm, made.rights_request_id)
    set_clock(dt.datetime(2027, 3, 10, 0, 30))
    sweep(api)
    ended = get(api, pupil.token, made.rights_request_id)
    assert ended.state == S.RIGHTS_REQUEST_STATE_PARTIALLY_COMPLETED
    assert f"Organisation {school.organisation_id}: it did not answer" in ended.outcome
    assert not MonitoringStop.select().exists()
    api.rights.AnswerRightsRequest(
        pb.AnswerRightsRequestRequest(
            rights_request_id=made.rights_request_id,
            organisation_id=school.organisation_id,
            decision="monitoring_stops",
        ),
        metadata=api.auth(school.admin.token),
    )
    (stop,) = MonitoringStop.select()
    assert (stop.organisation_id, stop.account_id) == (school.organisation_id, pupil.account_id)


def test_rgt_8_the_reminder_and_warning_intervals_are_settings() -> None:
    keys = {
        name: secrets.token_hex(32)
        for name in ("CHATPRO_SECRET_KEY", "CHATPRO_RECEIPT_SIGNING_KEY", "CHATPRO_MASTER_KEY")
    }
    settings = from_env(
        {**keys, "CHATPRO_RIGHTS_REMINDER_DAYS": "3", "CHATPRO_RIGHTS_DUE_WARNING_DAYS": "10"}
    )
    assert settings.policy.rights_reminder_interval == dt.timedelta(days=3)
    assert settings.policy.rights_due_warning_days == 10
    assert from_env(keys).policy.rights_due_warning_days == 7
    with pytest.raises(SettingsError, match="1 to 30 days ahead"):
        from_env({**keys, "CHATPRO_RIGHTS_DUE_WARNING_DAYS": "0"})
    with pytest.raises(SettingsError, match="reminded every 1 to 30 days"):
        from_env({**keys, "CHATPRO_RIGHTS_REMINDER_DAYS": "90"})
