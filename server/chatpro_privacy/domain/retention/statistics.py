"""Anonymised statistics for research and planning (RET-3).

Counts are aggregated into a table of cells with row and column totals, and every count under
``THRESHOLD`` is hidden. Hiding small counts alone is not enough: a hidden cell could be found
again by subtracting the published cells of its row from the published row total. So further
counts are hidden (complementary suppression) until no hidden figure follows from the
published ones, not by subtraction within a line and not by solving the whole system of row
and column equations (see ``suppress``).

People who restricted processing (RGT-5) or objected to processing on legitimate interest
(RGT-4), on which these statistics rest, are left out, and so is the content they wrote.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import fn

from chatpro_privacy.domain.consent.restrictions import ObjectionGround
from chatpro_privacy.domain.kernel.errors import PermissionDenied, Violations
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.validation import age_on
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.plugin.types import ContentKind
from chatpro_privacy.storage.models import (
    Account,
    ContentItem,
    ProcessingObjection,
    ProcessingRestriction,
)

THRESHOLD = 10
TOTAL = "total"
MAX_SPAN = dt.timedelta(days=366)
# (lowest age in the band, label), youngest first.
AGE_BANDS = (
    (0, "under 13"),
    (13, "13-15"),
    (16, "16-17"),
    (18, "18-24"),
    (25, "25-34"),
    (35, "35-49"),
    (50, "50-64"),
    (65, "65+"),
)


class StatisticsTable(enum.StrEnum):
    """The anonymised tables there are; each falls on its own boundaries (week, month)."""

    MESSAGES_PER_ORGANISATION_WEEK = "messages_per_organisation_week"
    ACTIVE_ACCOUNTS_BY_AGE_BAND = "active_accounts_by_age_band"


@dataclass(frozen=True)
class Cell:
    row: str
    column: str
    count: int  # 0 when suppressed
    suppressed: bool


@dataclass(frozen=True)
class Table:
    cells: list[Cell]  # every row x column, rows then columns
    row_totals: list[Cell]  # column == "total"
    column_totals: list[Cell]  # row == "total"
    threshold: int


# -- the table a caller asks for --------------------------------------------------------------


def table(
    principal: Principal, name: str, start: dt.datetime | None, end: dt.datetime | None
) -> Table:
    """One anonymised table over [start, end), naive UTC like every stored time."""
    if not (
        principal.is_person
        and (principal.has_role(Role.OPERATOR) or principal.has_role(Role.DATA_PRIVACY_MANAGER))
    ):
        raise PermissionDenied(
            "PRIVACY_STAFF_ONLY", "anonymised statistics are for operators and the DPM"
        )
    v = Violations()
    if not name:
        v.add("table", "is required", "REQUIRED")
    elif name not in set(StatisticsTable):
        v.add("table", f"must be one of {', '.join(StatisticsTable)}", "UNKNOWN_TABLE")
    if start is None:
        v.add("start_time", "is required", "REQUIRED")
    if end is None:
        v.add("end_time", "is required", "REQUIRED")
    if start is not None and end is not None:
        if end <= start:
            v.add("end_time", "must be after the start time", "OUT_OF_RANGE")
        elif end - start > MAX_SPAN:
            v.add("end_time", "a table spans at most 366 days", "OUT_OF_RANGE")
    # Two tables whose ranges differ by a second would differ by one person: ranges fall on
    # whole weeks (messages) or whole months (accounts), so no two can differ by less.
    unit = "week" if name == StatisticsTable.MESSAGES_PER_ORGANISATION_WEEK else "month"
    for field, at in (("start_time", start), ("end_time", end)):
        if at is not None and name in set(StatisticsTable) and not _on_boundary(at, unit):
            v.add(
                field,
                "must be a Monday at 00:00 UTC"
                if unit == "week"
                else "must be the first of a month at 00:00 UTC",
                "NOT_ON_BOUNDARY",
            )
    v.raise_if_any()
    assert start is not None and end is not None
    if name == StatisticsTable.MESSAGES_PER_ORGANISATION_WEEK:
        return _messages_per_organisation_week(start, end)
    return _active_accounts_by_age_band(start, end)


def _on_boundary(at: dt.datetime, unit: str) -> bool:
    midnight = at.hour == at.minute == at.second == at.microsecond == 0
    return midnight and (at.weekday() == 0 if unit == "week" else at.day == 1)


def _left_out(column: Any) -> Any:
    """True for an account whose data may not feed statistics (RGT-4, RGT-5)."""
    restricted = ProcessingRestriction.select(ProcessingRestriction.account)
    objected = ProcessingObjection.select(ProcessingObjection.account).where(
        ProcessingObjection.ground == ObjectionGround.LEGITIMATE_INTEREST
    )
    return column.in_(restricted) | column.in_(objected)


def _rows(query: Any) -> Iterator[tuple[Any, ...]]:
    """Rows streamed from the cursor, not cached by peewee: tables may cover many rows."""
    return iter(query.tuples().iterator())


def _date(value: Any) -> dt.date:
    """SQLite answers DATE() with text, PostgreSQL with a date."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _days(start: dt.datetime, end: dt.datetime) -> Iterator[dt.date]:
    """Each calendar day that [start, end) touches."""
    day, last = start.date(), (end - dt.timedelta(microseconds=1)).date()
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


