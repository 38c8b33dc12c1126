"""Capacity that no one client can take (issue 15, SEC-3): health watches have a budget
of their own and a cap per address, one person a cap on calls in flight, the process a
cap on work calls; an idle upload holds no database worker. Limits are set small here so
each is reached in milliseconds; tests/stress_capacity.py times the full-size attacks."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from chatpro.privacy.v1 import account_service_pb2, policy_service_pb2
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro.privacy.v1 import messaging_service_pb2_grpc as msg_grpc
from chatpro_privacy.settings import from_env
from chatpro_privacy.testing import InProcessServer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import Api, rpc_error, timestamp
from orgs import Org, build_org, conversation, upload


@pytest.fixture
def server(database_target: tuple[str, str | None]) -> Iterator[InProcessServer]:
    url, schema = database_target
    with InProcessServer.start(
        url,
        schema=schema,
        call_workers=1,
        calls_per_principal=3,
        max_concurrent_calls=6,
        watches_per_address=2,
        stream_idle_seconds=5.0,
    ) as srv:
        yield srv


@pytest.fixture
def school(api: Api) -> Org:
    return build_org(api, "k", members=("pupil1", "pupil2", "pupil3"))


class IdleUploads:
    """Uploads that send their metadata, then nothing, until released."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.release = threading.Event()
        self.calls: list[grpc.Future[msg.UploadCallRecordingResponse]] = []

    def open(self, token: str, conversation_id: str) -> None:
        def requests() -> Iterator[msg.UploadCallRecordingRequest]:
            yield msg.UploadCallRecordingRequest(
                metadata=msg.CallRecordingMetadata(
                    conversation_id=conversation_id,
                    start_time=timestamp(dt.datetime(2026, 11, 1, 9, 0)),
                    duration_seconds=60,
                    media_type="audio/ogg",
                )
            )
            self.release.wait(10)
            yield msg.UploadCallRecordingRequest(chunk=b"end")

        self.calls.append(
            self.api.messaging.UploadCallRecording.future(requests(), metadata=self.api.auth(token))
        )

    def finish(self) -> list[int]:
        self.release.set()
        return [c.result(10).recording.chunk_count for c in self.calls]


def _in_flight(server: InProcessServer, organisation_id: str, count: int) -> None:
    deadline = time.monotonic() + 5
    while server.runtime.recordings._in_flight[organisation_id] < count:
        assert time.monotonic() < deadline, "the uploads did not start"
        time.sleep(0.02)


def _health(api: Api) -> health_pb2_grpc.HealthStub:
    return health_pb2_grpc.HealthStub(api.channel)


def test_health_watches_are_capped_per_address_apart_from_work(api: Api) -> None:
    health = _health(api)
    watches = [health.Watch(health_pb2.HealthCheckRequest()) for _ in range(2)]
    try:
        for watch in watches:
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        refused = rpc_error(lambda: next(health.Watch(health_pb2.HealthCheckRequest())))
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "WATCHES_PER_ADDRESS_EXHAUSTED",
        )
        # Health checks and the work's calls are not in the watches' budget.
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
        assert api.current_policy()
    finally:
        watches[0].cancel()
    time.sleep(0.1)
    again = health.Watch(health_pb2.HealthCheckRequest())
    assert next(again).status == health_pb2.HealthCheckResponse.SERVING  # its place came back
    again.cancel()
    watches[1].cancel()


def test_one_person_has_a_cap_on_calls_in_flight(
    api: Api, school: Org, server: InProcessServer
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    uploads = IdleUploads(api)
    try:
        for _ in range(3):
            uploads.open(p1.token, group)
        _in_flight(server, school.organisation_id, 3)
        refused = rpc_error(
            lambda: api.accounts.GetAccount(
                account_service_pb2.GetAccountRequest(), metadata=api.auth(p1.token)
            )
        )
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "CALLS_PER_PRINCIPAL_EXHAUSTED",
        )
        other = api.accounts.GetAccount(
            account_service_pb2.GetAccountRequest(), metadata=api.auth(p2.token)
        )
        assert other.account.account_id == p2.account_id
    finally:
        assert uploads.finish() == [1, 1, 1]
    mine = api.accounts.GetAccount(
        account_service_pb2.GetAccountRequest(), metadata=api.auth(p1.token)
    )
    assert mine.account.account_id == p1.account_id  # the places were given back


def test_idle_uploads_hold_no_database_worker(
    api: Api, school: Org, server: InProcessServer
) -> None:
    """One call worker, three idle uploads: without lending the worker out while an upload
    waits, every other call would wait for the uploads' 5 s idle time."""
    p1, p2, p3 = (school.members[n] for n in ("pupil1", "pupil2", "pupil3"))
    group = conversation(api, p1, school.organisation_id, [p2, p3])
    uploads = IdleUploads(api)
    try:
        for person in (p1, p2, p3):
            uploads.open(person.token, group)
        _in_flight(server, school.organisation_id, 3)
        started = time.perf_counter()
        api.policy.GetCurrentPolicy(policy_service_pb2.GetCurrentPolicyRequest(), timeout=2)
        api.accounts.GetAccount(
            account_service_pb2.GetAccountRequest(), metadata=api.auth(p1.token), timeout=2
        )
        assert time.perf_counter() - started < 1
    finally:
        assert uploads.finish() == [1, 1, 1]


