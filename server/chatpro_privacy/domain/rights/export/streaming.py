"""How an export is written with flat memory however much is held (RGT-1, RGT-6).

Tables are read in keyset-paginated batches (``keyset``), the JSON document is written as
it is read (``json_value``, ``json_array``, ``json_object``: async iterators of text), and
it goes out in chunks of ``CHUNK_BYTES`` with a running SHA-256 (``ChunkedOutput``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import peewee as pw

from chatpro_privacy.domain.kernel.formats import rfc3339
from chatpro_privacy.storage.db import scan_reader

CHUNK_BYTES = 64 * 1024
BATCH = 500


@dataclass(frozen=True)
class ExportChunk:
    data: bytes
    offset: int
    sha256: str  # set on the last chunk only: hex SHA-256 of the whole export
    media_type: str  # set on the first chunk only


# -- values ----------------------------------------------------------------------------------


def timestamp(when: dt.datetime | None) -> str | None:
    """Naive UTC as stored, written as RFC 3339 with a Z."""
    return None if when is None else rfc3339(when)


def plain(value: object) -> object:
    """A stored value JSON cannot write by itself: times, dates and bytes (as base64)."""
    if isinstance(value, dt.datetime):
        return timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=plain)


def json_list(value: object) -> list[Any]:
    """A JSON column's value as a list; a value that is not one is kept, in a list of one."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# -- reading in batches ------------------------------------------------------------------------


def keyset(query: pw.Select, *order: pw.Field, size: int = BATCH) -> Iterator[dict[str, Any]]:
    """Rows of ``query`` (dicts) in batches of ``size``, resuming after the last row's
    ``order`` values: one short query per batch, never one that holds the whole table, each
    on a ``scan_reader`` so that no connection's page cache keeps what was swept."""
    last: tuple[Any, ...] | None = None
    while True:
        page = query
        if last is not None:
            page = page.where(_after(order, last))
        with scan_reader() as db:
            rows = list(page.order_by(*order).limit(size).dicts().execute(db))
        yield from rows
        if len(rows) < size:
            return
        last = tuple(rows[-1][f.name] for f in order)


def _after(order: tuple[pw.Field, ...], last: tuple[Any, ...]) -> Any:
    first, *rest = order
    if not rest:
        return first > last[0]
    return (first > last[0]) | ((first == last[0]) & _after(tuple(rest), last[1:]))


def columns(model: type[pw.Model], *names: str) -> list[Any]:
    """A table's columns, by name."""
    return [getattr(model, name) for name in names]


def joined_columns(model: type[pw.Model], *names: str) -> list[Any]:
    """Columns of a joined table, each named "<table>_<column>" so that none clashes with the
    main table's in a row read as a dict."""
    table = model._meta.table_name
    return [getattr(model, name).alias(f"{table}_{name}") for name in names]


# -- the document ------------------------------------------------------------------------------

Section = Callable[[], AsyncIterator[str]]


async def json_value(value: object) -> AsyncIterator[str]:
    yield dumps(value)


async def json_array(rows: Iterable[Any]) -> AsyncIterator[str]:
    yield "["
    for n, row in enumerate(rows):
        yield ("," if n else "") + "\n" + dumps(row)
        if n % BATCH == BATCH - 1:
            await asyncio.sleep(0)  # let other calls run between batches
    yield "]"


async def json_object(sections: list[tuple[str, Section]]) -> AsyncIterator[str]:
    yield "{"
    for n, (name, section) in enumerate(sections):
        yield ("," if n else "") + "\n" + dumps(name) + ":"
        async for piece in section():
            yield piece
    yield "\n}"


class ChunkedOutput:
    """Chunks of ``CHUNK_BYTES`` with their offsets and a running digest. A chunk goes out
    only once more bytes follow it, so the last chunk (which carries the digest) is never
    empty."""

    def __init__(self, media_type: str) -> None:
        self.media_type = media_type
        self.buffer = bytearray()
        self.digest = hashlib.sha256()
        self.offset = 0

    def add(self, data: bytes) -> Iterator[ExportChunk]:
        self.buffer += data
        self.digest.update(data)
        while len(self.buffer) > CHUNK_BYTES:
            yield self._chunk(bytes(self.buffer[:CHUNK_BYTES]), "")
            del self.buffer[:CHUNK_BYTES]

    def last(self) -> ExportChunk:
        return self._chunk(bytes(self.buffer), self.digest.hexdigest())

    def _chunk(self, data: bytes, sha256: str) -> ExportChunk:
        chunk = ExportChunk(data, self.offset, sha256, self.media_type if not self.offset else "")
        self.offset += len(data)
        return chunk