def _week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _month(day: dt.date) -> str:
    return f"{day.year}-{day.month:02d}"


def _band(age: int) -> str:
    label = AGE_BANDS[0][1]
    for lowest, name in AGE_BANDS:
        if age >= lowest:
            label = name
    return label


def _messages_per_organisation_week(start: dt.datetime, end: dt.datetime) -> Table:
    """Messages sent, by organisation and ISO week of sending. The weeks at either end of the
    range count only the days inside it. Content of erased authors (no account) counts."""
    day = fn.DATE(ContentItem.created_at)
    author = ContentItem.author_account
    query = (
        ContentItem.select(ContentItem.organisation, day, fn.COUNT(ContentItem.seq))
        .where(
            (ContentItem.kind == ContentKind.MESSAGE)
            & (ContentItem.created_at >= start)
            & (ContentItem.created_at < end)
            & (author.is_null() | ~_left_out(author))
        )
        .group_by(ContentItem.organisation, day)
    )
    counts: dict[tuple[str, str], int] = {}
    for organisation_id, on, n in _rows(query):
        key = (str(organisation_id), _week(_date(on)))
        counts[key] = counts.get(key, 0) + int(n)
    weeks = list(dict.fromkeys(_week(d) for d in _days(start, end)))
    organisations = sorted({row for row, _ in counts})
    return suppress(counts, rows=organisations, columns=weeks)


def _active_accounts_by_age_band(start: dt.datetime, end: dt.datetime) -> Table:
    """Accounts now in state active, by age band at ``end`` and by the month of their last
    activity, for those last active in the range. An account is counted once, in the month
    it was last seen: ChatPro keeps no history of activity, only its latest time."""
    day = fn.DATE(Account.last_active_at)
    query = (
        Account.select(Account.date_of_birth, day, fn.COUNT(Account.id))
        .where(
            (Account.state == AccountState.ACTIVE)
            & (Account.last_active_at >= start)
            & (Account.last_active_at < end)
            & ~_left_out(Account.id)
        )
        .group_by(Account.date_of_birth, day)
    )
    on_end = end.date()
    counts: dict[tuple[str, str], int] = {}
    for born, seen, n in _rows(query):
        key = (_band(age_on(_date(born), on_end)), _month(_date(seen)))
        counts[key] = counts.get(key, 0) + int(n)
    months = list(dict.fromkeys(_month(d) for d in _days(start, end)))
    return suppress(counts, rows=[label for _, label in AGE_BANDS], columns=months)


# -- suppression ------------------------------------------------------------------------------


