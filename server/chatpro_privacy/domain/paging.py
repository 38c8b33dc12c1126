"""Page sizes and opaque page tokens shared by the list RPCs."""

from __future__ import annotations

from chatpro_privacy.domain.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 200


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


def next_token(rows: list[int], size: int) -> tuple[list[int], str]:
    """Trim a fetch of size + 1 positions to a page, and the token of the page after."""
    if len(rows) > size:
        return rows[:size], str(rows[size - 1])
    return rows, ""
