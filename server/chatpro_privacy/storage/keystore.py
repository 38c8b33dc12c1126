"""Content keys, kept in their own database apart from the content they protect.

Envelope encryption: a master key (from configuration, never stored) wraps one random
organisation key per organisation; each organisation key wraps one random data key per
author (organisation, subject_ref). Content is sealed with the author's data key.

Erasure is key destruction: deleting a data key (or an organisation key with all its data
keys) makes every ciphertext and word token made with it unreadable, wherever copies of
the content database went. That only holds if the keys live elsewhere: restoring a backup
of the content database must not bring a destroyed key back, so this store has its own
database (its own SQLite file, or its own PostgreSQL database or schema).

Each wrapped key is bound to its row by AES-GCM associated data, so a wrapped key copied
into another row fails to unwrap and the store raises ``KeyStoreCorrupt`` rather than
hand out a key that is not the one the row names.
"""

from __future__ import annotations

import functools
import re
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import peewee
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatpro_privacy.clock import clock
from chatpro_privacy.storage.shared_connection import SharedConnection

KEY_BYTES = 32
NONCE_BYTES = 12
_CHUNK = 500
_CACHE_SIZE = 65_536
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

K = TypeVar("K")  # what a cache keeps: key bytes, or a data key
_Cache = OrderedDict[tuple[str | bytes, ...], bytes]
# Data keys are kept whole, with the cipher each makes once (see DataKey.cipher).
_DataCache = OrderedDict[tuple[str | bytes, ...], "DataKey"]


class KeyStoreCorrupt(Exception):
    """A stored key does not unwrap: wrong master key, tampering, or a row copied elsewhere."""


@dataclass(frozen=True)
class DataKey:
    """An author's content key. ``key`` stays out of repr so it never reaches a log."""

    key_id: str
    organisation_id: str
    subject_ref: str
    key: bytes = field(repr=False)

    @functools.cached_property
    def cipher(self) -> AESGCM:
        """AES-256-GCM under this key, made once: a page of messages opens fifty at a time,
        and making it costs more than the decryption. It lives as long as the key does."""
        return AESGCM(self.key)


def _org_aad(organisation_id: str) -> bytes:
    return b"chatpro-org-key|" + organisation_id.encode()


def _data_aad(organisation_id: str, subject_ref: str) -> bytes:
    return b"chatpro-data-key|" + organisation_id.encode() + b"|" + subject_ref.encode()


def _wrap(kek: bytes, key: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, key, aad)


