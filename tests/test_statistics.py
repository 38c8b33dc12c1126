"""Anonymised statistics (RET-3): no count under the threshold is published, and no hidden
count can be worked out from the published ones, by subtraction or by solving the table's
equations. Also: who may ask, the range, and that restricted and objecting people (RGT-4,
RGT-5) are left out."""

from __future__ import annotations

import datetime as dt
import uuid
from fractions import Fraction

import pytest
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.errors import InvalidArgument, PermissionDenied
from chatpro_privacy.domain.kernel.principals import Principal, PrincipalKind, Role
from chatpro_privacy.domain.retention import statistics
from chatpro_privacy.domain.retention.statistics import TOTAL, Table, suppress
from chatpro_privacy.storage.models import Account, ProcessingObjection
from helpers import Api, restriction_row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orgs import build_org, conversation, send

Key = tuple[str, str]
GRAND = (TOTAL, TOTAL)

# -- the published table, read back as a grid with its margins ---------------------------------


def _truth(counts: dict[Key, int], rows: list[str], columns: list[str]) -> dict[Key, int]:
    """Every entry of the grid: cells, row totals, column totals and the grand total."""
    full = {(r, c): counts.get((r, c), 0) for r in rows for c in columns}
    for r in rows:
        full[(r, TOTAL)] = sum(full[(r, c)] for c in columns)
    for c in columns:
        full[(TOTAL, c)] = sum(full[(r, c)] for r in rows)
    full[GRAND] = sum(full[(r, TOTAL)] for r in rows)
    return full


def _published(result: Table) -> tuple[dict[Key, int], set[Key]]:
    """What a reader sees: the published counts, and which entries are hidden. The grand
    total is not published, so it counts as hidden."""
    shown: dict[Key, int] = {}
    hidden: set[Key] = {GRAND}
    for cell in [*result.cells, *result.row_totals, *result.column_totals]:
        if cell.suppressed:
            assert cell.count == 0
            hidden.add((cell.row, cell.column))
        else:
            shown[(cell.row, cell.column)] = cell.count
    return shown, hidden


def _lines(rows: list[str], columns: list[str]) -> list[list[Key]]:
    """Each row with its total, and each column with its total."""
    return [[(r, c) for c in [*columns, TOTAL]] for r in rows] + [
        [(r, c) for r in [*rows, TOTAL]] for c in columns
    ]


def _determined(
    rows: list[str], columns: list[str], shown: dict[Key, int], hidden: set[Key]
) -> set[Key]:
    """The hidden entries a reader can compute exactly from the published ones by linear
    algebra: e_k lies in the row space of the equations restricted to the unknowns."""
    unknowns = sorted(hidden)
    at = {key: k for k, key in enumerate(unknowns)}
    equations: list[list[Fraction]] = []
    margins = [[(r, TOTAL) for r in rows] + [GRAND], [(TOTAL, c) for c in columns] + [GRAND]]
    for line in [*_lines(rows, columns), *margins]:
        # Each line: the entries before its total add up to the total.
        coefficients = [Fraction(0)] * len(unknowns)
        for key in line[:-1]:
            if key in at:
                coefficients[at[key]] += 1
        if line[-1] in at:
            coefficients[at[line[-1]]] -= 1
        equations.append(coefficients)
    # Reduced row echelon form over the rationals.
    pivots: list[tuple[int, list[Fraction]]] = []
    for equation in equations:
        vector = list(equation)
        for column, row in pivots:
            if vector[column]:
                factor = vector[column]
                vector = [a - factor * b for a, b in zip(vector, row, strict=True)]
        lead = next((k for k, a in enumerate(vector) if a), None)
        if lead is None:
            continue
        vector = [a / vector[lead] for a in vector]
        pivots = [
            (column, [a - row[lead] * b for a, b in zip(row, vector, strict=True)])
            for column, row in pivots
        ]
        pivots.append((lead, vector))
    found = set()
    for key, k in at.items():
        unit = [Fraction(int(i == k)) for i in range(len(unknowns))]
        for column, row in pivots:
            if unit[column]:
                factor = unit[column]
                unit = [a - factor * b for a, b in zip(unit, row, strict=True)]
        if not any(unit):
            found.add(key)
    return found


