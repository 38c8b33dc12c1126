"""Hand-written SQL for the statements every call runs (authentication, the account, audit,
device use). peewee spends most of a small query's time building its SQL; these are
written once per dialect and reused, which more than halves the cost of a typical call.

Plain SQL that SQLite and PostgreSQL both accept; ``?`` becomes the driver's placeholder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from chatpro_privacy.storage.chained import Write
from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.dialect import parameters, render
from chatpro_privacy.storage.models import Account, ConsentEvent, OrganisationStatement
from chatpro_privacy.storage.tuning import AUDIT_PARTITION_LOCKS

_SESSION_PRINCIPAL = """
SELECT s.id, s.revoked_at, s.expires_at, a.id, a.subject_ref, s.kind, a.policy_version,
       a.date_of_birth, a.last_active_at, r.role
FROM session s
JOIN account a ON a.id = s.account_id
LEFT JOIN role_grant r ON r.account_id = a.id
WHERE s.token_hash = ?"""

_ACCOUNT = "SELECT * FROM account WHERE id = ?"
_ACCOUNT_WITH_SOURCES = """
SELECT a.*, s.field AS source_field, s.source AS source_kind, s.recorded_at AS source_recorded_at
FROM account a LEFT JOIN account_field_source s ON s.account_id = a.id
WHERE a.id = ? ORDER BY s.field"""
_ACCOUNT_SUBJECT = "SELECT subject_ref FROM account WHERE id = ?"
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

_INSERT_ITEM = """
INSERT INTO content_item (id, organisation_id, conversation_id, kind, author_ref,
                          author_account_id, request_id, key_id, body, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING seq"""
# PostgreSQL: an item and its keyed word tokens in one statement, so one round trip and no
# transaction around it.
_INSERT_ITEM_WITH_TOKENS = f"""
WITH item AS ({_INSERT_ITEM}), tokens AS (
  INSERT INTO content_token (organisation_id, token, item_seq)
  SELECT ?, token, item.seq FROM item, unnest(?::bytea[]) AS token
)
SELECT seq FROM item"""

_POSTER = """
SELECT c.id, c.organisation_id, c.kind, c.mode, c.created_at, p.can_send,
       m.acknowledgement_required
FROM conversation_participant p
JOIN conversation c ON c.id = p.conversation_id
JOIN organisation_membership m
  ON m.organisation_id = c.organisation_id AND m.account_id = p.account_id
WHERE p.conversation_id = ? AND p.account_id = ? AND m.state = ?
LIMIT 1"""


def _sql(sql: str) -> str:
    return render(sql, is_postgres())


def _execute(sql: str, params: tuple[Any, ...]) -> Any:
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
    return list(_execute(_SESSION_PRINCIPAL, (token_hash,)).fetchall())


def account(account_id: str) -> Account | None:
    rows = list(Account.raw(_sql(_ACCOUNT), account_id))
    return rows[0] if rows else None


def account_subject(account_id: str) -> str | None:
    row = _execute(_ACCOUNT_SUBJECT, (account_id,)).fetchone()
    return str(row[0]) if row else None


def roles(account_id: str) -> list[str]:
    return [str(r[0]) for r in _execute(_ROLES, (account_id,)).fetchall()]


class Source(NamedTuple):
    """Where one item of an account's data came from (ACC-9)."""

    field: str
    source: str
    recorded_at: dt.datetime | None


def sources(account_id: str) -> list[Source]:
    # Plain tuples: building model objects cost more than the query on this hot path.
    rows = _execute(_SOURCES, (account_id,)).fetchall()
    return [Source(str(f), str(src), timestamp(at)) for f, src, at in rows]


def account_with_sources(account_id: str) -> tuple[Account, list[Source]] | None:
    """An account and where each of its fields came from, in one round trip (GetAccount)."""
    rows = list(Account.raw(_sql(_ACCOUNT_WITH_SOURCES), account_id))
    if not rows:
        return None
    found = [
        Source(str(r.source_field), str(r.source_kind), timestamp(r.source_recorded_at))
        for r in rows
        if r.source_field is not None
    ]
    return rows[0], found


def insert_tokens(organisation_id: str, item_seq: int, tokens: list[bytes]) -> None:
    """An item's keyed word tokens, in one statement: the hot path of every message sent."""
    db = database.obj
    param = db.param
    values = ", ".join([f"({param}, {param}, {param})"] * len(tokens))
    flat: list[Any] = []
    for token in tokens:
        flat += [organisation_id, token, item_seq]
    db.execute_sql(
        f"INSERT INTO content_token (organisation_id, token, item_seq) VALUES {values}", flat
    )


def insert_item(values: tuple[Any, ...], organisation_id: str, tokens: list[bytes]) -> int:
    """A new content item (``_INSERT_ITEM``'s columns) and its tokens, committed together;
    returns its sequence number. Outside any transaction of the caller's."""
    if is_postgres():
        row = _execute(_INSERT_ITEM_WITH_TOKENS, (*values, organisation_id, tokens)).fetchone()
        return int(row[0])
    with database.atomic():
        seq = int(_execute(_INSERT_ITEM, values).fetchall()[0][0])
        if tokens:
            insert_tokens(organisation_id, seq, tokens)
    return seq


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
    row = _execute(_POSTER, (conversation_id, account_id, active)).fetchone()
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
        for seq, item_id, conv, author, key_id, body, created in _execute(sql, tuple(params))
    ]


