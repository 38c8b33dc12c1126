"""Call-recording uploads whose work is bounded and whose failures leave nothing (issue 15,
ORG-2, SEC-3): a chunk count cap, a least chunk size but for the last, a cap on uploads in
flight per organisation, an idle upload ended, and a cancelled or broken upload leaving no
recording and no blob, so that a replay of its request id starts afresh."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro.privacy.v1 import messaging_service_pb2_grpc as msg_grpc
from chatpro_privacy.storage.models import ContentItem
from chatpro_privacy.testing import InProcessServer
from helpers import Api, rpc_error, timestamp
from orgs import Org, build_org, conversation, upload

CHUNK = b"\x4f" * (64 * 1024)  # the least a chunk other than the last may hold


@pytest.fixture
def server(database_target: tuple[str, str | None]) -> Iterator[InProcessServer]:
    """Tight limits, so that each can be reached in a test: 6 chunks an upload, 3 uploads
    in flight per organisation, 1 s without a chunk."""
    url, schema = database_target
    with InProcessServer.start(
        url,
        schema=schema,
        upload_max_chunks=6,
        uploads_per_organisation=3,
        stream_idle_seconds=1.0,
    ) as srv:
        yield srv


@pytest.fixture
def school(api: Api) -> Org:
    return build_org(api, "u", members=("pupil1", "pupil2"))


def _metadata(conversation_id: str, request_id: str = "") -> msg.UploadCallRecordingRequest:
    return msg.UploadCallRecordingRequest(
        metadata=msg.CallRecordingMetadata(
            conversation_id=conversation_id,
            start_time=timestamp(dt.datetime(2026, 11, 1, 9, 0)),
            duration_seconds=60,
            media_type="audio/ogg",
            request_id=request_id,
        )
    )


def _blobs(server: InProcessServer) -> list[Path]:
    return [p for p in Path(server.settings.blob_dir).rglob("*") if p.is_file()]


def _wait(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _recordings() -> int:
    return int(ContentItem.select().where(ContentItem.kind == "call_recording").count())


def _held_upload(
    api: Api, token: str, conversation_id: str, chunks: int, request_id: str = ""
) -> tuple[grpc.Future[msg.UploadCallRecordingResponse], threading.Event]:
    """An upload that sends its metadata and ``chunks`` chunks, then waits to be released."""
    release = threading.Event()

    def requests() -> Iterator[msg.UploadCallRecordingRequest]:
        yield _metadata(conversation_id, request_id)
        for _ in range(chunks):
            yield msg.UploadCallRecordingRequest(chunk=CHUNK)
        release.wait(10)

    call = api.messaging.UploadCallRecording.future(requests(), metadata=api.auth(token))
    return call, release


def test_a_cancelled_upload_leaves_nothing_and_its_replay_starts_afresh(
    api: Api, school: Org, server: InProcessServer
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    call, release = _held_upload(api, p1.token, group, 3, request_id="call-cancelled")
    _wait(lambda: len(_blobs(server)) == 3)
    call.cancel()
    release.set()
    _wait(lambda: not _blobs(server))
    time.sleep(0.2)  # what the server does after the cancellation, it has done
    assert (_recordings(), _blobs(server)) == (0, [])
    again = upload(api, p1.token, group, [CHUNK] * 5, request_id="call-cancelled")
    assert (again.chunk_count, again.size_bytes) == (5, 5 * len(CHUNK))
    assert (_recordings(), len(_blobs(server))) == (1, 5)


def test_an_upload_whose_client_breaks_part_way_leaves_nothing(
    api: Api, school: Org, server: InProcessServer
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])

    def requests() -> Iterator[msg.UploadCallRecordingRequest]:
        yield _metadata(group, "call-broken")
        for _ in range(3):
            yield msg.UploadCallRecordingRequest(chunk=CHUNK)
        _wait(lambda: len(_blobs(server)) == 3)
        raise RuntimeError("the phone lost its network")

    with pytest.raises(grpc.RpcError):
        api.messaging.UploadCallRecording(requests(), metadata=api.auth(p1.token))
    _wait(lambda: not _blobs(server))
    time.sleep(0.2)
    assert (_recordings(), _blobs(server)) == (0, [])
    assert upload(api, p1.token, group, [CHUNK, b"end"], request_id="call-broken").chunk_count == 2


def test_the_chunk_cap_holds_and_leaves_nothing(
    api: Api, school: Org, server: InProcessServer
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    assert upload(api, p1.token, group, [CHUNK] * 6).chunk_count == 6  # the cap itself
    failure = rpc_error(lambda: upload(api, p1.token, group, [CHUNK] * 7))
    assert (failure.code, failure.violations) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {"chunk": "TOO_MANY_CHUNKS"},
    )
    assert (_recordings(), len(_blobs(server))) == (1, 6)


def test_small_chunks_are_refused_but_the_last(
    api: Api, school: Org, server: InProcessServer
) -> None:
    """20,000 one-byte chunks were 20,000 files: now the second chunk ends the upload."""
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    started = time.perf_counter()
    failure = rpc_error(lambda: upload(api, p1.token, group, [b"x"] * 20_000))
    assert (failure.code, failure.violations) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {"chunk": "CHUNK_TOO_SMALL"},
    )
    assert time.perf_counter() - started < 5
    assert (_recordings(), _blobs(server)) == (0, [])
    last_small = upload(api, p1.token, group, [CHUNK, CHUNK, b"x"])
    assert (last_small.chunk_count, last_small.size_bytes) == (3, 2 * len(CHUNK) + 1)


def test_uploads_in_flight_are_capped_per_organisation(api: Api, school: Org) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    held = [_held_upload(api, p.token, group, 1) for p in (p1, p2, p1)]
    try:
        time.sleep(0.3)  # the three have their places
        failure = rpc_error(lambda: upload(api, p2.token, group, [CHUNK]))
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "UPLOADS_PER_ORGANISATION_EXHAUSTED",
        )
    finally:
        for _, release in held:
            release.set()
    for call, _ in held:
        assert call.result(10).recording.chunk_count == 1
    assert upload(api, p2.token, group, [CHUNK]).chunk_count == 1  # places are given back


def test_an_idle_upload_is_ended_and_leaves_nothing(
    api: Api, school: Org, server: InProcessServer
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    call, release = _held_upload(api, p1.token, group, 2)
    try:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            call.result(10)
        waited = time.monotonic() - started
    finally:
        release.set()
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.9 < waited < 3, waited  # the setting says 1 s
    _wait(lambda: not _blobs(server))
    assert _recordings() == 0


def test_an_upload_cancelled_by_an_asyncio_client_leaves_nothing(
    api: Api, school: Org, server: InProcessServer
) -> None:
    """The issue's attack, 15 times: metadata and 3 of 10 chunks, a pause (the server has
    stored them and waits), then the call cancelled. grpc may show the server the stream's
    end before the cancellation: without waiting for it, about one in five was stored."""
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])

    async def attack(request_id: str) -> None:
        channel = grpc.aio.insecure_channel(server.target)
        call = msg_grpc.MessagingServiceStub(channel).UploadCallRecording(
            metadata=api.auth(p1.token)
        )
        await call.write(_metadata(group, request_id))
        for _ in range(3):
            await call.write(msg.UploadCallRecordingRequest(chunk=CHUNK))
        await asyncio.sleep(0.2)
        call.cancel()
        await asyncio.sleep(0.1)
        await channel.close()

    for attempt in range(15):
        asyncio.run(attack(f"aio-cancel-{attempt}"))
    _wait(lambda: not _blobs(server))
    assert _recordings() == 0
    replayed = upload(api, p1.token, group, [CHUNK] * 5, request_id="aio-cancel-0")
    assert (replayed.chunk_count, _recordings()) == (5, 1)  # afresh, not the truncated one


def test_a_declared_size_keeps_a_stream_cut_short_from_being_stored(
    api: Api, school: Org, server: InProcessServer
) -> None:
    """A client that declares the audio's size is safe even from a stream that ends
    early as if whole (3 of 10 chunks, then the end): nothing is stored."""
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    first = _metadata(group, "declared")
    first.metadata.size_bytes = 5 * len(CHUNK)
    cut_short = [first, *[msg.UploadCallRecordingRequest(chunk=CHUNK)] * 3]
    failure = rpc_error(
        lambda: api.messaging.UploadCallRecording(iter(cut_short), metadata=api.auth(p1.token))
    )
    assert failure.violations == {"metadata.size_bytes": "SIZE_MISMATCH"}
    assert (_recordings(), _blobs(server)) == (0, [])
    whole = [first, *[msg.UploadCallRecordingRequest(chunk=CHUNK)] * 5]
    stored = api.messaging.UploadCallRecording(iter(whole), metadata=api.auth(p1.token))
    assert stored.recording.size_bytes == 5 * len(CHUNK)


def test_uploads_in_flight_when_the_server_stops_leave_no_blob(
    database_target: tuple[str, str | None],
) -> None:
    """Stopping cancels them: each takes its worker back (one worker for six uploads) and
    removes its partial audio before the workers stop."""
    url, schema = database_target
    with (
        InProcessServer.start(
            url, schema=schema, call_workers=1, uploads_per_organisation=10
        ) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        api = Api(server, channel)
        school = build_org(api, "t", members=("pupil1", "pupil2"))
        p1, p2 = school.members["pupil1"], school.members["pupil2"]
        group = conversation(api, p1, school.organisation_id, [p2])
        held = [_held_upload(api, p.token, group, 2) for p in (p1, p2) * 3]
        _wait(lambda: len(_blobs(server)) == 12)
        server.stop()
        for call, release in held:
            release.set()
            with pytest.raises(grpc.RpcError):
                call.result(10)
        assert _blobs(server) == []
