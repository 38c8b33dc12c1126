"""The request rules the edge applies to every message a caller sends, unary or streamed.

grpc parses a request before any interceptor's code runs, and a request that does not parse
(malformed bytes, invalid UTF-8 in a string) used to end the call UNKNOWN ("Unexpected
DecodeError"), with no ErrorInfo, no request id and no log line. The parser is therefore
wrapped: a request that does not parse becomes :data:`UNDECODABLE`, which the interceptor
answers, inside its usual scope, as INVALID_ARGUMENT with the full ``google.rpc.Status``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.message import DecodeError, Message

from chatpro_privacy.domain.kernel.enums import refuse_unknown_enums
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument
from chatpro_privacy.domain.kernel.text import refuse_nul


class _Undecodable:
    """A request whose bytes are not a message of the method's request type."""

    def __repr__(self) -> str:
        return "<undecodable request>"


UNDECODABLE = _Undecodable()


def tolerant(
    deserializer: Callable[[bytes], Any] | None,
) -> Callable[[bytes], Any] | None:
    """``deserializer``, but a request that does not parse gives :data:`UNDECODABLE`."""
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except (DecodeError, UnicodeDecodeError, ValueError):
            return UNDECODABLE

    return deserialize


def check(request: Any) -> None:
    """Refuse a request that did not parse, holds a NUL or an enum number nobody named."""
    if request is UNDECODABLE:
        raise InvalidArgument(
            [
                FieldViolation(
                    "request",
                    "is not a well-formed message of this method's request type",
                    "UNDECODABLE_REQUEST",
                )
            ],
            reason="MALFORMED_REQUEST",
        )
    if isinstance(request, Message):
        refuse_nul(request)
        refuse_unknown_enums(request)


async def checked(messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream whose every message is checked before the servicer sees it."""
    async for message in messages:
        check(message)
        yield message
