"""Content (ORG-2, ORG-4, ORG-5): conversations, messages and call recordings, stored
encrypted, readable by participants only."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import grpc
import pytest
from chatpro.privacy.v1 import messaging_pb2
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro_privacy import logs
from chatpro_privacy.storage.db import is_postgres
from chatpro_privacy.testing import InProcessServer
from helpers import Api, Unchanged, command_url, database_fingerprint, rpc_error
from orgs import Org, build_org, conversation, person, send, upload


@pytest.fixture
def school(api: Api) -> Org:
    return build_org(api, "s", members=("pupil1", "pupil2", "teacher"))


def test_group_conversation_messages_are_listed_newest_first_in_pages(
    api: Api, school: Org
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    sent = [send(api, p1 if i % 2 else p2, group, f"message {i}").message_id for i in range(7)]
    page = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=group, page_size=4), metadata=api.auth(p2.token)
    )
    assert [m.text for m in page.messages] == ["message 6", "message 5", "message 4", "message 3"]
    assert all(m.readable for m in page.messages)
    rest = api.messaging.ListMessages(
        msg.ListMessagesRequest(
            conversation_id=group, page_size=4, page_token=page.next_page_token
        ),
        metadata=api.auth(p1.token),
    )
    assert [m.message_id for m in [*page.messages, *rest.messages]] == sent[::-1]
    assert rest.next_page_token == ""
    assert rest.messages[-1].sender_account_id == p2.account_id


def test_a_retried_send_is_stored_once(api: Api, school: Org) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    request = msg.SendMessageRequest(conversation_id=group, text="hello", request_id="r-1")
    first = api.messaging.SendMessage(request, metadata=api.auth(p1.token)).message
    again = api.messaging.SendMessage(request, metadata=api.auth(p1.token)).message
    assert first.message_id == again.message_id
    other = msg.SendMessageRequest(conversation_id=group, text="something else", request_id="r-1")
    failure = rpc_error(lambda: api.messaging.SendMessage(other, metadata=api.auth(p1.token)))
    assert failure.violations == {"request_id": "REQUEST_ID_REUSED"}
    listed = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=group), metadata=api.auth(p1.token)
    )
    assert len(listed.messages) == 1


def test_broadcast_only_its_senders_post(api: Api, school: Org, unchanged: Unchanged) -> None:
    teacher, p1 = school.members["teacher"], school.members["pupil1"]
    channel = conversation(api, teacher, school.organisation_id, [p1], broadcast=True)
    send(api, teacher, channel, "Homework is due on Friday")
    failure = unchanged(lambda: send(api, p1, channel, "no"))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "BROADCAST_SENDERS_ONLY",
    )
    listed = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=channel), metadata=api.auth(p1.token)
    )
    assert [m.text for m in listed.messages] == ["Homework is due on Friday"]


def test_conversations_are_among_active_members_only(
    api: Api, school: Org, unchanged: Unchanged
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    outsider = person(api, "outsider")
    failure = unchanged(lambda: conversation(api, p1, school.organisation_id, [outsider]))
    assert failure.violations == {"participant_account_ids": "NOT_A_MEMBER"}
    failure = unchanged(
        lambda: conversation(
            api,
            p1,
            school.organisation_id,
            [p2, outsider],
            kind=messaging_pb2.CONVERSATION_KIND_INDIVIDUAL,
        )
    )
    assert failure.violations == {"participant_account_ids": "ONE_PARTICIPANT"}
    # An outsider's own organisation-less call: the organisation does not exist for them.
    failure = unchanged(lambda: conversation(api, outsider, school.organisation_id, [p1]))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "ORGANISATION_NOT_FOUND")
    one_to_one = conversation(
        api, p1, school.organisation_id, [p2], kind=messaging_pb2.CONVERSATION_KIND_INDIVIDUAL
    )
    mine = api.messaging.ListConversations(
        msg.ListConversationsRequest(organisation_id=school.organisation_id),
        metadata=api.auth(p2.token),
    )
    assert [c.conversation_id for c in mine.conversations] == [one_to_one]
    # Not a participant, even as the organisation's administrator: it does not exist.
    failure = rpc_error(
        lambda: api.messaging.ListMessages(
            msg.ListMessagesRequest(conversation_id=one_to_one),
            metadata=api.auth(school.members["teacher"].token),
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "CONVERSATION_NOT_FOUND")
    failure = rpc_error(
        lambda: api.messaging.ListMessages(
            msg.ListMessagesRequest(conversation_id=one_to_one),
            metadata=api.auth(school.admin.token),
        )
    )
    assert failure.code == grpc.StatusCode.NOT_FOUND


def test_call_recording_round_trip_in_chunks(api: Api, school: Org) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    audio = [bytes([i]) * 70_000 for i in range(5)]
    recording = upload(api, p1.token, group, audio, request_id="call-1")
    assert (recording.chunk_count, recording.size_bytes, recording.readable) == (5, 350_000, True)
    assert upload(api, p1.token, group, audio, request_id="call-1").recording_id == (
        recording.recording_id
    )
    streamed = list(
        api.messaging.StreamCallRecordingAudio(
            msg.StreamCallRecordingAudioRequest(recording_id=recording.recording_id),
            metadata=api.auth(p2.token),
        )
    )
    assert [c.index for c in streamed] == [0, 1, 2, 3, 4]
    assert b"".join(c.data for c in streamed) == b"".join(audio)
    listed = api.messaging.ListCallRecordings(
        msg.ListCallRecordingsRequest(conversation_id=group), metadata=api.auth(p2.token)
    )
    assert [r.recording_id for r in listed.recordings] == [recording.recording_id]


def test_an_upload_without_metadata_or_audio_stores_nothing(
    api: Api,
    school: Org,
    server: InProcessServer,
    unchanged: Unchanged,
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    failure = unchanged(lambda: upload(api, p1.token, group, []))
    assert failure.violations == {"chunk": "REQUIRED"}
    failure = unchanged(
        lambda: api.messaging.UploadCallRecording(
            iter([msg.UploadCallRecordingRequest(chunk=b"x")]), metadata=api.auth(p1.token)
        )
    )
    assert failure.violations == {"metadata": "REQUIRED"}
    assert list(Path(server.settings.blob_dir).rglob("*")) in ([], [Path(server.settings.blob_dir)])


def test_nothing_is_stored_in_plaintext(
    api: Api, school: Org, server: InProcessServer, database_target: tuple[str, str | None]
) -> None:
    """Messages and recordings leave no plaintext in the database file, its WAL, the blob
    store, the key store or the logs (ORG-2, SEC-1)."""
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    secret_text = "zanzibar-marmalade-417 is the secret"
    secret_audio = b"AUDIO-PLAINTEXT-MARKER" * 4000  # two chunks, the first of >= 64 KiB
    buffer = io.StringIO()
    logs.configure("json", "debug", stream=buffer)
    logging.getLogger("peewee").setLevel(logging.DEBUG)  # even SQL with its parameters
    try:
        send(api, p1, group, secret_text)
        upload(api, p2.token, group, [secret_audio[:70_000], secret_audio[70_000:]])
        api.messaging.ListMessages(
            msg.ListMessagesRequest(conversation_id=group), metadata=api.auth(p2.token)
        )
    finally:
        logs.configure("console", "info")
        logging.getLogger("peewee").setLevel(logging.WARNING)
    logged = buffer.getvalue()
    assert "SendMessage" in logged and "INSERT" in logged
    assert "zanzibar" not in logged and "AUDIO-PLAINTEXT" not in logged
    files = list(Path(server.settings.blob_dir).rglob("*"))
    key_store = Path(server.settings.key_store_url.removeprefix("sqlite:///"))
    files += [p for p in key_store.parent.glob(key_store.name + "*")]
    url, _ = database_target
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        files += list(db.parent.glob(db.name + "*"))
    assert any(f.name.endswith("-wal") for f in files) or is_postgres()
    for path in files:
        if path.is_file():
            data = path.read_bytes()
            assert b"zanzibar" not in data, path
            assert b"AUDIO-PLAINTEXT-MARKER" not in data, path
    if is_postgres():
        from chatpro_privacy.storage.models import ALL_MODELS

        for model in ALL_MODELS:
            for row in model.select().tuples():
                assert "zanzibar" not in repr(row)
                assert b"AUDIO-PLAINTEXT" not in repr(row).encode()


def test_destroyed_keys_make_content_unreadable(
    api: Api, school: Org, server: InProcessServer
) -> None:
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    send(api, p1, group, "from pupil one")
    send(api, p2, group, "from pupil two")
    recording = upload(api, p1.token, group, [b"audio" * 100])
    from chatpro_privacy.storage.models import Account

    ref = Account.get_by_id(p1.account_id).subject_ref
    before = database_fingerprint()
    assert server.runtime.vault.keys.destroy_member_key(school.organisation_id, ref)
    # The content database did not change: a restored backup of it holds no key either.
    assert database_fingerprint() == before

    def texts() -> list[tuple[str, bool]]:
        listed = api.messaging.ListMessages(
            msg.ListMessagesRequest(conversation_id=group), metadata=api.auth(p2.token)
        )
        return [(m.text, m.readable) for m in listed.messages]

    assert texts() == [("from pupil two", True), ("", False)]
    failure = rpc_error(
        lambda: list(
            api.messaging.StreamCallRecordingAudio(
                msg.StreamCallRecordingAudioRequest(recording_id=recording.recording_id),
                metadata=api.auth(p2.token),
            )
        )
    )
    assert failure.reason == "CONTENT_KEY_DESTROYED"
    server.runtime.vault.keys.destroy_organisation_key(school.organisation_id)
    assert texts() == [("", False), ("", False)]
    # New content after destruction is sealed under new keys and readable again.
    send(api, p1, group, "after")
    assert texts()[0] == ("after", True)


def test_platform_staff_get_permission_denied_on_content(api: Api, school: Org) -> None:
    """ORG-4: an operator or data privacy manager is refused even as a participant."""
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    send(api, p1, group, "private")
    for token in (school.operator, api.staff("data_privacy_manager", "dpm")):
        failure = rpc_error(
            partial(
                api.messaging.ListMessages,
                msg.ListMessagesRequest(conversation_id=group),
                metadata=api.auth(token),
            )
        )
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "CHATPRO_STAFF_NO_CONTENT_ACCESS",
        )


def test_the_command_destroys_a_members_keys_and_their_word_tokens(
    api: Api,
    school: Org,
    server: InProcessServer,
    database_target: tuple[str, str | None],
) -> None:
    url, schema = database_target
    from chatpro_privacy.storage.models import ContentToken

    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    send(api, p1, group, "alpha beta")
    send(api, p2, group, "gamma")
    env = {
        **os.environ,
        "DATABASE_URL": command_url(url, schema),
        "CHATPRO_SECRET_KEY": server.settings.secret_key.hex(),
        "CHATPRO_RECEIPT_SIGNING_KEY": server.settings.receipt_signing_key.hex(),
        "CHATPRO_MASTER_KEY": server.settings.master_key.hex(),
        "CHATPRO_KEY_STORE_URL": server.settings.key_store_url,
    }
    command = [sys.executable, "-m", "chatpro_privacy", "destroy-keys", school.organisation_id]
    done = subprocess.run(
        [*command, "--member", p1.account_id], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "organisation_id": school.organisation_id,
        "data_keys": 1,
        "word_tokens": 2,
    }
    assert ContentToken.select().count() == 1
    listed = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=group), metadata=api.auth(p2.token)
    )
    assert [(m.text, m.readable) for m in listed.messages] == [("gamma", True), ("", False)]
    everything = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(everything.stdout)["data_keys"] == 1
    unknown = subprocess.run(
        [*command[:-1], "nope"], env=env, capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 2 and "ORGANISATION_NOT_FOUND" in unknown.stderr