def _required(value: dt.datetime | None) -> dt.datetime:
    if value is None:
        raise ValueError("a required timestamp column is NULL")
    return value


# Typed NULLs: PostgreSQL types a UNION's columns pairwise, first branches first.
_OBJECTIONS = """
SELECT 'objection', ground, CAST(NULL AS TIMESTAMP) FROM processing_objection
WHERE account_id = ?"""
_RESTRICTED = """
SELECT 'restricted', CAST(NULL AS TEXT), CAST(NULL AS TIMESTAMP) FROM processing_restriction
WHERE account_id = ?"""
_LATEST_CONSENT_ROW = """
SELECT 'consent', purpose || ':' || event_type, valid_until FROM (
  SELECT purpose, event_type, valid_until FROM consent_event
  WHERE subject_ref = ? AND purpose = ? ORDER BY seq DESC LIMIT 1) latest_{n}"""


class Standing(NamedTuple):
    """What a person's processing stands on, read at once: their objections' grounds,
    whether it is restricted, and the newest consent event of each purpose asked about."""

    grounds: frozenset[str]
    restricted: bool
    consents: dict[str, tuple[str, dt.datetime | None]]  # purpose: (event type, valid until)


def standing(account_id: str, subject_ref: str, purposes: Sequence[str] = ()) -> Standing:
    """One round trip (device use is a hot path)."""
    parts = [_OBJECTIONS, _RESTRICTED]
    params: list[Any] = [account_id, account_id]
    for n, purpose in enumerate(purposes):
        parts.append(_LATEST_CONSENT_ROW.format(n=n))
        params += [subject_ref, purpose]
    grounds: set[str] = set()
    restricted = False
    consents: dict[str, tuple[str, dt.datetime | None]] = {}
    for kind, value, until in _execute(" UNION ALL ".join(parts), tuple(params)):
        if kind == "objection":
            grounds.add(str(value))
        elif kind == "restricted":
            restricted = True
        else:
            purpose, event_type = str(value).rsplit(":", 1)
            consents[purpose] = (event_type, timestamp(until))
    return Standing(frozenset(grounds), restricted, consents)


def touch_account(account_id: str, now: dt.datetime) -> int:
    return int(_execute(_TOUCH, (now, account_id)).rowcount)


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
        found = _execute(_LOCK_AUDIT_HEAD, (partition,)).fetchone()
        if found is None:
            _execute(_LOCK_AUDIT_PARTITION, (AUDIT_PARTITION_LOCKS + partition,))
    if found is None:
        found = _execute(_AUDIT_HEAD, (partition,)).fetchone()
    return (int(found[0]), str(found[1])) if found else None


def audit_head(partition: int) -> tuple[int, str] | None:
    """The partition's head as last committed, without taking a turn."""
    found = _execute(_AUDIT_HEAD, (partition,)).fetchone()
    return (int(found[0]), str(found[1])) if found else None


def insert_audit(
    fields: tuple[Any, ...], partition: int, seq: int, mac: str, head_mac: str
) -> None:
    """Append a chained entry and move its partition's head, in the caller's transaction."""
    if is_postgres():
        _execute(_AUDIT_WITH_HEAD, (*fields, partition, seq, mac, partition, seq, mac, head_mac))
        return
    _execute(_AUDIT, (*fields, partition, seq, mac))
    _execute(_AUDIT_HEAD_UPSERT, (partition, seq, mac, head_mac))


