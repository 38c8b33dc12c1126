"""The audit trail's statements (SEC-5), written by hand: every audited call runs them.

A writer locks its partition's head row and reads it in one statement (``SELECT ... FOR
UPDATE`` on PostgreSQL, whose READ COMMITTED re-reads a row it waited for, so the head read is
the newest; SQLite's writers already take turns from BEGIN IMMEDIATE), then appends the entry
and moves the head in one more (a data-modifying CTE on PostgreSQL, a trigger on SQLite: see
migration 15). Content creation, on the hot path of SendMessage, reads the head in the very
statement that inserts the item (``insert_content_item``), so its entry costs one statement.
"""

from __future__ import annotations

from typing import Any

from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.dialect import parameters, render
from chatpro_privacy.storage.models import AuditHead, ContentItem
from chatpro_privacy.storage.tuning import AUDIT_PARTITION_LOCKS

_COLUMNS = (
    "occurred_at, request_id, actor_type, actor_ref, action, subject_ref, target_type, "
    "target_id, chain_partition, chain_seq, mac"
)
_HEAD = "SELECT seq, mac FROM audit_head WHERE chain_partition = ?"
_HEAD_LOCKED = _HEAD + " FOR UPDATE"
_LAST_ENTRY = """
SELECT chain_seq, mac FROM audit_entry WHERE chain_partition = ?
ORDER BY chain_seq DESC LIMIT 1"""
_LOCK_PARTITION = "SELECT pg_advisory_xact_lock(?)"
_APPEND_SQLITE = f"""
INSERT INTO audit_entry ({_COLUMNS}, head_mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_APPEND_POSTGRES = f"""
WITH entry AS (
  INSERT INTO audit_entry ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?))
INSERT INTO audit_head (chain_partition, seq, mac, head_mac) VALUES (?, ?, ?, ?)
ON CONFLICT (chain_partition) DO UPDATE SET
  seq = excluded.seq, mac = excluded.mac, head_mac = excluded.head_mac"""

Head = tuple[int, str]  # (newest position, its MAC)


def _execute(sql: str, params: tuple[Any, ...]) -> Any:
    postgres = is_postgres()
    return database.execute_sql(render(sql, postgres), parameters(params, postgres))


def _head(row: Any) -> Head | None:
    return (int(row[0]), str(row[1])) if row and row[0] is not None else None


def locked_head(partition: int) -> Head | None:
    """The partition's head, its writers' turn taken; None if the head row is missing (it
    was deleted: the chain then goes on from its newest entry, and verification reports
    the head)."""
    found = _head(_execute(_HEAD_LOCKED if is_postgres() else _HEAD, (partition,)).fetchone())
    return found if found is not None else _head_from_entries(partition)


def _head_from_entries(partition: int) -> Head | None:
    if is_postgres():  # no row to lock: the partition's writers take turns by its key
        _execute(_LOCK_PARTITION, (AUDIT_PARTITION_LOCKS + partition,))
        again = _head(_execute(_HEAD, (partition,)).fetchone())
        if again is not None:
            return again
    return _head(_execute(_LAST_ENTRY, (partition,)).fetchone())


def append(fields: tuple[Any, ...], partition: int, seq: int, mac: str, head_mac: str) -> None:
    """Append a chained entry and move its partition's head, in one statement of the
    caller's transaction."""
    if is_postgres():
        _execute(_APPEND_POSTGRES, (*fields, partition, seq, mac, partition, seq, mac, head_mac))
    else:
        _execute(_APPEND_SQLITE, (*fields, partition, seq, mac, head_mac))


def insert_content_item(fields: dict[str, Any], partition: int) -> tuple[int, Head | None]:
    """Insert a content item and read (locked) the audit head of ``partition`` in the same
    statement: (the item's seq, the head). The caller appends the item's audit entry next."""
    postgres = is_postgres()
    meta = ContentItem._meta  # peewee's model metadata
    names = [meta.fields[name].column_name for name in fields]
    values = tuple(meta.fields[name].db_value(value) for name, value in fields.items())
    marks = ", ".join("?" for _ in names)
    insert = f"INSERT INTO content_item ({', '.join(names)}) VALUES ({marks})"
    if postgres:
        sql = (
            f"WITH head AS ({_HEAD_LOCKED}) {insert}"
            " RETURNING seq, (SELECT seq FROM head), (SELECT mac FROM head)"
        )
        params = (partition, *values)
    else:
        sql = (
            f"{insert} RETURNING seq, (SELECT seq FROM audit_head WHERE chain_partition = ?),"
            " (SELECT mac FROM audit_head WHERE chain_partition = ?)"
        )
        params = (*values, partition, partition)
    row = _execute(sql, params).fetchone()
    head = _head(row[1:])
    return int(row[0]), head if head is not None else _head_from_entries(partition)


_STATES = """
SELECT h.chain_partition, h.seq, h.mac,
       (SELECT COUNT(*) FROM audit_entry e WHERE e.chain_partition = h.chain_partition)
FROM audit_head h"""


def partition_states() -> dict[int, tuple[int, str, int]]:
    """partition -> (head position, head MAC, entries), in one statement (one snapshot)."""
    return {
        int(p): (int(seq), str(mac), int(n)) for p, seq, mac, n in _execute(_STATES, ()).fetchall()
    }


def partition_heads() -> dict[int, AuditHead]:
    return {int(h.chain_partition): h for h in AuditHead.select()}


def entry_mac(partition: int, seq: int) -> str | None:
    row = _execute(
        "SELECT mac FROM audit_entry WHERE chain_partition = ? AND chain_seq = ?",
        (partition, seq),
    ).fetchone()
    return str(row[0]) if row else None