def _another_table(
    rows: list[str],
    columns: list[str],
    truth: dict[Key, int],
    shown: dict[Key, int],
    hidden: set[Key],
    target: Key,
) -> dict[Key, int] | None:
    """A different table that a reader cannot tell from the true one: whole numbers that
    add up, the same published counts, every hidden count still at least 1 (zeros are
    published, so a reader knows hidden ones are not zero), and ``target`` changed. Found by
    moving counts by one around a rectangle of hidden entries; checked from scratch."""
    r0, c0 = target
    all_rows, all_columns = [*rows, TOTAL], [*columns, TOTAL]
    for r1 in all_rows:
        for c1 in all_columns:
            if r1 == r0 or c1 == c0:
                continue
            corners = [(r0, c0), (r0, c1), (r1, c1), (r1, c0)]
            if any(corner not in hidden for corner in corners):
                continue
            for way in (1, -1):
                # In the grid with totals negated every row and column sums to zero, so
                # +1, -1, +1, -1 around a rectangle keeps every sum.
                other = dict(truth)
                for corner, sign in zip(corners, (1, -1, 1, -1), strict=True):
                    margin = (corner[0] == TOTAL) != (corner[1] == TOTAL)
                    other[corner] += way * sign * (-1 if margin else 1)
                if _fits(rows, columns, other, shown, hidden) and other[target] != truth[target]:
                    return other
    return None


def _fits(
    rows: list[str],
    columns: list[str],
    table: dict[Key, int],
    shown: dict[Key, int],
    hidden: set[Key],
) -> bool:
    return (
        all(table[(r, TOTAL)] == sum(table[(r, c)] for c in columns) for r in rows)
        and all(table[(TOTAL, c)] == sum(table[(r, c)] for r in rows) for c in columns)
        and table[GRAND] == sum(table[(r, TOTAL)] for r in rows)
        and all(table[key] == count for key, count in shown.items())
        and all(table[key] >= 1 for key in hidden)
    )


# -- properties of suppress -------------------------------------------------------------------


@st.composite
def tables(draw: st.DrawFn) -> tuple[dict[Key, int], int]:
    rows = draw(st.integers(1, 5))
    columns = draw(st.integers(1, 5))
    # Mostly small counts and ones, the hard cases, with some large and some zeros.
    count = st.one_of(st.integers(0, 3), st.integers(0, 12), st.integers(10, 60))
    counts = {(f"r{i}", f"c{j}"): draw(count) for i in range(rows) for j in range(columns)}
    threshold = draw(st.sampled_from([statistics.THRESHOLD, statistics.THRESHOLD, 2, 5]))
    return counts, threshold


PROPERTY = settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY
@given(tables())
def test_published_counts_are_true_and_never_small(case: tuple[dict[Key, int], int]) -> None:
    counts, threshold = case
    result = suppress(counts, threshold)
    rows, columns = sorted({r for r, _ in counts}), sorted({c for _, c in counts})
    truth = _truth(counts, rows, columns)
    assert [(c.row, c.column) for c in result.cells] == [(r, c) for r in rows for c in columns]
    assert [c.row for c in result.row_totals] == rows
    assert [c.column for c in result.column_totals] == columns
    assert result.threshold == threshold
    shown, hidden = _published(result)
    for key, count in shown.items():
        assert count == truth[key]
        assert count == 0 or count >= threshold, f"{key} published as {count}"
    for key in hidden - {GRAND}:
        assert truth[key] > 0, f"the true zero {key} was hidden"


@PROPERTY
@given(tables())
def test_no_line_has_exactly_one_hidden_count(case: tuple[dict[Key, int], int]) -> None:
    counts, threshold = case
    result = suppress(counts, threshold)
    rows, columns = sorted({r for r, _ in counts}), sorted({c for _, c in counts})
    _, hidden = _published(result)
    for line in _lines(rows, columns):
        assert sum(key in hidden for key in line) != 1, f"recoverable by subtraction: {line}"
    # The grand total is known to a reader when all row (or column) totals are published;
    # then the other margin must not hide exactly one total either.
    row_totals = [(r, TOTAL) for r in rows]
    column_totals = [(TOTAL, c) for c in columns]
    if not any(key in hidden for key in row_totals):
        assert sum(key in hidden for key in column_totals) != 1
    if not any(key in hidden for key in column_totals):
        assert sum(key in hidden for key in row_totals) != 1


