"""Retries against a small fake server: only what the service marks retryable is sent
again (UNAVAILABLE on a read, through gRPC's service config; anything refused with
RetryInfo, by the client), through the synchronous and the asyncio client alike; and
from_rpc_error decodes grpc.aio's errors as fully as the synchronous ones."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import chatpro_privacy_client as cp
import grpc
import pytest
from chatpro.privacy.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    policy_pb2,
    policy_service_pb2,
    policy_service_pb2_grpc,
)
from fakes import rich_status
from google.rpc import code_pb2  # type: ignore[import-untyped, unused-ignore]

READ = "/chatpro.privacy.v1.PolicyService/GetCurrentPolicy"
WRITE = "/chatpro.privacy.v1.AccountService/Register"


Outcome = tuple[grpc.StatusCode, float | None] | None  # None: answer OK


@dataclass
class Script:
    """The outcomes the fake server gives, in order, per method; attempts seen per method."""

    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, method: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.attempts[method] = self.attempts.get(method, 0) + 1
            queue = self.outcomes.get(method, [])
            outcome = queue.pop(0) if queue else None
        if outcome is not None:
            code, retry_after = outcome
            request_id = dict(context.invocation_metadata()).get("x-request-id", "")
            context.abort_with_status(rich_status(code, str(request_id), retry_after))


class _Policy(policy_service_pb2_grpc.PolicyServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def GetCurrentPolicy(self, request: Any, context: Any) -> Any:
        self.script.next(READ, context)
        return policy_service_pb2.GetCurrentPolicyResponse(
            policy=policy_pb2.PolicyVersion(version="v-test")
        )


class _Accounts(account_service_pb2_grpc.AccountServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def Register(self, request: Any, context: Any) -> Any:
        self.script.next(WRITE, context)
        return account_service_pb2.RegisterResponse()


@pytest.fixture
def fake() -> Iterator[tuple[str, Script]]:
    script = Script()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    policy_service_pb2_grpc.add_PolicyServiceServicer_to_server(
        _Policy(script),  # type: ignore[abstract]
        server,
    )
    account_service_pb2_grpc.add_AccountServiceServicer_to_server(
        _Accounts(script),  # type: ignore[abstract]
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", script
    finally:
        server.stop(grace=None)


FAST = cp.RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)
UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, None)
THROTTLED = (grpc.StatusCode.RESOURCE_EXHAUSTED, 0.05)
OVERSIZED = (grpc.StatusCode.RESOURCE_EXHAUSTED, None)  # no RetryInfo: final


def _read(client: cp.Client) -> str:
    return client.policy.GetCurrentPolicy(
        policy_service_pb2.GetCurrentPolicyRequest()
    ).policy.version


def _write(client: cp.Client) -> None:
    client.accounts.Register(account_service_pb2.RegisterRequest())


def _async(target: str, call: Callable[[cp.AsyncClient], Any], **kw: Any) -> Any:
    async def run() -> Any:
        async with cp.connect_async(target, **kw) as client:
            return await call(client)

    return asyncio.run(run())


def test_the_idempotent_methods_are_the_reads() -> None:
    assert READ in cp.IDEMPOTENT_METHODS
    assert "/chatpro.privacy.v1.RightsService/ListRightsRequests" in cp.IDEMPOTENT_METHODS
    assert WRITE not in cp.IDEMPOTENT_METHODS
    assert "/chatpro.privacy.v1.RightsService/StreamRightsExport" not in cp.IDEMPOTENT_METHODS
    # A read that is recorded as a monitoring check is not repeated.
    assert "/chatpro.privacy.v1.MonitoringService/GetContentStatistics" not in cp.IDEMPOTENT_METHODS


def test_unavailable_reads_are_retried_by_grpc_and_writes_are_not(fake: tuple[str, Script]) -> None:
    target, script = fake
    script.outcomes = {READ: [UNAVAILABLE, UNAVAILABLE], WRITE: [UNAVAILABLE]}
    with cp.connect(target, retries=FAST) as client:
        assert _read(client) == "v-test"
        with pytest.raises(cp.Unavailable) as caught:
            _write(client)
    assert script.attempts == {READ: 3, WRITE: 1}
    assert caught.value.reason == "TEST_UNAVAILABLE"


def test_async_unavailable_reads_are_retried_too(fake: tuple[str, Script]) -> None:
    target, script = fake
    script.outcomes = {READ: [UNAVAILABLE, UNAVAILABLE]}

    async def read(client: cp.AsyncClient) -> str:
        response = await client.policy.GetCurrentPolicy(
            policy_service_pb2.GetCurrentPolicyRequest()
        )
        return response.policy.version

    assert _async(target, read, retries=FAST) == "v-test"
    assert script.attempts == {READ: 3}


def test_retry_info_is_honoured_on_any_method_sync_and_async(fake: tuple[str, Script]) -> None:
    target, script = fake
    script.outcomes = {WRITE: [THROTTLED, THROTTLED]}
    with cp.connect(target, retries=FAST) as client:
        _write(client)
        assert script.attempts == {WRITE: 3}
        script.outcomes = {WRITE: [THROTTLED]}
        future = client.accounts.Register.future(account_service_pb2.RegisterRequest())
        assert future.result() is not None
        assert script.attempts == {WRITE: 5}
    script.outcomes = {WRITE: [THROTTLED, THROTTLED]}
    script.attempts.clear()

    async def write(client: cp.AsyncClient) -> None:
        await client.accounts.Register(account_service_pb2.RegisterRequest())

    _async(target, write, retries=FAST)
    assert script.attempts == {WRITE: 3}


def test_no_retry_info_means_no_retry(fake: tuple[str, Script]) -> None:
    """An oversized request's RESOURCE_EXHAUSTED has no RetryInfo: sending it again would
    fail the same way for ever, so it is final."""
    target, script = fake
    script.outcomes = {WRITE: [OVERSIZED]}
    with cp.connect(target, retries=FAST) as client, pytest.raises(cp.ResourceExhausted) as caught:
        _write(client)
    assert caught.value.retry_after is None
    assert script.attempts == {WRITE: 1}


def test_attempts_are_bounded_and_a_delay_past_the_deadline_is_not_waited(
    fake: tuple[str, Script],
) -> None:
    target, script = fake
    script.outcomes = {WRITE: [THROTTLED] * 10}
    with cp.connect(target, retries=FAST) as client, pytest.raises(cp.ResourceExhausted):
        _write(client)
    assert script.attempts == {WRITE: FAST.max_attempts}
    script.attempts.clear()
    script.outcomes = {WRITE: [(grpc.StatusCode.RESOURCE_EXHAUSTED, 5.0)]}
    with (
        cp.connect(target, retries=FAST, default_timeout=1.0) as client,
        pytest.raises(cp.ResourceExhausted) as caught,
    ):
        _write(client)
    assert caught.value.retry_after == 5.0
    assert script.attempts == {WRITE: 1}


def test_no_retries_turns_both_off(fake: tuple[str, Script]) -> None:
    target, script = fake
    script.outcomes = {READ: [UNAVAILABLE], WRITE: [THROTTLED]}
    with cp.connect(target, retries=cp.NO_RETRIES) as client:
        with pytest.raises(cp.Unavailable):
            _read(client)
        with pytest.raises(cp.ResourceExhausted):
            _write(client)
    assert script.attempts == {READ: 1, WRITE: 1}


def test_from_rpc_error_keeps_reason_and_request_id_of_aio_errors(fake: tuple[str, Script]) -> None:
    target, script = fake
    script.outcomes = {WRITE: [THROTTLED]}

    async def plain_aio_call() -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = account_service_pb2_grpc.AccountServiceStub(channel)
            try:
                await stub.Register(
                    account_service_pb2.RegisterRequest(), metadata=(("x-request-id", "aio-1"),)
                )
            except grpc.aio.AioRpcError as error:
                return error
        raise AssertionError("the call succeeded")

    error = cp.from_rpc_error(asyncio.run(plain_aio_call()))
    assert isinstance(error, cp.ResourceExhausted)
    assert (error.reason, error.request_id, error.domain) == (
        "TEST_RESOURCE_EXHAUSTED",
        "aio-1",
        cp.DOMAIN,
    )
    assert error.retry_after == pytest.approx(0.05)
    assert error.code().value[0] == code_pb2.RESOURCE_EXHAUSTED
