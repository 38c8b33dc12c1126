"""Breaches (SEC-4, journey 8): recorded, assessed, the 72-hour deadline tracked, people and
organisations told through the outbox, listed by deadline for the data privacy manager."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import breach_service_pb2 as pb
from chatpro.privacy.v1 import (
    breach_service_pb2_grpc,
    organisation_service_pb2,
    organisation_service_pb2_grpc,
)
from chatpro_privacy.clock import clock
from google.protobuf import timestamp_pb2
from helpers import Api, Unchanged, timestamp


@pytest.fixture
def stub(api: Api) -> breach_service_pb2_grpc.BreachServiceStub:
    return breach_service_pb2_grpc.BreachServiceStub(api.channel)


def test_a_stolen_laptop_journey_8(
    api: Api, stub: breach_service_pb2_grpc.BreachServiceStub, unchanged: Unchanged
) -> None:
    dpm = api.staff("data_privacy_manager", "dpm")
    auth = api.auth(dpm)
    operator = api.staff("operator")
    org = (
        organisation_service_pb2_grpc.OrganisationServiceStub(api.channel)
        .CreateOrganisation(
            organisation_service_pb2.CreateOrganisationRequest(
                name="Ashford School", privacy_contact_email="dpo@ashford.example"
            ),
            metadata=api.auth(operator),
        )
        .organisation
    )
    alice, _ = api.adult("alice")
    bob, _ = api.adult("bob")
    known = clock.now() - dt.timedelta(hours=2)
    breach = stub.RecordBreach(
        pb.RecordBreachRequest(summary="A support laptop was stolen.", known_time=timestamp(known)),
        metadata=auth,
    ).breach
    assert breach.deadline_time.ToDatetime() == known + dt.timedelta(hours=72)

    assessed = stub.AssessBreach(
        pb.AssessBreachRequest(
            breach_id=breach.breach_id,
            risk=pb.BREACH_RISK_HIGH,
            data_categories=["contact", "identity"],
            affected_account_ids=[alice.account_id, bob.account_id],
            organisation_ids=[org.organisation_id],
        ),
        metadata=auth,
    ).breach
    assert assessed.people_affected == 2 and list(assessed.organisation_ids) == [
        org.organisation_id
    ]
    assert assessed.regulator_notification_required
    assert sorted(n.kind for n in assessed.notices) == ["organisation", "person", "person"]
    service = api.service_token()
    events = {e.sequence: e for e in api.outbox_events(service, page_size=500).events}
    people = [
        events[n.outbox_sequence].breach_notified for n in assessed.notices if n.kind == "person"
    ]
    assert sorted(p.email for p in people) == ["alice@example.com", "bob@example.com"]
    assert people[0].summary == "A support laptop was stolen." and list(
        people[0].data_categories
    ) == ["contact", "identity"]
    (report,) = [
        events[n.outbox_sequence].breach_reported_to_organisation
        for n in assessed.notices
        if n.kind == "organisation"
    ]
    assert report.email == "dpo@ashford.example"

    refused = unchanged(
        lambda: stub.CloseBreach(pb.CloseBreachRequest(breach_id=breach.breach_id), metadata=auth)
    )
    assert refused.reason == "REGULATOR_NOT_NOTIFIED"
    noted = stub.RecordRegulatorNotification(
        pb.RecordRegulatorNotificationRequest(breach_id=breach.breach_id, reference="ICO-123"),
        metadata=auth,
    ).breach
    assert noted.deadline_met and noted.regulator_reference == "ICO-123"
    closed = stub.CloseBreach(
        pb.CloseBreachRequest(breach_id=breach.breach_id), metadata=auth
    ).breach
    assert closed.HasField("close_time")


def test_open_breaches_are_listed_by_deadline_and_a_late_notice_shows(
    api: Api, stub: breach_service_pb2_grpc.BreachServiceStub
) -> None:
    auth = api.auth(api.staff("data_privacy_manager", "dpm"))
    now = clock.now()
    later = stub.RecordBreach(
        pb.RecordBreachRequest(summary="Later", known_time=timestamp(now - dt.timedelta(hours=1))),
        metadata=auth,
    ).breach
    sooner = stub.RecordBreach(
        pb.RecordBreachRequest(
            summary="Sooner", known_time=timestamp(now - dt.timedelta(hours=10))
        ),
        metadata=auth,
    ).breach
    listed = stub.ListBreaches(pb.ListBreachesRequest(open_only=True), metadata=auth).breaches
    assert [b.breach_id for b in listed] == [sooner.breach_id, later.breach_id]
    stub.AssessBreach(
        pb.AssessBreachRequest(
            breach_id=sooner.breach_id, risk=pb.BREACH_RISK_MEDIUM, data_categories=["device"]
        ),
        metadata=auth,
    )
    clock.advance(dt.timedelta(hours=70))
    late = stub.RecordRegulatorNotification(
        pb.RecordRegulatorNotificationRequest(breach_id=sooner.breach_id, reference="ICO-9"),
        metadata=auth,
    ).breach
    assert late.regulator_notification_required and not late.deadline_met


@pytest.mark.parametrize(
    ("call", "code", "reason"),
    [
        (
            lambda s, a: s.RecordBreach(pb.RecordBreachRequest(summary=""), metadata=a),
            grpc.StatusCode.INVALID_ARGUMENT,
            "REQUIRED",
        ),
        (
            lambda s, a: s.RecordBreach(pb.RecordBreachRequest(summary="x" * 2001), metadata=a),
            grpc.StatusCode.INVALID_ARGUMENT,
            "TOO_LONG",
        ),
        (
            lambda s, a: s.RecordBreach(
                pb.RecordBreachRequest(
                    summary="x", known_time=timestamp_pb2.Timestamp(seconds=4_000_000_000)
                ),
                metadata=a,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "DATE_IN_FUTURE",
        ),
        (
            lambda s, a: s.AssessBreach(
                pb.AssessBreachRequest(
                    breach_id="nope", risk=pb.BREACH_RISK_LOW, data_categories=["device"]
                ),
                metadata=a,
            ),
            grpc.StatusCode.NOT_FOUND,
            "BREACH_NOT_FOUND",
        ),
        (
            lambda s, a: s.GetBreach(pb.GetBreachRequest(), metadata=a),
            grpc.StatusCode.INVALID_ARGUMENT,
            "REQUIRED",
        ),
    ],
)
def test_bad_input_changes_nothing(
    api: Api,
    stub: breach_service_pb2_grpc.BreachServiceStub,
    unchanged: Unchanged,
    call: Callable[[breach_service_pb2_grpc.BreachServiceStub, tuple[tuple[str, str], ...]], Any],
    code: grpc.StatusCode,
    reason: str,
) -> None:
    auth = api.auth(api.staff("data_privacy_manager", "dpm"))
    failure = unchanged(lambda: call(stub, auth))
    assert (failure.code, failure.reason) == (code, reason)


def test_an_assessment_naming_unknown_people_changes_nothing(
    api: Api, stub: breach_service_pb2_grpc.BreachServiceStub, unchanged: Unchanged
) -> None:
    auth = api.auth(api.staff("data_privacy_manager", "dpm"))
    breach = stub.RecordBreach(
        pb.RecordBreachRequest(summary="Misaddressed email"), metadata=auth
    ).breach
    for request, reason in (
        (pb.AssessBreachRequest(breach_id=breach.breach_id, risk=pb.BREACH_RISK_HIGH, data_categories=["contact"],
                                affected_account_ids=["ghost"]), "ACCOUNT_NOT_FOUND"),
        (pb.AssessBreachRequest(breach_id=breach.breach_id, data_categories=["contact"]), "REQUIRED"),
        (pb.AssessBreachRequest(breach_id=breach.breach_id, risk=pb.BREACH_RISK_LOW, data_categories=["dreams"]), "UNKNOWN_CATEGORY"),
    ):  # fmt: skip
        assert unchanged(partial(stub.AssessBreach, request, metadata=auth)).reason == reason


def test_breaches_are_for_the_data_privacy_manager(
    api: Api, stub: breach_service_pb2_grpc.BreachServiceStub, unchanged: Unchanged
) -> None:
    _, person = api.adult()
    operator = api.staff("operator")
    for token in (person, operator):
        failure = unchanged(
            partial(stub.ListBreaches, pb.ListBreachesRequest(), metadata=api.auth(token))
        )
        assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "DPM_ONLY")
