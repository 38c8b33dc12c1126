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

Blobs go after the commit; word tokens and flags go with their rows. Apps are told through
the deletion feed (RET-5). The next pass starts again from the beginning, so what was kept
goes as soon as its reason does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from chatpro_privacy.domain import deletion_feed
from chatpro_privacy.domain.clock import clock
from chatpro_privacy.domain.messages import CALL_RECORDING, MESSAGE
from chatpro_privacy.domain.retention import Retention
from chatpro_privacy.domain.vault import Vault
from chatpro_privacy.plugin.host import PluginError, PluginHost
from chatpro_privacy.plugin.types import ContentRef
from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.models import (
    ContentItem,
    LegalHold,
    ProcessingRestriction,
    RightsRequest,
    SweepCursor,
    SweepRun,
)
from chatpro_privacy.storage.queries import tuples

log = structlog.get_logger("chatpro_privacy.sweep")

LEASE = dt.timedelta(minutes=2)
TARGET_LOCK_MS = 25.0
MIN_BATCH, MAX_BATCH = 20, 5000
FIRST_BATCH = 100  # grows while batches stay short: the first must not blow the lock
CHECKPOINT_EVERY = 25  # batches; the WAL is checkpointed between batches, not inside one
HOLDING_REQUESTS = ("access", "portability", "erasure")
OPEN_STATES = ("received", "identity_verification", "in_progress", "awaiting_organisation")

LEGAL_HOLD = "legal_hold"
OPEN_REQUEST = "open_rights_request"
LEGAL_CLAIMS = "restricted_for_legal_claims"
PLUGIN_UNAVAILABLE = "plugin_unavailable"


