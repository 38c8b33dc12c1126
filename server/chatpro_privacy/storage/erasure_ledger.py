"""The erasure ledger: which accounts were erased, and how, without any personal data.

It lives in the key store's database, apart from the content, for the same reason the keys
do: restoring an older backup of the content database brings an erased person back, and
the ledger is what tells ``erasure.reapply`` to erase them again. An entry holds ids and
decisions only (account id, pseudonymous subject ref, each organisation's action, the kept
parts and their stated reasons, counts), never a name, email or date of birth.

An entry is written "pending" before the content is touched and marked "done" once the
content database has committed, so that a crash in between leaves a trace that the next
``erase`` call for the same account finishes rather than forgets.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from chatpro_privacy.clock import clock
from chatpro_privacy.storage.shared_connection import SharedConnection


class LedgerState(enum.StrEnum):
    PENDING = "pending"  # written before the content is touched
    DONE = "done"  # the content database has committed


@dataclass(frozen=True)
class OrganisationAction:
    organisation_id: str
    action: str  # plugin.types.Disposition
    reason: str
    decided_by: str


@dataclass(frozen=True)
class KeptRecord:
    what: str
    reason: str
    decided_by: str


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    account_id: str
    subject_ref: str
    rights_request_id: str | None
    state: LedgerState
    erased_at: Any
    organisations: list[OrganisationAction]
    kept: list[KeptRecord]
    summary: dict[str, Any] = field(default_factory=dict)  # the report's counts

    def action_for(self, organisation_id: str) -> str:
        """The recorded action; an organisation with none is treated as "delete"."""
        for decision in self.organisations:
            if decision.organisation_id == organisation_id:
                return decision.action
        return "delete"


class ErasureLedger(SharedConnection):
    """Append and read erasure entries in the key store's database.

    One connection under a lock, like the key store's own, so that the event loop and worker
    threads can share one ledger.
    """

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        super().__init__(url, schema, "key store")
        with self._lock:
            self._db.connect(reuse_if_open=True)
            if not self._pg:
                # Per connection: rows this ledger deletes or rewrites leave no old bytes.
                self._execute("PRAGMA secure_delete = ON")
            with self._db.atomic():
                self._execute(
                    "CREATE TABLE IF NOT EXISTS erasure_ledger ("
                    " id TEXT PRIMARY KEY,"
                    " account_id TEXT NOT NULL UNIQUE,"
                    " subject_ref TEXT NOT NULL,"
                    " rights_request_id TEXT,"
                    " state TEXT NOT NULL,"
                    " erased_at TIMESTAMP NOT NULL,"
                    " organisations TEXT NOT NULL,"
                    " kept TEXT NOT NULL,"
                    " summary TEXT NOT NULL)"
                )

    def begin(
        self,
        account_id: str,
        subject_ref: str,
        rights_request_id: str | None,
        organisations: list[OrganisationAction],
        kept: list[KeptRecord],
    ) -> LedgerEntry:
        """Record an erasure about to happen. An earlier entry for the account is replaced:
        a pending one that never finished, or a done one whose account a restore brought
        back and that is now being erased again."""
        entry = LedgerEntry(
            uuid.uuid4().hex,
            account_id,
            subject_ref,
            rights_request_id,
            LedgerState.PENDING,
            clock.now(),
            organisations,
            kept,
        )
        with self._lock, self._db.atomic():
            self._execute("DELETE FROM erasure_ledger WHERE account_id = ?", (account_id,))
            self._execute(
                "INSERT INTO erasure_ledger (id, account_id, subject_ref, rights_request_id,"
                " state, erased_at, organisations, kept, summary)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.id,
                    account_id,
                    subject_ref,
                    rights_request_id,
                    LedgerState.PENDING,
                    entry.erased_at,
                    json.dumps([o.__dict__ for o in organisations]),
                    json.dumps([k.__dict__ for k in kept]),
                    "{}",
                ),
            )
        return entry

    def finish(self, account_id: str, summary: dict[str, Any]) -> None:
        """Mark the account's erasure done, with the counts of what it erased."""
        with self._lock, self._db.atomic():
            self._execute(
                "UPDATE erasure_ledger SET state = ?, summary = ? WHERE account_id = ?",
                (LedgerState.DONE, json.dumps(summary, sort_keys=True), account_id),
            )

    def get(self, account_id: str) -> LedgerEntry | None:
        rows = self._select("WHERE account_id = ?", (account_id,))
        return rows[0] if rows else None

    def for_request(self, rights_request_id: str) -> LedgerEntry | None:
        rows = self._select("WHERE rights_request_id = ?", (rights_request_id,))
        return rows[0] if rows else None

    def entries(self, state: LedgerState = LedgerState.DONE) -> list[LedgerEntry]:
        """Entries in the order they were made."""
        return self._select("WHERE state = ? ORDER BY erased_at, id", (state,))

    # -- internals -------------------------------------------------------------------------

    def _select(self, where: str, params: tuple[Any, ...]) -> list[LedgerEntry]:
        with self._lock:
            rows = self._execute(
                "SELECT id, account_id, subject_ref, rights_request_id, state, erased_at,"
                f" organisations, kept, summary FROM erasure_ledger {where}",
                params,
            ).fetchall()
        return [
            LedgerEntry(
                str(r[0]),
                str(r[1]),
                str(r[2]),
                None if r[3] is None else str(r[3]),
                LedgerState(r[4]),
                r[5],
                [OrganisationAction(**o) for o in json.loads(r[6])],
                [KeptRecord(**k) for k in json.loads(r[7])],
                dict(json.loads(r[8])),
            )
            for r in rows
        ]
