"""Retention (RET-1, PLG-1, CON-5): content is served up to the instant it expires and not
after, by every RPC; a longer period covers only content created after the statement that
announced it; calendar months in UTC."""

from __future__ import annotations

import datetime as dt

import pytest
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro.privacy.v1 import monitoring_service_pb2 as mon
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.organisations.retention_periods import expiry
from chatpro_privacy.storage.models import ContentItem
from helpers import Api, rpc_error, set_clock, still_in_use, timestamp
from orgs import Org, build_org, conversation, send, upload


@pytest.mark.parametrize(
    ("created", "months", "expires"),
    [
        (dt.datetime(2026, 1, 15, 10, 30), 12, dt.datetime(2027, 1, 15, 10, 30)),
        (dt.datetime(2026, 1, 31, 10, 0), 1, dt.datetime(2026, 3, 1)),  # no 31 February
        (dt.datetime(2028, 2, 29, 8, 0), 12, dt.datetime(2029, 3, 1)),  # no 29 February
        (dt.datetime(2026, 2, 28, 23, 59), 1, dt.datetime(2026, 3, 28, 23, 59)),
        (dt.datetime(2026, 11, 30, 12, 0), 3, dt.datetime(2027, 3, 2, 0, 0) - dt.timedelta(days=1)),
    ],
)
def test_calendar_months_in_utc(created: dt.datetime, months: int, expires: dt.datetime) -> None:
    assert expiry(created, months) == expires


def _relogin(api: Api, school: Org) -> None:
    still_in_use()
    for name, member in school.members.items():
        member.token = api.sign_in(f"s{name}")
    school.admin.token = api.sign_in("sadmin")


def test_content_is_served_until_it_expires_and_not_a_second_longer(api: Api) -> None:
    school = build_org(api, "s", members=("pupil1", "pupil2"))
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    sent = send(api, p1, group, "ephemeral words")
    recording = upload(api, p1.token, group, [b"audio"])
    created = ContentItem.get(ContentItem.id == sent.message_id).created_at
    ends = expiry(created, 12)

    def visible() -> tuple[list[str], list[str], int]:
        texts = [
            m.text
            for m in api.messaging.ListMessages(
                msg.ListMessagesRequest(conversation_id=group), metadata=api.auth(p2.token)
            ).messages
        ]
        recordings = [
            r.recording_id
            for r in api.messaging.ListCallRecordings(
                msg.ListCallRecordingsRequest(conversation_id=group), metadata=api.auth(p2.token)
            ).recordings
        ]
        found = api.monitoring.SearchContent(
            mon.SearchContentRequest(
                organisation_id=school.organisation_id,
                reason=mon.MONITORING_REASON_LEGAL_REQUEST,
                scope=mon.MonitoringScope(
                    start_time=timestamp(created - dt.timedelta(days=1)),
                    end_time=timestamp(created + dt.timedelta(days=1)),
                ),
            ),
            metadata=api.auth(school.admin.token),
        ).total_count
        return texts, recordings, found  # fmt: skip

    try:
        set_clock(ends - dt.timedelta(minutes=5))
        _relogin(api, school)
        clock.frozen = ends - dt.timedelta(seconds=1)
        assert visible() == (["ephemeral words"], [recording.recording_id], 2)
        clock.frozen = ends + dt.timedelta(seconds=1)
        assert visible() == ([], [], 0)
        failure = rpc_error(
            lambda: api.messaging.GetCallRecording(
                msg.GetCallRecordingRequest(recording_id=recording.recording_id),
                metadata=api.auth(p2.token),
            )
        )
        assert failure.reason == "RECORDING_NOT_FOUND"
    finally:
        clock.frozen = None
        clock.offset = dt.timedelta(0)


def test_a_longer_period_covers_only_content_created_after_its_statement(api: Api) -> None:
    school = build_org(api, "s", members=("pupil1", "pupil2"))
    api.orgs.EnablePlugin(  # the school's plugin asks for 24 months
        org_pb.EnablePluginRequest(
            organisation_id=school.organisation_id, plugin_name="school_safeguarding"
        ),
        metadata=api.auth(school.operator),
    )
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    before = send(api, p1, group, "before the statement")
    try:
        set_clock(clock.now() + dt.timedelta(days=2))
        school.operator = api.sign_in("soperator")
        api.orgs.PublishStatement(
            org_pb.PublishStatementRequest(
                organisation_id=school.organisation_id,
                version="2026-09-01",
                text="We keep messages for 24 months.",
                retention_months={"message": 24},
            ),
            metadata=api.auth(school.operator),
        )
        _relogin(api, school)
        for person in (p1, p2):
            api.orgs.AcknowledgeStatement(
                org_pb.AcknowledgeStatementRequest(
                    organisation_id=school.organisation_id, statement_version="2026-09-01"
                ),
                metadata=api.auth(person.token),
            )
        after = send(api, p1, group, "after the statement")
        first = ContentItem.get(ContentItem.id == before.message_id).created_at
        second = ContentItem.get(ContentItem.id == after.message_id).created_at

        def texts() -> list[str]:
            _relogin(api, school)
            listed = api.messaging.ListMessages(
                msg.ListMessagesRequest(conversation_id=group), metadata=api.auth(p2.token)
            )
            return [m.text for m in listed.messages]

        set_clock(expiry(first, 12) + dt.timedelta(seconds=1))
        assert texts() == ["after the statement"]  # the older message kept its 12 months
        set_clock(expiry(second, 12) + dt.timedelta(days=1))
        assert texts() == ["after the statement"]  # the newer one has 24
        set_clock(expiry(second, 24) + dt.timedelta(seconds=1))
        assert texts() == []
    finally:
        clock.offset = dt.timedelta(0)
