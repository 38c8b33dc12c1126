"""Page sizes and opaque page tokens: the one paging module every list RPC uses.

A token is where the previous page stopped, encoded so that callers treat it as opaque:
base64url of ``<version>:<list>:<position>`` and a short digest of those. A token that does
not decode, has another version, belongs to another list or fails its digest is refused as
INVALID_ARGUMENT naming ``page_token`` (never an INTERNAL, never a position guessed from
look-alike digits such as "٣"). The digest catches damage, not forgery: positions carry no
authority, every page is still filtered by who is asking.

A page is cut by count and, through a :class:`Budget` the caller passes, by the size of what
it will send, so a page always fits the transport's largest message (issue 15): the token
then resumes right after the last item that fitted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 200
VERSION = "1"
_DIGEST_BYTES = 6
_MAX_TOKEN = 200  # characters; no token of ours is longer
T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Budget(Protocol[T_contra]):
    """What a page may still hold: the servicer measures each item as it will be sent."""

    def admit(self, item: T_contra) -> bool:
        """Take ``item`` if it fits; False once the page is full (the first always fits)."""
        ...


class Unbounded:
    """No limit but the count: for callers inside the process (jobs, tests)."""

    def admit(self, item: object) -> bool:
        return True


UNBOUNDED = Unbounded()


@dataclass(frozen=True)
class Page(Generic[T]):
    """The items of one page, and the token of the next ("" on the last page)."""

    items: list[T]
    next_token: str


def _invalid(field: str = "page_token") -> InvalidArgument:
    return InvalidArgument(
        [FieldViolation(field, "is not a token from this list", "INVALID_PAGE_TOKEN")]
    )


def _digest(body: str) -> bytes:
    return hashlib.blake2b(body.encode(), digest_size=_DIGEST_BYTES).digest()


def token(list_name: str, position: int | str) -> str:
    """The opaque token that resumes ``list_name`` after ``position``."""
    body = f"{VERSION}:{list_name}:{position}"
    raw = body.encode() + _digest(body)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def position(list_name: str, page_token: str, field: str = "page_token") -> str | None:
    """The position a token of ``list_name`` names; None for no token (the first page)."""
    if not page_token:
        return None
    if len(page_token) > _MAX_TOKEN or not page_token.isascii():
        raise _invalid(field)
    try:
        raw = base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4))
        body = raw[:-_DIGEST_BYTES].decode()
    except (binascii.Error, ValueError):
        raise _invalid(field) from None
    if raw[-_DIGEST_BYTES:] != _digest(body) or len(raw) <= _DIGEST_BYTES:
        raise _invalid(field)
    version, _, rest = body.partition(":")
    named, _, where = rest.partition(":")
    if version != VERSION or named != list_name or not where:
        raise _invalid(field)
    return where


def size(page_size: int, maximum: int = MAX_PAGE, default: int = DEFAULT_PAGE) -> int:
    if page_size < 0 or page_size > maximum:
        raise InvalidArgument(
            [FieldViolation("page_size", f"must be 0 to {maximum}", "OUT_OF_RANGE")]
        )
    return page_size or default


def page(
    page_size: int,
    page_token: str,
    list_name: str,
    maximum: int = MAX_PAGE,
    default: int = DEFAULT_PAGE,
) -> tuple[int, int | None]:
    """(size, cursor) of a list whose positions are whole numbers (offsets, sequences)."""
    problems: list[FieldViolation] = []
    count = default
    try:
        count = size(page_size, maximum, default)
    except InvalidArgument as exc:
        problems += exc.violations
    cursor = None
    try:
        where = position(list_name, page_token)
        if where is not None:
            if not where.isascii() or not where.isdigit() or len(where) > 18:
                raise _invalid()
            cursor = int(where)
    except InvalidArgument as exc:
        problems += exc.violations
    if problems:
        raise InvalidArgument(problems)
    return count, cursor


def cut(
    items: Sequence[T],
    resume: Callable[[int], int | str],
    more: bool,
    list_name: str,
    budget: Budget[T] = UNBOUNDED,
) -> Page[T]:
    """The items the budget admits, in order, and the token resuming after the last of them.

    ``resume(i)`` is the position right after ``items[i]``; ``more`` says whether the list
    goes on past the last item given.
    """
    kept: list[T] = []
    for index, item in enumerate(items):
        if kept and not budget.admit(item):
            return Page(kept, token(list_name, resume(index - 1)))
        if not kept:
            budget.admit(item)  # the first always goes, so that a list always moves on
        kept.append(item)
    if more and kept:
        return Page(kept, token(list_name, resume(len(kept) - 1)))
    return Page(kept, "")


def by_offset(
    items: Sequence[T],
    cursor: int | None,
    more: bool,
    list_name: str,
    budget: Budget[T] = UNBOUNDED,
) -> Page[T]:
    """A page of a list read from offset ``cursor``: positions are offsets."""
    start = cursor or 0
    return cut(items, lambda i: start + i + 1, more, list_name, budget)


def by_position(
    items: Sequence[T],
    positions: Sequence[int | str],
    more: bool,
    list_name: str,
    budget: Budget[T] = UNBOUNDED,
) -> Page[T]:
    """A page of a list read after a key (a sequence, an id): ``positions[i]`` is the key
    of ``items[i]``."""
    return cut(items, lambda i: positions[i], more, list_name, budget)
