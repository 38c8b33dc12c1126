"""Messages (ORG-2): sent by participants, stored sealed with the author's data key in the
organisation, indexed by keyed word tokens, and shown to the conversation's participants.

The organisation's monitoring hooks look at each message as it is sent (PLG-2); their flags
are kept, and the administrators told through the outbox, without the content.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import peewee
import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.content import content_access, search_index
from chatpro_privacy.domain.content.flagging import Flagging
from chatpro_privacy.domain.kernel import paging
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument, PermissionDenied
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.records import audit
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import ContentKind, ContentRef
from chatpro_privacy.storage import chained, queries
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    ContentItem,
)

log = structlog.get_logger("chatpro_privacy.messages")

# What a ContentRef is read from: the item's seq, then ``content_ref``'s arguments in order.
# Queries that show stored items to plugins select these first, then whatever else they need.
REF_COLUMNS = (
    ContentItem.seq,
    ContentItem.id,
    ContentItem.kind,
    ContentItem.conversation,
    ContentItem.author_ref,
    ContentItem.created_at,
)


def content_ref(
    kind: str, content_id: str, conversation_id: str, author_ref: str, created_at: dt.datetime
) -> ContentRef:
    """A stored row as plugins see it (the column's text narrowed to a content kind)."""
    return ContentRef(
        ContentKind.MESSAGE if kind == ContentKind.MESSAGE else ContentKind.CALL_RECORDING,
        content_id,
        conversation_id,
        author_ref,
        created_at,
    )


# An item's sequence number and what a ContentRef is made of, but its time: what a caller
# reading items in bulk selects before whatever else it needs.
MAX_TEXT = 10_000
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class MessageView:
    message_id: str
    conversation_id: str
    sender_account_id: str | None
    text: str | None  # None when its key is destroyed
    sent_at: dt.datetime


def check_request_id(value: str) -> str | None:
    if value and not _REQUEST_ID.match(value):
        raise InvalidArgument(
            [FieldViolation("request_id", "must be 1 to 64 of A-Z a-z 0-9 . _ -", "INVALID_FORMAT")]
        )
    return value or None


def replayed(conversation_id: str, author_ref: str, request_id: str | None) -> ContentItem | None:
    if request_id is None:
        return None
    return ContentItem.get_or_none(
        (ContentItem.conversation == conversation_id)
        & (ContentItem.author_ref == author_ref)
        & (ContentItem.request_id == request_id)
    )


class Posting:
    """A new item in a conversation, message or recording: the checks every post passes, in
    the order callers see their errors, and the row every post writes."""

    def __init__(self, principal: Principal, conversation_id: str) -> None:
        conversation, self.can_send, self.unacknowledged = content_access.poster(
            principal, conversation_id
        )
        self.conversation_id: str = conversation.id
        self.organisation_id: str = conversation.organisation_id
        self.author = principal
        self.author_ref = str(principal.subject_ref)
        self.author_account_id = principal.account_id
        self.request_id: str | None = None

    def prior(self, request_id: str) -> ContentItem | None:
        """The item a retry of this request already stored, once the request id is valid."""
        self.request_id = check_request_id(request_id)
        return self.retried()

    def retried(self) -> ContentItem | None:
        return replayed(self.conversation_id, self.author_ref, self.request_id)

    def require_allowed(self) -> None:
        content_access.require_acknowledged(self.organisation_id, self.unacknowledged)
        if not self.can_send:
            raise PermissionDenied(
                "BROADCAST_SENDERS_ONLY", "only the broadcast's senders may post in it"
            )

    def _new(
        self, item_id: str, kind: ContentKind, key_id: str, body: bytes | None, **fields: object
    ) -> ContentItem:
        return ContentItem(
            id=item_id,
            organisation=self.organisation_id,
            conversation=self.conversation_id,
            kind=kind,
            author_ref=self.author_ref,
            author_account=self.author_account_id,
            request_id=self.request_id,
            key_id=key_id,
            body=body,
            created_at=clock.now(),
            **fields,
        )

    def create_message(
        self, item_id: str, key_id: str, body: bytes, tokens: list[bytes]
    ) -> ContentItem:
        """A message, its search tokens and its creation in the audit trail, by the author's
        pseudonym and never its content (SEC-5). Outside any transaction of the caller's. On
        PostgreSQL one statement (``storage.chained``); on SQLite one transaction, whose
        item insert queues the tokens on the item's row (``search_index``) and reads the
        audit head its entry follows, so the entry adds one statement."""
        item = self._new(item_id, ContentKind.MESSAGE, key_id, body)
        values = (
            item.id,
            self.organisation_id,
            self.conversation_id,
            item.kind,
            item.author_ref,
            self.author_account_id,
            item.request_id,
            item.key_id,
            item.body,
            item.created_at,
        )
        created = ("content.create", ContentKind.MESSAGE.value, item.id, self.author_ref)
        if chained.one_statement():
            write = queries.item_with_tokens(values, self.organisation_id, tokens)
            (row,) = audit.recorded_write(self.author, *created, write)
            item.seq = int(row[0])
            return item
        item.queued_tokens = search_index.pack(tokens) if tokens else None
        with database.atomic():
            lane = audit.lane()
            item.seq, head = queries.insert_item_reading_head((*values, item.queued_tokens), lane)
            audit.append_after(lane, head, self.author, *created)
        return item

    def create(
        self, item_id: str, kind: ContentKind, key_id: str, body: bytes | None, **fields: object
    ) -> ContentItem:
        """Inside the caller's transaction: the item and its creation in the audit trail."""
        item = self._new(item_id, kind, key_id, body, **fields)
        item.save(force_insert=True)
        audit.record(self.author, "content.create", str(kind), item_id, self.author_ref)
        return item


def conversation_page(
    query: Any,
    conversation_id: str,
    kind: ContentKind,
    served: Any,
    cursor: int | None,
    size: int,
) -> tuple[list[Any], bool]:
    """Up to ``size`` of a conversation's items of one kind still kept, newest first, after
    the page token's cursor; and whether more follow."""
    query = query.where(
        (ContentItem.conversation == conversation_id) & (ContentItem.kind == kind) & served
    )
    if cursor is not None:
        query = query.where(ContentItem.seq < cursor)
    rows = list(query.order_by(ContentItem.seq.desc()).limit(size + 1))
    return rows[:size], len(rows) > size


class Messages:
    def __init__(self, vault: Vault, host: PluginHost, retention: Retention) -> None:
        self.vault = vault
        self.host = host
        self.retention = retention
        self.flagging = Flagging(vault, host)
        self.backlog = search_index.Backlog()  # what the server's indexer looks at

    def _view(self, item: ContentItem | queries.ItemRow, text: str | None) -> MessageView:
        return MessageView(
            item.id, item.conversation_id, item.author_account_id, text, item.created_at
        )

    def _replay(self, prior: ContentItem, text: str) -> MessageView:
        """A retry gets the message first stored, if it is the same message."""
        stored = self.vault.open_texts(
            prior.organisation_id, [(prior.id, prior.key_id, prior.body)]
        )
        if prior.kind != ContentKind.MESSAGE or stored[prior.id] not in (text, None):
            raise InvalidArgument(
                [
                    FieldViolation(
                        "request_id", "was already used for another message", "REQUEST_ID_REUSED"
                    )
                ]
            )
        return self._view(prior, stored[prior.id])

    async def send(
        self, principal: Principal, conversation_id: str, text: str, request_id: str
    ) -> MessageView:
        posting = Posting(principal, conversation_id)
        if not text or len(text) > MAX_TEXT:
            raise InvalidArgument(
                [FieldViolation("text", f"must be 1 to {MAX_TEXT} characters", "OUT_OF_RANGE")]
            )
        if (prior := posting.prior(request_id)) is not None:
            return self._replay(prior, text)
        posting.require_allowed()
        item_id = new_id()
        sealed = self.vault.seal_text(posting.organisation_id, item_id, posting.author_ref, text)
        try:
            item = posting.create_message(item_id, sealed.key_id, sealed.body, sealed.tokens)
        except peewee.IntegrityError:
            if (prior := posting.retried()) is not None:
                return self._replay(prior, text)
            raise
        if item.queued_tokens is not None:
            self.backlog.grew()
        await self.flagging.flag(item, text)
        return self._view(item, text)

    async def list(
        self,
        principal: Principal,
        conversation_id: str,
        page_size: int,
        page_token: str,
        budget: paging.Budget[MessageView] = paging.UNBOUNDED,
    ) -> paging.Page[MessageView]:
        conversation, _ = content_access.participant(principal, conversation_id)
        size, cursor = paging.page(page_size, page_token, "messages")
        kept = await self.retention.kept(conversation.organisation_id, ContentKind.MESSAGE)
        fetched = queries.conversation_items(
            conversation.id, ContentKind.MESSAGE, kept, cursor, size + 1
        )
        rows, more = fetched[:size], len(fetched) > size
        texts = self.vault.open_texts(
            conversation.organisation_id, ((r.id, r.key_id, r.body) for r in rows)
        )
        views = [self._view(r, texts[r.id]) for r in rows]
        return paging.by_position(views, [r.seq for r in rows], more, "messages", budget)
