"""Timed trials of issue 15's attacks, over gRPC on loopback: no one client takes the
service from the others (SEC-3). Run by ``make stress`` (and CI), apart from the suite,
since their figures are timings; each trial is bounded to seconds.

- While one client holds 1,000 Health/Watch streams on one connection, and another holds
  200 idle uploads (metadata sent, then nothing), a second client's Health/Check and
  GetCurrentPolicy answer within 100 ms.
- CreateConversation with the most ids allowed answers within 100 ms, and a health probe
  during it waits under 50 ms.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import messaging_pb2, policy_service_pb2
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro.privacy.v1 import messaging_service_pb2_grpc as msg_grpc
from chatpro.privacy.v1 import policy_service_pb2_grpc as policy_grpc
from chatpro_privacy.edge.request_caps import CAPS
from chatpro_privacy.testing import InProcessServer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import Api, Unchanged, timestamp
from orgs import Org, build_org, conversation, seed_members
from served import serve, served_url

WATCHES = 1000
IDLE_UPLOADS = 200


@pytest.fixture
def server(database_target: tuple[str, str | None]) -> Iterator[InProcessServer]:
    """The default limits, but for the caps per caller and per organisation on uploads:
    raised, so that all 200 idle uploads are really held (with the defaults one account
    holds 32 and one organisation 50), and what is measured is what idle uploads cost."""
    url, schema = database_target
    with InProcessServer.start(
        url, schema=schema, calls_per_principal=1000, uploads_per_organisation=1000
    ) as srv:
        yield srv


class Attackers:
    """The two attacking clients, on an event loop of their own."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.calls: list[Any] = []
        self.channels: list[grpc.aio.Channel] = []
        self.watch_codes: dict[str, int] = {}

    def run(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def watch(self) -> None:
        """1,000 Health/Watch streams on one connection; returns once each has its first
        answer (SERVING) or its refusal."""
        stub = health_pb2_grpc.HealthStub(self._connection())

        async def one() -> str:
            call = stub.Watch(health_pb2.HealthCheckRequest())
            self.calls.append(call)
            try:
                await call.read()
                return "held"
            except grpc.aio.AioRpcError as exc:
                return exc.code().name

        outcomes = await asyncio.gather(*(one() for _ in range(WATCHES)))
        for outcome in outcomes:
            self.watch_codes[outcome] = self.watch_codes.get(outcome, 0) + 1

    async def idle_uploads(self, token: str, conversation_id: str) -> None:
        """200 uploads that send their metadata, then nothing: on 4 connections, since one
        connection carries at most 100 calls at once (``streams_per_connection``)."""
        stubs = [msg_grpc.MessagingServiceStub(self._connection()) for _ in range(4)]
        for i in range(IDLE_UPLOADS):
            call = stubs[i % 4].UploadCallRecording(
                metadata=(("authorization", f"Bearer {token}"),)
            )
            await call.write(
                msg.UploadCallRecordingRequest(
                    metadata=msg.CallRecordingMetadata(
                        conversation_id=conversation_id,
                        start_time=timestamp(dt.datetime(2026, 11, 1, 9, 0)),
                        duration_seconds=60,
                        media_type="audio/ogg",
                    )
                )
            )
            self.calls.append(call)

    def _connection(self) -> grpc.aio.Channel:
        """A channel with a connection of its own (grpc shares them between channels)."""
        channel = grpc.aio.insecure_channel(
            self.target, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.channels.append(channel)
        return channel

    async def close(self) -> None:
        for call in self.calls:
            call.cancel()
        for channel in self.channels:
            await channel.close()

    def stop(self) -> None:
        self.run(self.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _timed(call: Callable[[], object], times: int = 20) -> list[float]:
    taken = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        taken.append(time.perf_counter() - started)
        time.sleep(0.01)
    return taken


def test_watches_and_idle_uploads_leave_everyone_else_served(
    api: Api, server: InProcessServer
) -> None:
    school: Org = build_org(api, "w", members=("pupil1", "pupil2"))
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    attackers = Attackers(server.target)
    try:
        attackers.run(attackers.watch())
        attackers.run(attackers.idle_uploads(p1.token, group))
        deadline = time.monotonic() + 10  # every upload has read its metadata, waits for audio
        while server.runtime.recordings._in_flight[school.organisation_id] < IDLE_UPLOADS:
            assert time.monotonic() < deadline, "the idle uploads did not all start"
            time.sleep(0.05)
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            policy = policy_grpc.PolicyServiceStub(channel)
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)  # connected
            checks = _timed(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1))
            policies = _timed(
                lambda: policy.GetCurrentPolicy(
                    policy_service_pb2.GetCurrentPolicyRequest(), timeout=1
                )
            )
    finally:
        attackers.stop()
    print(
        f"watches: {attackers.watch_codes}; Health/Check median "
        f"{statistics.median(checks) * 1000:.1f} ms, max {max(checks) * 1000:.1f} ms; "
        f"GetCurrentPolicy median {statistics.median(policies) * 1000:.1f} ms, "
        f"max {max(policies) * 1000:.1f} ms"
    )
    # 8 held; the rest refused by the edge (RESOURCE_EXHAUSTED), or by HTTP/2 before they
    # reach it (REFUSED_STREAM, seen as UNAVAILABLE) when over 100 on the connection.
    codes = attackers.watch_codes
    assert codes.pop("held") == server.settings.watches_per_address
    assert set(codes) <= {"RESOURCE_EXHAUSTED", "UNAVAILABLE"}, codes
    assert max(checks) < 0.1, checks
    assert max(policies) < 0.1, policies


def test_the_largest_conversation_is_made_quickly_and_health_waits_for_nothing(
    database_target: tuple[str, str | None], tmp_path: Path, unchanged: Unchanged
) -> None:
    """Against a served process of its own, so that the timings are the server's, not this
    process's clients competing with it."""
    url, schema = database_target
    key = secrets.token_bytes(32)
    with (
        InProcessServer.start(url, schema=schema, secret_key=key) as setup,
        grpc.insecure_channel(setup.target) as channel,
    ):
        school = build_org(Api(setup, channel), "c", members=())
    cap = CAPS["chatpro.privacy.v1.CreateConversationRequest.participant_account_ids"]
    others = seed_members(school, cap - 1)  # with the creator: the cap
    with serve(tmp_path, served_url(url, schema), secret_key=key) as served:
        channel = grpc.insecure_channel(served.target)
        stub = msg_grpc.MessagingServiceStub(channel)

        def create(ids: list[str]) -> messaging_pb2.Conversation:
            return stub.CreateConversation(
                msg.CreateConversationRequest(
                    organisation_id=school.organisation_id,
                    kind=messaging_pb2.CONVERSATION_KIND_GROUP,
                    mode=messaging_pb2.CONVERSATION_MODE_BROADCAST,
                    participant_account_ids=ids,
                ),
                metadata=Api.auth(school.admin.token),
                timeout=10,
            ).conversation

        probes: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            with grpc.insecure_channel(
                served.target, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as own:
                health = health_pb2_grpc.HealthStub(own)
                health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                while not stop.is_set():
                    started = time.perf_counter()
                    health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                    probes.append(time.perf_counter() - started)
                    time.sleep(0.002)

        create(others[:10])  # warm: the first call of a kind loads what it needs
        prober = threading.Thread(target=probe)
        prober.start()
        try:
            time.sleep(0.05)
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                made = create([school.admin.account_id, *others])  # the caller's id is dropped
                timings.append(time.perf_counter() - started)
                assert len(made.participants) == cap
        finally:
            stop.set()
            prober.join()
        failure = unchanged(lambda: create([*others, school.admin.account_id, "one-too-many"]))
        channel.close()
    print(
        f"CreateConversation with {cap} ids: "
        + ", ".join(f"{t * 1000:.0f}" for t in timings)
        + f" ms; health probes during it: {len(probes)}, the longest "
        f"{max(probes) * 1000:.1f} ms"
    )
    assert min(timings) < 0.1, timings
    assert probes and max(probes) < 0.05, max(probes)
    assert (failure.code, failure.violations) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {"participant_account_ids": "TOO_MANY"},
    )
