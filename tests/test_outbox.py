"""The outbox (ACC-10): written with the change, read by cursor, at least once, nothing lost."""

from __future__ import annotations

import grpc
from chatpro.privacy.v1 import outbox_service_pb2
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.storage.db import database
from chatpro_privacy.testing import InProcessServer
from helpers import Api, Unchanged, child_birthday, rpc_error


def ack(api: Api, token: str, through: int, consumer: str = "") -> int:
    response = api.outbox.AcknowledgeOutboxEvents(
        outbox_service_pb2.AcknowledgeOutboxEventsRequest(
            consumer=consumer, through_sequence=through
        ),
        metadata=api.auth(token),
    )
    return int(response.acknowledged_sequence)


def make_children(api: Api, n: int) -> list[str]:
    return [
        api.register(
            username=f"kid{i}",
            date_of_birth=child_birthday(),
            guardian_email=f"parent{i}@example.com",
        ).account_id
        for i in range(n)
    ]


def test_people_cannot_read_the_outbox(api: Api) -> None:
    _, token = api.adult()
    failure = rpc_error(lambda: api.outbox_events(token))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SERVICES_ONLY")


def test_events_are_listed_in_order_and_redelivered_until_acknowledged(api: Api) -> None:
    service = api.service_token()
    ids = make_children(api, 3)
    first = api.outbox_events(service, page_size=2)
    assert [e.account_id for e in first.events] == ids[:2]
    assert (first.acknowledged_sequence, first.latest_sequence) == (0, 3)
    # Not acknowledged: the same events come again.
    assert [e.sequence for e in api.outbox_events(service, page_size=2).events] == [1, 2]
    # Paging ahead without acknowledging.
    assert [e.sequence for e in api.outbox_events(service, after_sequence=2).events] == [3]
    assert ack(api, service, 2) == 2
    assert [e.account_id for e in api.outbox_events(service).events] == ids[2:]
    assert ack(api, service, 1) == 2  # the cursor never moves back
    assert ack(api, service, 3) == 3
    assert api.outbox_events(service).events == []


def test_each_consumer_has_its_own_cursor(api: Api) -> None:
    service = api.service_token()
    make_children(api, 2)
    ack(api, service, 2, consumer="notifications.email")
    assert len(api.outbox_events(service, consumer="notifications.email").events) == 0
    assert len(api.outbox_events(service, consumer="notifications.push").events) == 2
    assert len(api.outbox_events(service).events) == 2  # defaults to the service's name


def test_bad_cursor_requests_change_nothing(api: Api, unchanged: Unchanged) -> None:
    service = api.service_token()
    make_children(api, 1)
    failure = unchanged(lambda: ack(api, service, 5))
    assert failure.violations == {"through_sequence": "OUT_OF_RANGE"}
    failure = unchanged(lambda: ack(api, service, -1))
    assert failure.violations == {"through_sequence": "OUT_OF_RANGE"}
    failure = unchanged(lambda: api.outbox_events(service, page_size=501))
    assert failure.violations == {"page_size": "OUT_OF_RANGE"}
    failure = unchanged(lambda: api.outbox_events(service, consumer="bad consumer!"))
    assert failure.violations == {"consumer": "INVALID_FORMAT"}


def test_nothing_is_lost_across_a_restart(database_target: tuple[str, str | None]) -> None:
    url, schema = database_target
    with InProcessServer.start(url, schema=schema) as srv:
        channel = grpc.insecure_channel(srv.target)
        api = Api(srv, channel)
        service = api.service_token()
        ids = make_children(api, 3)
        ack(api, service, 1)
        channel.close()
    with InProcessServer.start(url, schema=schema) as srv:
        channel = grpc.insecure_channel(srv.target)
        api = Api(srv, channel)
        listed = api.outbox_events(service)
        assert [e.account_id for e in listed.events] == ids[1:]
        assert all(e.guardian_consent_requested.token for e in listed.events)
        channel.close()


def test_a_failed_change_writes_no_event(api: Api) -> None:
    """The event is written in the transaction of its change: a rollback takes both."""
    try:
        with database.atomic():
            outbox.emit(outbox.PASSWORD_CHANGED, "someone")
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    assert outbox.latest_sequence() == 0


def test_emit_outside_a_transaction_is_a_bug(api: Api) -> None:
    import pytest

    with pytest.raises(RuntimeError):
        outbox.emit(outbox.PASSWORD_CHANGED, "someone")


def test_only_services_with_the_outbox_scope_read_their_own_cursors(
    api: Api, unchanged: Unchanged
) -> None:
    plain = api.service_token("analytics-ingest", scopes=())
    failure = rpc_error(lambda: api.outbox_events(plain))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    notifications = api.service_token()
    make_children(api, 1)
    other = api.service_token("support", scopes=("outbox",))
    failure = unchanged(lambda: ack(api, other, 1, consumer="notifications"))
    assert failure.reason == "NOT_YOUR_CONSUMER"
    failure = rpc_error(lambda: api.outbox_events(other, consumer="notificationsx"))
    assert failure.reason == "NOT_YOUR_CONSUMER"
    assert ack(api, notifications, 1) == 1
