"""Monitoring of an organisation's content by its administrators (ORG-3, PLG-2).

Every call states a reason and passes the organisation's plugin, which may refuse it. An
access record (who, why, what scope, which filters, how many results, whose content) is
committed before any result leaves; a refusal is recorded too. Searches match keyed word
tokens, so that only the items returned are ever decrypted. Members read a summary of the
checks made in their organisation, and whether their content was among the results.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import structlog
from peewee import JOIN, fn

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.content import content_access, conversations, search_index
from chatpro_privacy.domain.content.messages import (
    REF_COLUMNS,
    content_ref,
)
from chatpro_privacy.domain.content.recordings import Recordings
from chatpro_privacy.domain.kernel import paging
from chatpro_privacy.domain.kernel.errors import (
    NotFound,
    PermissionDenied,
    Violations,
)
from chatpro_privacy.domain.kernel.formats import rfc3339
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.records import audit
from chatpro_privacy.domain.vault import crypto
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import MAX_JUSTIFICATION, AccessRequest, ContentKind
from chatpro_privacy.plugin.types import MonitoringOperation as PluginOperation
from chatpro_privacy.plugin.types import MonitoringReason as PluginReason
from chatpro_privacy.storage import tuning
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    ContentFlag,
    ContentItem,
    ContentToken,
    ConversationParticipant,
    Membership,
    MonitoringAccess,
    MonitoringAccessSubject,
    MonitoringStop,
)
from chatpro_privacy.storage.queries import tuples

log = structlog.get_logger("chatpro_privacy.monitoring")

MAX_SPAN = dt.timedelta(days=366)
MAX_KEYWORDS = 10
MAX_PEOPLE = 100
MAX_SAMPLE = 100
MAX_CANDIDATES = 5000


class MonitoringReason(enum.StrEnum):
    """Why an administrator looks at content: every access states one (ORG-3)."""

    ROUTINE_CHECK = "routine_check"
    RANDOM_CHECK = "random_check"
    SAFEGUARDING_CONCERN = "safeguarding_concern"
    LEGAL_REQUEST = "legal_request"


class Operation(enum.StrEnum):
    """What an access does, as its record and the organisation's plugin see it."""

    SEARCH = "search"
    STATISTICS = "statistics"
    RANDOM_CHECK = "random_check"
    LISTEN = "listen"


@dataclass(frozen=True)
class Scope:
    start: dt.datetime | None
    end: dt.datetime | None
    people: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Item:
    row: ContentItem
    recipients: list[str]
    text: str | None
    readable: bool
    flags: list[tuple[str, str, str]]  # (plugin, category, reason)


@dataclass(frozen=True)
class SearchResult:
    items: list[Item]
    total: int
    next_page_token: str
    access_id: str


@dataclass(frozen=True)
class Statistics:
    total: int
    per_day: list[tuple[str, int]]
    senders: list[tuple[str, int]]
    recipients: list[tuple[str, int]]
    access_id: str


@dataclass(frozen=True)
class AccessRecordView(View):
    """A recorded check as the organisation reads it back: the administrator's pseudonym
    stays here."""

    id: str
    admin_account_id: str | None
    reason: str
    operation: str
    filters: dict[str, str]
    result_count: int
    created_at: dt.datetime
    refused: bool
    refusal_reason: str
    decided_by: str
    justification: str = ""


@dataclass(frozen=True)
class Check:
    access: AccessRecordView
    included_mine: bool


def _why(v: Violations, reason: str | None, justification: str) -> None:
    if reason is not None and reason not in set(MonitoringReason):
        v.add("reason", "is required: why the content is looked at", "REASON_REQUIRED")
    if len(justification) > MAX_JUSTIFICATION:
        v.add("justification", f"at most {MAX_JUSTIFICATION} characters", "TOO_LONG")


def _scope(v: Violations, scope: Scope, organisation_id: str) -> None:
    if scope.start is None or scope.end is None:
        v.add("scope", "needs a start and an end time", "REQUIRED")
    elif scope.end <= scope.start:
        v.add("scope.end_time", "must be after the start time", "OUT_OF_RANGE")
    elif scope.end - scope.start > MAX_SPAN:
        v.add("scope.end_time", "a check spans at most 366 days", "OUT_OF_RANGE")
    if len(scope.people) > MAX_PEOPLE:
        v.add("scope.person_account_ids", f"at most {MAX_PEOPLE}", "TOO_MANY")
    elif scope.people:
        members = {
            m.account_id
            for m in Membership.select(Membership.account).where(
                (Membership.organisation == organisation_id)
                & (Membership.account.in_([p[:64] for p in scope.people]))
            )
        }
        if any(p not in members for p in scope.people):
            v.add(
                "scope.person_account_ids",
                "names someone who is not a member of the organisation",
                "NOT_A_MEMBER",
            )


