"""The service's one source of the current time (naive UTC), so tests can move it."""

from __future__ import annotations

import datetime as dt


class Clock:
    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None) + self.offset

    def today(self) -> dt.date:
        return self.now().date()

    def advance(self, delta: dt.timedelta) -> None:
        self.offset += delta


clock = Clock()
