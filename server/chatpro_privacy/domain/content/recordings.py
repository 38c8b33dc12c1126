"""Call recordings (ORG-2): metadata in the database, the audio sealed chunk by chunk in
the blob store, each chunk bound to its organisation, recording and position.

Audio is written as it arrives, so memory stays flat whatever the length; an upload that
fails part way (refused, cancelled, its connection broken) leaves no chunk behind and no
recording, so a retry with its request id starts afresh.

An upload's work is bounded (issue 15): at most ``max_chunks`` chunks, each but the last at
least ``min_chunk_bytes`` (one file per chunk: a million one-byte chunks would be a million
files), and at most ``per_organisation`` uploads in flight for one organisation in this
process, so one organisation's members cannot hold every server's uploads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import peewee

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.content import content_access
from chatpro_privacy.domain.content.messages import Posting, conversation_page
from chatpro_privacy.domain.kernel import paging
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Violations,
)
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.vault.crypto import ContentUnreadable
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.types import ContentKind
from chatpro_privacy.storage.blobs import BlobMissing
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.keystore import DataKey
from chatpro_privacy.storage.models import ContentItem

MEDIA_TYPES = frozenset({"audio/ogg", "audio/mpeg", "audio/mp4", "audio/wav", "audio/webm"})
MAX_CHUNK = 1024 * 1024
MAX_RECORDING_BYTES = 2 * 1024 * 1024 * 1024
MAX_DURATION = 86_400


@dataclass(frozen=True)
class UploadLimits:
    """The defaults let a recording of the largest size through in chunks of the least size."""

    max_chunks: int = MAX_RECORDING_BYTES // (64 * 1024)
    min_chunk_bytes: int = 64 * 1024
    per_organisation: int = 50


@dataclass(frozen=True)
class RecordingMeta:
    conversation_id: str
    started_at: dt.datetime | None
    duration_seconds: int
    media_type: str
    request_id: str
    size_bytes: int = 0  # the whole audio's size, if the client declared it


@dataclass(frozen=True)
class RecordingView:
    item: ContentItem
    readable: bool


def _validate(meta: RecordingMeta) -> None:
    v = Violations()
    if meta.started_at is None:
        v.add("metadata.start_time", "is required", "REQUIRED")
    elif meta.started_at > clock.now() + dt.timedelta(minutes=5):
        v.add("metadata.start_time", "is in the future", "DATE_IN_FUTURE")
    if not 1 <= meta.duration_seconds <= MAX_DURATION:
        v.add("metadata.duration_seconds", f"must be 1 to {MAX_DURATION}", "OUT_OF_RANGE")
    if not 0 <= meta.size_bytes <= MAX_RECORDING_BYTES:
        v.add("metadata.size_bytes", "must be 0 (not declared) to 2 GiB", "OUT_OF_RANGE")
    if meta.media_type not in MEDIA_TYPES:
        v.add(
            "metadata.media_type",
            f"must be one of {', '.join(sorted(MEDIA_TYPES))}",
            "UNSUPPORTED_MEDIA_TYPE",
        )
    v.raise_if_any()


def _replay(prior: ContentItem) -> RecordingView:
    if prior.kind != ContentKind.CALL_RECORDING:
        raise InvalidArgument(
            [
                FieldViolation(
                    "metadata.request_id", "was already used for a message", "REQUEST_ID_REUSED"
                )
            ]
        )
    return RecordingView(prior, True)


class Recordings:
    def __init__(
        self, vault: Vault, retention: Retention, limits: UploadLimits | None = None
    ) -> None:
        self.vault = vault
        self.retention = retention
        self.limits = limits or UploadLimits()
        self._lock = threading.Lock()  # uploads run on several call workers
        self._in_flight: Counter[str] = Counter()

    @contextlib.contextmanager
    def _slot(self, org_id: str) -> Iterator[None]:
        """One of the organisation's places for an upload in flight, for the upload's time."""
        with self._lock:
            if self._in_flight[org_id] >= self.limits.per_organisation:
                raise ResourceExhausted(
                    "UPLOADS_PER_ORGANISATION_EXHAUSTED",
                    f"at most {self.limits.per_organisation} recordings are uploaded at once "
                    "for one organisation; try again shortly",
                    retry_after_seconds=5,
                )
            self._in_flight[org_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[org_id] -= 1
                if self._in_flight[org_id] <= 0:
                    del self._in_flight[org_id]

    def _check_chunk(self, chunk: bytes, count: int, previous: int, size: int) -> None:
        """``chunk`` is number ``count``; ``previous``, the size of the one before it, is
        checked now that it is known not to be the last."""
        if not chunk or len(chunk) > MAX_CHUNK:
            raise InvalidArgument(
                [FieldViolation("chunk", "must be 1 byte to 1 MiB", "OUT_OF_RANGE")]
            )
        least = self.limits.min_chunk_bytes
        if count > 0 and previous < least:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "chunk",
                        f"every chunk but the last holds at least {least} bytes",
                        "CHUNK_TOO_SMALL",
                    )
                ]
            )
        if count >= self.limits.max_chunks:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "chunk",
                        f"at most {self.limits.max_chunks} chunks; send larger ones",
                        "TOO_MANY_CHUNKS",
                    )
                ]
            )
        if size > MAX_RECORDING_BYTES:
            raise InvalidArgument(
                [FieldViolation("chunk", "the recording is over 2 GiB", "TOO_LARGE")]
            )

    async def upload(
        self, principal: Principal, meta: RecordingMeta, chunks: AsyncIterator[bytes]
    ) -> RecordingView:
        posting = Posting(principal, meta.conversation_id)
        org_id = posting.organisation_id
        _validate(meta)
        if (prior := posting.prior(meta.request_id)) is not None:
            return _replay(prior)
        posting.require_allowed()
        with self._slot(org_id):
            return await self._store(posting, meta, chunks)

    async def _store(
        self, posting: Posting, meta: RecordingMeta, chunks: AsyncIterator[bytes]
    ) -> RecordingView:
        org_id = posting.organisation_id
        key = self.vault.author_key(org_id, posting.author_ref)
        recording_id = new_id()
        count = size = previous = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                self._check_chunk(chunk, count, previous, size)
                self.vault.put_chunk(key, org_id, recording_id, count, chunk)
                count += 1
                previous = len(chunk)
            if count == 0:
                raise InvalidArgument(
                    [FieldViolation("chunk", "a recording needs its audio", "REQUIRED")]
                )
            if meta.size_bytes and size != meta.size_bytes:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "metadata.size_bytes",
                            f"{meta.size_bytes} bytes were declared and {size} arrived",
                            "SIZE_MISMATCH",
                        )
                    ]
                )
            with database.atomic():
                item = posting.create(
                    recording_id,
                    ContentKind.CALL_RECORDING,
                    key.key_id,
                    None,
                    started_at=meta.started_at,
                    duration_seconds=meta.duration_seconds,
                    media_type=meta.media_type,
                    chunk_count=count,
                    size_bytes=size,
                )
        except BaseException as exc:
            self.vault.delete_recording(org_id, recording_id)
            if isinstance(exc, peewee.IntegrityError):
                prior = posting.retried()
                if prior is not None:
                    return _replay(prior)
            raise
        return RecordingView(item, True)

    async def _item(self, principal: Principal, recording_id: str) -> ContentItem:
        item = ContentItem.get_or_none(
            (ContentItem.id == recording_id[:64]) & (ContentItem.kind == ContentKind.CALL_RECORDING)
        )
        if item is not None:
            try:
                content_access.participant(principal, item.conversation_id)
            except NotFound:
                item = None
        else:
            content_access.refuse_platform(principal)
        if item is not None and not await self.is_served(item):
            item = None  # past its retention period: gone for every caller (RET-1)
        if item is None:
            raise NotFound(
                "RECORDING_NOT_FOUND", "no such recording", {"recording_id": recording_id[:64]}
            )
        return item

    async def is_served(self, item: ContentItem) -> bool:
        served = await self.retention.served(item.organisation_id, (ContentKind.CALL_RECORDING,))
        return bool(ContentItem.select().where((ContentItem.seq == item.seq) & served).exists())

    async def get(self, principal: Principal, recording_id: str) -> RecordingView:
        item = await self._item(principal, recording_id)
        return RecordingView(item, bool(self.vault.readable([item.key_id])))

    async def list(
        self,
        principal: Principal,
        conversation_id: str,
        page_size: int,
        page_token: str,
        budget: paging.Budget[RecordingView] = paging.UNBOUNDED,
    ) -> paging.Page[RecordingView]:
        conversation, _ = content_access.participant(principal, conversation_id)
        size, cursor = paging.page(page_size, page_token, "call_recordings")
        served = await self.retention.served(
            conversation.organisation_id, (ContentKind.CALL_RECORDING,)
        )
        rows, more = conversation_page(
            ContentItem.select(),
            conversation.id,
            ContentKind.CALL_RECORDING,
            served,
            cursor,
            size,
        )
        live = self.vault.readable(r.key_id for r in rows)
        views = [RecordingView(r, r.key_id in live) for r in rows]
        return paging.by_position(views, [r.seq for r in rows], more, "call_recordings", budget)

    async def audio(self, principal: Principal, recording_id: str) -> Iterator[tuple[int, bytes]]:
        return self.stream(await self._item(principal, recording_id))

    def stream(self, item: ContentItem) -> Iterator[tuple[int, bytes]]:
        """The chunks in order; checks the key before the first is sent."""
        key = self.vault.keys.data_keys([item.key_id]).get(item.key_id)
        if key is None:
            raise FailedPrecondition(
                "CONTENT_KEY_DESTROYED", "this recording's key was destroyed; it cannot be played"
            )
        return self._chunks(key, item)

    def _chunks(self, key: DataKey, item: ContentItem) -> Iterator[tuple[int, bytes]]:
        for index in range(int(item.chunk_count or 0)):
            try:
                yield index, self.vault.get_chunk(key, item.organisation_id, item.id, index)
            except (BlobMissing, ContentUnreadable):
                raise FailedPrecondition(
                    "RECORDING_AUDIO_UNREADABLE", "part of this recording's audio is unreadable"
                ) from None
