"""The service's one source of the current time (naive UTC), so tests can move it."""

from __future__ import annotations

import datetime as dt


class Clock:
    def __init__(self) -> None:
        self.offset = dt.timedelta(0)
        # Tests that check an instant to the second stop the clock there.
        self.frozen: dt.datetime | None = None

    def now(self) -> dt.datetime:
        if self.frozen is not None:
            return self.frozen
        return dt.datetime.now(dt.UTC).replace(tzinfo=None) + self.offset

    def today(self) -> dt.date:
        return self.now().date()

    def advance(self, delta: dt.timedelta) -> None:
        self.offset += delta


clock = Clock()
