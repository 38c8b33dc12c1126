"""A school's rules for its pupils' and staff's messages and call recordings.

- keeps content 24 months (or as configured), which the host honours only once the school's
  Privacy and Rules statement announces it;
- flags messages containing safeguarding words (a configurable list) as they are sent;
- keeps safeguarding records out of access and portability exports, naming the exemption;
- adds a CSV export format;
- keeps an erased or departed member's content as the school's record, pseudonymised.

Configuration (JSON, per school)::

    {"retention_months": {"message": 24, "call_recording": 24},
     "words": ["hurt myself", "bully"],
     "withhold_flagged_from_exports": true}
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from chatpro_privacy.plugin import (
    ContentDisposition,
    ContentKind,
    ContentView,
    Disposition,
    ExportFormat,
    ExportRecord,
    Flag,
    MemberView,
    PluginContext,
    Withheld,
    hookimpl,
    rfc3339,
    spreadsheet_safe,
)

DEFAULT_WORDS = (
    "hurt myself",
    "kill myself",
    "self harm",
    "abuse",
    "bully",
    "bullied",
    "unsafe at home",
)
DEFAULT_MONTHS = 24
EXEMPTION = (
    "safeguarding record withheld: serious harm and child abuse data exemptions, "
    "Data Protection Act 2018, Schedule 3"
)
CSV_FIELDS = ("kind", "content_id", "conversation_id", "created_at", "text")


def _words(config: Mapping[str, Any]) -> tuple[str, ...]:
    words = config.get("words", DEFAULT_WORDS)
    if not isinstance(words, list | tuple) or not all(
        isinstance(w, str) and w.strip() for w in words
    ):
        raise ValueError("words must be a list of non-empty strings")
    return tuple(w.strip().lower() for w in words)


def _months(config: Mapping[str, Any]) -> dict[str, int]:
    months = config.get(
        "retention_months", {"message": DEFAULT_MONTHS, "call_recording": DEFAULT_MONTHS}
    )
    if not isinstance(months, dict):
        raise ValueError("retention_months must map a content kind to months")
    for kind, value in months.items():
        if kind not in set(ContentKind):
            raise ValueError(f"retention_months: unknown content kind {kind!r}")
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 120:
            raise ValueError("retention_months: months must be whole numbers from 1 to 120")
    return dict(months)


class SchoolSafeguarding:
    def __init__(self, context: PluginContext) -> None:
        config = context.config
        self.months = _months(config)
        words = _words(config)
        self.pattern = re.compile(
            r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE
        )
        self.withhold = bool(config.get("withhold_flagged_from_exports", True))

    def _matches(self, text: str) -> list[str]:
        return sorted({m.group(1).lower() for m in self.pattern.finditer(text)})

    @hookimpl
    def chatpro_retention_months(self, kind: ContentKind) -> int | None:
        return self.months.get(kind)

    @hookimpl
    def chatpro_flag_content(self, content: ContentView) -> list[Flag]:
        return [Flag("safeguarding", f"mentions {word!r}") for word in self._matches(content.text)]

    @hookimpl
    def chatpro_export_content(
        self, items: Iterator[ContentView]
    ) -> Iterable[ExportRecord | Withheld]:
        for item in items:
            if self.withhold and self._matches(item.text):
                yield Withheld(item.ref.kind, item.ref.content_id, EXEMPTION)
                continue
            yield ExportRecord(
                item.ref.kind,
                item.ref.content_id,
                {
                    "conversation_id": item.ref.conversation_id,
                    "created_at": rfc3339(item.ref.created_at),
                    "text": item.text,
                },
            )

    @hookimpl
    def chatpro_export_formats(self) -> list[ExportFormat]:
        return [ExportFormat("csv", "text/csv")]

    @hookimpl
    def chatpro_render_export(
        self, format_name: str, records: Iterator[ExportRecord]
    ) -> Iterable[bytes] | None:
        if format_name != "csv":
            return None
        return _csv(records)

    @hookimpl
    def chatpro_departed_content(self, member: MemberView, change: str) -> ContentDisposition:
        return ContentDisposition(
            Disposition.KEEP_PSEUDONYMISED,
            "the school keeps messages as safeguarding records for its retention period",
        )


def _csv(records: Iterator[ExportRecord]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    yield buffer.getvalue().encode("utf-8")
    for record in records:
        buffer.seek(0)
        buffer.truncate()
        row = {"kind": record.kind, "content_id": record.content_id, **record.fields}
        writer.writerow({name: spreadsheet_safe(row.get(name)) for name in CSV_FIELDS})
        yield buffer.getvalue().encode("utf-8")
