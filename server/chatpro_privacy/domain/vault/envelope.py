"""Encryption at rest for content (ORG-2): envelope keys, sealing, keyed word tokens.

Each item is sealed with its author's data key in its organisation, and bound to the
organisation and item as associated data, so that a ciphertext moved to another row does
not open. The keys live in the key store, a database apart from the content: destroying a
member's key leaves their content in that organisation unreadable for good, and their word
tokens unmatchable; destroying the organisation's key does the same to all of its content.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chatpro_privacy.domain.vault import crypto
from chatpro_privacy.storage.blobs import BlobStore
from chatpro_privacy.storage.keystore import DataKey, KeyStore


@dataclass(frozen=True)
class Sealed:
    key_id: str
    body: bytes
    tokens: list[bytes]


class Vault:
    def __init__(self, keys: KeyStore, blobs: BlobStore) -> None:
        self.keys = keys
        self.blobs = blobs

    def author_key(self, organisation_id: str, author_ref: str) -> DataKey:
        return self.keys.data_key(organisation_id, author_ref)

    def seal_text(self, organisation_id: str, item_id: str, author_ref: str, text: str) -> Sealed:
        key = self.author_key(organisation_id, author_ref)
        body = crypto.seal(key, crypto.content_aad(organisation_id, item_id), text.encode())
        return Sealed(key.key_id, body, crypto.word_tokens(key, text))

    def open_texts(
        self, organisation_id: str, items: Iterable[tuple[str, str, bytes | None]]
    ) -> dict[str, str | None]:
        """{item id: text, or None when its key is gone} for (item id, key id, body)."""
        rows = list(items)
        keys = self.keys.data_keys({key_id for _, key_id, _ in rows})
        opened: dict[str, str | None] = {}
        for item_id, key_id, body in rows:
            key = keys.get(key_id)
            if key is None or body is None or key.organisation_id != organisation_id:
                opened[item_id] = None
                continue
            try:
                plain = crypto.unseal(key, crypto.content_aad(organisation_id, item_id), body)
            except crypto.ContentUnreadable:
                opened[item_id] = None
            else:
                opened[item_id] = plain.decode()
        return opened

    def readable(self, key_ids: Iterable[str]) -> set[str]:
        """The key ids that still exist."""
        return set(self.keys.data_keys(set(key_ids)))

    def search_tokens(self, organisation_id: str, words: list[str]) -> list[bytes]:
        """Every live author's token for every word: what a keyword search looks up."""
        return [
            crypto.word_token(key, word)
            for key in self.keys.organisation_data_keys(organisation_id)
            for word in words
        ]

    # -- call-recording audio --------------------------------------------------------------

    @staticmethod
    def chunk_name(organisation_id: str, recording_id: str, index: int) -> str:
        return f"{organisation_id}/{recording_id}/{index:06d}"

    def put_chunk(
        self, key: DataKey, organisation_id: str, recording_id: str, index: int, data: bytes
    ) -> None:
        aad = crypto.content_aad(organisation_id, recording_id, f"chunk:{index}")
        self.blobs.put(
            self.chunk_name(organisation_id, recording_id, index), crypto.seal(key, aad, data)
        )

    def get_chunk(self, key: DataKey, organisation_id: str, recording_id: str, index: int) -> bytes:
        aad = crypto.content_aad(organisation_id, recording_id, f"chunk:{index}")
        sealed = self.blobs.get(self.chunk_name(organisation_id, recording_id, index))
        return crypto.unseal(key, aad, sealed)

    def delete_recording(self, organisation_id: str, recording_id: str) -> int:
        return self.blobs.delete_prefix(f"{organisation_id}/{recording_id}/")