@PROPERTY
@given(tables())
def test_no_hidden_count_follows_from_the_equations(case: tuple[dict[Key, int], int]) -> None:
    counts, threshold = case
    result = suppress(counts, threshold)
    rows, columns = sorted({r for r, _ in counts}), sorted({c for _, c in counts})
    shown, hidden = _published(result)
    assert _determined(rows, columns, shown, hidden) & (hidden - {GRAND}) == set()


@PROPERTY
@given(tables())
def test_every_hidden_count_has_another_table_that_fits(
    case: tuple[dict[Key, int], int],
) -> None:
    counts, threshold = case
    result = suppress(counts, threshold)
    rows, columns = sorted({r for r, _ in counts}), sorted({c for _, c in counts})
    truth = _truth(counts, rows, columns)
    shown, hidden = _published(result)
    for key in sorted(hidden - {GRAND}):
        other = _another_table(rows, columns, truth, shown, hidden, key)
        assert other is not None, f"{key} = {truth[key]} is pinned down"


def test_determined_finds_a_lone_hidden_cell() -> None:
    """The checker itself: one hidden cell under a published total is found."""
    rows, columns = ["a"], ["x", "y"]
    shown = {("a", "x"): 12, ("a", TOTAL): 15, (TOTAL, "x"): 12, (TOTAL, "y"): 3}
    assert _determined(rows, columns, shown, {("a", "y"), GRAND}) == {("a", "y"), GRAND}


def test_a_small_cell_takes_its_rectangle_with_it() -> None:
    result = suppress({("a", "w1"): 12, ("a", "w2"): 3, ("b", "w1"): 15, ("b", "w2"): 20})
    assert [c.suppressed for c in result.cells] == [True, True, True, True]
    assert [(c.count, c.suppressed) for c in result.row_totals] == [(15, False), (35, False)]
    assert [(c.count, c.suppressed) for c in result.column_totals] == [(27, False), (23, False)]


def test_two_hidden_ones_in_a_line_are_not_enough() -> None:
    """Row a hides 1 and 1 next to a published 20 under a published total of 22: two hidden
    counts that add up to 2, each at least 1, are both 1. More must go."""
    counts = {
        ("a", "x"): 1, ("a", "y"): 1, ("a", "z"): 20,
        ("b", "x"): 30, ("b", "y"): 30, ("b", "z"): 30,
    }  # fmt: skip
    result = suppress(counts)
    rows, columns = ["a", "b"], ["x", "y", "z"]
    shown, hidden = _published(result)
    truth = _truth(counts, rows, columns)
    for key in hidden - {GRAND}:
        assert _another_table(rows, columns, truth, shown, hidden, key) is not None
    row_a = [("a", "x"), ("a", "y"), ("a", "z"), ("a", TOTAL)]
    hidden_in_a = [key for key in row_a if key in hidden]
    assert sum(truth[key] for key in hidden_in_a) > len(hidden_in_a)


def test_a_hidden_cell_bridging_two_blocks_is_protected() -> None:
    """Two blocks of hidden 5s joined by one hidden 5 at (r1, c3): every line hides two or
    more, yet rows r1 and r2 less columns c1 and c2 give the bridge exactly. Counting hidden
    entries per line is not enough; every hidden entry must lie on a cycle of hidden ones."""
    rows, columns = ["r1", "r2", "r3", "r4"], ["c1", "c2", "c3", "c4"]
    small = {("r1", "c1"), ("r1", "c2"), ("r2", "c1"), ("r2", "c2")}
    small |= {("r3", "c3"), ("r3", "c4"), ("r4", "c3"), ("r4", "c4"), ("r1", "c3")}
    counts = {(r, c): 5 if (r, c) in small else 50 for r in rows for c in columns}
    truth = _truth(counts, rows, columns)
    shown = {key: count for key, count in truth.items() if key not in small and key != GRAND}
    for line in _lines(rows, columns):
        assert sum(key in small for key in line) != 1
    assert ("r1", "c3") in _determined(rows, columns, shown, small | {GRAND})

    result = suppress(counts)
    shown, hidden = _published(result)
    assert small <= hidden
    assert _determined(rows, columns, shown, hidden) & (hidden - {GRAND}) == set()


