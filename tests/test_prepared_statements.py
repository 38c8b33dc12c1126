"""PostgreSQL: the hot statements are prepared once per connection, and prepared again
whenever the server lost them or their result changed shape (issue 14, storage/prepared.py).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg2
import pytest
from chatpro_privacy import context
from chatpro_privacy.settings import from_env
from chatpro_privacy.storage import prepared, queries
from chatpro_privacy.storage.db import close_database, database, discard_connection, open_database
from chatpro_privacy.storage.dialect import PlanLost, busy, connection_failed, render

KEYS = {"CHATPRO_SECRET_KEY": "ab" * 32, "CHATPRO_RECEIPT_SIGNING_KEY": "cd" * 32}
KEYS["CHATPRO_MASTER_KEY"] = "ef" * 32
URL = os.environ.get("DATABASE_URL", "")
# A statement of this test's own, on a table of its own schema.
_PROBE = "SELECT * FROM probe WHERE id = %s"


def _held() -> set[str]:
    """The statements this thread's connection holds prepared."""
    rows = database.execute_sql("SELECT name FROM pg_prepared_statements").fetchall()
    return {str(r[0]) for r in rows}


def _counted(fn: object) -> int:
    """Round trips ``fn`` made, as a call's access-log line counts them."""
    counter = context.Statements()
    token = context.statements.set(counter)
    try:
        fn()  # type: ignore[operator]
    finally:
        context.statements.reset(token)
    return counter.count


@pytest.fixture
def own_schema() -> Iterator[psycopg2.extensions.cursor]:
    """A schema of this test's own with one table, ``probe`` (the suite's shared schema
    must keep its shape); yields an admin cursor on another connection."""
    if not URL.startswith(("postgres://", "postgresql://")):
        pytest.skip("prepared statements are PostgreSQL's")
    name = f"p_{secrets.token_hex(6)}"
    admin = psycopg2.connect(URL)
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute(f"CREATE SCHEMA {name}")
    cur.execute(f"CREATE TABLE {name}.probe (id int PRIMARY KEY, word text)")
    cur.execute(f"INSERT INTO {name}.probe VALUES (1, 'one')")
    cur.execute(f"SET search_path = {name}")
    open_database(URL, schema=name)
    prepared.mark(_PROBE)
    try:
        yield cur
    finally:
        close_database()
        cur.execute(f"DROP SCHEMA {name} CASCADE")
        admin.close()


def _probe() -> list[tuple[object, ...]]:
    return list(database.execute_sql(_PROBE, (1,)).fetchall())


def test_a_marked_statement_is_prepared_once_per_connection(own_schema: object) -> None:
    assert _held() == set()
    assert _counted(_probe) == 2  # PREPARE, then EXECUTE
    assert _counted(_probe) == 1
    assert _probe() == [(1, "one")]
    assert len(_held()) == 1
    database.execute_sql("SELECT word FROM probe WHERE id = %s", (1,))  # not marked: as text
    assert len(_held()) == 1
    discard_connection()  # a connection made afresh (after a fault) holds nothing
    assert _counted(_probe) == 2
    assert _probe() == [(1, "one")]


def test_a_statement_the_server_dropped_is_prepared_again(own_schema: object) -> None:
    _probe()
    database.execute_sql("DEALLOCATE ALL")  # as a pooler's DISCARD ALL would
    assert _probe() == [(1, "one")]  # outside a transaction: at once
    database.execute_sql("DEALLOCATE ALL")
    with pytest.raises(PlanLost, match="does not exist"), database.atomic():
        _probe()  # inside one, the transaction is spoilt: the call fails, retryable
    assert _probe() == [(1, "one")]  # and the next use prepares it afresh


def test_a_result_that_changed_shape_is_prepared_again(
    own_schema: psycopg2.extensions.cursor,
) -> None:
    assert _probe() == [(1, "one")]
    own_schema.execute("ALTER TABLE probe ADD COLUMN extra int DEFAULT 7")  # another replica
    assert _probe() == [(1, "one", 7)]
    own_schema.execute("ALTER TABLE probe DROP COLUMN extra")
    with pytest.raises(PlanLost, match="result type"), database.atomic():
        _probe()
    assert _probe() == [(1, "one")]


def test_a_spoilt_transaction_is_retryable_not_an_outage() -> None:
    lost = PlanLost("prepared statement does not exist")
    assert busy(lost, postgres=True)  # UNAVAILABLE DATABASE_BUSY, with RetryInfo
    assert not connection_failed(lost, postgres=True)  # health stays SERVING


def test_switched_off_every_statement_goes_as_text(own_schema: object) -> None:
    schema = database.execute_sql("SELECT current_schema()").fetchone()[0]
    close_database()
    open_database(URL, schema=schema, prepared_statements=False)
    assert _counted(_probe) == 1
    assert _probe() == [(1, "one")]
    assert _held() == set()


def test_the_hot_statements_are_marked() -> None:
    """The statements of authentication and GetAccount (every call's, and the one the two
    replicas figure measures) are among those prepared."""
    for sql in (queries._SESSION_PRINCIPAL, queries._ACCOUNT_WITH_SOURCES, queries._POSTER):
        assert render(sql, True) in prepared._marked


def test_a_percent_sign_outside_a_placeholder_is_refused() -> None:
    with pytest.raises(ValueError, match="placeholders"):
        prepared.mark("SELECT word FROM probe WHERE word LIKE 'a%%' AND id = %s")


def test_prepared_statements_are_a_setting() -> None:
    assert from_env(KEYS).prepared_statements
    assert not from_env({**KEYS, "CHATPRO_PREPARED_STATEMENTS": "off"}).prepared_statements
