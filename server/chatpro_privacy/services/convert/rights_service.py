"""Export chunks -> rights_service.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import rights_service_pb2 as pb

from chatpro_privacy.domain.rights.export.streaming import ExportChunk


def export_chunk(chunk: ExportChunk) -> pb.StreamRightsExportResponse:
    return pb.StreamRightsExportResponse(
        data=chunk.data, offset=chunk.offset, sha256=chunk.sha256, media_type=chunk.media_type
    )


def fetched_chunk(chunk: ExportChunk) -> pb.FetchPortabilityExportResponse:
    return pb.FetchPortabilityExportResponse(
        data=chunk.data, offset=chunk.offset, sha256=chunk.sha256, media_type=chunk.media_type
    )
