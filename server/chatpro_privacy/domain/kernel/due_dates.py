"""Due dates of rights requests (RGT-8, UK GDPR Art. 12(3)): one calendar month after
receipt, extendable by up to two further months. Where the month has no matching day, the
last day of that month is due (31 January gives the last day of February)."""

from __future__ import annotations

import calendar
import datetime as dt

MAX_EXTENSION_MONTHS = 2


def add_months(day: dt.date, months: int) -> dt.date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def due(received: dt.date, extension_months: int = 0) -> dt.date:
    """Counted from the day of receipt, so that an extension never shortens the time left."""
    return add_months(received, 1 + extension_months)
