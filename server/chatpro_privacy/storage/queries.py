"""Hand-written SQL for the statements every call runs (authentication, the account, audit,
device use). peewee spends most of a small query's time building its SQL; these are
written once per dialect and reused, which more than halves the cost of a typical call.

Plain SQL that SQLite and PostgreSQL both accept; ``?`` becomes the driver's placeholder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from chatpro_privacy.storage import prepared
from chatpro_privacy.storage.chained import Write
from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.dialect import parameters, render
from chatpro_privacy.storage.models import Account, ConsentEvent, OrganisationStatement
from chatpro_privacy.storage.tuning import AUDIT_PARTITION_LOCKS

_PRINCIPAL_COLUMNS = """
SELECT s.id, s.revoked_at, s.expires_at, a.id, a.subject_ref, s.kind, a.policy_version,
       a.date_of_birth, a.last_active_at, r.role,
       (SELECT c.given_by FROM consent_event c
        WHERE c.subject_ref = a.subject_ref AND c.purpose = 'policy'
          AND c.event_type <> 'acknowledged'
        ORDER BY c.seq DESC LIMIT 1) = 'guardian'"""
_PRINCIPAL_WIDTH = 11  # the columns above
_SESSION_PRINCIPAL = f"""{_PRINCIPAL_COLUMNS}
FROM session s
JOIN account a ON a.id = s.account_id
LEFT JOIN role_grant r ON r.account_id = a.id
WHERE s.token_hash = ?"""
# The same, with the session's account and its sources after (one row per role and source).
_SESSION_PRINCIPAL_WITH_ACCOUNT = f"""{_PRINCIPAL_COLUMNS},
       a.*, f.field AS source_field, f.source AS source_kind, f.recorded_at AS source_recorded_at
FROM session s
JOIN account a ON a.id = s.account_id
LEFT JOIN role_grant r ON r.account_id = a.id
LEFT JOIN account_field_source f ON f.account_id = a.id
WHERE s.token_hash = ?
ORDER BY f.field"""

_ACCOUNT = "SELECT * FROM account WHERE id = ?"
_ACCOUNT_WITH_SOURCES = """
SELECT a.*, s.field AS source_field, s.source AS source_kind, s.recorded_at AS source_recorded_at
FROM account a LEFT JOIN account_field_source s ON s.account_id = a.id
WHERE a.id = ? ORDER BY s.field"""
_ACCOUNT_SUBJECT = "SELECT subject_ref FROM account WHERE id = ?"
_ACCOUNT_SUBJECT_STATE = "SELECT subject_ref, state FROM account WHERE id = ?"
_ACCOUNT_BRIEF = "SELECT subject_ref, date_of_birth FROM account WHERE id = ?"
_LATEST_CONSENT = """
SELECT event_type, valid_until FROM consent_event
WHERE subject_ref = ? AND purpose = ? ORDER BY seq DESC LIMIT 1"""
_INSERT_CONSENT = """
INSERT INTO consent_event (id, subject_ref, notice_version, purpose, lawful_basis, data_categories,
                           collection_method, event_type, given_by, occurred_at, valid_until)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? {source}
RETURNING seq"""
_ROLES = "SELECT role FROM role_grant WHERE account_id = ? ORDER BY role"
_SOURCES = """
SELECT field, source, recorded_at FROM account_field_source
WHERE account_id = ? ORDER BY field"""
_TOUCH = "UPDATE account SET last_active_at = ? WHERE id = ?"
_KEEP_CORRESPONDENCE = """
INSERT INTO kept_correspondence (id, subject_ref, kind, subject, body, received_at, kept_reason,
                                 kept_by, kept_at)
SELECT id, ?, kind, subject, body, received_at, ?, ?, ? FROM correspondence WHERE account_id = ?
ON CONFLICT (id) DO NOTHING"""
_KEPT_CORRESPONDENCE = "SELECT COUNT(*) FROM kept_correspondence WHERE subject_ref = ?"
_AUDIT = """
INSERT INTO audit_entry
  (occurred_at, request_id, actor_type, actor_ref, action, subject_ref, target_type, target_id,
   chain_partition, chain_seq, mac)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_AUDIT_HEAD = "SELECT seq, mac FROM audit_head WHERE chain_partition = ?"