def suppress(
    counts: Mapping[tuple[str, str], int],
    threshold: int = THRESHOLD,
    *,
    rows: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> Table:
    """Hide counts so that none under ``threshold`` is published and none hidden can be
    worked out from the rest.

    The table is read with its margins as one grid: row totals are a last column, column
    totals a last row, and the grand total (never published) is the corner, assumed known
    to a reader unless hidden. Missing cells are 0; ``rows`` and ``columns`` fix the labels
    and their order (default: those in ``counts``, sorted).

    1. Primary: every entry (cell, total, grand total) with 0 < count < threshold is hidden.
       True zeros are published: they count no one, and a hidden zero is the one hidden
       value a reader could pin down, since no count goes below it. A reader therefore knows
       that every hidden count is at least 1, and the rules below allow for that.
    2. Lines: while a row or column of the grid (with its total) holds exactly one hidden
       entry, which its total would give away, hide its smallest non-zero published entry.
    3. Cycles: every hidden entry must be a corner of a rectangle of hidden entries (i, j),
       (i, j2), (i2, j2), (i2, j) along which the counts can be moved by one, alternately up
       and down, with no hidden count going below 1. Such a move keeps every published
       figure and every sum, so another table fits all that is published and differs in
       that entry: neither subtraction nor the whole linear system, nor the knowledge that
       counts are whole and hidden ones at least 1, pins it down. An entry without one gets
       the cheapest rectangle (least count newly hidden) hidden in full. There always is
       one: a cell with its row total, column total and the grand total, all moved up.

    Hiding more never undoes steps 2 and 3 for entries already hidden, so one pass ends.
    """
    row_labels = list(rows) if rows is not None else sorted({r for r, _ in counts})
    column_labels = list(columns) if columns is not None else sorted({c for _, c in counts})
    row_at = {label: i for i, label in enumerate(row_labels)}
    column_at = {label: j for j, label in enumerate(column_labels)}
    if len(row_at) != len(row_labels) or len(column_at) != len(column_labels):
        raise ValueError("row and column labels must be distinct")
    if TOTAL in row_at or TOTAL in column_at:
        raise ValueError(f"{TOTAL!r} is the label of the totals")
    n, m = len(row_labels), len(column_labels)
    value = [[0] * (m + 1) for _ in range(n + 1)]
    for (row, column), count in counts.items():
        if row not in row_at or column not in column_at:
            raise ValueError(f"cell ({row!r}, {column!r}) is outside the labels given")
        if count < 0:
            raise ValueError("counts are never negative")
        value[row_at[row]][column_at[column]] += count
    for i in range(n):
        for j in range(m):
            value[i][m] += value[i][j]
            value[n][j] += value[i][j]
            value[n][m] += value[i][j]
    grid = _Grid(value, threshold)
    grid.primary()
    grid.lines()
    grid.cycles()

    def cell(i: int, j: int) -> Cell:
        hidden = grid.hidden[i][j]
        return Cell(
            row_labels[i] if i < n else TOTAL,
            column_labels[j] if j < m else TOTAL,
            0 if hidden else value[i][j],
            hidden,
        )

    return Table(
        cells=[cell(i, j) for i in range(n) for j in range(m)],
        row_totals=[cell(i, m) for i in range(n)],
        column_totals=[cell(n, j) for j in range(m)],
        threshold=threshold,
    )


class _Grid:
    """The table with its margins: rows 0..n-1 then the totals row n; likewise columns."""

    def __init__(self, value: list[list[int]], threshold: int) -> None:
        self.value = value
        self.threshold = threshold
        self.n, self.m = len(value) - 1, len(value[0]) - 1
        self.hidden = [[False] * (self.m + 1) for _ in range(self.n + 1)]
        self.in_row: list[set[int]] = [set() for _ in range(self.n + 1)]
        self.in_column: list[set[int]] = [set() for _ in range(self.m + 1)]

    def hide(self, i: int, j: int) -> None:
        assert self.value[i][j] > 0, "a zero is never hidden"
        self.hidden[i][j] = True
        self.in_row[i].add(j)
        self.in_column[j].add(i)

    def primary(self) -> None:
        for i, line in enumerate(self.value):
            for j, count in enumerate(line):
                if 0 < count < self.threshold:
                    self.hide(i, j)

    def lines(self) -> None:
        changed = True
        while changed:
            changed = False
            for i in range(self.n + 1):
                if len(self.in_row[i]) == 1:
                    changed |= self._hide_smallest([(i, j) for j in range(self.m + 1)])
            for j in range(self.m + 1):
                if len(self.in_column[j]) == 1:
                    changed |= self._hide_smallest([(i, j) for i in range(self.n + 1)])

    def _hide_smallest(self, line: list[tuple[int, int]]) -> bool:
        shown = [(self.value[i][j], i, j) for i, j in line if not self.hidden[i][j]]
        shown = [entry for entry in shown if entry[0] > 0]
        if not shown:  # cannot happen: the line's one hidden count is its others' sum
            return False
        _, i, j = min(shown)
        self.hide(i, j)
        return True

    def _rise(self, i: int, j: int) -> int:
        """+1 for a cell or the grand total, -1 for a row or column total: how the entry
        moves when the grid's signed sums (cells minus totals) move by +1 there."""
        return -1 if (i == self.n) != (j == self.m) else 1

    def _movable(self, i: int, j: int, i2: int, j2: int) -> bool:
        """Whether the rectangle's counts can move by one, one way or the other, with every
        count that goes down still at least 1."""
        corners = ((i, j, 1), (i, j2, -1), (i2, j2, 1), (i2, j, -1))
        for way in (1, -1):
            if all(
                self.value[a][b] >= 2 for a, b, sign in corners if way * sign * self._rise(a, b) < 0
            ):
                return True
        return False

    def _on_cycle(self, i: int, j: int) -> bool:
        for j2 in self.in_row[i]:
            for i2 in self.in_column[j]:
                if i2 != i and j2 != j and self.hidden[i2][j2] and self._movable(i, j, i2, j2):
                    return True
        return False

    def cycles(self) -> None:
        for i in range(self.n + 1):
            for j in range(self.m + 1):
                if self.hidden[i][j] and not self._on_cycle(i, j):
                    self._hide_rectangle(i, j)

    def _hide_rectangle(self, i: int, j: int) -> None:
        best: tuple[int, int, int, int] | None = None
        for i2 in range(self.n + 1):
            for j2 in range(self.m + 1):
                if i2 == i or j2 == j:
                    continue
                corners = ((i, j2), (i2, j2), (i2, j))
                if any(self.value[a][b] == 0 for a, b in corners):
                    continue
                new = [self.value[a][b] for a, b in corners if not self.hidden[a][b]]
                cost = (sum(new), len(new), i2, j2)
                if (best is None or cost < best) and self._movable(i, j, i2, j2):
                    best = cost
        assert best is not None, "a cell, its totals and the grand total always qualify"
        _, _, i2, j2 = best
        for a, b in ((i, j2), (i2, j2), (i2, j)):
            if not self.hidden[a][b]:
                self.hide(a, b)
