"""Content encryption and keyed word tokens, both under an author's data key.

Sealing with the author's key means destroying that key (erasure) leaves only ciphertext
behind. Keyword search works on keyed tokens rather than words: a token is an HMAC of a
normalised word under a key derived from the author's data key, so the database never
holds a searchable plaintext word, and once the key is destroyed its tokens match nothing.
"""

from __future__ import annotations

import hmac
import re
import secrets
import unicodedata
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chatpro_privacy.storage.keystore import DataKey

NONCE_BYTES = 12
TAG_BYTES = 16
TOKEN_BYTES = 16
MAX_WORDS = 512
MIN_WORD_CHARS = 2

# Runs of letters and digits: \w without the underscore, so "a_b" is two words.
_WORD = re.compile(r"[^\W_]+")


class ContentUnreadable(Exception):
    """A ciphertext does not open: wrong key (or destroyed), wrong place, or tampered."""


def content_aad(organisation_id: str, item_id: str, part: str = "body") -> bytes:
    """Associated data binding a ciphertext to its organisation, item and part.

    For audio chunks ``part`` is ``f"chunk:{index}"``, so chunks cannot be reordered or
    moved between recordings without failing to open.
    """
    return "|".join(("chatpro-content", organisation_id, item_id, part)).encode()


def seal(key: DataKey, aad: bytes, plaintext: bytes) -> bytes:
    """AES-256-GCM: a random 12-byte nonce followed by ciphertext and tag."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + key.cipher.encrypt(nonce, plaintext, aad)


def unseal(key: DataKey, aad: bytes, sealed: bytes) -> bytes:
    """Open ``seal``'s output; ``ContentUnreadable`` if it is not for this key and place."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise ContentUnreadable("sealed content is truncated")
    try:
        return key.cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise ContentUnreadable("sealed content does not open with this key here") from None


def words(text: str) -> list[str]:
    """Search words of ``text``: NFKC, casefolded, split on non-alphanumerics.

    Words shorter than two characters are dropped, repeats removed (first occurrence
    kept) and at most 512 kept, so a message's token count is bounded.
    """
    normal = unicodedata.normalize("NFKC", text).casefold()
    seen: dict[str, None] = {}
    for match in _WORD.finditer(normal):
        word = match.group()
        if len(word) >= MIN_WORD_CHARS and word not in seen:
            seen[word] = None
            if len(seen) >= MAX_WORDS:
                break
    return list(seen)


@lru_cache(maxsize=4096)
def _token_key(key_id: str, key: bytes) -> bytes:
    # Cached by key bytes as well as id, so a DataKey forged with a known key_id cannot
    # reach another key's derived token key.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"chatpro-word-tokens")
    return hkdf.derive(key)


def word_token(key: DataKey, word: str) -> bytes:
    """16-byte keyed token for one word (normalised the way ``words`` normalises)."""
    normal = unicodedata.normalize("NFKC", word).casefold()
    return hmac.digest(_token_key(key.key_id, key.key), normal.encode(), "sha256")[:TOKEN_BYTES]


def word_tokens(key: DataKey, text: str) -> list[bytes]:
    """Tokens for every search word of ``text``, in order (``hmac.digest``: OpenSSL's
    one-shot HMAC, the same bytes as an ``hmac.new`` object at a fraction of the cost)."""
    token_key = _token_key(key.key_id, key.key)
    return [hmac.digest(token_key, word.encode(), "sha256")[:TOKEN_BYTES] for word in words(text)]