# PostgreSQL: the partition's writers take turns on its head row, locked to the transaction's
# end; a writer that waited reads the head as its predecessor left it (READ COMMITTED
# re-reads a locked row). A partition with no head yet has no row to lock: its first writers
# take turns on an advisory lock, and read the head by the next statement, since a
# statement's snapshot is taken before it waits for the lock.
_LOCK_AUDIT_HEAD = "SELECT seq, mac FROM audit_head WHERE chain_partition = ? FOR UPDATE"
_LOCK_AUDIT_PARTITION = "SELECT pg_advisory_xact_lock(?)"
_AUDIT_HEAD_UPSERT = """
INSERT INTO audit_head (chain_partition, seq, mac, head_mac) VALUES (?, ?, ?, ?)
ON CONFLICT (chain_partition) DO UPDATE SET
  seq = excluded.seq, mac = excluded.mac, head_mac = excluded.head_mac"""
# PostgreSQL: the entry and the head's move in one round trip.
_AUDIT_WITH_HEAD = f"WITH entry_step AS ({_AUDIT}){_AUDIT_HEAD_UPSERT}"
# SQLite: the same, by the trigger that moves the head from the entry's transient head_mac
# (migration 17).
_AUDIT_MOVING_HEAD = """
INSERT INTO audit_entry
  (occurred_at, request_id, actor_type, actor_ref, action, subject_ref, target_type, target_id,
   chain_partition, chain_seq, mac, head_mac)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_UPSERT_DEVICE = """
INSERT INTO device (account_id, device_id, device_type, operating_system, browser_type, source,
                    first_used_at, last_used_at, use_count)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, 1 {source}
ON CONFLICT (account_id, device_id) DO UPDATE SET
  device_type = excluded.device_type,
  operating_system = excluded.operating_system,
  browser_type = excluded.browser_type,
  source = excluded.source,
  last_used_at = excluded.last_used_at,
  use_count = device.use_count + 1
RETURNING *"""

# SQLite: the item with its word tokens queued on it (domain/content/search_index.py).
_INSERT_QUEUED_ITEM = """
INSERT INTO content_item (id, organisation_id, conversation_id, kind, author_ref,
                          author_account_id, request_id, key_id, body, created_at, queued_tokens)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING seq"""
# The same, for storage.chained: the item's row comes {source}, its tokens follow it.
_INSERT_ITEM_FROM = """
INSERT INTO content_item (id, organisation_id, conversation_id, kind, author_ref,
                          author_account_id, request_id, key_id, body, created_at)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? {source}
RETURNING seq"""
_TOKENS_AFTER = """
INSERT INTO content_token (organisation_id, token, item_seq)
SELECT ?, token, write_step.seq FROM write_step, unnest(?::bytea[]) AS token"""

_POSTER = """
SELECT c.id, c.organisation_id, c.kind, c.mode, c.created_at, p.can_send,
       m.acknowledgement_required
FROM conversation_participant p
JOIN conversation c ON c.id = p.conversation_id
JOIN organisation_membership m
  ON m.organisation_id = c.organisation_id AND m.account_id = p.account_id
WHERE p.conversation_id = ? AND p.account_id = ? AND m.state = ?
LIMIT 1"""

# PostgreSQL parses and plans these once per connection (storage/prepared.py).
for _statement in (
    _SESSION_PRINCIPAL,
    _SESSION_PRINCIPAL_WITH_ACCOUNT,
    _ACCOUNT,
    _ACCOUNT_WITH_SOURCES,
    _ACCOUNT_SUBJECT,
    _ACCOUNT_SUBJECT_STATE,
    _ACCOUNT_BRIEF,
    _LATEST_CONSENT,
    _ROLES,
    _SOURCES,
    _TOUCH,
    _KEPT_CORRESPONDENCE,
    _AUDIT_HEAD,
    _LOCK_AUDIT_HEAD,
    _LOCK_AUDIT_PARTITION,
    _AUDIT_WITH_HEAD,
    _POSTER,
):
    prepared.mark(render(_statement, True))


def _sql(sql: str) -> str:
    return render(sql, is_postgres())


def execute(sql: str, params: tuple[Any, ...]) -> Any:
    """Datetimes go as peewee writes them on SQLite, without the deprecated adapter."""
    postgres = is_postgres()
    return database.execute_sql(render(sql, postgres), parameters(params, postgres))


def timestamp(value: Any) -> dt.datetime | None:
    """A TIMESTAMP column as a datetime (SQLite returns text, PostgreSQL a datetime)."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def session_principal(token_hash: str) -> list[tuple[Any, ...]]:
    """(session id, revoked_at, expires_at, account id, subject ref, session kind,
    accepted policy version, date of birth, last active, role or None): one row per role, at
    least one."""
    return list(execute(_SESSION_PRINCIPAL, (token_hash,)).fetchall())


