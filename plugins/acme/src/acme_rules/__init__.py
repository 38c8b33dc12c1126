"""Acme Ltd's rules for its staff's messages and call recordings.

- keeps content 6 months (or as configured; the host honours it within what Acme's
  statement announces);
- lets an administrator monitor content only with a ticket number in the request's
  justification (e.g. "SEC-1042: suspected leak"), whatever the reason given;
- flags messages marked "confidential";
- adds a JSON Lines export format (``jsonl``);
- keeps a departed, expired or erased member's messages as Acme's business record,
  pseudonymised.

Configuration (JSON)::

    {"retention_months": 6, "ticket_pattern": "[A-Z]{2,10}-[0-9]+", "flag_words": ["confidential"]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from chatpro_privacy.plugin import (
    MAX_RETENTION_MONTHS,
    MIN_RETENTION_MONTHS,
    AccessDecision,
    AccessRequest,
    ContentDisposition,
    ContentKind,
    ContentView,
    DepartureChange,
    Disposition,
    ExportFormat,
    ExportRecord,
    Flag,
    MemberView,
    PluginContext,
    Withheld,
    default_export_record,
    hookimpl,
)

DEFAULT_MONTHS = 6
DEFAULT_TICKET = r"[A-Z]{2,10}-[0-9]+"
RECORD_REASON = "Acme keeps staff messages as business records for its retention period"


def _months(config: Mapping[str, Any]) -> int:
    months = config.get("retention_months", DEFAULT_MONTHS)
    if (
        not isinstance(months, int)
        or isinstance(months, bool)
        or not MIN_RETENTION_MONTHS <= months <= MAX_RETENTION_MONTHS
    ):
        raise ValueError(
            f"retention_months must be a whole number from {MIN_RETENTION_MONTHS} "
            f"to {MAX_RETENTION_MONTHS}"
        )
    return months


def _pattern(config: Mapping[str, Any]) -> re.Pattern[str]:
    text = config.get("ticket_pattern", DEFAULT_TICKET)
    try:
        return re.compile(rf"\b{text}\b")
    except (re.error, TypeError):
        raise ValueError("ticket_pattern must be a regular expression") from None


def _words(config: Mapping[str, Any]) -> tuple[str, ...]:
    words = config.get("flag_words", ["confidential"])
    if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
        raise ValueError("flag_words must be a list of non-empty strings")
    return tuple(w.strip().lower() for w in words)


class AcmeRules:
    def __init__(self, context: PluginContext) -> None:
        self.months = _months(context.config)
        self.ticket = _pattern(context.config)
        self.words = _words(context.config)

    @hookimpl
    def chatpro_retention_months(self, kind: ContentKind) -> int:
        return self.months

    @hookimpl
    def chatpro_approve_access(self, request: AccessRequest) -> AccessDecision:
        if self.ticket.search(request.justification):
            return AccessDecision(True)
        return AccessDecision(False, "Acme requires a ticket number in the justification")

    @hookimpl
    def chatpro_flag_content(self, content: ContentView) -> list[Flag]:
        text = content.text.lower()
        return [Flag("confidential", f"marked {w!r}") for w in self.words if w in text]

    @hookimpl
    def chatpro_export_content(
        self, items: Iterator[ContentView]
    ) -> Iterable[ExportRecord | Withheld]:
        return (default_export_record(item) for item in items)

    @hookimpl
    def chatpro_export_formats(self) -> list[ExportFormat]:
        return [ExportFormat("jsonl", "application/x-ndjson")]

    @hookimpl
    def chatpro_render_export(
        self, format_name: str, records: Iterator[ExportRecord]
    ) -> Iterable[bytes] | None:
        if format_name != "jsonl":
            return None
        return _jsonl(records)

    @hookimpl
    def chatpro_departed_content(
        self, member: MemberView, change: DepartureChange
    ) -> ContentDisposition:
        return ContentDisposition(Disposition.KEEP_PSEUDONYMISED, RECORD_REASON)


def _jsonl(records: Iterator[ExportRecord]) -> Iterator[bytes]:
    for record in records:
        line = {"kind": str(record.kind), "content_id": record.content_id, **record.fields}
        yield (json.dumps(line, sort_keys=True) + "\n").encode("utf-8")
