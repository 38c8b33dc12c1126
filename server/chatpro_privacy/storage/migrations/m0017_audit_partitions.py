"""The audit trail's partitions all exist from the start, and an entry moves its head in the
statement that writes it (SEC-5).

- Every partition gets its head row now, empty (position 0), unless it already has entries:
  verification then knows that a partition without a head was deleted, not never used. The
  rows also give writers a row to lock (``SELECT ... FOR UPDATE``), which replaces the
  advisory lock and its statement.
- On SQLite a trigger moves the head when an entry is inserted, from the entry's transient
  ``head_mac`` (then cleared, so that no entry row keeps a head's MAC for a truncation to
  reuse): one statement per entry instead of two. PostgreSQL does the same with a
  data-modifying CTE and needs no trigger; the column stays NULL there.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee

from chatpro_privacy.storage.db import is_postgres
from chatpro_privacy.storage.tuning import AUDIT_PARTITIONS

VERSION = 17

_SQLITE_HEAD_TRIGGER = """
CREATE TRIGGER audit_entry_moves_head AFTER INSERT ON audit_entry
WHEN NEW.head_mac IS NOT NULL
BEGIN
  INSERT INTO audit_head (chain_partition, seq, mac, head_mac)
  VALUES (NEW.chain_partition, NEW.chain_seq, NEW.mac, NEW.head_mac)
  ON CONFLICT (chain_partition) DO UPDATE SET
    seq = excluded.seq, mac = excluded.mac, head_mac = excluded.head_mac;
  UPDATE audit_entry SET head_mac = NULL WHERE id = NEW.id;
END"""


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    db.execute_sql("ALTER TABLE audit_entry ADD COLUMN head_mac TEXT")
    for partition in range(AUDIT_PARTITIONS):
        db.execute_sql(
            "INSERT INTO audit_head (chain_partition, seq, mac, head_mac)"
            f" SELECT {partition}, 0, '', '' WHERE NOT EXISTS"
            f" (SELECT 1 FROM audit_head WHERE chain_partition = {partition})"
            f" AND NOT EXISTS (SELECT 1 FROM audit_entry WHERE chain_partition = {partition})"
        )
    if not is_postgres(db):
        db.execute_sql(_SQLITE_HEAD_TRIGGER)
