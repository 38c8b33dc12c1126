"""Pages that always fit the transport (issue 15): each listed item is converted once, as it
will be sent, and counted against the largest message the server may send.

The domain cuts a page through a :class:`ByteBudget` (its ``paging.Budget``), so the next
page's token resumes right after the last item that fitted; the servicer then sends the
messages the budget kept, never converting twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from google.protobuf.message import Message

from chatpro_privacy.domain.kernel.errors import TooLarge
from chatpro_privacy.settings import MAX_MESSAGE_BYTES

V = TypeVar("V")
M = TypeVar("M", bound=Message)

# Room kept for the response's other fields (the next page token, totals, ids).
RESERVE_BYTES = 16 * 1024
PAGE_BYTES = MAX_MESSAGE_BYTES - RESERVE_BYTES


def _varint_length(value: int) -> int:
    length = 1
    while value >= 0x80:
        value >>= 7
        length += 1
    return length


def encoded_size(message: Message) -> int:
    """Bytes ``message`` takes as one element of a repeated field (tag, length, body); tags
    of fields numbered up to 2047 take at most two bytes."""
    body = message.ByteSize()
    return 2 + _varint_length(body) + body


class ByteBudget(Generic[V, M]):
    """Admits items while their converted messages fit in ``limit`` bytes.

    The first item is always admitted, so that a list always moves on: if it alone is over
    the limit, ``shrink`` (when given) makes the listed form smaller (the full item stays
    readable through its Get call); if it still does not fit, the call fails with TooLarge
    rather than letting the transport fail it with no reason.
    """

    def __init__(
        self,
        convert: Callable[[V], M],
        shrink: Callable[[M], M] | None = None,
        limit: int = PAGE_BYTES,
    ) -> None:
        self.convert = convert
        self.shrink = shrink
        self.limit = limit
        self.used = 0
        self.messages: list[M] = []

    def take(self, items: Iterable[V]) -> list[M]:
        """The messages of ``items`` that fit, in order: for lists a caller pages by the
        sequence of the last item it got (the outbox), which need no token."""
        for item in items:
            if not self.admit(item):
                break
        return self.messages

    def admit(self, item: V) -> bool:
        message = self.convert(item)
        size = encoded_size(message)
        if self.messages and self.used + size > self.limit:
            return False
        if size > self.limit and self.shrink is not None:
            message = self.shrink(message)
            size = encoded_size(message)
        if size > self.limit:
            raise TooLarge(
                "RESPONSE_TOO_LARGE",
                f"an item of this list is {size} bytes, over the {self.limit} a page may hold",
            )
        self.messages.append(message)
        self.used += size
        return True
