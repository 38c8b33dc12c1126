"""PostgreSQL: the statements every call runs, parsed and planned once per connection.

psycopg2 sends each statement as text, so PostgreSQL parses, analyses and plans it anew on
every call. For the small lookups of the hot paths that is most of the database's work:
GetAccount's two statements took 0.47 ms a call as text and 0.20 ms prepared (pgbench, one
connection), and the database's CPU is what two replicas on one machine share (issue 14).

A statement is marked preparable by the storage code that writes it (``mark``): on its
first run on a connection it is sent as ``PREPARE``, then as ``EXECUTE`` with its values
(quoted by psycopg2, as before). Which statements a connection holds is known per
connection object, so a connection made afresh (after a fault) prepares again. A statement
the server no longer holds (a pooler that swapped sessions, ``DISCARD ALL``) or whose result
changed shape (a migration by another replica) is prepared again: at once when no
transaction is open; inside one, the call fails retryable (``PlanLost``, DATABASE_BUSY)
and the connection's next use prepares it. ``prepared_statements=off``
(for a pooler in transaction mode, which cannot keep them) sends every statement as text.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import peewee

from chatpro_privacy.context import Statements
from chatpro_privacy.storage.dialect import PlanLost

# Distinct statements that may be marked: a bound on what each connection holds, whatever
# shapes a dynamic statement (a page with N retention windows) takes.
MAX_MARKED = 256
# The server dropped the statement (invalid_sql_statement_name) or its result's shape changed
# under it ("cached plan must not change result type", feature_not_supported).
_PREPARE_AGAIN = frozenset({"26000", "0A000"})


class _Spec(NamedTuple):
    name: str
    prepare: str  # PREPARE name AS ... ($1, $2 ...)
    execute: str  # EXECUTE name (%s, %s ...)


_marked: dict[str, _Spec] = {}
_lock = threading.Lock()


def mark(sql: str) -> None:
    """Run ``sql`` (as the driver receives it: ``%s`` placeholders) prepared on PostgreSQL.
    For statements of fixed text written in storage; beyond MAX_MARKED, text as before."""
    if sql in _marked or len(_marked) >= MAX_MARKED:
        return
    pieces = sql.split("%s")
    if any("%" in piece for piece in pieces):
        raise ValueError("a prepared statement may use % only in its %s placeholders")
    name = "chatpro_" + hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()
    body = pieces[0] + "".join(f"${i}{piece}" for i, piece in enumerate(pieces[1:], start=1))
    values = ", ".join(["%s"] * (len(pieces) - 1))
    spec = _Spec(
        name, f"PREPARE {name} AS {body}", f"EXECUTE {name}" + (f" ({values})" if values else "")
    )
    with _lock:
        _marked.setdefault(sql, spec)


class _Held:
    """What one connection holds: the names it prepared, and whether to drop them all first."""

    __slots__ = ("names", "stale")

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.stale = False


def install(db: peewee.Database) -> None:
    """Send ``db``'s marked statements prepared (PostgreSQL only)."""
    plain: Callable[..., Any] = db.execute_sql
    held: weakref.WeakKeyDictionary[Any, _Held] = weakref.WeakKeyDictionary()

    def holding() -> _Held:
        conn = db.connection()
        with _lock:
            found = held.get(conn)
            if found is None:
                found = held[conn] = _Held()
        return found

    def prepare(spec: _Spec, state: _Held) -> None:
        if state.stale:
            plain("DEALLOCATE ALL")
            state.names.clear()
            state.stale = False
        if spec.name not in state.names:
            Statements.add()  # a round trip of its own, once per connection
            plain(spec.prepare)
            state.names.add(spec.name)

    def execute_sql(sql: str, params: Any = None) -> Any:
        spec = _marked.get(sql)
        if spec is None:
            return plain(sql, params)
        state = holding()
        prepare(spec, state)
        try:
            return plain(spec.execute, params)
        except peewee.DatabaseError as exc:
            if _code(exc) not in _PREPARE_AGAIN:
                raise
            state.stale = True
            if db.in_transaction():
                raise PlanLost(str(exc)) from exc
        prepare(spec, state)  # outside a transaction nothing was lost: once more, afresh
        return plain(spec.execute, params)

    db.execute_sql = execute_sql  # type: ignore[method-assign]


def _code(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error peewee wrapped."""
    return getattr(getattr(exc, "orig", None), "pgcode", None)
