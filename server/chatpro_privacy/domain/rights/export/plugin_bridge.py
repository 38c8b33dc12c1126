"""Each organisation's part of the export, through its export plugin (RGT-1, PLG-3, RET-1).

Every organisation the person belongs to or wrote content in has a part: its contact,
the person's membership, and the content they wrote there that is still served (RET-1), as
the organisation's export hook gives it out, record by record or withheld with an
exemption. An organisation that withheld its whole part (its answer to the request) is
named with its reason instead.

Formats other than JSON are the organisations' own (``PluginHost.render_export``): they
carry only the records of the organisations that offer that format, one rendering after
another.

The plugins pull the person's content on their worker threads (``_Authored``) and a
renderer pulls the export hook's records there too (``_Pulled``); a database error is kept
for the export to raise after, never counted as the plugin's fault.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from chatpro_privacy.domain.content.messages import (
    REF_COLUMNS,
    content_ref,
)
from chatpro_privacy.domain.kernel.errors import NotFound, Unavailable
from chatpro_privacy.domain.kernel.vocabulary import RequestType
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.rights.export.held_data import membership
from chatpro_privacy.domain.rights.export.streaming import (
    BATCH,
    Section,
    dumps,
    json_object,
    json_value,
)
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import ContentKind, ContentView, ExportRecord, Withheld
from chatpro_privacy.storage.db import scan_reader
from chatpro_privacy.storage.models import Account, ContentItem, Membership, Organisation


@dataclass(frozen=True)
class OrgPart:
    organisation: Organisation
    membership: Membership | None
    withheld_reason: str | None
    retention: list[dict[str, Any]]
    served: Any  # the condition content must meet to be served (RET-1)


class _Authored:
    """The person's readable content in one organisation, as the export hook sees it.

    The host pulls this iterator on its plugin worker threads, so each batch is read there,
    on a ``scan_reader`` opened for the batch and closed after it (no worker keeps a
    connection, nor borrows one another call left open with a full page cache). A database
    error is kept, not raised, so that it is not counted as the plugin's fault: the iterator
    just ends, and ``check`` fails the export after.
    """

    def __init__(
        self, vault: Vault, organisation_id: str, account_id: str, served: Any, size: int = BATCH
    ) -> None:
        self.vault = vault
        self.organisation_id = organisation_id
        self.account_id = account_id
        self.served = served
        self.size = size
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[ContentView]:
        last = 0
        while True:
            try:
                full, last, views = self._batch(last)
            except Exception as exc:  # kept for ``check``; see the class docstring
                self.error = exc
                return
            yield from views
            if not full:
                return

    def _batch(self, after: int) -> tuple[bool, int, list[ContentView]]:
        """(whether the page was full, its last seq, its readable items)."""
        with scan_reader() as db:
            rows = list(
                ContentItem.select(*REF_COLUMNS, ContentItem.key_id, ContentItem.body)
                .where(
                    (ContentItem.author_account == self.account_id)
                    & (ContentItem.organisation == self.organisation_id)
                    & (ContentItem.seq > after)
                    & self.served
                )
                .order_by(ContentItem.seq)
                .limit(self.size)
                .tuples()
                .execute(db)
            )
        texts = self.vault.open_texts(
            self.organisation_id, ((r[1], r[6], r[7]) for r in rows if r[2] == ContentKind.MESSAGE)
        )
        views = []
        for _, item_id, kind, conversation_id, author_ref, created_at, _, _ in rows:
            text = "" if kind == ContentKind.CALL_RECORDING else texts.get(item_id)
            if text is None:  # its key is destroyed: erased in effect, no longer held
                continue
            ref = content_ref(kind, item_id, conversation_id, author_ref, created_at)
            views.append(ContentView(ref, text))
        return len(rows) == self.size, rows[-1][0] if rows else after, views

    def check(self) -> None:
        if self.error is not None:
            raise Unavailable(
                "EXPORT_CONTENT_UNAVAILABLE", "the content could not be read; try again"
            ) from self.error


class _Pulled(Iterator[ExportRecord]):
    """The records of an async stream, for a plugin that pulls them on a worker thread: each
    is fetched on the event loop. Errors are kept (as in ``_Authored``), not raised into the
    plugin."""

    def __init__(
        self, source: AsyncIterator[ExportRecord | Withheld], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.source = source
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self.error: Exception | None = None
        self.done = False

    def __next__(self) -> ExportRecord:
        if threading.get_ident() == self.loop_thread:
            raise RuntimeError("records are pulled on a worker thread, not the event loop")
        while not self.done:
            try:
                item = asyncio.run_coroutine_threadsafe(self._next(), self.loop).result()
            except StopAsyncIteration:
                self.done = True
            except Exception as exc:
                self.error, self.done = exc, True
            else:
                if isinstance(item, ExportRecord):
                    return item
        raise StopIteration

    async def _next(self) -> ExportRecord | Withheld:
        return await anext(self.source)


def _entry(entry: ExportRecord | Withheld) -> dict[str, Any]:
    if isinstance(entry, Withheld):
        return {
            "type": "withheld",
            "kind": entry.kind,
            "content_id": entry.content_id,
            "exemption": entry.exemption,
        }
    return {
        "type": "record",
        "kind": entry.kind,
        "content_id": entry.content_id,
        "fields": dict(entry.fields),
    }


class PluginBridge:
    """The organisations' parts of one export, as their plugins give them out."""

    def __init__(self, vault: Vault, host: PluginHost, retention: Retention) -> None:
        self.vault = vault
        self.host = host
        self.retention = retention

    async def parts(self, account: Account, withheld: dict[str, str]) -> list[OrgPart]:
        """Every organisation the person belongs to or has authored content in (a few)."""
        memberships = {
            m.organisation_id: m
            for m in Membership.select().where(Membership.account == account.id)
        }
        query = (
            ContentItem.select(ContentItem.organisation)
            .where(ContentItem.author_account == account.id)
            .distinct()
        )
        with scan_reader() as db:  # it reads every row the person wrote (see scan_reader)
            authored = {org_id for (org_id,) in query.tuples().execute(db)}
        parts = []
        ids = sorted(set(memberships) | authored)
        for org in Organisation.select().where(Organisation.id.in_(ids)).order_by(Organisation.id):
            retention, served = await self._retention(org.id)
            parts.append(
                OrgPart(org, memberships.get(org.id), withheld.get(org.id), retention, served)
            )
        return parts

    async def _retention(self, organisation_id: str) -> tuple[list[dict[str, Any]], Any]:
        """The organisation's periods, and the condition for content still served (RET-1)."""
        periods: list[dict[str, Any]] = []
        for kind in ContentKind:
            months, plugin = await self.host.retention(organisation_id, kind)
            periods.append({"kind": kind, "months": months, "decided_by": plugin})
        return periods, await self.retention.served(organisation_id)

    def _exported(
        self, part: OrgPart, subject_ref: str, account_id: str, purpose: str
    ) -> tuple[_Authored, AsyncIterator[ExportRecord | Withheld]]:
        """The person's content in the organisation, and its export hook's entries for it."""
        items = _Authored(self.vault, part.organisation.id, account_id, part.served)
        entries = self.host.export_content(part.organisation.id, subject_ref, purpose, items)
        return items, entries

    # -- JSON ----------------------------------------------------------------------------------

    async def json_array(
        self, parts: list[OrgPart], subject_ref: str, account_id: str, purpose: str
    ) -> AsyncIterator[str]:
        yield "["
        for n, part in enumerate(parts):
            yield ("," if n else "") + "\n"
            sections = self._sections(part, subject_ref, account_id, purpose)
            async for piece in json_object(sections):
                yield piece
        yield "]"

    def _sections(
        self, part: OrgPart, subject_ref: str, account_id: str, purpose: str
    ) -> list[tuple[str, Section]]:
        org = part.organisation
        sections: list[tuple[str, Section]] = [
            ("organisation_id", lambda: json_value(org.id)),
            ("name", lambda: json_value(org.name)),
            ("privacy_contact_email", lambda: json_value(org.privacy_contact_email)),
        ]
        if purpose == RequestType.ACCESS:
            sections.append(("membership", lambda: json_value(membership(part.membership))))
        if part.withheld_reason is not None:
            reason = part.withheld_reason
            sections.append(("content", lambda: json_value({"withheld": True, "reason": reason})))
        else:

            async def content() -> AsyncIterator[str]:
                yield '{"withheld":false,"items":'
                async for piece in self._items(part, subject_ref, account_id, purpose):
                    yield piece
                yield "}"

            sections.append(("content", content))
        return sections

    async def _items(
        self, part: OrgPart, subject_ref: str, account_id: str, purpose: str
    ) -> AsyncIterator[str]:
        items, entries = self._exported(part, subject_ref, account_id, purpose)
        yield "["
        n = 0
        async for entry in entries:
            yield ("," if n else "") + "\n" + dumps(_entry(entry))
            n += 1
        items.check()
        yield "]"

    # -- other formats --------------------------------------------------------------------------

    async def rendered(
        self, account: Account, purpose: str, parts: list[OrgPart], format_name: str
    ) -> tuple[str, AsyncIterator[bytes]]:
        """The media type, and the renderings of every organisation offering the format."""
        offering: list[OrgPart] = []
        media_type = ""
        for part in parts:
            if part.withheld_reason is not None:
                continue
            for _, offered in await self.host.export_formats(part.organisation.id):
                if offered.name == format_name:
                    offering.append(part)
                    media_type = media_type or offered.media_type
                    break
        if not offering:
            raise NotFound(
                "EXPORT_FORMAT_NOT_FOUND",
                f"no organisation of the request renders {format_name[:32]!r}",
                {"format": format_name[:32]},
            )

        async def rendered() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            for part in offering:
                items, source = self._exported(part, account.subject_ref, str(account.id), purpose)
                records = _Pulled(source, loop)
                try:
                    async for data in self.host.render_export(
                        part.organisation.id, format_name, records
                    ):
                        yield data
                finally:
                    await source.aclose()  # type: ignore[attr-defined]
                items.check()
                if records.error is not None:
                    raise records.error

        return media_type, rendered()
