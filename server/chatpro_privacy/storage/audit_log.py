"""Reading the audit trail's partitions as a whole (SEC-5): their heads, their entry counts,
an entry at a position, for verification and the signed checkpoints kept outside the
database. (Writing entries is in ``queries`` and ``chained``.)"""

from __future__ import annotations

from typing import Any

from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.dialect import parameters, render
from chatpro_privacy.storage.models import AuditHead

_STATES = """
SELECT h.chain_partition, h.seq, h.mac,
       (SELECT COUNT(*) FROM audit_entry e WHERE e.chain_partition = h.chain_partition)
FROM audit_head h"""
_ENTRY_MAC = "SELECT mac FROM audit_entry WHERE chain_partition = ? AND chain_seq = ?"


def _execute(sql: str, params: tuple[Any, ...]) -> Any:
    postgres = is_postgres()
    return database.execute_sql(render(sql, postgres), parameters(params, postgres))


def partition_states() -> dict[int, tuple[int, str, int]]:
    """partition -> (head position, head MAC, entries), in one statement (one snapshot)."""
    return {
        int(p): (int(seq), str(mac), int(n)) for p, seq, mac, n in _execute(_STATES, ()).fetchall()
    }


def partition_heads() -> dict[int, AuditHead]:
    return {int(h.chain_partition): h for h in AuditHead.select()}


def entry_mac(partition: int, seq: int) -> str | None:
    row = _execute(_ENTRY_MAC, (partition, seq)).fetchone()
    return str(row[0]) if row else None