def account(account_id: str) -> Account | None:
    rows = list(Account.raw(_sql(_ACCOUNT), account_id))
    return rows[0] if rows else None


def account_subject(account_id: str) -> str | None:
    row = execute(_ACCOUNT_SUBJECT, (account_id,)).fetchone()
    return str(row[0]) if row else None


def account_subject_state(account_id: str) -> tuple[str, str] | None:
    """(subject_ref, state): for processing that must stop once an account is closed."""
    row = execute(_ACCOUNT_SUBJECT_STATE, (account_id,)).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def roles(account_id: str) -> list[str]:
    return [str(r[0]) for r in execute(_ROLES, (account_id,)).fetchall()]


class Source(NamedTuple):
    """Where one item of an account's data came from (ACC-9)."""

    field: str
    source: str
    recorded_at: dt.datetime | None


def sources(account_id: str) -> list[Source]:
    # Plain tuples: building model objects cost more than the query on this hot path.
    rows = execute(_SOURCES, (account_id,)).fetchall()
    return [Source(str(f), str(src), timestamp(at)) for f, src, at in rows]


def account_with_sources(account_id: str) -> tuple[Account, list[Source]] | None:
    """An account and where each of its fields came from, in one round trip (GetAccount)."""
    cursor = execute(_ACCOUNT_WITH_SOURCES, (account_id,))
    rows = cursor.fetchall()
    if not rows:
        return None
    return _account_and_sources([d[0] for d in cursor.description], rows)


def session_principal_with_account(
    token_hash: str,
) -> tuple[list[tuple[Any, ...]], tuple[Account, list[Source]] | None]:
    """``session_principal``'s rows, and ``account_with_sources`` of the session's account,
    from one statement: a caller reading their own account needs one round trip, not two."""
    cursor = execute(_SESSION_PRINCIPAL_WITH_ACCOUNT, (token_hash,))
    rows = cursor.fetchall()
    if not rows:
        return [], None
    names = [d[0] for d in cursor.description][_PRINCIPAL_WIDTH:]
    principal_rows = list(dict.fromkeys(row[:_PRINCIPAL_WIDTH] for row in rows))
    return principal_rows, _account_and_sources(names, [row[_PRINCIPAL_WIDTH:] for row in rows])


def _account_and_sources(
    names: list[str], rows: Sequence[Sequence[Any]]
) -> tuple[Account, list[Source]]:
    """Rows of an account's columns (``names``) then a source's three, one row per source
    (and per role, where roles were joined too): the account is made once, from the first,
    since peewee's model rows, made one per row, cost more than the query on a hot path."""
    columns = Account._meta.columns
    names = names[:-3]  # the source's three come last
    values = rows[0][: len(names)]
    account = Account(
        __no_default__=1,
        **{columns[n].name: columns[n].python_value(v) for n, v in zip(names, values, strict=True)},
    )
    account._dirty.clear()  # type: ignore[attr-defined]  # as peewee leaves a row it read
    found = dict.fromkeys((f, src, at) for *_, f, src, at in rows if f is not None)
    return account, [Source(str(f), str(src), timestamp(at)) for f, src, at in found]


# Rows per statement in the bulk helpers below: well under SQLite's 32,766 parameters.
_BATCH = 1000


def active_members(organisation_id: str, account_ids: list[str], state: str) -> set[str]:
    """Which of ``account_ids`` hold a membership of the organisation in ``state``: plain
    SQL, since peewee spends ~20 microseconds a value building a large IN list."""
    db = database.obj
    found: set[str] = set()
    for start in range(0, len(account_ids), _BATCH):
        batch = account_ids[start : start + _BATCH]
        marks = ", ".join([db.param] * len(batch))
        rows = db.execute_sql(
            "SELECT account_id FROM organisation_membership WHERE organisation_id = "
            f"{db.param} AND state = {db.param} AND account_id IN ({marks})",
            [organisation_id, state, *batch],
        ).fetchall()
        found.update(str(r[0]) for r in rows)
    return found