def _filters(scope: Scope, **more: str) -> dict[str, str]:
    found = {
        "start_time": rfc3339(scope.start) if scope.start else "",
        "end_time": rfc3339(scope.end) if scope.end else "",
    }
    if scope.people:
        found["person_account_ids"] = ",".join(scope.people)
    found.update({k: v for k, v in more.items() if v})
    return found


def _in_scope(organisation_id: str, scope: Scope, *, by_tokens: bool = False) -> Any:
    stopped = MonitoringStop.select(MonitoringStop.account).where(
        MonitoringStop.organisation == organisation_id
    )
    organisation, created = ContentItem.organisation, ContentItem.created_at
    if by_tokens:
        organisation, created = tuning.unindexed(organisation), tuning.unindexed(created)
    where = (
        (organisation == organisation_id)
        & (created >= scope.start)
        & (created < scope.end)
        # RGT-5: members whose restriction the organisation decided stops its monitoring.
        & (ContentItem.author_account.is_null() | ContentItem.author_account.not_in(stopped))
    )
    if scope.people:
        conversations_of = ConversationParticipant.select(
            ConversationParticipant.conversation
        ).where(ConversationParticipant.account.in_(scope.people))
        where &= ContentItem.author_account.in_(scope.people) | ContentItem.conversation.in_(
            conversations_of
        )
    return where


@dataclass(frozen=True)
class _Check:
    """One administrator's check as the organisation's rules decided it: what is recorded."""

    principal: Principal
    organisation_id: str
    request: AccessRequest
    decided_by: str


