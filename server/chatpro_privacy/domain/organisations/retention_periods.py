"""How long each item of content is kept (RET-1, PLG-1, CON-5).

An item is kept for the period in force when it was created: the organisation's plugin
decides it (12 months by default), never beyond what the organisation's statement
announced at that time. A statement announcing a longer period covers only content created
after it takes effect; a shorter one applies to everything. Periods are calendar months in
UTC: an item created on the 31st of a month whose expiry month has no 31st is kept until
that month ends.

From the moment it expires an item is served by no RPC (``served``), exports included;
the sweep then deletes it (``expired``). Both are the same condition, computed for one
instant, so nothing is ever served that the sweep may already have taken.
"""

from __future__ import annotations

import calendar
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.organisations import memberships
from chatpro_privacy.domain.organisations.statements import longer_since
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import DEFAULT_RETENTION_MONTHS, ContentKind
from chatpro_privacy.storage.models import ContentItem, OrganisationStatement
from chatpro_privacy.storage.queries import statements_in_effect

# Plugins' answers are reused this long; publishing a statement or changing a plugin clears
# them at once (PluginHost.invalidate).
CACHE_SECONDS = 30.0


def _shift(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + months
    return index // 12, index % 12 + 1


def expiry(created: dt.datetime, months: int) -> dt.datetime:
    """The instant an item created at ``created`` stops being kept."""
    year, month = _shift(created.year, created.month, months)
    if created.day <= calendar.monthrange(year, month)[1]:
        return created.replace(year=year, month=month)
    next_year, next_month = _shift(year, month, 1)
    return dt.datetime(next_year, next_month, 1)


def _served_from(now: dt.datetime, months: int) -> tuple[dt.datetime, bool]:
    """(t, strict): an item is still kept at ``now`` iff created after t (or at t, when not
    strict). The inverse of ``expiry``, which never decreases as ``created`` grows."""
    year, month = _shift(now.year, now.month, -months)
    if now.day <= calendar.monthrange(year, month)[1]:
        return now.replace(year=year, month=month), True
    next_year, next_month = _shift(year, month, 1)  # every day of that month has expired
    return dt.datetime(next_year, next_month, 1), False


def months_passed(column: Any, months: int, now: dt.datetime) -> Any:
    """A condition: at least ``months`` calendar months have passed since ``column``."""
    threshold, strict = _served_from(now, months)
    return column <= threshold if strict else column < threshold


@dataclass(frozen=True)
class Segment:
    """Content created in [start, end) is kept ``months``."""

    start: dt.datetime | None
    end: dt.datetime | None
    months: int


# A statement as the periods need it: (effective at, months announced per kind).
Announced = tuple[dt.datetime, dict[str, int]]


def announced(organisation_id: str) -> list[Announced]:
    """Every statement the organisation published, those not yet in effect included,
    oldest first."""
    return [
        (s.effective_at, dict(s.retention_months))
        for s in statements_in_effect(
            organisation_id,
            dt.datetime.max,
            OrganisationStatement.effective_at,
            OrganisationStatement.retention_months,
        )
    ]


def segments(
    organisation_id: str,
    kind: ContentKind,
    months_now: int,
    statements: list[Announced] | None = None,
) -> list[Segment]:
    """The periods content of ``kind`` was created under, oldest first."""
    now = clock.now()
    published = announced(organisation_id) if statements is None else statements
    bounds: list[tuple[dt.datetime | None, int]] = [(None, DEFAULT_RETENTION_MONTHS)]
    for effective_at, periods in published:
        if effective_at <= now:
            bounds.append((effective_at, int(periods.get(kind, DEFAULT_RETENTION_MONTHS))))
    found: list[Segment] = []
    for i, (start, announced_months) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else None
        months = min(months_now, max(DEFAULT_RETENTION_MONTHS, announced_months))
        if found and found[-1].months == months:
            found[-1] = Segment(found[-1].start, end, months)
        else:
            found.append(Segment(start, end, months))
    return found


def _kept(segment: Segment, now: dt.datetime) -> Any:
    threshold, strict = _served_from(now, segment.months)
    created = ContentItem.created_at
    condition = created > threshold if strict else created >= threshold
    if segment.start is not None:
        condition &= created >= segment.start
    if segment.end is not None:
        condition &= created < segment.end
    return condition


class Window(NamedTuple):
    """Content created in [start, end) is kept at an instant iff created after ``since``
    (or at it, when not ``strict``)."""

    since: dt.datetime
    strict: bool
    start: dt.datetime | None
    end: dt.datetime | None


def windows(schedule: list[Segment], now: dt.datetime) -> list[Window]:
    """``served_under`` as plain values, for hand-written SQL on hot paths."""
    return [Window(*_served_from(now, s.months), s.start, s.end) for s in schedule]


def served_under(schedule: list[Segment], now: dt.datetime) -> Any:
    """A condition on ContentItem: kept at ``now`` under ``schedule`` (kind aside)."""
    condition: Any = None
    for segment in schedule:
        part = _kept(segment, now)
        condition = part if condition is None else condition | part
    return condition


class Retention:
    """Each organisation's periods, as its plugins decide them, and the conditions that
    follow from them."""

    def __init__(self, host: PluginHost) -> None:
        self.host = host
        self._months: dict[tuple[str, str, int], tuple[float, int]] = {}
        self._statements: dict[tuple[str, int], tuple[float, list[Announced]]] = {}

    async def months(self, organisation_id: str, kind: ContentKind) -> int:
        key = (organisation_id, kind, self.host.generation(organisation_id))
        cached = self._months.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        months, _ = await self.host.retention(organisation_id, kind)
        if len(self._months) > 10_000:
            self._months.clear()
        self._months[key] = (time.monotonic(), months)
        return months

    def _announced(self, organisation_id: str) -> list[Announced]:
        """The organisation's statements, reused as the plugin's answers are: every message
        listed needs them, and publishing one clears them (PluginHost.invalidate). Which
        are in effect is decided at each use, so one taking effect counts at once."""
        key = (organisation_id, self.host.generation(organisation_id))
        cached = self._statements.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        found = announced(organisation_id)
        if len(self._statements) > 10_000:
            self._statements.clear()
        self._statements[key] = (time.monotonic(), found)
        return found

    async def schedule(self, organisation_id: str, kind: ContentKind) -> list[Segment]:
        months = await self.months(organisation_id, kind)
        return segments(organisation_id, kind, months, self._announced(organisation_id))

    async def kept(self, organisation_id: str, kind: ContentKind) -> list[Window]:
        """``served`` for one kind, now, as plain values."""
        return windows(await self.schedule(organisation_id, kind), clock.now())

    async def served(
        self,
        organisation_id: str,
        kinds: tuple[ContentKind, ...] = tuple(ContentKind),
        now: dt.datetime | None = None,
    ) -> Any:
        """A condition on ContentItem: still kept at ``now`` (RET-1)."""
        at = now or clock.now()
        condition: Any = None
        for kind in kinds:
            part = (ContentItem.kind == kind) & served_under(
                await self.schedule(organisation_id, kind), at
            )
            condition = part if condition is None else condition | part
        return condition

    async def expired(self, organisation_id: str, now: dt.datetime | None = None) -> Any:
        """A condition on ContentItem: past its period at ``now``."""
        return ~(await self.served(organisation_id, tuple(ContentKind), now))


@dataclass(frozen=True)
class RetentionDecision:
    kind: ContentKind
    months: int
    decided_by: str
    applies_to_content_after: dt.datetime | None = None


async def retention_policy(
    principal: Principal, host: PluginHost, organisation_id: str
) -> list[RetentionDecision]:
    """Each kind of content's period, as the organisation's plugins decide within what its
    statement announces. Reading it calls the organisation's plugins, so it is not public."""
    org = memberships.require_manager(principal, organisation_id)
    decisions = []
    for kind in ContentKind:
        months, plugin = await host.retention(org.id, kind)
        decisions.append(
            RetentionDecision(kind, months, plugin, longer_since(org.id, kind, months))
        )
    return decisions