@contextlib.contextmanager
def _sweep_durability() -> Iterator[None]:
    """On SQLite a batch commits with synchronous=NORMAL and without an automatic checkpoint
    in its commit: a deletion lost to a power cut is simply made again by the next sweep
    (nothing acknowledged to a caller is at stake), and the lock stays short. The
    connection's own settings come back before anything else can use it."""
    if is_postgres():
        yield
        return
    synchronous = database.execute_sql("PRAGMA synchronous").fetchone()[0]
    autocheckpoint = database.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0]
    database.execute_sql("PRAGMA synchronous=NORMAL")
    database.execute_sql("PRAGMA wal_autocheckpoint=0")
    try:
        yield
    finally:
        database.execute_sql(f"PRAGMA synchronous={int(synchronous)}")
        database.execute_sql(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")


class _LeaseLost(Exception):
    """Another process took this organisation's lease: it carries on, this one stops."""


def _not_kept(organisation_id: str) -> Any:
    """Content no hold, open request or legal-claims restriction keeps (as ``_kept``)."""
    holds = LegalHold.select(LegalHold.subject_ref).where(
        (LegalHold.organisation == organisation_id)
        & LegalHold.released_at.is_null()
        & LegalHold.subject_ref.is_null(False)
    )
    held_conversations = LegalHold.select(LegalHold.conversation).where(
        (LegalHold.organisation == organisation_id)
        & LegalHold.released_at.is_null()
        & LegalHold.conversation.is_null(False)
    )
    requesting = RightsRequest.select(RightsRequest.subject_ref).where(
        RightsRequest.type.in_(HOLDING_REQUESTS) & RightsRequest.state.in_(OPEN_STATES)
    )
    claims = ProcessingRestriction.select(ProcessingRestriction.account).where(
        ProcessingRestriction.restriction_case == "legal_claims"
    )
    return (
        ContentItem.author_ref.not_in(holds)
        & ContentItem.conversation.not_in(held_conversations)
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
    max_batch_lock_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "kept": dict(sorted(self.kept.items())),
            "batches": self.batches,
            "organisations": self.organisations,
            "skipped_organisations": self.skipped_organisations,
            "max_batch_lock_ms": round(self.max_batch_lock_ms, 3),
        }


@dataclass(frozen=True)
class _Row:
    seq: int
    id: str
    kind: str
    conversation_id: str
    author_ref: str
    author_account_id: str | None
    created_at: dt.datetime


class Leases:
    """One process at a time per cursor: a row it claims until a deadline it keeps renewing."""

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def acquire(self, name: str) -> bool:
        now = clock.now()
        with database.atomic():
            SweepCursor.insert(
                name=name, position=0, owner=None, lease_until=None, updated_at=now
            ).on_conflict_ignore().execute()
            claimed = (
                SweepCursor.update(owner=self.owner, lease_until=now + LEASE, updated_at=now)
                .where(
                    (SweepCursor.name == name)
                    & (
                        SweepCursor.owner.is_null()
                        | (SweepCursor.owner == self.owner)
                        | (SweepCursor.lease_until < now)
                    )
                )
                .execute()
            )
        return bool(claimed)

    def release(self, name: str) -> None:
        with database.atomic():
            SweepCursor.update(owner=None, lease_until=None).where(
                (SweepCursor.name == name) & (SweepCursor.owner == self.owner)
            ).execute()

    def position(self, name: str) -> int:
        row = SweepCursor.get_or_none(SweepCursor.name == name)
        return int(row.position) if row else 0

    def advance(self, name: str, position: int) -> bool:
        """Inside the batch's transaction: move the cursor and renew the lease, if still ours."""
        now = clock.now()
        return bool(
            SweepCursor.update(position=position, lease_until=now + LEASE, updated_at=now)
            .where((SweepCursor.name == name) & (SweepCursor.owner == self.owner))
            .execute()
        )


class ContentSweeper:
    def __init__(
        self,
        retention: Retention,
        host: PluginHost,
        vault: Vault,
        owner: str | None = None,
        batch_size: int = FIRST_BATCH,
    ) -> None:
        self.retention = retention
        self.host = host
        self.vault = vault
        self.owner = owner or f"sweeper-{uuid.uuid4().hex[:12]}"
        self.leases = Leases(self.owner)
        self.batch_size = batch_size

    async def run(
        self, now: dt.datetime | None = None, stop_after: int | None = None
    ) -> ContentSweepReport:
        """One pass over every organisation with content. ``stop_after`` ends the pass after
        that many batches (tests use it to stand for a crash)."""
        report = ContentSweepReport()
        started = clock.now()
        organisations = [
            org
            for (org,) in tuples(
                ContentItem.select(ContentItem.organisation)
                .distinct()
                .order_by(ContentItem.organisation)
            )
        ]
        for organisation_id in organisations:
            name = f"content:{organisation_id}"
            if not self.leases.acquire(name):
                report.skipped_organisations += 1
                continue
            report.organisations += 1
            try:
                finished = await self._sweep(organisation_id, name, now, report, stop_after)
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
                kept=json.dumps(dict(report.kept)),
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
        at = now or clock.now()
        expired = await self.retention.expired(organisation_id, at)
        cursor = self.leases.position(name)
        while True:
            if stop_after is not None and report.batches >= stop_after:
                return False
            rows = [
                _Row(*r)
                for r in tuples(
                    ContentItem.select(
                        ContentItem.seq,
                        ContentItem.id,
                        ContentItem.kind,
                        ContentItem.conversation,
                        ContentItem.author_ref,
                        ContentItem.author_account,
                        ContentItem.created_at,
                    )
                    .where(
                        (ContentItem.organisation == organisation_id)
                        & (ContentItem.seq > cursor)
                        & expired
                    )
                    .order_by(ContentItem.seq)
                    .limit(self.batch_size)
                )
            ]
            if not rows:
                with database.atomic():  # the pass is over: the next one starts afresh
                    self.leases.advance(name, 0)
                return True
            kept = self._kept(organisation_id, rows)
            remaining = [r for r in rows if r.seq not in kept]
            if remaining:
                reason = await self._veto(organisation_id, remaining)
                if reason is not None:
                    kept.update({r.seq: reason for r in remaining})
                    remaining = []
            try:
                deleted, lock_ms = self._delete(
                    organisation_id, name, remaining, rows[-1].seq, expired
                )
            except _LeaseLost:
                log.warning("sweep lease lost", organisation_id=organisation_id)
                return True
            cursor = rows[-1].seq
            report.batches += 1
            report.deleted += len(deleted)
            report.kept.update(kept.values())
            report.max_batch_lock_ms = max(report.max_batch_lock_ms, lock_ms)
            self._adapt(lock_ms)
            if report.batches % CHECKPOINT_EVERY == 0 and not is_postgres():
                database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
            for row in deleted:  # blobs after the commit
                if row.kind == CALL_RECORDING:
                    self.vault.delete_recording(organisation_id, row.id)
            if deleted:
                await self._tell(organisation_id, deleted)

    def _kept(self, organisation_id: str, rows: list[_Row]) -> dict[int, str]:
        """Items that must outlive their period, each with its reason."""
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
                    & RightsRequest.state.in_(OPEN_STATES)
                )
            )
        }
        claims = (
            {
                account
                for (account,) in tuples(
                    ProcessingRestriction.select(ProcessingRestriction.account).where(
                        ProcessingRestriction.account.in_(accounts)
                        & (ProcessingRestriction.restriction_case == "legal_claims")
                    )
                )
            }
            if accounts
            else set()
        )
        kept: dict[int, str] = {}
        for r in rows:
            if r.author_ref in held_people or r.conversation_id in held_conversations:
                kept[r.seq] = LEGAL_HOLD
            elif r.author_account_id in claims:
                kept[r.seq] = LEGAL_CLAIMS
            elif r.author_ref in requesting:
                kept[r.seq] = OPEN_REQUEST
        return kept

    async def _veto(self, organisation_id: str, rows: list[_Row]) -> str | None:
        refs = [
            ContentRef(
                MESSAGE if r.kind == MESSAGE else CALL_RECORDING,
                r.id,
                r.conversation_id,
                r.author_ref,
                r.created_at,
            )
            for r in rows
        ]
        try:
            veto = await self.host.retention_veto(organisation_id, refs)
        except PluginError as exc:
            log.warning("sweep kept a batch: plugin unavailable", reason=exc.reason)
            return PLUGIN_UNAVAILABLE
        return f"plugin: {veto.reason}"[:200] if veto is not None else None

    def _delete(
        self,
        organisation_id: str,
        name: str,
        rows: list[_Row],
        last_seq: int,
        expired: Any,
    ) -> tuple[list[_Row], float]:
        """One batch in one transaction; returns what was deleted and how long the write lock
        was held."""
        started = time.perf_counter()
        with _sweep_durability(), database.atomic() as transaction:
            if not self.leases.advance(name, last_seq):
                transaction.rollback()  # another process took over: leave it to them
                raise _LeaseLost
            deleted: list[_Row] = []
            if rows:
                seqs = [r.seq for r in rows]
                # Checked again under the lock: a hold, a request or a restriction may have
                # come while the plugin was asked.
                still = {
                    seq
                    for (seq,) in tuples(
                        ContentItem.select(ContentItem.seq).where(
                            ContentItem.seq.in_(seqs) & expired & _not_kept(organisation_id)
                        )
                    )
                }
                deleted = [r for r in rows if r.seq in still]
                if deleted:
                    ContentItem.delete().where(
                        ContentItem.seq.in_([r.seq for r in deleted])
                    ).execute()
                    deletion_feed.content_deleted(
                        organisation_id,
                        [(r.conversation_id, r.id) for r in deleted],
                        deletion_feed.EXPIRED,
                    )
        return deleted, (time.perf_counter() - started) * 1000

    def _adapt(self, lock_ms: float) -> None:
        """Keep each batch's write lock near the target: tens of milliseconds."""
        if lock_ms > 2 * TARGET_LOCK_MS:
            self.batch_size = max(MIN_BATCH, self.batch_size // 2)
        elif lock_ms < TARGET_LOCK_MS / 2:
            self.batch_size = min(MAX_BATCH, self.batch_size * 2)

    async def _tell(self, organisation_id: str, rows: list[_Row]) -> None:
        refs = [
            ContentRef(
                MESSAGE if r.kind == MESSAGE else CALL_RECORDING,
                r.id,
                r.conversation_id,
                r.author_ref,
                r.created_at,
            )
            for r in rows
        ]
        try:
            await self.host.retention_purged(organisation_id, refs)
        except PluginError as exc:
            log.warning("plugin not told of a purge", reason=exc.reason)
