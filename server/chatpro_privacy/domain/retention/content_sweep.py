"""The retention sweep (RET-1): deletes content past its organisation's period.

It works organisation by organisation, in bounded batches, each deleted in one short
transaction (the batch shrinks when a transaction holds the write lock too long). A
cursor per organisation records how far the pass has gone, so a sweep that dies resumes
where it stopped; a lease on that cursor means several server processes never work on the
same organisation at once (on PostgreSQL or SQLite alike), and a dead process's lease runs
out. Before a batch is deleted it keeps what must be kept, with the reason:

- content under a legal hold (a member or a conversation);
- content of a person with an open access, portability or erasure request, or with a
  restriction of processing for legal claims;
- whatever the organisation's plugin vetoes for this batch (asked once per batch, outside
  any transaction). A plugin that cannot answer keeps the batch: the organisation's rules
  are never skipped.

The keep rules are applied again inside the deleting statement, so a hold placed while the
plugin was asked still keeps its items. Blobs, word tokens and flags go after the commit:
on SQLite, where one writer at a time holds the whole database, a batch's word tokens (about
ten index entries an item, in random places) would hold that lock several times longer
than the items themselves, so the batch's transaction records the range it deleted in
``content_purge`` and the tokens follow in short transactions of their own; a sweep that
dies in between finds the range and finishes it. (On PostgreSQL, whose writers lock rows,
not the database, the foreign key deletes them with their items.) Apps are told through
the deletion feed (RET-5). The next pass starts again from the beginning, so what was kept
goes as soon as its reason does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import gc
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from peewee import Case

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent.restrictions import RestrictionCase
from chatpro_privacy.domain.content.messages import REF_COLUMNS, content_ref
from chatpro_privacy.domain.kernel.principals import SYSTEM
from chatpro_privacy.domain.kernel.vocabulary import RequestType
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.records import audit, deletion_feed
from chatpro_privacy.domain.retention import legal_holds
from chatpro_privacy.domain.retention.leases import Leases
from chatpro_privacy.domain.rights import workflow as rights
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import ContentKind, ContentRef
from chatpro_privacy.storage import tuning
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    ContentFlag,
    ContentItem,
    ContentPurge,
    ContentToken,
    LegalHold,
    ProcessingRestriction,
    RightsRequest,
    SweepRun,
)
from chatpro_privacy.storage.queries import tuples

log = structlog.get_logger("chatpro_privacy.sweep")

# Each transaction of the sweep aims at this long a hold of the write lock, a fifth of the
# 50 ms any one may take: what a transaction finds varies (pages cached or not, a busy
# disk), and the longest of thousands comes to two or three times the target
# (bench/README.md, "The sweep world").
TARGET_LOCK_MS = 10.0
GROWTH = 1.2  # the most the next transaction grows over the last
MIN_BATCH, MAX_BATCH = 20, 5000
FIRST_BATCH = 100  # grows while batches stay short: the first must not blow the lock
MIN_PURGE, MAX_PURGE = 10, 2000  # items whose word tokens one transaction deletes
FIRST_PURGE = 50
CHECKPOINT_EVERY = 50  # transactions; the WAL is checkpointed between them, not inside one
HOLDING_REQUESTS = (RequestType.ACCESS, RequestType.PORTABILITY, RequestType.ERASURE)


class KeptReason(enum.StrEnum):
    """Why expired content stayed; a plugin's veto is reported as "plugin: <its reason>"."""

    LEGAL_HOLD = "legal_hold"
    OPEN_REQUEST = "open_rights_request"
    LEGAL_CLAIMS = "restricted_for_legal_claims"
    PLUGIN_UNAVAILABLE = "plugin_unavailable"


# Called with (rows, milliseconds) after each transaction that held the write lock: the
# bench's view of every hold, not only the longest.
Observer = Callable[[int, float], None]


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """No garbage collection while a transaction holds the lock: a full collection in a
    server with a large heap can take longer than the whole transaction should."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _LeaseLost(Exception):
    """Another process took this organisation's lease: it carries on, this one stops."""


