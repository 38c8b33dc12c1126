"""Monitoring (ORG-3, PLG-2; journey 4): a teacher broadcasts, a pupil's message in a
two-way group is flagged by the school's plugin, the designated lead searches with a
reason, the access is recorded, and members see that a check was made."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import monitoring_service_pb2 as mon
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.content import search_index
from chatpro_privacy.storage.models import ContentItem, ContentToken, MonitoringAccess
from helpers import Api, Unchanged, rpc_error
from orgs import SAFEGUARDING, Org, build_org, conversation, scope, send, upload
from plugin_samples import Gatekeeper


@pytest.fixture
def school(api: Api, server: Any) -> Org:
    server.runtime.plugins.install("gatekeeper", Gatekeeper)
    built = build_org(api, "s", members=("pupil1", "pupil2", "teacher"))
    for name in ("school_safeguarding", "gatekeeper"):
        api.orgs.EnablePlugin(
            org_pb.EnablePluginRequest(
                organisation_id=built.organisation_id, plugin_name=name, config_json="{}"
            ),
            metadata=api.auth(built.operator),
        )
    return built


def search(api: Api, school: Org, token: str = "", **kw: Any) -> mon.SearchContentResponse:
    kw.setdefault("reason", SAFEGUARDING)
    kw.setdefault("scope", scope())
    return api.monitoring.SearchContent(
        mon.SearchContentRequest(organisation_id=school.organisation_id, **kw),
        metadata=api.auth(token or school.admin.token),
    )


def test_safeguarding_journey(api: Api, school: Org) -> None:
    teacher, p1, p2 = (school.members[n] for n in ("teacher", "pupil1", "pupil2"))
    broadcast = conversation(api, teacher, school.organisation_id, [p1, p2], broadcast=True)
    send(api, teacher, broadcast, "Trip to the museum on Friday")
    group = conversation(api, p1, school.organisation_id, [p2])
    send(api, p2, group, "see you at the museum")
    flagged = send(api, p1, group, "I feel unsafe at home, please help")
    events = [
        e for e in api.outbox_events(api.service_token()).events if e.HasField("content_flagged")
    ]
    assert [(e.content_flagged.content_id, e.content_flagged.category) for e in events] == [
        (flagged.message_id, "safeguarding")
    ]
    assert list(events[0].content_flagged.administrator_account_ids) == [school.admin.account_id]
    assert "unsafe" not in str(events[0])

    found = search(api, school, keywords=["Unsafe", "HOME"])
    assert [i.content_id for i in found.items] == [flagged.message_id]
    item = found.items[0]
    assert (item.text, item.sender_account_id, list(item.recipient_account_ids)) == (
        "I feel unsafe at home, please help",
        p1.account_id,
        [p2.account_id],
    )
    assert [f.category for f in item.flags] == ["safeguarding"]
    assert found.total_count == 1 and found.access_id
    assert [i.content_id for i in search(api, school, flagged_only=True).items] == [
        flagged.message_id
    ]
    museum = search(api, school, keywords=["museum"])
    assert museum.total_count == 2
    assert search(api, school, keywords=["museum", "unsafe"]).total_count == 0
    people = search(api, school, scope=scope(people=(teacher.account_id,)))
    assert [i.text for i in people.items] == ["Trip to the museum on Friday"]

    records = api.monitoring.ListAccessRecords(
        mon.ListAccessRecordsRequest(organisation_id=school.organisation_id),
        metadata=api.auth(school.admin.token),
    ).records
    first = records[-1]
    assert (first.administrator_account_id, first.reason, first.operation, first.result_count) == (
        school.admin.account_id,
        SAFEGUARDING,
        "search",
        1,
    )
    assert first.filters["keywords"] == "unsafe,home"
    assert first.access_id == found.access_id

    # Members see that checks were made, and whether their content was among the results.
    def checks(token: str) -> list[mon.MonitoringCheck]:
        return list(
            api.monitoring.ListMonitoringChecks(
                mon.ListMonitoringChecksRequest(organisation_id=school.organisation_id),
                metadata=api.auth(token),
            ).checks
        )

    pupil_view = checks(p1.token)
    assert len(pupil_view) == len(records)
    assert pupil_view[-1].included_my_content and pupil_view[-1].reason == SAFEGUARDING
    teacher_view = checks(teacher.token)
    assert not teacher_view[-1].included_my_content  # the flagged search: not the teacher's
    assert teacher_view[0].included_my_content  # the people search: the teacher's broadcast


def test_every_check_states_a_reason_and_the_plugin_may_refuse(
    api: Api,
    school: Org,
    unchanged: Unchanged,
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    send(api, p1, group, "hello")
    failure = unchanged(lambda: search(api, school, reason=mon.MONITORING_REASON_UNSPECIFIED))
    assert failure.violations == {"reason": "REASON_REQUIRED"}
    failure = unchanged(lambda: search(api, school, scope=mon.MonitoringScope()))
    assert failure.violations == {"scope": "REQUIRED"}
    failure = rpc_error(lambda: search(api, school, reason=mon.MONITORING_REASON_ROUTINE_CHECK))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ACCESS_REFUSED_BY_ORGANISATION",
    )
    refused = MonitoringAccess.get()
    assert (refused.refused, refused.refusal_reason, refused.decided_by, refused.result_count) == (
        True,
        "routine checks need the head's approval",
        "gatekeeper",
        0,
    )
    # A refused request was no check: members are not shown it.
    assert not api.monitoring.ListMonitoringChecks(
        mon.ListMonitoringChecksRequest(organisation_id=school.organisation_id),
        metadata=api.auth(p1.token),
    ).checks


def test_members_cannot_monitor_and_outsiders_do_not_see_the_organisation(
    api: Api, school: Org
) -> None:
    other = build_org(api, "o", members=(), operator=school.operator)
    failure = rpc_error(lambda: search(api, school, token=school.members["pupil1"].token))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ADMINISTRATORS_ONLY",
    )
    failure = rpc_error(lambda: search(api, school, token=other.admin.token))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "ORGANISATION_NOT_FOUND")
    failure = rpc_error(lambda: search(api, school, token=school.operator))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "CHATPRO_STAFF_NO_CONTENT_ACCESS",
    )
    assert MonitoringAccess.select().count() == 0


def test_statistics_and_random_checks(api: Api, school: Org) -> None:
    teacher, p1, p2 = (school.members[n] for n in ("teacher", "pupil1", "pupil2"))
    group = conversation(api, p1, school.organisation_id, [p2, teacher])
    for i in range(3):
        send(api, p1, group, f"p1 says {i}")
    send(api, p2, group, "p2 says")
    stats = api.monitoring.GetContentStatistics(
        mon.GetContentStatisticsRequest(
            organisation_id=school.organisation_id, reason=SAFEGUARDING, scope=scope()
        ),
        metadata=api.auth(school.admin.token),
    )
    assert stats.total_count == 4
    assert [(d.day, d.count) for d in stats.per_day] == [(clock.today().isoformat(), 4)]
    assert [(s.account_id, s.count) for s in stats.senders] == [
        (p1.account_id, 3),
        (p2.account_id, 1),
    ]
    assert sorted((r.account_id, r.count) for r in stats.recipients) == sorted(
        [(teacher.account_id, 4), (p2.account_id, 3), (p1.account_id, 1)]
    )
    sample = api.monitoring.RandomCheck(
        mon.RandomCheckRequest(
            organisation_id=school.organisation_id, scope=scope(), sample_size=2
        ),
        metadata=api.auth(school.admin.token),
    )
    assert [i.text for i in sample.items] == ["p1 says 0", "p1 says 1"]  # the plugin's choice
    record = MonitoringAccess.get(MonitoringAccess.id == sample.access_id)
    assert (record.reason, record.operation, record.result_count, record.decided_by) == (
        "random_check",
        "random_check",
        2,
        "defaults",  # the gatekeeper approves by leaving it to the defaults
    )


def test_an_administrator_listens_to_a_recording_and_it_is_recorded(api: Api, school: Org) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    first = b"one" * 22_000  # every chunk but the last holds at least 64 KiB
    recording = upload(api, p1.token, group, [first, b"two"])
    found = search(api, school)
    assert [(i.content_kind, i.content_id, i.text) for i in found.items] == [
        ("call_recording", recording.recording_id, "")
    ]
    chunks = api.monitoring.StreamRecordingAudio(
        mon.StreamRecordingAudioRequest(
            organisation_id=school.organisation_id,
            reason=SAFEGUARDING,
            recording_id=recording.recording_id,
        ),
        metadata=api.auth(school.admin.token),
    )
    assert b"".join(c.data for c in chunks) == first + b"two"
    listen = MonitoringAccess.get(MonitoringAccess.operation == "listen")
    assert listen.result_count == 1


def test_destroying_a_key_leaves_its_word_tokens_unmatchable(
    api: Api, school: Org, server: Any
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    send(api, p1, group, "quartz lantern")
    send(api, p2, group, "quartz meadow")
    assert search(api, school, keywords=["quartz"]).total_count == 2
    p1_ref = ContentItem.get(ContentItem.author_account == p1.account_id).author_ref
    server.runtime.vault.keys.destroy_member_key(school.organisation_id, p1_ref)
    assert [i.text for i in search(api, school, keywords=["quartz"]).items] == ["quartz meadow"]
    # Deleting an item deletes its tokens with it, once indexed as while still queued.
    search_index.index_queued()
    ContentItem.delete().where(ContentItem.author_ref == p1_ref).execute()
    p1_seqs = {t.item_seq for t in ContentToken.select()}
    assert p1_seqs == {ContentItem.get(ContentItem.author_account == p2.account_id).seq}