def _unwrap(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    if len(wrapped) <= NONCE_BYTES:
        raise KeyStoreCorrupt("wrapped key is truncated")
    try:
        key = AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
    except InvalidTag:
        raise KeyStoreCorrupt("wrapped key does not unwrap for its row") from None
    if len(key) != KEY_BYTES:
        raise KeyStoreCorrupt("unwrapped key has the wrong length")
    return key


class KeyStore(SharedConnection):
    """Get-or-create, look up and destroy organisation and data keys.

    Rows are always read from the store, so a key destroyed by another process is never
    served; only the AES unwrap of a row already seen is cached, keyed by its wrapped bytes.
    Safe to call from the event loop thread and worker threads (one lock, one connection).
    """

    def __init__(self, url: str, master_key: bytes, *, schema: str | None = None) -> None:
        if len(master_key) != KEY_BYTES:
            raise ValueError("master key must be 32 bytes")
        super().__init__(url, schema, "key store")
        self._master = bytes(master_key)
        # Unwrapped keys by everything their AAD binds plus the wrapped bytes, so a cache
        # hit is exactly a row that has unwrapped before.
        self._org_cache: _Cache = OrderedDict()
        self._data_cache: _DataCache = OrderedDict()
        with self._lock:
            self._db.connect(reuse_if_open=True)
            self._create_tables()

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._org_cache.clear()
            self._data_cache.clear()
        super().close()

    def _create_tables(self) -> None:
        blob = "BYTEA" if self._pg else "BLOB"
        with self._db.atomic():
            self._execute(
                "CREATE TABLE IF NOT EXISTS organisation_key ("
                " organisation_id TEXT PRIMARY KEY,"
                f" wrapped {blob} NOT NULL,"
                " created_at TIMESTAMP NOT NULL)"
            )
            # The foreign key stops a data key being created under an organisation key that
            # a concurrent destroy has just removed (it would be orphaned and unreadable).
            self._execute(
                "CREATE TABLE IF NOT EXISTS data_key ("
                " key_id TEXT PRIMARY KEY,"
                " organisation_id TEXT NOT NULL"
                " REFERENCES organisation_key (organisation_id) ON DELETE CASCADE,"
                " subject_ref TEXT NOT NULL,"
                f" wrapped {blob} NOT NULL,"
                " created_at TIMESTAMP NOT NULL,"
                " UNIQUE (organisation_id, subject_ref))"
            )
            self._execute(
                "CREATE INDEX IF NOT EXISTS data_key_organisation_id ON data_key (organisation_id)"
            )

    # -- public API ------------------------------------------------------------------

    def data_key(self, organisation_id: str, subject_ref: str) -> DataKey:
        """The author's data key, created (with its organisation key) on first use.

        Two processes racing both insert; the loser's insert fails on the unique
        constraint and it reads the winner's key, so an author has exactly one key.
        """
        select = (
            "SELECT d.key_id, d.organisation_id, d.subject_ref, d.wrapped, o.wrapped"
            " FROM data_key d JOIN organisation_key o ON o.organisation_id = d.organisation_id"
            " WHERE d.organisation_id = ? AND d.subject_ref = ?"
        )
        with self._lock:
            for _ in range(5):
                rows = self._execute(select, (organisation_id, subject_ref)).fetchall()
                if rows:
                    return self._data_key_from_row(rows[0])
                org_key = self._org_key_or_create(organisation_id)
                key = secrets.token_bytes(KEY_BYTES)
                key_id = uuid.uuid4().hex
                wrapped = _wrap(org_key, key, _data_aad(organisation_id, subject_ref))
                try:
                    with self._db.atomic():
                        self._execute(
                            "INSERT INTO data_key"
                            " (key_id, organisation_id, subject_ref, wrapped, created_at)"
                            " VALUES (?, ?, ?, ?, ?)",
                            (key_id, organisation_id, subject_ref, wrapped, clock.now()),
                        )
                except peewee.IntegrityError:
                    continue  # another writer won, or the organisation key just went
                made = DataKey(key_id, organisation_id, subject_ref, key)
                slot = (key_id, organisation_id, subject_ref, wrapped)
                self._cache_put(self._data_cache, slot, made)
                return made
        raise KeyStoreCorrupt("could not create a data key: the store keeps changing under us")

    def data_keys(self, key_ids: Iterable[str]) -> dict[str, DataKey]:
        """Live data keys by id; ids whose key was destroyed are simply absent."""
        ids = list(dict.fromkeys(key_ids))
        found: dict[str, DataKey] = {}
        with self._lock:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows = self._execute(
                    "SELECT d.key_id, d.organisation_id, d.subject_ref, d.wrapped, o.wrapped"
                    " FROM data_key d"
                    " JOIN organisation_key o ON o.organisation_id = d.organisation_id"
                    f" WHERE d.key_id IN ({marks})",
                    chunk,
                ).fetchall()
                for row in rows:
                    data_key = self._data_key_from_row(row)
                    found[data_key.key_id] = data_key
        return found

    def organisation_data_keys(self, organisation_id: str) -> list[DataKey]:
        """Every live data key of an organisation (none once its key is destroyed)."""
        with self._lock:
            rows = self._execute(
                "SELECT d.key_id, d.organisation_id, d.subject_ref, d.wrapped, o.wrapped"
                " FROM data_key d"
                " JOIN organisation_key o ON o.organisation_id = d.organisation_id"
                " WHERE d.organisation_id = ? ORDER BY d.subject_ref",
                (organisation_id,),
            ).fetchall()
            return [self._data_key_from_row(row) for row in rows]

    def destroy_member_key(self, organisation_id: str, subject_ref: str) -> bool:
        """Destroy one author's data key; True if there was one to destroy."""
        with self._lock, self._db.atomic():
            rows = self._execute(
                "SELECT key_id, wrapped FROM data_key"
                " WHERE organisation_id = ? AND subject_ref = ?",
                (organisation_id, subject_ref),
            ).fetchall()
            self._execute(
                "DELETE FROM data_key WHERE organisation_id = ? AND subject_ref = ?",
                (organisation_id, subject_ref),
            )
            for key_id, wrapped in rows:
                self._data_cache.pop((key_id, organisation_id, subject_ref, bytes(wrapped)), None)
            return bool(rows)

    def destroy_organisation_key(self, organisation_id: str) -> int:
        """Destroy an organisation key and all its data keys; the number of data keys."""
        with self._lock, self._db.atomic():
            data_rows = self._execute(
                "SELECT key_id, subject_ref, wrapped FROM data_key WHERE organisation_id = ?",
                (organisation_id,),
            ).fetchall()
            org_rows = self._execute(
                "SELECT wrapped FROM organisation_key WHERE organisation_id = ?",
                (organisation_id,),
            ).fetchall()
            self._execute("DELETE FROM data_key WHERE organisation_id = ?", (organisation_id,))
            self._execute(
                "DELETE FROM organisation_key WHERE organisation_id = ?", (organisation_id,)
            )
            for key_id, subject_ref, wrapped in data_rows:
                self._data_cache.pop((key_id, organisation_id, subject_ref, bytes(wrapped)), None)
            for (wrapped,) in org_rows:
                self._org_cache.pop((organisation_id, bytes(wrapped)), None)
            return len(data_rows)

    # -- internals (called with the lock held) -----------------------------------------

    def _org_key_or_create(self, organisation_id: str) -> bytes:
        select = "SELECT wrapped FROM organisation_key WHERE organisation_id = ?"
        for _ in range(5):
            rows = self._execute(select, (organisation_id,)).fetchall()
            if rows:
                return self._org_key_from_wrapped(organisation_id, bytes(rows[0][0]))
            key = secrets.token_bytes(KEY_BYTES)
            wrapped = _wrap(self._master, key, _org_aad(organisation_id))
            try:
                with self._db.atomic():
                    self._execute(
                        "INSERT INTO organisation_key (organisation_id, wrapped, created_at)"
                        " VALUES (?, ?, ?)",
                        (organisation_id, wrapped, clock.now()),
                    )
            except peewee.IntegrityError:
                continue  # another writer created it first: use theirs
            self._cache_put(self._org_cache, (organisation_id, wrapped), key)
            return key
        raise KeyStoreCorrupt("could not create an organisation key")

    def _org_key_from_wrapped(self, organisation_id: str, wrapped: bytes) -> bytes:
        cached = self._cache_get(self._org_cache, (organisation_id, wrapped))
        if cached is not None:
            return cached
        key = _unwrap(self._master, wrapped, _org_aad(organisation_id))
        self._cache_put(self._org_cache, (organisation_id, wrapped), key)
        return key

    def _data_key_from_row(self, row: Sequence[Any]) -> DataKey:
        key_id, organisation_id, subject_ref = str(row[0]), str(row[1]), str(row[2])
        wrapped, org_wrapped = bytes(row[3]), bytes(row[4])
        slot = (key_id, organisation_id, subject_ref, wrapped)
        known = self._cache_get(self._data_cache, slot)
        if known is None:
            org_key = self._org_key_from_wrapped(organisation_id, org_wrapped)
            key = _unwrap(org_key, wrapped, _data_aad(organisation_id, subject_ref))
            known = DataKey(key_id, organisation_id, subject_ref, key)
            self._cache_put(self._data_cache, slot, known)
        return known

    @staticmethod
    def _cache_get(
        cache: OrderedDict[tuple[str | bytes, ...], K], slot: tuple[str | bytes, ...]
    ) -> K | None:
        key = cache.get(slot)
        if key is not None:
            cache.move_to_end(slot)
        return key

    @staticmethod
    def _cache_put(
        cache: OrderedDict[tuple[str | bytes, ...], K], slot: tuple[str | bytes, ...], key: K
    ) -> None:
        cache[slot] = key
        if len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