def test_zeros_are_published_and_labels_keep_the_order_given() -> None:
    result = suppress({("y", "m1"): 0, ("x", "m1"): 25}, rows=["y", "x"], columns=["m1", "m2"])
    assert [(c.row, c.column, c.count, c.suppressed) for c in result.cells] == [
        ("y", "m1", 0, False),
        ("y", "m2", 0, False),
        ("x", "m1", 25, False),
        ("x", "m2", 0, False),
    ]


def test_empty_and_bad_input() -> None:
    empty = suppress({}, columns=["2026-W01"])
    assert empty.cells == [] and empty.row_totals == []
    assert [(c.count, c.suppressed) for c in empty.column_totals] == [(0, False)]
    with pytest.raises(ValueError):
        suppress({("total", "x"): 3})
    with pytest.raises(ValueError):
        suppress({("a", "x"): -1})


def test_a_large_table_is_quick() -> None:
    counts = {
        (f"o{i:03d}", f"w{j:02d}"): (i * 7 + j * 3) % 14 for i in range(300) for j in range(53)
    }
    result = suppress(counts)
    assert any(c.suppressed for c in result.cells)
    assert all(c.count == 0 or c.count >= 10 for c in result.cells)


# -- who may ask, and the range ---------------------------------------------------------------


def _person(*roles: Role) -> Principal:
    return Principal(
        PrincipalKind.PERSON, account_id="acc", subject_ref="subj", roles=frozenset(roles)
    )


START = dt.datetime(2025, 1, 1)
END = dt.datetime(2025, 3, 1)
MONDAY = dt.datetime(2024, 12, 30)
WEEK = dt.timedelta(days=7)


@pytest.mark.parametrize(
    "principal",
    [
        _person(),
        Principal(PrincipalKind.SERVICE, service_name="notifications"),
        Principal(PrincipalKind.GUARDIAN, account_id="acc", subject_ref="subj"),
        Principal(PrincipalKind.ANONYMOUS),
    ],
)
def test_only_privacy_staff_may_ask(principal: Principal) -> None:
    with pytest.raises(PermissionDenied):
        statistics.table(
            principal, statistics.StatisticsTable.ACTIVE_ACCOUNTS_BY_AGE_BAND, START, END
        )