def insert_participants(conversation_id: str, participants: list[tuple[str, bool]]) -> None:
    """A conversation's participants (account id, may post), a thousand a statement."""
    db = database.obj
    for start in range(0, len(participants), _BATCH):
        batch = participants[start : start + _BATCH]
        values = ", ".join([f"({db.param}, {db.param}, {db.param})"] * len(batch))
        flat: list[Any] = []
        for account_id, can_send in batch:
            flat += [conversation_id, account_id, can_send]
        db.execute_sql(
            "INSERT INTO conversation_participant (conversation_id, account_id, can_send) "
            f"VALUES {values}",
            flat,
        )


def insert_item_reading_head(
    values: tuple[Any, ...], partition: int
) -> tuple[int, tuple[int, str] | None]:
    """SQLite, in the caller's transaction (whose BEGIN IMMEDIATE gave it the writers'
    turn): a new content item (``_INSERT_QUEUED_ITEM``'s columns), returning its sequence
    number and, read in the same statement, the audit partition's head its entry follows."""
    sql = _INSERT_QUEUED_ITEM + (
        ", (SELECT seq FROM audit_head WHERE chain_partition = ?),"
        " (SELECT mac FROM audit_head WHERE chain_partition = ?)"
    )
    row = execute(sql, (*values, partition, partition)).fetchall()[0]
    head = (int(row[1]), str(row[2])) if row[1] is not None else None
    return int(row[0]), head


def item_with_tokens(values: tuple[Any, ...], organisation_id: str, tokens: list[bytes]) -> Write:
    """PostgreSQL: a new content item and its tokens, as a write an audit entry can join
    (``storage.chained``): one statement for the item, its tokens, its entry and the head."""
    return Write(_INSERT_ITEM_FROM, values, _TOKENS_AFTER, (organisation_id, tokens))


class Posting(NamedTuple):
    """A participant's conversation as posting needs it."""

    conversation_id: str
    organisation_id: str
    kind: str
    mode: str
    created_at: dt.datetime
    can_send: bool
    acknowledgement_required: str | None


def posting(conversation_id: str, account_id: str, active: str) -> Posting | None:
    """The conversation, if the account takes part in it as a member in state ``active`` of
    its organisation: every message's path, so one statement, written once."""
    row = execute(_POSTER, (conversation_id, account_id, active)).fetchone()
    if row is None:
        return None
    identifier, organisation_id, kind, mode, created_at, can_send, pending = row
    return Posting(
        str(identifier),
        str(organisation_id),
        str(kind),
        str(mode),
        _required(timestamp(created_at)),
        bool(can_send),
        pending,
    )


class ItemRow(NamedTuple):
    """A content item as a list of a conversation shows it."""

    seq: int
    id: str
    conversation_id: str
    author_account_id: str | None
    key_id: str
    body: bytes | None
    created_at: dt.datetime


_ITEMS_PAGE = """
SELECT seq, id, conversation_id, author_account_id, key_id, body, created_at
FROM content_item
WHERE conversation_id = ? AND kind = ? AND ({kept}){before}
ORDER BY seq DESC LIMIT ?"""


def conversation_items(
    conversation_id: str,
    kind: str,
    kept: Sequence[tuple[dt.datetime, bool, dt.datetime | None, dt.datetime | None]],
    before: int | None,
    limit: int,
) -> list[ItemRow]:
    """A conversation's items of one kind still kept, newest first, below seq ``before``.
    ``kept`` is retention's windows: (since, strict, start, end), an item created in
    [start, end) being kept iff created after ``since`` (or at it, when not strict)."""
    conditions: list[str] = []
    params: list[Any] = [conversation_id, kind]
    for since, strict, start, end in kept:
        parts = ["created_at > ?" if strict else "created_at >= ?"]
        params.append(since)
        if start is not None:
            parts.append("created_at >= ?")
            params.append(start)
        if end is not None:
            parts.append("created_at < ?")
            params.append(end)
        conditions.append("(" + " AND ".join(parts) + ")")
    if before is not None:
        params.append(before)
    params.append(limit)
    sql = _ITEMS_PAGE.format(
        kept=" OR ".join(conditions) or "1 = 0",
        before="" if before is None else " AND seq < ?",
    )
    if is_postgres():  # a few shapes, by the organisation's retention windows
        prepared.mark(render(sql, True))
    return [
        ItemRow(
            int(seq),
            str(item_id),
            str(conv),
            author,
            str(key_id),
            None if body is None else bytes(body),
            _required(timestamp(created)),
        )
        for seq, item_id, conv, author, key_id, body, created in execute(sql, tuple(params))
    ]


def _required(value: dt.datetime | None) -> dt.datetime:
    if value is None:
        raise ValueError("a required timestamp column is NULL")
    return value