def date(value: Any) -> dt.date:
    """A DATE column as a date (SQLite returns text)."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def account_brief(account_id: str) -> tuple[str, dt.date] | None:
    """(subject ref, date of birth) of an account, or None."""
    row = _execute(_ACCOUNT_BRIEF, (account_id,)).fetchone()
    return (str(row[0]), date(row[1])) if row else None


def latest_consent(subject_ref: str, purpose: str) -> tuple[str, dt.datetime | None] | None:
    """(event type, valid until) of the newest consent event for a purpose, or None."""
    row = _execute(_LATEST_CONSENT, (subject_ref, purpose)).fetchone()
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
    _execute(_KEEP_CORRESPONDENCE, (subject_ref, reason, kept_by, now, account_id))
    row = _execute(_KEPT_CORRESPONDENCE, (subject_ref,)).fetchone()
    return int(row[0]) if row else 0


# -- throttles' attempt counts -------------------------------------------------------------
# One row per throttled key: the times of its last ``limit`` attempts, each STAMP_WIDTH
# decimal digits of milliseconds, in one TEXT column. It grows by appending until it holds
# ``limit`` of them; from then on it is a ring whose slot ``next_slot`` holds the oldest, and a
# new attempt overwrites it. The key is under its limit exactly when the ring is not full or
# its oldest attempt has left the window, so one statement can count an attempt and, for a
# reservation, refuse it when there is no room: concurrent attempts, from any process, are
# serialised on the row (its lock on PostgreSQL, the write lock on SQLite), none slips past.
# A row whose window has passed starts afresh. (No ``%``: psycopg2 takes it for a placeholder.)
STAMP_WIDTH = 13
_W = STAMP_WIDTH
_EMPTY_STAMP = "0" * STAMP_WIDTH
_THROTTLE_COUNT = f"""
INSERT INTO throttle_count (key_hash, name, attempts, next_slot, expires_at)
VALUES (?, ?, ?, 0, ?)
ON CONFLICT (key_hash) DO UPDATE SET
  attempts = CASE
    WHEN throttle_count.expires_at <= ? THEN excluded.attempts
    WHEN length(throttle_count.attempts) < ? THEN throttle_count.attempts || excluded.attempts
    ELSE substr(throttle_count.attempts, 1, throttle_count.next_slot * {_W})
      || excluded.attempts
      || substr(throttle_count.attempts, throttle_count.next_slot * {_W} + {_W + 1})
  END,
  next_slot = CASE
    WHEN throttle_count.expires_at <= ? OR length(throttle_count.attempts) < ? THEN 0
    WHEN throttle_count.next_slot + 1 < ? THEN throttle_count.next_slot + 1
    ELSE 0
  END,
  expires_at = excluded.expires_at"""
_THROTTLE_ROOM = f"""
WHERE throttle_count.expires_at <= ? OR length(throttle_count.attempts) < ?
  OR CAST(substr(throttle_count.attempts, throttle_count.next_slot * {_W} + 1, {_W}) AS BIGINT)
     <= ?
RETURNING next_slot"""
_THROTTLE_ROW = "SELECT attempts, next_slot FROM throttle_count WHERE key_hash = ?"
_THROTTLE_CLEAR = "DELETE FROM throttle_count WHERE key_hash = ?"
# The newest attempt goes: cut off while the ring grows; once it is full, the slot before
# next_slot is blanked (an attempt long ago) and becomes next.
_PREVIOUS = "(CASE WHEN next_slot = 0 THEN ? ELSE next_slot END - 1)"
_THROTTLE_RELEASE = f"""
UPDATE throttle_count SET
  attempts = CASE
    WHEN length(attempts) < ? THEN substr(attempts, 1, length(attempts) - {_W})
    ELSE substr(attempts, 1, {_PREVIOUS} * {_W}) || '{_EMPTY_STAMP}'
      || substr(attempts, {_PREVIOUS} * {_W} + {_W + 1})
  END,
  next_slot = CASE WHEN length(attempts) < ? THEN 0 ELSE {_PREVIOUS} END
WHERE key_hash = ? AND attempts <> ''"""


def throttle_attempt(
    key_hash: str,
    name: str,
    limit: int,
    now: tuple[dt.datetime, int],
    window_ms: int,
    *,
    only_with_room: bool,
) -> bool:
    """Count an attempt at ``now`` (as a datetime and in milliseconds); with
    ``only_with_room``, only if fewer than ``limit`` are inside the window. Whether it was."""
    at, at_ms = now
    full = limit * STAMP_WIDTH
    expires = at + dt.timedelta(milliseconds=window_ms)
    attempt = str(at_ms).zfill(STAMP_WIDTH)
    params: tuple[Any, ...] = (key_hash, name, attempt, expires, at, full, at, full, limit)
    if not only_with_room:
        _execute(_THROTTLE_COUNT, params)
        return True
    room = (at, full, at_ms - window_ms)
    return _execute(_THROTTLE_COUNT + _THROTTLE_ROOM, params + room).fetchone() is not None


def throttle_attempts(key_hash: str, limit: int) -> list[int]:
    """The times (milliseconds) of a key's last attempts, oldest first; 0 for a blank."""
    row = _execute(_THROTTLE_ROW, (key_hash,)).fetchone()
    if row is None:
        return []
    text, next_slot = str(row[0]), int(row[1])
    stamps = [int(text[i : i + STAMP_WIDTH]) for i in range(0, len(text), STAMP_WIDTH)]
    return stamps[next_slot:] + stamps[:next_slot] if len(stamps) == limit else stamps


def throttle_release(key_hash: str, limit: int) -> None:
    full = limit * STAMP_WIDTH
    _execute(_THROTTLE_RELEASE, (full, limit, limit, full, limit, key_hash))


def throttle_clear(key_hash: str) -> None:
    _execute(_THROTTLE_CLEAR, (key_hash,))