def _not_kept(organisation_id: str) -> Any:
    """Content no hold, open request or legal-claims restriction keeps (as ``_kept``)."""
    requesting = RightsRequest.select(RightsRequest.subject_ref).where(
        RightsRequest.type.in_(HOLDING_REQUESTS) & RightsRequest.state.not_in(sorted(rights.FINAL))
    )
    claims = ProcessingRestriction.select(ProcessingRestriction.account).where(
        ProcessingRestriction.restriction_case == RestrictionCase.LEGAL_CLAIMS
    )
    return (
        ~legal_holds.under_hold(organisation_id)
        & ContentItem.author_ref.not_in(requesting)
        & (ContentItem.author_account.is_null() | ContentItem.author_account.not_in(claims))
    )


@dataclass
class ContentSweepReport:
    deleted: int = 0
    kept: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    organisations: int = 0
    skipped_organisations: int = 0  # another process holds their lease
    unavailable_organisations: int = 0  # their plugin could not say their period
    max_batch_lock_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "kept": dict(sorted(self.kept.items())),
            "batches": self.batches,
            "organisations": self.organisations,
            "skipped_organisations": self.skipped_organisations,
            "unavailable_organisations": self.unavailable_organisations,
            "max_batch_lock_ms": round(self.max_batch_lock_ms, 3),
        }


@dataclass(frozen=True)
class _Row:
    seq: int
    id: str
    kind: str
    conversation_id: str
    author_ref: str
    created_at: dt.datetime
    author_account_id: str | None
    kept: bool  # a hold, an open request or a legal-claims restriction keeps it


