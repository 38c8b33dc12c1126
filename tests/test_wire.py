"""The wire contract for hostile input (issue 19 items 1 and 3; SEC-3): undecodable bytes,
unknown enum numbers, NUL in streams and messages over the size limit each get a full
google.rpc.Status, and the access log records what the client got, and who it was."""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import grpc
import pytest
import structlog
from chatpro.privacy.v1 import (
    account_service_pb2,
    messaging_service_pb2,
    rights_pb2,
    rights_service_pb2,
)
from chatpro_privacy.settings import MAX_MESSAGE_BYTES
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from helpers import Api, child_birthday, rights_request_row, rpc_error
from structlog.contextvars import merge_contextvars

SIGN_IN = "/chatpro.privacy.v1.AccountService/SignIn"


@pytest.fixture
def access_log() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every line logged while the test runs; the access log's lines are "call" events."""
    with structlog.testing.capture_logs(processors=[merge_contextvars]) as logged:
        yield logged


def _calls(logged: list[MutableMapping[str, Any]], request_id: str) -> list[Any]:
    """The call's access log lines; the server writes its line just after it answers."""
    deadline = time.monotonic() + 5
    while True:
        lines = [
            x for x in logged if x.get("event") == "call" and x.get("request_id") == request_id
        ]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


def _raw(api: Api, path: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return api.channel.unary_unary(path)


def _status_details(error: grpc.RpcError) -> list[Any]:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    return list(status.details)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff",
        b"\x0a\x02\xc3\x28",
        b"\x0a\x05ab",
        b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80",
    ],
    ids=["junk", "invalid-utf8", "truncated", "overlong-varint"],
)
def test_undecodable_bytes_get_invalid_argument_with_error_info_and_a_log_line(
    api: Api, access_log: list[MutableMapping[str, Any]], payload: bytes
) -> None:
    rid = "undecodable-1"
    with pytest.raises(grpc.RpcError) as caught:
        _raw(api, SIGN_IN)(payload, metadata=(("x-request-id", rid),), timeout=10)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    infos = [d for d in _status_details(error) if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert (info.reason, info.metadata["request_id"]) == ("MALFORMED_REQUEST", rid)
    lines = _calls(access_log, rid)
    assert [(line["code"], line["reason"], line["method"]) for line in lines] == [
        ("INVALID_ARGUMENT", "MALFORMED_REQUEST", SIGN_IN)
    ]


def test_undecodable_messages_in_a_client_stream_are_invalid_argument(api: Api) -> None:
    call: grpc.StreamUnaryMultiCallable[bytes, bytes] = api.channel.stream_unary(
        "/chatpro.privacy.v1.MessagingService/UploadCallRecording"
    )
    _, token = api.adult("streamer")
    with pytest.raises(grpc.RpcError) as caught:
        call(iter([b"\xff\xff\xff"]), metadata=api.auth(token), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_enum_numbers_are_refused_naming_the_field(api: Api) -> None:
    dpm = api.staff("data_privacy_manager", "dpm")
    request = rights_service_pb2.ListRightsRequestsRequest(
        states=[rights_pb2.RIGHTS_REQUEST_STATE_RECEIVED, 99]  # type: ignore[list-item]
    )
    failure = rpc_error(lambda: api.rights.ListRightsRequests(request, metadata=api.auth(dpm)))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.violations == {"states": "UNKNOWN_ENUM_VALUE"}
    known = rights_service_pb2.ListRightsRequestsRequest(
        states=[rights_pb2.RIGHTS_REQUEST_STATE_RECEIVED]
    )
    api.rights.ListRightsRequests(known, metadata=api.auth(dpm))


def test_the_nul_rule_holds_on_streams(api: Api) -> None:
    _, token = api.adult("streamer")
    first = messaging_service_pb2.UploadCallRecordingRequest(
        metadata=messaging_service_pb2.CallRecordingMetadata(conversation_id="a\x00b")
    )
    failure = rpc_error(
        lambda: api.messaging.UploadCallRecording(iter([first]), metadata=api.auth(token))
    )
    assert failure.violations == {"metadata.conversation_id": "INVALID_CHARACTERS"}
    failure = rpc_error(
        lambda: list(
            api.rights.StreamRightsExport(
                rights_service_pb2.StreamRightsExportRequest(rights_request_id="r\x00"),
                metadata=api.auth(token),
            )
        )
    )
    assert failure.violations == {"rights_request_id": "INVALID_CHARACTERS"}


def test_a_request_over_the_limit_is_refused_without_retry_info(api: Api) -> None:
    big = account_service_pb2.SignInRequest(login="x" * (MAX_MESSAGE_BYTES + 10), password="p")
    with pytest.raises(grpc.RpcError) as caught:
        api.accounts.SignIn(big, timeout=10)
    error = caught.value
    assert error.code() in {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
    status = rpc_status.from_call(error)
    details = list(status.details) if status is not None else []
    assert not any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in details)


def test_a_response_over_the_limit_is_refused_with_a_reason_and_logged_as_such(
    api: Api, access_log: list[MutableMapping[str, Any]]
) -> None:
    dpm = api.staff("data_privacy_manager", "dpm")
    account, _ = api.adult("holder")
    corrections = [["email", f"{i:08d}@" + "x" * 30 + ".example.org"] for i in range(120_000)]
    row = rights_request_row(account.account_id, type="rectification", corrections=corrections)
    rid = "too-large-1"
    failure = rpc_error(
        lambda: api.rights.GetRightsRequest(
            rights_service_pb2.GetRightsRequestRequest(rights_request_id=row.id),
            metadata=(*api.auth(dpm), ("x-request-id", rid)),
        )
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RESPONSE_TOO_LARGE",
    )
    assert "retry_after_seconds" not in failure.metadata
    lines = _calls(access_log, rid)
    assert [(line["code"], line["reason"]) for line in lines] == [
        ("RESOURCE_EXHAUSTED", "RESPONSE_TOO_LARGE")
    ]


def test_a_guardian_scope_refusal_is_logged_with_the_guardian(
    api: Api, access_log: list[MutableMapping[str, Any]]
) -> None:
    outbox = api.service_token("notifications")
    api.register(username="kid", date_of_birth=child_birthday(), guardian_email="mum@example.com")
    event = next(
        e for e in api.outbox_events(outbox).events if e.HasField("guardian_consent_requested")
    )
    guardian = api.accounts.ConfirmGuardianConsent(
        account_service_pb2.ConfirmGuardianConsentRequest(
            token=event.guardian_consent_requested.token
        )
    ).guardian_session_token
    rid = "guardian-scope-1"
    failure = rpc_error(
        lambda: api.accounts.GetAccount(
            account_service_pb2.GetAccountRequest(),
            metadata=(*api.auth(guardian), ("x-request-id", rid)),
        )
    )
    assert failure.reason == "GUARDIAN_SESSION_SCOPE"
    (line,) = _calls(access_log, rid)
    assert line["code"] == "PERMISSION_DENIED"
    assert line["principal"] == "guardian"  # was "anonymous"
