"""A call recording's metadata, the first message of an upload (messaging_service.proto)."""

from __future__ import annotations

from chatpro.privacy.v1 import messaging_service_pb2 as pb

from chatpro_privacy.domain.content.recordings import RecordingMeta
from chatpro_privacy.services.convert.common import time_field


def recording_meta(m: pb.CallRecordingMetadata) -> RecordingMeta:
    return RecordingMeta(
        conversation_id=m.conversation_id,
        started_at=time_field(m, "start_time", "metadata."),
        duration_seconds=m.duration_seconds,
        media_type=m.media_type,
        request_id=m.request_id,
        size_bytes=m.size_bytes,
    )
