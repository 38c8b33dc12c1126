"""Legal holds and export formats -> organisation_service.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import organisation_service_pb2 as pb

from chatpro_privacy.domain.retention.legal_holds import LegalHoldView
from chatpro_privacy.plugin.types import ExportFormat
from chatpro_privacy.services.convert.common import timestamp


def legal_hold(h: LegalHoldView) -> pb.LegalHold:
    return pb.LegalHold(
        legal_hold_id=h.id,
        organisation_id=h.organisation_id,
        account_id=h.account_id or "",
        conversation_id=h.conversation_id or "",
        reason=h.reason,
        place_time=timestamp(h.placed_at),
        release_time=timestamp(h.released_at),
    )


def export_format(plugin: str, f: ExportFormat) -> pb.ExportFormat:
    return pb.ExportFormat(name=f.name, media_type=f.media_type, plugin_name=plugin)
