"""The built-in defaults: an ordinary plugin registered last, so that any organisation's
plugin overrides it. 12-month retention, no vetoes, no flags, a random sample, access
allowed, JSON export, delete on erasure, restriction stops monitoring."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence

import pluggy

from chatpro_privacy.plugin.hookspecs import PROJECT
from chatpro_privacy.plugin.types import (
    DEFAULT_RETENTION_MONTHS,
    AccessDecision,
    ContentDisposition,
    ContentRef,
    ContentView,
    Disposition,
    ExportFormat,
    ExportRecord,
    Withheld,
    default_export_record,
)

_impl = pluggy.HookimplMarker(PROJECT)
NAME = "defaults"


class Defaults:
    @_impl(trylast=True)
    def chatpro_retention_months(self) -> int:
        return DEFAULT_RETENTION_MONTHS

    @_impl(trylast=True)
    def chatpro_choose_sample(
        self, candidates: Sequence[ContentRef], size: int
    ) -> list[ContentRef]:
        return random.sample(list(candidates), min(size, len(candidates)))

    @_impl(trylast=True)
    def chatpro_approve_access(self) -> AccessDecision:
        return AccessDecision(allowed=True)

    @_impl(trylast=True)
    def chatpro_export_content(
        self, items: Iterator[ContentView]
    ) -> Iterable[ExportRecord | Withheld]:
        for item in items:
            yield default_export_record(item)

    @_impl(trylast=True)
    def chatpro_export_formats(self) -> list[ExportFormat]:
        return [ExportFormat("json", "application/json")]

    @_impl(trylast=True)
    def chatpro_render_export(
        self, format_name: str, records: Iterator[ExportRecord]
    ) -> Iterable[bytes] | None:
        if format_name != "json":
            return None
        return _json_lines(records)

    @_impl(trylast=True)
    def chatpro_departed_content(self) -> ContentDisposition:
        return ContentDisposition(Disposition.DELETE, "no organisation rule keeps it")

    @_impl(trylast=True)
    def chatpro_restriction_stops_monitoring(self) -> bool:
        return True


def _json_lines(records: Iterator[ExportRecord]) -> Iterator[bytes]:
    for record in records:
        line = {"kind": record.kind, "content_id": record.content_id, **record.fields}
        yield (json.dumps(line, sort_keys=True, default=str) + "\n").encode("utf-8")
