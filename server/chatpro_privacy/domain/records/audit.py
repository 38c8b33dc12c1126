"""The audit trail (SEC-5): who read another person's data or changed personal data, by ids
only, tamper-evident.

Entries are written inside the transaction of the change they record, so a change and its
entry commit together or not at all. They hold pseudonymous refs, never personal data.

Each entry belongs to one of PARTITIONS chains, so that writers do not wait on one head:
each thread writes to a chain of its own (its lane), whoever the entry is about. An entry's
MAC covers its fields, its position and the previous entry's MAC, keyed by a secret that is
not in the database; each chain's head (newest position and MAC) is stored with a MAC of its
own, so cutting off the newest entries shows too. ``verify`` walks every chain and reports
the first entry that was changed, removed or cut off.

An audited write (``recorded_write``) is one statement on PostgreSQL: the lane's head as this
process last moved it is the usual guess, checked by the statement itself (storage.chained).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import itertools
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chatpro_privacy import context
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.storage import chained, queries
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import AuditEntry, AuditHead

PARTITIONS = 16
# A chained write that keeps finding its lane's head moved (another process writing to the
# same lane) stops guessing and takes the head's turn in a transaction instead.
CHAINED_ATTEMPTS = 3


class _Keys:
    """The process's audit key, derived from the service's secret key at start-up."""

    key: bytes = b""


_keys = _Keys()


def configure(secret_key: bytes) -> None:
    _keys.key = hmac.new(secret_key, b"chatpro-audit-chain-v1", hashlib.sha256).digest()


def _mac(*parts: Any) -> str:
    if not _keys.key:
        raise RuntimeError("the audit key is not configured")
    message = "\x1f".join("" if p is None else str(p) for p in parts).encode("utf-8")
    return hmac.new(_keys.key, message, hashlib.sha256).hexdigest()


class _Lane(threading.local):
    partition: int | None = None


_lane = _Lane()
# Threads take lanes in turn from a random start, so that replicas' threads spread too.
_lanes = itertools.count(random.randrange(PARTITIONS))
# Each lane's head (position, MAC) as this process last moved it: a guess, never trusted.
_heads: dict[int, tuple[int, str]] = {}


def _partition() -> int:
    if _lane.partition is None:
        _lane.partition = next(_lanes) % PARTITIONS
    return _lane.partition


def _entry_mac(partition: int, seq: int, previous: str, fields: Iterable[Any]) -> str:
    return _mac("entry", partition, seq, previous, *fields)


def _head_mac(partition: int, seq: int, mac: str) -> str:
    return _mac("head", partition, seq, mac)


def _fields(
    actor: Principal,
    action: str,
    target_type: str,
    target_id: str | None,
    subject_ref: str | None,
) -> tuple[Any, ...]:
    return (
        clock.now(),
        context.request_id.get(),
        actor.kind.value,
        actor.audit_ref,
        action,
        subject_ref,
        target_type,
        target_id,
    )


def _link(partition: int, head: tuple[int, str] | None, fields: tuple[Any, ...]) -> chained.Link:
    follows, previous = head or (0, "")
    seq = follows + 1
    mac = _entry_mac(partition, seq, previous, _canonical(fields))
    return chained.Link(partition, seq, mac, _head_mac(partition, seq, mac), follows)


def record(
    actor: Principal,
    action: str,
    target_type: str,
    target_id: str | None = None,
    subject_ref: str | None = None,
) -> None:
    """Append an entry in the caller's transaction, taking the lane's turn to its end."""
    fields = _fields(actor, action, target_type, target_id, subject_ref)
    partition = _partition()
    link = _link(partition, queries.locked_audit_head(partition), fields)
    queries.insert_audit(fields, partition, link.seq, link.mac, link.head_mac)
    _heads.pop(partition, None)  # the transaction may yet roll back: guess afresh


def recorded_write(
    actor: Principal,
    action: str,
    target_type: str,
    target_id: str | None,
    subject_ref: str | None,
    write: chained.Write,
    model: Any = None,
) -> list[Any]:
    """``write`` and its audit entry, committed together (outside any transaction of the
    caller's): one statement on PostgreSQL when the lane's head is where this process left
    it, else a transaction. Returns the write's rows (as ``model`` if given)."""
    if chained.one_statement():
        fields = _fields(actor, action, target_type, target_id, subject_ref)
        partition = _partition()
        head = _heads.get(partition)
        for _ in range(CHAINED_ATTEMPTS):
            if head is None:
                head = queries.audit_head(partition) or (0, "")
            link = _link(partition, head, fields)
            rows = chained.run_chained(write, fields, link, model)
            if rows:
                _heads[partition] = (link.seq, link.mac)
                return rows
            _heads.pop(partition, None)
            head = None
    with database.atomic():
        rows = chained.run(write, model)
        record(actor, action, target_type, target_id, subject_ref)
    return rows


def _canonical(fields: Iterable[Any]) -> list[Any]:
    """Field values as text, the same whether written now or read back from either database."""
    values = list(fields)
    stamp = queries.timestamp(values[0])
    values[0] = stamp.isoformat(" ") if stamp else ""
    return values


class ProblemKind(enum.StrEnum):
    """How a chain was found tampered with."""

    CHANGED = "changed"  # an entry, or its link, fails its MAC
    REMOVED = "removed"  # entries are missing from the middle
    CUT_OFF = "cut_off"  # the chain does not end where its head says
    HEAD_CHANGED = "head_changed"  # the head is missing or fails its MAC


@dataclass(frozen=True)
class Problem:
    partition: int
    seq: int
    entry_id: int | None
    kind: ProblemKind
    detail: str


@dataclass(frozen=True)
class Verification:
    entries_checked: int
    legacy_entries: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def _walk(
    partition: int, entries: Iterable[AuditEntry], head: AuditHead | None
) -> tuple[int, Problem | None]:
    """Check one chain: (entries checked, its first problem or None)."""
    position, previous, checked = 1, "", 0
    for entry in entries:
        checked += 1
        seq, mac = int(entry.chain_seq or 0), str(entry.mac or "")
        if seq != position:
            return checked, Problem(
                partition,
                position,
                None,
                ProblemKind.REMOVED,
                f"entries {position} to {seq - 1} are missing",
            )
        fields = (
            entry.occurred_at,
            entry.request_id,
            entry.actor_type,
            entry.actor_ref,
            entry.action,
            entry.subject_ref,
            entry.target_type,
            entry.target_id,
        )
        if not hmac.compare_digest(mac, _entry_mac(partition, seq, previous, _canonical(fields))):
            return checked, Problem(
                partition,
                seq,
                int(entry.id),
                ProblemKind.CHANGED,
                "the entry or its link fails its MAC",
            )
        previous, position = mac, position + 1
    last = position - 1
    if head is None:
        if last:
            return checked, Problem(
                partition, last, None, ProblemKind.HEAD_CHANGED, "the chain's head is missing"
            )
        return checked, None
    if not hmac.compare_digest(
        str(head.head_mac), _head_mac(partition, int(head.seq), str(head.mac))
    ):
        return checked, Problem(
            partition, int(head.seq), None, ProblemKind.HEAD_CHANGED, "the head fails its MAC"
        )
    if int(head.seq) != last or str(head.mac) != previous:
        return checked, Problem(
            partition,
            position,
            None,
            ProblemKind.CUT_OFF,
            f"the chain ends at {last}; its head records {head.seq}",
        )
    return checked, None


def verify() -> Verification:
    """Walk every chain; report the first problem of each (and so the first overall)."""
    problems: list[Problem] = []
    checked = 0
    heads = {int(h.chain_partition): h for h in AuditHead.select()}
    for partition in range(PARTITIONS):
        entries = (
            AuditEntry.select()
            .where(AuditEntry.chain_partition == partition)
            .order_by(AuditEntry.chain_seq)
        )
        count, problem = _walk(partition, entries, heads.get(partition))
        checked += count
        if problem is not None:
            problems.append(problem)
    legacy = AuditEntry.select().where(AuditEntry.chain_partition.is_null()).count()
    return Verification(checked, legacy, problems)
