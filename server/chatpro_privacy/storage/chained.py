"""A write and its audit entry as one statement on PostgreSQL (SEC-5, issue 14).

A database a network hop away makes every round trip cost; an audited write used to take
seven (BEGIN, the partition's lock, its head, the write, the entry, the head, COMMIT), each
holding the partition's turn. Here the write, the entry and the head's move are one
statement, run on its own (autocommit makes it atomic). It is conditional: the head moves
only if it is still where the writer last saw it, and the entry and the write draw their one
row from that move, so a writer that lost the race writes nothing and tries again.

SQLite cannot modify data in a WITH clause; there the same write runs in the caller's
transaction, followed by the audit entry, as before. Hand-written writes use ``?``
placeholders and ``{source}`` where the row they insert comes from: ``FROM audit_step`` in
the chained statement, ``WHERE true`` on its own. Each must return exactly one row when it
runs (``RETURNING``): no row means the head had moved (or gone: a head is only ever
created by a writer that saw none).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from chatpro_privacy.storage import prepared
from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.dialect import parameters, render


class Write(NamedTuple):
    """An INSERT (or upsert) whose row comes ``{source}``, returning that row; and, on
    PostgreSQL, optionally a statement ``then`` run with it, reading its rows as
    ``write_step`` (an item's tokens after the item)."""

    sql: str
    params: tuple[Any, ...]
    then: str = ""
    then_params: tuple[Any, ...] = ()


_CHAINED = """
WITH moved AS (
  UPDATE audit_head SET seq = ?, mac = ?, head_mac = ?
  WHERE chain_partition = ? AND seq = ?
  RETURNING chain_partition
), created AS (
  INSERT INTO audit_head (chain_partition, seq, mac, head_mac) SELECT ?, ?, ?, ? WHERE ? = 0
  ON CONFLICT (chain_partition) DO NOTHING
  RETURNING chain_partition
), audit_step AS (
  SELECT chain_partition FROM moved UNION ALL SELECT chain_partition FROM created
), audit_entry_step AS (
  INSERT INTO audit_entry
    (occurred_at, request_id, actor_type, actor_ref, action, subject_ref, target_type,
     target_id, chain_partition, chain_seq, mac)
  SELECT ?, ?, ?, ?, ?, ?, ?, ?, chain_partition, ?, ? FROM audit_step
), write_step AS (
{write}
){then}
SELECT * FROM write_step"""
_ALONE = """
WITH write_step AS (
{write}
){then}
SELECT * FROM write_step"""


def _then(write: Write) -> str:
    return f", then_step AS ({write.then})" if write.then else ""


def one_statement() -> bool:
    """Whether a write and its audit entry can be one statement (PostgreSQL)."""
    return is_postgres()


def _rows(sql: str, params: tuple[Any, ...], model: Any) -> list[Any]:
    postgres = is_postgres()
    if postgres:  # one statement per kind of write, planned once (storage/prepared.py)
        prepared.mark(render(sql, True))
    if model is not None:
        return list(model.raw(render(sql, postgres), *parameters(params, postgres)))
    return list(database.execute_sql(render(sql, postgres), parameters(params, postgres)))


def run(write: Write, model: Any = None) -> list[Any]:
    """The write on its own, in the caller's transaction: its rows (as ``model`` if given)."""
    if write.then:  # PostgreSQL only: a data-modifying WITH
        sql = _ALONE.format(write=write.sql.format(source="WHERE true"), then=_then(write))
        return _rows(sql, (*write.params, *write.then_params), model)
    return _rows(write.sql.format(source="WHERE true"), write.params, model)


class Link(NamedTuple):
    """Where the entry goes: its partition, position and MACs, and the head it follows."""

    partition: int
    seq: int
    mac: str
    head_mac: str
    follows: int  # the head's position the writer saw (0: none yet)


def run_chained(write: Write, fields: tuple[Any, ...], link: Link, model: Any = None) -> list[Any]:
    """The write, its audit entry ``fields`` and the head's move, as one statement; no rows
    if the head is no longer at ``link.follows`` (nothing was written)."""
    sql = _CHAINED.format(write=write.sql.format(source="FROM audit_step"), then=_then(write))
    head = (link.seq, link.mac, link.head_mac)
    params = (
        *head,
        link.partition,
        link.follows,
        link.partition,
        *head,
        link.follows,
        *fields,
        link.seq,
        link.mac,
        *write.params,
        *write.then_params,
    )
    return _rows(sql, params, model)
