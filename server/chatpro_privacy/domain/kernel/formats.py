"""How times and spreadsheet cells are written wherever the project writes text for others:
exports, JSON fields, receipts, CSV files (issue 19 items 2 and 6).

Plugins use the same functions (``chatpro_privacy.plugin`` re-exports them), so that an
organisation's export format writes times and cells as the host's own do.
"""

from __future__ import annotations

import datetime as dt

# A cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets
# (tab and carriage return too: some programs drop them, then read what follows).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def rfc3339(when: dt.datetime) -> str:
    """RFC 3339 in UTC with an explicit offset (``Z``), e.g. ``2026-01-31T09:30:00.5Z``.
    A naive value is taken as UTC, which every stored time is."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.replace(tzinfo=None).isoformat() + "Z"


def parse_time(text: str) -> dt.datetime:
    """A time this project wrote (RFC 3339, or the offset-less form older rows hold) as
    naive UTC, the form stored times take."""
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


def spreadsheet_safe(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula: a cell that
    starts like a formula gets a leading apostrophe (OWASP's advice for CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
