"""Keyed word tokens in storage: the index (``content_token``) and, on SQLite, the tokens
queued on their item's row until a batch moves them there (``domain/content/search_index``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.queries import execute

# Rows per statement: well under SQLite's 32,766 parameters.
_BATCH = 1000


def insert(rows: Sequence[tuple[str, bytes, int]]) -> None:
    """Keyed word tokens (organisation, token, item seq), a thousand a statement."""
    db = database.obj
    param = db.param
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        values = ", ".join([f"({param}, {param}, {param})"] * len(batch))
        flat: list[Any] = [value for row in batch for value in row]
        db.execute_sql(
            f"INSERT INTO content_token (organisation_id, token, item_seq) VALUES {values}", flat
        )


_QUEUED = """
SELECT seq, organisation_id, queued_tokens FROM content_item
WHERE queued_tokens IS NOT NULL ORDER BY seq LIMIT ?"""
# The organisation's items among those queued, not the other way round: the concatenation
# keeps SQLite's planner off the organisation's indexes, which would visit all its items.
_QUEUED_IN = """
SELECT seq, queued_tokens FROM content_item
WHERE queued_tokens IS NOT NULL AND organisation_id || '' = ?"""


def queued(limit: int) -> list[tuple[int, str, bytes]]:
    """The oldest items whose word tokens wait on their row: (seq, organisation, tokens)."""
    rows = execute(_QUEUED, (limit,)).fetchall()
    return [(int(seq), str(org), bytes(tokens)) for seq, org, tokens in rows]


def queued_in(organisation_id: str) -> list[tuple[int, bytes]]:
    """Every item of the organisation whose word tokens wait on its row: (seq, tokens)."""
    rows = execute(_QUEUED_IN, (organisation_id,)).fetchall()
    return [(int(seq), bytes(tokens)) for seq, tokens in rows]


def clear_queued(seqs: Sequence[int]) -> None:
    """The items' queued word tokens are in content_token now (or must never be)."""
    db = database.obj
    for start in range(0, len(seqs), _BATCH):
        batch = seqs[start : start + _BATCH]
        marks = ", ".join([db.param] * len(batch))
        db.execute_sql(
            f"UPDATE content_item SET queued_tokens = NULL WHERE seq IN ({marks})", list(batch)
        )