def test_the_process_has_a_cap_on_work_calls_but_health_answers(
    api: Api, school: Org, server: InProcessServer
) -> None:
    members = [school.members[n] for n in ("pupil1", "pupil2", "pupil3")]
    group = conversation(api, members[0], school.organisation_id, members[1:])
    uploads = IdleUploads(api)
    try:
        for person in members * 2:  # 6: the process's cap on work calls
            uploads.open(person.token, group)
        _in_flight(server, school.organisation_id, 6)
        refused = rpc_error(lambda: api.current_policy())
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "SERVER_BUSY",
        )
        assert _health(api).Check(health_pb2.HealthCheckRequest(), timeout=1).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
    finally:
        assert uploads.finish() == [1] * 6
    assert api.current_policy()


def test_capacity_settings_come_from_the_environment() -> None:
    keys = {
        "CHATPRO_SECRET_KEY": "ab" * 32,
        "CHATPRO_RECEIPT_SIGNING_KEY": "cd" * 32,
        "CHATPRO_MASTER_KEY": "ef" * 32,
    }
    defaults = from_env(keys)
    assert (defaults.stream_idle_seconds, defaults.calls_per_principal) == (30.0, 32)
    assert (defaults.max_connection_age_seconds, defaults.keepalive_seconds) == (3600.0, 60.0)
    tuned = from_env(
        {
            **keys,
            "CHATPRO_STREAM_IDLE_SECONDS": "2.5",
            "CHATPRO_CALLS_PER_PRINCIPAL": "8",
            "CHATPRO_WATCHES_PER_ADDRESS": "4",
            "CHATPRO_MAX_CONNECTION_AGE_SECONDS": "600",
        }
    )
    assert (
        tuned.stream_idle_seconds,
        tuned.calls_per_principal,
        tuned.watches_per_address,
        tuned.max_connection_age_seconds,
    ) == (2.5, 8, 4, 600.0)


def test_a_client_slow_to_read_a_stream_holds_no_database_worker(
    api: Api, school: Org, server: InProcessServer
) -> None:
    """One call worker; a participant streams a recording's audio (5 MiB) and stops reading
    after the first chunk: everyone else's calls still answer at once."""
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    recording = upload(api, p1.token, group, [b"\x01" * (1024 * 1024)] * 5)
    # A connection whose window stays small (no BDP probing): the server's writes wait.
    slow = grpc.insecure_channel(
        server.target,
        options=[("grpc.http2.bdp_probe", 0), ("grpc.use_local_subchannel_pool", 1)],
    )
    stream = msg_grpc.MessagingServiceStub(slow).StreamCallRecordingAudio(
        msg.StreamCallRecordingAudioRequest(recording_id=recording.recording_id),
        metadata=api.auth(p2.token),
    )
    try:
        assert next(stream).index == 0
        time.sleep(0.3)  # the server has written what the connection's window takes
        started = time.perf_counter()
        api.policy.GetCurrentPolicy(policy_service_pb2.GetCurrentPolicyRequest(), timeout=3)
        api.accounts.GetAccount(
            account_service_pb2.GetAccountRequest(), metadata=api.auth(p1.token), timeout=3
        )
        assert time.perf_counter() - started < 1
        assert [c.index for c in stream] == [1, 2, 3, 4]  # the rest still comes, in order
    finally:
        stream.cancel()
        slow.close()


def test_connections_are_closed_after_their_age(database_target: tuple[str, str | None]) -> None:
    """max_connection_age reaches grpc: a connection older than it is told to go away (the
    client's channel goes idle and reconnects for its next call)."""
    url, schema = database_target
    with InProcessServer.start(
        url, schema=schema, max_connection_age_seconds=0.5, max_connection_age_grace_seconds=0.5
    ) as srv:
        channel = grpc.insecure_channel(srv.target)
        states: list[grpc.ChannelConnectivity] = []
        channel.subscribe(states.append)
        try:
            health = health_pb2_grpc.HealthStub(channel)
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            ready, idle = grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.IDLE

            def went_idle() -> bool:  # ready, then idle: the server sent GOAWAY
                seen = list(states)
                return ready in seen and idle in seen[seen.index(ready) :]

            deadline = time.monotonic() + 5
            while not went_idle():
                assert time.monotonic() < deadline, states
                time.sleep(0.05)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == (
                health_pb2.HealthCheckResponse.SERVING
            )
        finally:
            channel.unsubscribe(states.append)
            channel.close()
