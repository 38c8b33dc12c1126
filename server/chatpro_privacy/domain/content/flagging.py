"""Asking an organisation's monitoring plugins about each message (PLG-2, ORG-3).

A message is stored before its plugins are asked, so a failing plugin never loses it. A
message they could not be asked about (a plugin faulted, failing or stuck) goes into the
organisation's flag backlog, and is asked about once the plugins answer again: after the
next message they do answer for, and when a plugin is enabled again. Nothing sent while a
safeguarding plugin was down goes unflagged for good.
"""

from __future__ import annotations

import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import ContentKind, ContentRef, ContentView, Flag
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    ContentFlag,
    ContentItem,
    ConversationParticipant,
    FlagBacklog,
)
from chatpro_privacy.storage.queries import tuples

log = structlog.get_logger("chatpro_privacy.messages")

CATCH_UP_BATCH = 50  # backlog messages asked about after one that was answered


class Flagging:
    def __init__(self, vault: Vault, host: PluginHost) -> None:
        self.vault = vault
        self.host = host

    async def flag(self, item: ContentItem, text: str) -> None:
        """Ask the organisation's plugins about a message just stored; if they cannot be
        asked, keep it in the backlog. Then ask about the backlog, if any."""
        if not await self.host.implements(item.organisation_id, "chatpro_flag_content"):
            return  # the defaults flag nothing
        if await self._ask(item, text):
            await self.catch_up(item.organisation_id)

    async def catch_up(self, organisation_id: str, limit: int = CATCH_UP_BATCH) -> int:
        """Ask about up to ``limit`` messages of the organisation's backlog, oldest first,
        until the plugins fail again; how many were asked about."""
        pending = list(
            FlagBacklog.select(FlagBacklog.item_seq)
            .where(FlagBacklog.organisation == organisation_id)
            .order_by(FlagBacklog.item_seq)
            .limit(limit)
        )
        if not pending:
            return 0
        items = list(ContentItem.select().where(ContentItem.seq.in_([p.item_seq for p in pending])))
        texts = self.vault.open_texts(
            organisation_id, ((i.id, i.key_id, i.body) for i in items if i.body is not None)
        )
        asked = 0
        for item in sorted(items, key=lambda i: i.seq):
            text = texts.get(item.id)
            if text is not None and not await self._ask(item, text, backlogged=True):
                break
            FlagBacklog.delete().where(FlagBacklog.item_seq == item.seq).execute()
            asked += 1
        return asked

    async def _ask(self, item: ContentItem, text: str, *, backlogged: bool = False) -> bool:
        """Whether the plugins answered (their flags stored); if not, the item is kept in
        the backlog."""
        try:
            flags = await self.host.flags(item.organisation_id, _view(item, text))
        except PluginError as exc:
            log.warning("content not checked by plugins", reason=exc.reason, content_id=item.id)
            if not backlogged:
                FlagBacklog.insert(
                    item_seq=item.seq, organisation=item.organisation_id, created_at=clock.now()
                ).on_conflict_ignore().execute()
            return False
        if flags:
            _store(item, flags)
        return True


def _view(item: ContentItem, text: str) -> ContentView:
    recipients = tuple(
        ref
        for (ref,) in tuples(
            Account.select(Account.subject_ref)
            .join(ConversationParticipant)
            .where(
                (ConversationParticipant.conversation == item.conversation_id)
                & (Account.subject_ref != item.author_ref)
            )
        )
    )
    return ContentView(
        ContentRef(
            ContentKind.MESSAGE, item.id, item.conversation_id, item.author_ref, item.created_at
        ),
        text,
        recipients,
    )


def _store(item: ContentItem, flags: list[tuple[str, Flag]]) -> None:
    with database.atomic():
        for plugin, flag in flags:
            category = flag.category[:64]
            ContentFlag.create(
                item_seq=item.seq,
                plugin_name=plugin,
                category=category,
                reason=flag.reason[:500],
                created_at=clock.now(),
            )
            outbox.emit(
                outbox.CONTENT_FLAGGED,
                None,
                organisation_id=item.organisation_id,
                content_id=item.id,
                conversation_id=item.conversation_id,
                plugin_name=plugin,
                category=category,
            )
