"""Streaming calls through the client, against a fake server: the token and request id go
with client streams and server streams alike, and a stream's failure is a typed error, in
the synchronous and the asyncio client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import chatpro_privacy_client as cp
import grpc
import pytest
from chatpro.privacy.v1 import messaging_pb2, messaging_service_pb2, messaging_service_pb2_grpc
from fakes import rich_status

TOKEN = "cps1_stream_test"


def _check_caller(context: grpc.ServicerContext) -> None:
    """Refuse as the service would without the client's token; echo the request id."""
    headers = dict(context.invocation_metadata())
    if headers.get("authorization") != f"Bearer {TOKEN}":
        context.abort_with_status(
            rich_status(grpc.StatusCode.UNAUTHENTICATED, str(headers.get("x-request-id", "")))
        )


class _Messaging(messaging_service_pb2_grpc.MessagingServiceServicer):
    def UploadCallRecording(self, request_iterator: Any, context: Any) -> Any:
        _check_caller(context)
        requests = list(request_iterator)
        if not requests[0].HasField("metadata"):
            request_id = dict(context.invocation_metadata())["x-request-id"]
            context.abort_with_status(rich_status(grpc.StatusCode.INVALID_ARGUMENT, request_id))
        size = sum(len(r.chunk) for r in requests[1:])
        return messaging_service_pb2.UploadCallRecordingResponse(
            recording=messaging_pb2.CallRecording(recording_id=f"rec-{size}")
        )

    def StreamCallRecordingAudio(self, request: Any, context: Any) -> Iterator[Any]:
        _check_caller(context)
        for index in range(3):
            yield messaging_service_pb2.StreamCallRecordingAudioResponse(index=index, data=b"x")
        if request.recording_id == "breaks":
            request_id = dict(context.invocation_metadata())["x-request-id"]
            context.abort_with_status(rich_status(grpc.StatusCode.NOT_FOUND, request_id))


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    messaging_service_pb2_grpc.add_MessagingServiceServicer_to_server(
        _Messaging(),  # type: ignore[abstract]
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


Upload = messaging_service_pb2.UploadCallRecordingRequest


def _upload(with_metadata: bool = True) -> Iterator[Upload]:
    if with_metadata:
        yield messaging_service_pb2.UploadCallRecordingRequest(
            metadata=messaging_service_pb2.CallRecordingMetadata()
        )
    yield messaging_service_pb2.UploadCallRecordingRequest(chunk=b"abcd")


def _audio(recording_id: str) -> messaging_service_pb2.StreamCallRecordingAudioRequest:
    return messaging_service_pb2.StreamCallRecordingAudioRequest(recording_id=recording_id)


def test_sync_streams_carry_the_token_and_raise_typed_errors(target: str) -> None:
    with cp.connect(target, token=TOKEN, request_id_factory=lambda: "rid-sync") as client:
        assert client.messaging.UploadCallRecording(_upload()).recording.recording_id == "rec-4"
        assert [c.index for c in client.messaging.StreamCallRecordingAudio(_audio("r1"))] == [
            0,
            1,
            2,
        ]
        with pytest.raises(cp.InvalidArgument) as bad_upload:
            client.messaging.UploadCallRecording(_upload(with_metadata=False))
        assert bad_upload.value.request_id == "rid-sync"
        read: list[int] = []
        with pytest.raises(cp.NotFound) as broken:
            for chunk in client.messaging.StreamCallRecordingAudio(_audio("breaks")):
                read.append(chunk.index)
        assert read == [0, 1, 2] and broken.value.reason == "TEST_NOT_FOUND"
        anonymous = client.with_token(None)
        with pytest.raises(cp.Unauthenticated):
            list(anonymous.messaging.StreamCallRecordingAudio(_audio("r1")))
        with pytest.raises(cp.Unauthenticated):
            anonymous.messaging.UploadCallRecording(_upload())


def test_async_streams_carry_the_token_and_raise_typed_errors(target: str) -> None:
    async def run() -> None:
        async with cp.connect_async(target, token=TOKEN) as client:
            uploaded = await client.messaging.UploadCallRecording(_upload())
            assert uploaded.recording.recording_id == "rec-4"
            audio = client.messaging.StreamCallRecordingAudio(_audio("r1"))
            assert [chunk.index async for chunk in audio] == [0, 1, 2]
            with pytest.raises(cp.InvalidArgument) as bad_upload:
                await client.messaging.UploadCallRecording(_upload(with_metadata=False))
            assert bad_upload.value.request_id
            read: list[int] = []
            with pytest.raises(cp.NotFound):
                async for chunk in client.messaging.StreamCallRecordingAudio(_audio("breaks")):
                    read.append(chunk.index)
            assert read == [0, 1, 2]
            async with client.with_token(None) as anonymous:
                with pytest.raises(cp.Unauthenticated):
                    await anonymous.messaging.UploadCallRecording(_upload())

    asyncio.run(run())