@pytest.mark.parametrize(
    ("name", "start", "end", "fields"),
    [
        ("", START, END, {"table"}),
        ("people_by_postcode", START, END, {"table"}),
        (
            statistics.StatisticsTable.MESSAGES_PER_ORGANISATION_WEEK,
            None,
            None,
            {"start_time", "end_time"},
        ),
        (
            statistics.StatisticsTable.MESSAGES_PER_ORGANISATION_WEEK,
            MONDAY + WEEK,
            MONDAY,
            {"end_time"},
        ),
        (statistics.StatisticsTable.MESSAGES_PER_ORGANISATION_WEEK, MONDAY, MONDAY, {"end_time"}),
        (
            statistics.StatisticsTable.MESSAGES_PER_ORGANISATION_WEEK,
            MONDAY,
            MONDAY + 53 * WEEK,
            {"end_time"},
        ),
        # Ranges fall on whole weeks and months, so that no two differ by one person.
        (
            statistics.StatisticsTable.MESSAGES_PER_ORGANISATION_WEEK,
            START,
            MONDAY + WEEK,
            {"start_time"},
        ),
        (
            statistics.StatisticsTable.ACTIVE_ACCOUNTS_BY_AGE_BAND,
            START,
            END - dt.timedelta(hours=1),
            {"end_time"},
        ),
    ],
)
def test_the_range_is_checked(
    name: str, start: dt.datetime | None, end: dt.datetime | None, fields: set[str]
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        statistics.table(_person(Role.OPERATOR), name, start, end)
    assert {v.field for v in caught.value.violations} == fields


# -- through the models -----------------------------------------------------------------------


def _account(born: dt.date, last_active: dt.datetime, state: str = "active") -> str:
    account_id = str(uuid.uuid4())
    Account.create(
        id=account_id,
        subject_ref=f"s-{account_id}",
        username=account_id[:20],
        username_key=f"u-{account_id}",
        email=f"{account_id}@example.com",
        email_key=f"e-{account_id}",
        name="Someone",
        date_of_birth=born,
        password_hash="x",
        state=state,
        created_at=last_active,
        last_active_at=last_active,
    )
    return account_id


def _restrict(account_id: str) -> None:
    restriction_row(account_id, "accuracy", created_at=START)


def _object(account_id: str, ground: str) -> None:
    ProcessingObjection.create(
        account=account_id, ground=ground, rights_request_id="r", created_at=START
    )


def test_active_accounts_by_age_band(api: Api) -> None:
    adult, child = dt.date(1994, 6, 1), dt.date(2010, 6, 1)  # 30 and 14 on 1 March 2025
    january = dt.datetime(2025, 1, 20, 12)
    for _ in range(12):
        _account(adult, january)
    for _ in range(3):
        _account(child, january)
    _account(adult, january, state="pending_guardian_consent")
    _restrict(_account(adult, january))
    _object(_account(adult, january), "legitimate_interest")
    _object(_account(adult, january), "direct_marketing")  # statistics are not marketing
    _account(adult, END)  # last active after the range
    result = statistics.table(
        _person(Role.DATA_PRIVACY_MANAGER),
        statistics.StatisticsTable.ACTIVE_ACCOUNTS_BY_AGE_BAND,
        START,
        END,
    )
    bands = [label for _, label in statistics.AGE_BANDS]
    assert [c.row for c in result.row_totals] == bands
    assert [c.column for c in result.column_totals] == ["2025-01", "2025-02"]
    # 13 adults (12 + the one who objected to marketing only) and 3 children in January.
    assert [(c.count, c.suppressed) for c in result.column_totals] == [(16, False), (0, False)]
    shown = {(c.row, c.column): c for c in result.cells}
    assert shown[("13-15", "2025-01")].suppressed
    # With the children hidden, the adults' count would give them away: it is hidden too.
    assert shown[("25-34", "2025-01")].suppressed
    assert all(
        c.count == 0 and not c.suppressed
        for c in result.cells
        if c.row not in ("13-15", "25-34") or c.column == "2025-02"
    )


def test_messages_per_organisation_week(api: Api) -> None:
    a = build_org(api, "a", members=("pupil1", "pupil2", "pupil3"))
    b = build_org(api, "b", members=("pupil1",))
    talk_a = conversation(api, a.admin, a.organisation_id, list(a.members.values()))
    talk_b = conversation(api, b.admin, b.organisation_id, list(b.members.values()))
    for n in range(12):
        send(api, a.members["pupil1"], talk_a, f"hello {n}")
    for n in range(3):
        send(api, a.members["pupil2"], talk_a, f"hi {n}")
    for n in range(5):
        send(api, a.members["pupil3"], talk_a, f"restricted {n}")
    for n in range(6):
        send(api, a.admin, talk_a, f"objected {n}")
    for n in range(4):
        send(api, b.members["pupil1"], talk_b, f"few {n}")
    _restrict(a.members["pupil3"].account_id)
    _object(a.admin.account_id, "legitimate_interest")

    today = clock.today()
    monday = dt.datetime.combine(today - dt.timedelta(days=today.weekday()), dt.time())
    week = f"{today.isocalendar()[0]}-W{today.isocalendar()[1]:02d}"
    operator = _person(Role.OPERATOR)
    name = statistics.StatisticsTable.MESSAGES_PER_ORGANISATION_WEEK
    result = statistics.table(operator, name, monday, monday + dt.timedelta(days=7))
    # 15 messages in a (the restricted member's and the objector's left out), 4 in b.
    assert sorted(c.row for c in result.row_totals) == sorted(
        [a.organisation_id, b.organisation_id]
    )
    assert [(c.column, c.count, c.suppressed) for c in result.column_totals] == [(week, 19, False)]
    assert all(c.suppressed for c in result.cells)  # b's 4, and a's 15 that would give it away
    assert all(c.suppressed for c in result.row_totals)

    # A range before the messages: no organisations, and the week's total is a true zero.
    earlier = statistics.table(operator, name, monday - dt.timedelta(days=7), monday)
    assert earlier.cells == []
    assert [(c.count, c.suppressed) for c in earlier.column_totals] == [(0, False)]