class Monitoring:
    def __init__(
        self, vault: Vault, host: PluginHost, recordings: Recordings, retention: Retention
    ) -> None:
        self.vault = vault
        self.host = host
        self.recordings = recordings
        self.retention = retention

    # -- the gate every check passes -------------------------------------------------------

    async def _approve(
        self,
        principal: Principal,
        organisation_id: str,
        reason: str,
        operation: Operation,
        filters: dict[str, str],
        justification: str,
    ) -> _Check:
        request = AccessRequest(
            str(principal.subject_ref),
            cast(PluginReason, str(reason)),
            cast(PluginOperation, str(operation.value)),
            dict(filters),
            justification,
        )
        decision, plugin = await self.host.approve_access(organisation_id, request)
        check = _Check(principal, organisation_id, request, plugin)
        if not decision.allowed:
            self._record(check, 0, [], decision.reason)
            raise PermissionDenied(
                "ACCESS_REFUSED_BY_ORGANISATION",
                f"the organisation's rules refuse this check: {decision.reason or 'no reason'}",
                {"decided_by": plugin},
            )
        return check

    def _record(
        self, check: _Check, result_count: int, subjects: list[str], refusal: str | None = None
    ) -> str:
        access_id = new_id()
        request = check.request
        with database.atomic():
            MonitoringAccess.create(
                id=access_id,
                organisation=check.organisation_id,
                admin_account=check.principal.account_id,
                admin_ref=str(check.principal.subject_ref),
                reason=request.reason,
                operation=request.scope,
                filters=dict(request.filters),
                result_count=result_count,
                refused=refusal is not None,
                refusal_reason=(refusal or "")[:500],
                decided_by=check.decided_by,
                created_at=clock.now(),
                justification=request.justification,
            )
            # In the chain too (SEC-5), by pseudonym; the filters and content stay out of it.
            action = f"monitoring.{request.scope}" + (":refused" if refusal is not None else "")
            audit.record(check.principal, action, "monitoring_access", access_id)
            unique = sorted(set(subjects))
            for start in range(0, len(unique), 500):
                MonitoringAccessSubject.insert_many(
                    [(access_id, ref) for ref in unique[start : start + 500]],
                    fields=[MonitoringAccessSubject.access, MonitoringAccessSubject.subject_ref],
                ).execute()
        return access_id

    async def _recorded(self, check: _Check, result_count: int, subjects: list[str]) -> str:
        access_id = self._record(check, result_count, subjects)
        try:
            await self.host.access_recorded(check.organisation_id, check.request, result_count)
        except PluginError as exc:
            log.warning("plugin not told of an access", reason=exc.reason, access_id=access_id)
        return access_id

    # -- building results --------------------------------------------------------------------

    def _items(self, organisation_id: str, rows: list[ContentItem]) -> tuple[list[Item], list[str]]:
        """The items as administrators see them, and every subject ref they touch."""
        people = conversations.participants_of([r.conversation_id for r in rows])
        texts = self.vault.open_texts(
            organisation_id,
            ((r.id, r.key_id, r.body) for r in rows if r.kind == ContentKind.MESSAGE),
        )
        live = self.vault.readable(r.key_id for r in rows)
        flags: dict[int, list[tuple[str, str, str]]] = {}
        seqs = [r.seq for r in rows]
        if seqs:
            for seq, plugin, category, why in tuples(
                ContentFlag.select(
                    ContentFlag.item_seq,
                    ContentFlag.plugin_name,
                    ContentFlag.category,
                    ContentFlag.reason,
                )
                .where(ContentFlag.item_seq.in_(seqs))
                .order_by(ContentFlag.id)
            ):
                flags.setdefault(seq, []).append((plugin, category, why))
        items = []
        touched_accounts: set[str] = set()
        subjects = {r.author_ref for r in rows}
        for r in rows:
            recipients = [a for a, _ in people[r.conversation_id] if a != r.author_account_id]
            touched_accounts.update(recipients)
            readable = r.key_id in live
            text = texts.get(r.id) if r.kind == ContentKind.MESSAGE else None
            readable = readable and (text is not None or r.kind == ContentKind.CALL_RECORDING)
            items.append(Item(r, recipients, text, readable, flags.get(r.seq, [])))
        if touched_accounts:
            subjects.update(
                ref
                for (ref,) in tuples(
                    Account.select(Account.subject_ref).where(
                        Account.id.in_(sorted(touched_accounts))
                    )
                )
            )
        return items, sorted(subjects)

    # -- the checks --------------------------------------------------------------------------

    async def search(
        self,
        principal: Principal,
        organisation_id: str,
        reason: str,
        scope: Scope,
        keywords: list[str],
        flagged_only: bool,
        page_size: int,
        page_token: str,
        justification: str = "",
        budget: paging.Budget[Item] = paging.UNBOUNDED,
    ) -> SearchResult:
        org_id = content_access.administered(principal, organisation_id)
        v = Violations()
        _why(v, reason, justification)
        _scope(v, scope, org_id)
        if len(keywords) > MAX_KEYWORDS:
            v.add("keywords", f"at most {MAX_KEYWORDS}", "TOO_MANY")
        words = crypto.words(" ".join(k[:100] for k in keywords[:MAX_KEYWORDS]))
        if keywords and not words:
            v.add("keywords", "hold no word to search for", "NO_WORDS")
        v.raise_if_any()
        size, cursor = paging.page(page_size, page_token, "search")
        check = await self._approve(
            principal,
            org_id,
            reason,
            Operation.SEARCH,
            _filters(
                scope,
                keywords=",".join(words),
                flagged_only="true" if flagged_only else "",
                page_token=page_token,
            ),
            justification,
        )
        served = await self.retention.served(org_id)
        rows, total, more = self._search_rows(
            org_id, scope, words, flagged_only, size, cursor, served
        )
        items, subjects = self._items(org_id, rows)
        page = paging.by_position(items, [r.seq for r in rows], more, "search", budget)
        if len(page.items) < len(items):  # cut to fit: record only what is returned
            _, subjects = self._items(org_id, rows[: len(page.items)])
        access_id = await self._recorded(check, len(page.items), subjects)
        return SearchResult(page.items, total, page.next_token, access_id)

    def _search_rows(
        self,
        org_id: str,
        scope: Scope,
        words: list[str],
        flagged_only: bool,
        size: int,
        cursor: int | None,
        served: Any,
    ) -> tuple[list[ContentItem], int, bool]:
        """(page, total, more follow): tokens narrow the items first, then the scope."""
        where = _in_scope(org_id, scope, by_tokens=bool(words)) & served
        if flagged_only:
            where &= ContentItem.seq.in_(ContentFlag.select(ContentFlag.item_seq))
        if words:
            tokens = self.vault.search_tokens(org_id, words)
            if not tokens:  # no live key: nothing can match
                return [], 0, False
            # What waits for the index is read first: an item indexed meanwhile is found there.
            queued = search_index.queued_matches(org_id, tokens, len(words))
            indexed = ContentItem.seq.in_(
                ContentToken.select(ContentToken.item_seq)
                .where((ContentToken.organisation_id == org_id) & ContentToken.token.in_(tokens))
                .group_by(ContentToken.item_seq)
                .having(fn.COUNT(fn.DISTINCT(ContentToken.token)) == len(words))
            )
            where &= (indexed | ContentItem.seq.in_(queued)) if queued else indexed
        total = ContentItem.select().where(where).count()
        query = ContentItem.select().where(where)
        if cursor is not None:
            query = query.where(ContentItem.seq > cursor)
        rows = list(query.order_by(ContentItem.seq).limit(size + 1)) if total else []
        return rows[:size], total, len(rows) > size

    async def statistics(
        self,
        principal: Principal,
        organisation_id: str,
        reason: str,
        scope: Scope,
        justification: str = "",
    ) -> Statistics:
        org_id = content_access.administered(principal, organisation_id)
        v = Violations()
        _why(v, reason, justification)
        _scope(v, scope, org_id)
        v.raise_if_any()
        check = await self._approve(
            principal, org_id, reason, Operation.STATISTICS, _filters(scope), justification
        )
        where = _in_scope(org_id, scope) & await self.retention.served(org_id)
        day = fn.DATE(ContentItem.created_at)
        per_day = [
            (str(d)[:10], int(n))
            for d, n in tuples(
                ContentItem.select(day, fn.COUNT(ContentItem.seq))
                .where(where)
                .group_by(day)
                .order_by(day)
            )
        ]
        senders = [
            (a or "", int(n))
            for a, n in tuples(
                ContentItem.select(ContentItem.author_account, fn.COUNT(ContentItem.seq))
                .where(where)
                .group_by(ContentItem.author_account)
                .order_by(fn.COUNT(ContentItem.seq).desc(), ContentItem.author_account)
            )
        ]
        count = fn.COUNT(ContentItem.seq)
        recipients = [
            (a, int(n))
            for a, n in tuples(
                ContentItem.select(ConversationParticipant.account, count)
                .join(
                    ConversationParticipant,
                    JOIN.INNER,
                    on=(ConversationParticipant.conversation == ContentItem.conversation),
                )
                .where(
                    where
                    & (
                        ContentItem.author_account.is_null()
                        | (ConversationParticipant.account != ContentItem.author_account)
                    )
                )
                .group_by(ConversationParticipant.account)
                .order_by(count.desc(), ConversationParticipant.account)
            )
        ]
        total = sum(n for _, n in per_day)
        access_id = await self._recorded(check, total, [])
        return Statistics(total, per_day, senders, recipients, access_id)

    async def random_check(
        self,
        principal: Principal,
        organisation_id: str,
        scope: Scope,
        sample_size: int,
        justification: str = "",
    ) -> tuple[list[Item], str]:
        org_id = content_access.administered(principal, organisation_id)
        v = Violations()
        _why(v, None, justification)
        _scope(v, scope, org_id)
        if not 1 <= sample_size <= MAX_SAMPLE:
            v.add("sample_size", f"must be 1 to {MAX_SAMPLE}", "OUT_OF_RANGE")
        v.raise_if_any()
        check = await self._approve(
            principal,
            org_id,
            MonitoringReason.RANDOM_CHECK,
            Operation.RANDOM_CHECK,
            _filters(scope, sample_size=str(sample_size)),
            justification,
        )
        candidates = list(
            ContentItem.select(*REF_COLUMNS)
            .where(_in_scope(org_id, scope) & await self.retention.served(org_id))
            .order_by(fn.RANDOM())
            .limit(MAX_CANDIDATES)
        )
        refs = [
            content_ref(c.kind, c.id, c.conversation_id, c.author_ref, c.created_at)
            for c in candidates
        ]
        chosen = await self.host.choose_sample(org_id, refs, sample_size) if refs else []
        ids = [r.content_id for r in chosen]
        rows = (
            list(ContentItem.select().where(ContentItem.id.in_(ids)).order_by(ContentItem.seq))
            if ids
            else []
        )
        items, subjects = self._items(org_id, rows)
        access_id = await self._recorded(check, len(items), subjects)
        return items, access_id

    async def listen(
        self,
        principal: Principal,
        organisation_id: str,
        reason: str,
        recording_id: str,
        justification: str = "",
    ) -> Iterator[tuple[int, bytes]]:
        org_id = content_access.administered(principal, organisation_id)
        v = Violations()
        _why(v, reason, justification)
        v.raise_if_any()
        item = ContentItem.get_or_none(
            (ContentItem.id == recording_id[:64])
            & (ContentItem.organisation == org_id)
            & (ContentItem.kind == ContentKind.CALL_RECORDING)
            & await self.retention.served(org_id, (ContentKind.CALL_RECORDING,))
        )
        if item is None:
            raise NotFound(
                "RECORDING_NOT_FOUND", "no such recording", {"recording_id": recording_id[:64]}
            )
        check = await self._approve(
            principal, org_id, reason, Operation.LISTEN, {"recording_id": item.id}, justification
        )
        chunks = self.recordings.stream(item)
        _, subjects = self._items(org_id, [item])
        await self._recorded(check, 1, subjects)
        return chunks
