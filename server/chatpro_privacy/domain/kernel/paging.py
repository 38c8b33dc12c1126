"""Page sizes and opaque page tokens shared by the list RPCs."""

from __future__ import annotations

from typing import Any, TypeVar

from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 200
T = TypeVar("T")


def page(page_size: int, page_token: str) -> tuple[int, int | None]:
    """(size, cursor): the cursor is the position the previous page stopped at."""
    problems = []
    if page_size < 0 or page_size > MAX_PAGE:
        problems.append(FieldViolation("page_size", f"must be 1 to {MAX_PAGE}", "OUT_OF_RANGE"))
    cursor = None
    if page_token:
        if not page_token.isdigit() or len(page_token) > 18:
            problems.append(
                FieldViolation("page_token", "is not a token from this list", "INVALID_PAGE_TOKEN")
            )
        else:
            cursor = int(page_token)
    if problems:
        raise InvalidArgument(problems)
    return page_size or DEFAULT_PAGE, cursor


def by_offset(rows: list[T], size: int, cursor: int | None) -> tuple[list[T], str]:
    """A fetch of size + 1 rows from offset ``cursor`` cut to a page, and the next token."""
    return rows[:size], str((cursor or 0) + size) if len(rows) > size else ""


def by_seq(rows: list[Any], size: int) -> tuple[list[Any], str]:
    """A fetch of size + 1 rows in ``seq`` order cut to a page; the token is the last seq."""
    return rows[:size], str(rows[size - 1].seq) if len(rows) > size else ""
