"""Word tokens reach the search index in batches, on SQLite (ORG-2's keyword search).

A message's keyed word tokens, about twenty, land at random places in ``content_token``'s
index. Inserted with the message, they dirty some twenty pages that the message's commit
must write and sync, and on SQLite, whose one writer syncs every commit (synchronous=FULL),
that was the largest part of what sending cost. So on SQLite a message's tokens are written
on its own row (``queued_tokens``), in the same statement as the message, and a background
batch moves many messages' tokens into the index at once, sorted, so that neighbouring
tokens share pages. The batch may be lost to a power cut and done again: the tokens stay
queued until it commits.

Nothing is found later than before: a search reads what is queued before it reads the
index, so an item moved between the two reads is found in the index. Queued tokens live and
die with their item's row: the content sweep, erasure and key destruction remove them with
it. PostgreSQL's writers do not queue behind one another's commits, and there a message's
tokens go into the index in the statement that writes the message (``storage/chained.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from chatpro_privacy.domain.vault.crypto import TOKEN_BYTES
from chatpro_privacy.storage import tuning, word_tokens
from chatpro_privacy.storage.db import database

# Items moved per transaction: enough that many share the index's pages, few enough that
# the writers' turn is held for tens of milliseconds, as the sweep's batches are.
BATCH = 200


class Backlog:
    """Whether this process has queued tokens since its indexer last looked. Senders mark it
    from any thread (one attribute write); the indexer takes the mark before it looks, so a
    mark made while it works brings it back."""

    def __init__(self) -> None:
        self._due = True  # a new process looks once: a predecessor may have left a queue

    def grew(self) -> None:
        self._due = True

    def take(self) -> bool:
        due, self._due = self._due, False
        return due


def pack(tokens: Iterable[bytes]) -> bytes:
    return b"".join(tokens)


def unpack(packed: bytes) -> list[bytes]:
    if len(packed) % TOKEN_BYTES:
        raise ValueError("queued word tokens are not a whole number of tokens")
    return [packed[i : i + TOKEN_BYTES] for i in range(0, len(packed), TOKEN_BYTES)]


def queued_matches(organisation_id: str, tokens: list[bytes], needed: int) -> list[int]:
    """Items of the organisation, their tokens still queued, that hold ``needed`` distinct
    tokens of ``tokens``: the index's match (every word, under the item's own key) for what
    has not reached it yet."""
    wanted = set(tokens)
    return [
        seq
        for seq, packed in word_tokens.queued_in(organisation_id)
        if len(wanted.intersection(unpack(packed))) == needed
    ]


def index_queued(limit: int = BATCH) -> int:
    """Move the queued tokens of up to ``limit`` items, oldest first, into the index in one
    transaction; returns how many items were moved."""
    with tuning.short_transaction(), database.atomic():
        queued = word_tokens.queued(limit)
        if not queued:
            return 0
        rows = sorted(
            ((organisation_id, token, seq) for seq, organisation_id, packed in queued
             for token in unpack(packed)),
            key=_by_token,
        )  # fmt: skip
        word_tokens.insert(rows)
        word_tokens.clear_queued([seq for seq, _, _ in queued])
    return len(queued)


def _by_token(row: tuple[str, bytes, int]) -> bytes:
    """The index's order, so that neighbouring inserts share its pages."""
    return row[1]


def queued_count(items: Iterable[bytes | None]) -> int:
    """How many tokens the given items' queued columns hold."""
    return sum(len(packed) // TOKEN_BYTES for packed in items if packed)