def touch_account(account_id: str, now: dt.datetime) -> int:
    return int(execute(_TOUCH, (now, account_id)).rowcount)


def device_use(
    account_id: str,
    device_id: str,
    device_type: str,
    operating_system: str,
    browser_type: str,
    source: str,
    now: dt.datetime,
) -> Write:
    """One use of a device, recorded in one statement that returns the device's row."""
    params = (account_id, device_id, device_type, operating_system, browser_type, source, now, now)
    return Write(_UPSERT_DEVICE, params)


def locked_audit_head(partition: int) -> tuple[int, str] | None:
    """The partition's head (newest position and MAC), its writers' turn taken first."""
    found = None
    if is_postgres():
        found = execute(_LOCK_AUDIT_HEAD, (partition,)).fetchone()
        if found is None:
            execute(_LOCK_AUDIT_PARTITION, (AUDIT_PARTITION_LOCKS + partition,))
    if found is None:
        found = execute(_AUDIT_HEAD, (partition,)).fetchone()
    return (int(found[0]), str(found[1])) if found else None


def audit_head(partition: int) -> tuple[int, str] | None:
    """The partition's head as last committed, without taking a turn."""
    found = execute(_AUDIT_HEAD, (partition,)).fetchone()
    return (int(found[0]), str(found[1])) if found else None


def insert_audit(
    fields: tuple[Any, ...], partition: int, seq: int, mac: str, head_mac: str
) -> None:
    """Append a chained entry and move its partition's head, in the caller's transaction."""
    if is_postgres():
        execute(_AUDIT_WITH_HEAD, (*fields, partition, seq, mac, partition, seq, mac, head_mac))
        return
    execute(_AUDIT_MOVING_HEAD, (*fields, partition, seq, mac, head_mac))


def date(value: Any) -> dt.date:
    """A DATE column as a date (SQLite returns text)."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def account_brief(account_id: str) -> tuple[str, dt.date] | None:
    """(subject ref, date of birth) of an account, or None."""
    row = execute(_ACCOUNT_BRIEF, (account_id,)).fetchone()
    return (str(row[0]), date(row[1])) if row else None


def latest_consent(subject_ref: str, purpose: str) -> tuple[str, dt.datetime | None] | None:
    """(event type, valid until) of the newest consent event for a purpose, or None."""
    row = execute(_LATEST_CONSENT, (subject_ref, purpose)).fetchone()
    return (str(row[0]), timestamp(row[1])) if row else None


def consent_event(event: ConsentEvent) -> Write:
    """Its insert, columns as peewee would write them: the JSON list encoded by its field."""
    return Write(
        _INSERT_CONSENT,
        (
            event.id,
            event.subject_ref,
            event.notice_version,
            event.purpose,
            event.lawful_basis,
            ConsentEvent.data_categories.db_value(event.data_categories),
            event.collection_method,
            event.event_type,
            event.given_by,
            event.occurred_at,
            event.valid_until,
        ),
    )


def tuples(query: Any) -> Iterator[tuple[Any, ...]]:
    """A peewee query's rows as plain tuples, typed for the callers that unpack them."""
    return iter(query.tuples())


def statements_in_effect(organisation_id: str, at: dt.datetime, *columns: Any) -> Any:
    """An organisation's statements in effect by ``at``, oldest first (ties: first published
    first); ``columns`` narrows the select for callers that need only a few."""
    return (
        OrganisationStatement.select(*columns)
        .where(
            (OrganisationStatement.organisation == organisation_id)
            & (OrganisationStatement.effective_at <= at)
        )
        .order_by(OrganisationStatement.effective_at, OrganisationStatement.id)
    )


def statement_in_effect(organisation_id: str, at: dt.datetime) -> OrganisationStatement | None:
    """The statement in effect at ``at``: the last of those in effect by then."""
    return (
        statements_in_effect(organisation_id, at)
        .order_by(OrganisationStatement.effective_at.desc(), OrganisationStatement.id.desc())
        .first()
    )


def keep_correspondence(
    account_id: str, subject_ref: str, reason: str, kept_by: str, now: dt.datetime
) -> int:
    """Copy an account's correspondence under its subject ref (rows already kept stay);
    returns how many the subject ref now has kept."""
    execute(_KEEP_CORRESPONDENCE, (subject_ref, reason, kept_by, now, account_id))
    row = execute(_KEPT_CORRESPONDENCE, (subject_ref,)).fetchone()
    return int(row[0]) if row else 0