class ContentSweeper:
    def __init__(
        self,
        retention: Retention,
        host: PluginHost,
        vault: Vault,
        owner: str | None = None,
        batch_size: int = FIRST_BATCH,
        observer: Observer | None = None,
    ) -> None:
        self.retention = retention
        self.host = host
        self.vault = vault
        self.owner = owner or f"sweeper-{uuid.uuid4().hex[:12]}"
        self.leases = Leases(self.owner)
        self.batch_size = batch_size
        self.purge_size = FIRST_PURGE
        self.observer = observer
        self._transactions = 0

    async def run(
        self, now: dt.datetime | None = None, stop_after: int | None = None
    ) -> ContentSweepReport:
        """One pass over every organisation with content. ``stop_after`` ends the pass after
        that many batches (tests use it to stand for a crash)."""
        report = ContentSweepReport()
        started = clock.now()
        organisations = sorted(
            {org for (org,) in tuples(ContentItem.select(ContentItem.organisation).distinct())}
            | {org for (org,) in tuples(ContentPurge.select(ContentPurge.organisation_id))}
        )
        for organisation_id in organisations:
            name = f"content:{organisation_id}"
            if not self.leases.acquire(name):
                report.skipped_organisations += 1
                continue
            report.organisations += 1
            try:
                finished = await self._sweep(organisation_id, name, now, report, stop_after)
            except PluginError as exc:  # its period is unknown: its content waits, not others'
                log.warning(
                    "sweep skipped an organisation: plugin unavailable",
                    organisation_id=organisation_id,
                    reason=exc.reason,
                )
                report.unavailable_organisations += 1
                finished = True
            finally:
                if stop_after is None or report.batches < stop_after:
                    self.leases.release(name)
            if not finished:
                break
        with database.atomic():
            SweepRun.create(
                kind="content",
                owner=self.owner,
                started_at=started,
                finished_at=clock.now(),
                deleted=report.deleted,
                kept=dict(report.kept),
                max_batch_lock_ms=report.max_batch_lock_ms,
            )
        log.info("content sweep", owner=self.owner, **report.as_dict())
        return report

    async def _sweep(
        self,
        organisation_id: str,
        name: str,
        now: dt.datetime | None,
        report: ContentSweepReport,
        stop_after: int | None,
    ) -> bool:
        await self._finish_purges(organisation_id, report)  # what a dead sweep left
        at = now or clock.now()
        expired = await self.retention.expired(organisation_id, at)
        deletable = expired & _not_kept(organisation_id)
        cursor = self.leases.position(name)
        while True:
            # Between transactions the server's other work gets the event loop (and a
            # cancelled sweep stops here).
            await asyncio.sleep(0)
            if stop_after is not None and report.batches >= stop_after:
                return False
            rows = self._candidates(organisation_id, cursor, expired)
            if not rows:
                with database.atomic():  # the pass is over: the next one starts afresh
                    self.leases.advance(name, 0)
                return True
            held = [r for r in rows if r.kept]
            kept = self._kept(organisation_id, held) if held else {}
            remaining = [r for r in rows if not r.kept]
            if remaining:
                reason = await self._veto(organisation_id, remaining)
                if reason is not None:
                    kept.update({r.seq: reason for r in remaining})
                    remaining = []
            try:
                deleted, purge_id = self._delete(
                    organisation_id,
                    name,
                    (cursor, rows[-1].seq),
                    remaining,
                    [r.seq for r in held],
                    deletable,
                    report,
                )
            except _LeaseLost:
                log.warning("sweep lease lost", organisation_id=organisation_id)
                return True
            if len(deleted) < len(remaining):  # a reason to keep came while the plugin was asked
                gone = {r.seq for r in deleted}
                kept.update(
                    self._kept(organisation_id, [r for r in remaining if r.seq not in gone])
                )
            cursor = rows[-1].seq
            report.batches += 1
            report.deleted += len(deleted)
            report.kept.update(kept.values())
            for row in deleted:  # blobs at once after the commit, before anything can stop us
                if row.kind == ContentKind.CALL_RECORDING:
                    self.vault.delete_recording(organisation_id, row.id)
            if purge_id is not None:
                await self._purge(purge_id, [r.seq for r in deleted], report)
            if deleted:
                await self._tell(organisation_id, deleted)

    def _candidates(self, organisation_id: str, cursor: int, expired: Any) -> list[_Row]:
        """The next batch: expired items after the cursor, in sequence order, each marked
        if a hold, an open request or a legal-claims restriction keeps it."""
        keeps = Case(None, [(_not_kept(organisation_id), False)], True)
        return [
            _Row(*r)
            for r in tuples(
                ContentItem.select(*REF_COLUMNS, ContentItem.author_account, keeps)
                .where(
                    (ContentItem.organisation == organisation_id)
                    & (ContentItem.seq > cursor)
                    & expired
                )
                .order_by(ContentItem.seq)
                .limit(self.batch_size)
            )
        ]

    def _kept(self, organisation_id: str, rows: list[_Row]) -> dict[int, str]:
        """Why each of these items outlives its period (a reason can have gone meanwhile:
        such an item simply waits for the next pass)."""
        refs = sorted({r.author_ref for r in rows})
        accounts = sorted({r.author_account_id for r in rows if r.author_account_id})
        conversations = sorted({r.conversation_id for r in rows})
        held_people: set[str] = set()
        held_conversations: set[str] = set()
        for subject_ref, conversation_id in tuples(
            LegalHold.select(LegalHold.subject_ref, LegalHold.conversation).where(
                (LegalHold.organisation == organisation_id)
                & LegalHold.released_at.is_null()
                & (LegalHold.subject_ref.in_(refs) | LegalHold.conversation.in_(conversations))
            )
        ):
            if subject_ref:
                held_people.add(subject_ref)
            if conversation_id:
                held_conversations.add(conversation_id)
        requesting = {
            ref
            for (ref,) in tuples(
                RightsRequest.select(RightsRequest.subject_ref).where(
                    RightsRequest.subject_ref.in_(refs)
                    & RightsRequest.type.in_(HOLDING_REQUESTS)
                    & RightsRequest.state.not_in(sorted(rights.FINAL))
                )
            )
        }
        claims = (
            {
                account
                for (account,) in tuples(
                    ProcessingRestriction.select(ProcessingRestriction.account).where(
                        ProcessingRestriction.account.in_(accounts)
                        & (ProcessingRestriction.restriction_case == RestrictionCase.LEGAL_CLAIMS)
                    )
                )
            }
            if accounts
            else set()
        )
        kept: dict[int, str] = {}
        for r in rows:
            if r.author_ref in held_people or r.conversation_id in held_conversations:
                kept[r.seq] = KeptReason.LEGAL_HOLD
            elif r.author_account_id in claims:
                kept[r.seq] = KeptReason.LEGAL_CLAIMS
            elif r.author_ref in requesting:
                kept[r.seq] = KeptReason.OPEN_REQUEST
        return kept

    async def _veto(self, organisation_id: str, rows: list[_Row]) -> str | None:
        try:
            veto = await self.host.retention_veto(organisation_id, _refs(rows))
        except PluginError as exc:
            log.warning("sweep kept a batch: plugin unavailable", reason=exc.reason)
            return KeptReason.PLUGIN_UNAVAILABLE
        return f"plugin: {veto.reason}"[:200] if veto is not None else None

    def _delete(
        self,
        organisation_id: str,
        name: str,
        span: tuple[int, int],
        rows: list[_Row],
        held: list[int],
        deletable: Any,
        report: ContentSweepReport,
    ) -> tuple[list[_Row], int | None]:
        """One batch in one transaction: the cursor moves past ``span`` (after, up to) and
        of ``rows`` what is still deletable goes. The keep rules are in the statement
        itself, so a hold placed while the plugin was asked still keeps its items. Returns
        what went and, if its tokens are still to go, the ``content_purge`` row's id."""
        after, last = span
        started = time.perf_counter()
        deleted: list[_Row] = []
        purge_id: int | None = None
        with (
            _no_collection(),
            tuning.short_transaction(leave_dependents=tuning.single_writer()),
            database.atomic() as tx,
        ):
            if not self.leases.advance(name, last):
                tx.rollback()  # another process took over: leave it to them
                raise _LeaseLost
            if rows:
                # Everything in the span the plugin was not asked about is excluded: items
                # found kept (even if their reason went since) and items not expired.
                condition = (
                    (ContentItem.organisation == organisation_id)
                    & (ContentItem.seq > after)
                    & (ContentItem.seq <= last)
                    & deletable
                )
                if held:
                    condition &= ContentItem.seq.not_in(held)
                gone = {
                    seq
                    for (seq,) in database.execute(
                        ContentItem.delete().where(condition).returning(ContentItem.seq)
                    ).fetchall()
                }
                deleted = [r for r in rows if r.seq in gone]
                if len(deleted) != len(gone):  # never: the span holds nothing else deletable
                    raise RuntimeError("the sweep deleted an item it had not checked")
                if deleted:
                    if tuning.single_writer():
                        purge_id = ContentPurge.create(
                            organisation_id=organisation_id,
                            first_seq=deleted[0].seq,
                            last_seq=deleted[-1].seq,
                            created_at=clock.now(),
                        ).id
                    deletion_feed.content_deleted(
                        organisation_id,
                        [(r.conversation_id, r.id) for r in deleted],
                        deletion_feed.DeletionReason.EXPIRED,
                    )
                    # In the chain, by each author's pseudonym, never the content (SEC-5).
                    for author_ref in sorted({r.author_ref for r in deleted}):
                        audit.record(
                            SYSTEM, "content.delete:expired", "organisation", organisation_id,
                            author_ref,
                        )  # fmt: skip
        lock_ms = (time.perf_counter() - started) * 1000
        self._held(len(rows), lock_ms, report)
        self.batch_size = _adapted(self.batch_size, lock_ms, MIN_BATCH, MAX_BATCH)
        return deleted, purge_id

    async def _purge(self, purge_id: int, seqs: list[int], report: ContentSweepReport) -> None:
        """Delete the word tokens and flags of deleted items, a few items' worth a
        transaction; the last also deletes the ``content_purge`` row that recorded them."""
        if not seqs:
            with database.atomic():
                ContentPurge.delete_by_id(purge_id)
        start = 0
        while start < len(seqs):
            await asyncio.sleep(0)
            chunk = seqs[start : start + self.purge_size]
            start += len(chunk)
            started = time.perf_counter()
            with _no_collection(), tuning.short_transaction(), database.atomic():
                ContentToken.delete().where(ContentToken.item_seq.in_(chunk)).execute()
                ContentFlag.delete().where(ContentFlag.item_seq.in_(chunk)).execute()
                if start >= len(seqs):
                    ContentPurge.delete_by_id(purge_id)
            lock_ms = (time.perf_counter() - started) * 1000
            self._held(len(chunk), lock_ms, report)
            self.purge_size = _adapted(self.purge_size, lock_ms, MIN_PURGE, MAX_PURGE)

    async def _finish_purges(self, organisation_id: str, report: ContentSweepReport) -> None:
        """Tokens and flags of items a dead sweep deleted but did not get to: in the
        recorded range, those whose item is gone (sequences are never reused)."""
        pending = list(
            tuples(
                ContentPurge.select(ContentPurge.id, ContentPurge.first_seq, ContentPurge.last_seq)
                .where(ContentPurge.organisation_id == organisation_id)
                .order_by(ContentPurge.first_seq)
            )
        )
        for purge_id, first, last in pending:
            present = ContentItem.select(ContentItem.seq).where(
                ContentItem.seq.between(first, last)
            )
            tokens = ContentToken.select(ContentToken.item_seq).where(
                (ContentToken.organisation_id == organisation_id)
                & ContentToken.item_seq.between(first, last)
                & ContentToken.item_seq.not_in(present)
            )
            flags = ContentFlag.select(ContentFlag.item_seq).where(
                ContentFlag.item_seq.between(first, last) & ContentFlag.item_seq.not_in(present)
            )
            orphans = sorted(
                {seq for query in (tokens, flags) for (seq,) in tuples(query.distinct())}
            )
            log.info("sweep finishes a purge", organisation_id=organisation_id, items=len(orphans))
            await self._purge(purge_id, orphans, report)

    def _held(self, rows: int, lock_ms: float, report: ContentSweepReport) -> None:
        report.max_batch_lock_ms = max(report.max_batch_lock_ms, lock_ms)
        if self.observer is not None:
            self.observer(rows, lock_ms)
        self._transactions += 1
        if self._transactions % CHECKPOINT_EVERY == 0:
            tuning.checkpoint()

    async def _tell(self, organisation_id: str, rows: list[_Row]) -> None:
        try:
            await self.host.retention_purged(organisation_id, _refs(rows))
        except PluginError as exc:
            log.warning("plugin not told of a purge", reason=exc.reason)


def _refs(rows: list[_Row]) -> list[ContentRef]:
    return [content_ref(r.kind, r.id, r.conversation_id, r.author_ref, r.created_at) for r in rows]


def _adapted(size: int, lock_ms: float, least: int, most: int) -> int:
    """The next transaction's size, so that its write lock stays near the target: in
    proportion to how far this one was off, but growing by at most a fifth at a time (one
    quick transaction, as often as not luck, must not double the next) and shrinking by at
    most half."""
    factor = min(GROWTH, max(0.5, TARGET_LOCK_MS / max(lock_ms, 0.1)))
    return max(least, min(most, int(size * factor)))
