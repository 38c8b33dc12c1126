"""Due dates across month ends (RGT-8)."""

from __future__ import annotations

import datetime as dt

import pytest
from chatpro_privacy.domain.kernel.due_dates import due
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("received", "extension", "expected"),
    [
        (dt.date(2026, 1, 31), 0, dt.date(2026, 2, 28)),
        (dt.date(2028, 1, 31), 0, dt.date(2028, 2, 29)),  # a leap year
        (dt.date(2026, 1, 30), 0, dt.date(2026, 2, 28)),
        (dt.date(2026, 1, 15), 0, dt.date(2026, 2, 15)),
        (dt.date(2026, 3, 31), 0, dt.date(2026, 4, 30)),
        (dt.date(2026, 12, 31), 0, dt.date(2027, 1, 31)),
        (dt.date(2026, 12, 31), 2, dt.date(2027, 3, 31)),
        (dt.date(2026, 11, 30), 1, dt.date(2027, 1, 30)),
        (dt.date(2026, 1, 31), 2, dt.date(2026, 4, 30)),
    ],
)
def test_one_calendar_month_after_receipt(
    received: dt.date, extension: int, expected: dt.date
) -> None:
    assert due(received, extension) == expected


@given(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1)), st.integers(0, 2))
def test_a_due_date_is_in_the_right_month_and_never_early(
    received: dt.date, extension: int
) -> None:
    result = due(received, extension)
    months = (result.year - received.year) * 12 + result.month - received.month
    assert months == 1 + extension
    assert result.day == received.day or (
        result.day < received.day and (result + dt.timedelta(days=1)).day == 1
    )
