"""The figures an operator watches, read from the database for the metrics endpoint:
how far behind each outbox consumer is (ACC-10), where the open rights requests stand
against their due dates (RGT-8), how close each open breach is to the regulator's 72-hour
deadline (SEC-4), and how far the content sweep's cursors have come (RET-1).

Counts only, no identifiers: the metrics endpoint is for operators' dashboards and alerts,
which must not become another copy of personal data.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import peewee as pw

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.vocabulary import RequestState
from chatpro_privacy.storage.models import (
    Breach,
    OutboxConsumer,
    OutboxEvent,
    RightsRequest,
    SweepCursor,
)
from chatpro_privacy.storage.queries import tuples

OPEN_REQUEST_STATES = (
    RequestState.RECEIVED,
    RequestState.IDENTITY_VERIFICATION,
    RequestState.IN_PROGRESS,
    RequestState.AWAITING_ORGANISATION,
)
# Days left until a request's due date: (label, lowest day count in the bucket).
DUE_BUCKETS = (("overdue", None), ("0-7", 0), ("8-14", 8), ("15-30", 15), ("31+", 31))
# Hours left until an open breach's regulator deadline; "notified" once the regulator has been.
DEADLINE_BUCKETS = (("overdue", None), ("0-12", 0), ("12-24", 12), ("24-48", 24), ("48+", 48))
NOTIFIED = "notified"


@dataclass(frozen=True)
class OutboxLag:
    consumer: str
    events_behind: int
    oldest_unacknowledged_seconds: float  # 0 when it has everything


@dataclass(frozen=True)
class Figures:
    outbox: list[OutboxLag] = field(default_factory=list)
    rights_requests: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, due)
    breaches_open: dict[str, int] = field(default_factory=dict)  # hours-to-deadline bucket
    sweep_cursors: dict[str, int] = field(default_factory=dict)  # cursor name -> position


def _bucket(value: float, buckets: tuple[tuple[str, int | None], ...]) -> str:
    label = buckets[0][0]
    for name, lowest in buckets:
        if lowest is None:
            if value < 0:
                return name
            continue
        if value >= lowest:
            label = name
    return label


def outbox_lag(now: dt.datetime) -> list[OutboxLag]:
    """Each consumer's unacknowledged events and the age of the oldest of them."""
    latest = OutboxEvent.select(pw.fn.MAX(OutboxEvent.seq)).scalar() or 0
    lags = []
    for consumer in OutboxConsumer.select().order_by(OutboxConsumer.name):
        oldest = (
            OutboxEvent.select(OutboxEvent.created_at)
            .where(OutboxEvent.seq > consumer.acked_seq)
            .order_by(OutboxEvent.seq)
            .limit(1)
            .scalar()
        )
        waited = (now - oldest).total_seconds() if oldest is not None else 0.0
        lags.append(OutboxLag(consumer.name, max(0, latest - consumer.acked_seq), waited))
    return lags


def rights_requests(today: dt.date) -> dict[tuple[str, str], int]:
    """Open requests by state and days to their due date; every pair present, zeros too."""
    counts: Counter[tuple[str, str]] = Counter(
        {(state.value, label): 0 for state in OPEN_REQUEST_STATES for label, _ in DUE_BUCKETS}
    )
    rows = tuples(
        RightsRequest.select(RightsRequest.state, RightsRequest.due_date, pw.fn.COUNT(1))
        .where(RightsRequest.state.in_([s.value for s in OPEN_REQUEST_STATES]))
        .group_by(RightsRequest.state, RightsRequest.due_date)
    )
    for state, due, count in rows:
        due_date = due if isinstance(due, dt.date) else dt.date.fromisoformat(str(due))
        counts[(state, _bucket((due_date - today).days, DUE_BUCKETS))] += count
    return dict(counts)


def breaches_open(now: dt.datetime) -> dict[str, int]:
    """Open breaches by hours left to the regulator's deadline (SEC-4)."""
    counts: Counter[str] = Counter({label: 0 for label, _ in DEADLINE_BUCKETS} | {NOTIFIED: 0})
    rows = Breach.select(Breach.deadline_at, Breach.regulator_notified_at).where(
        Breach.closed_at.is_null()
    )
    for breach in rows:
        if breach.regulator_notified_at is not None:
            counts[NOTIFIED] += 1
            continue
        hours = (breach.deadline_at - now).total_seconds() / 3600
        counts[_bucket(hours, DEADLINE_BUCKETS)] += 1
    return dict(counts)


def sweep_cursors() -> dict[str, int]:
    """How far each of the sweep's resumable cursors has come (leases have no position)."""
    return {
        row.name: int(row.position)
        for row in SweepCursor.select(SweepCursor.name, SweepCursor.position)
        if not row.name.startswith("job:")
    }


def read() -> Figures:
    now = clock.now()
    return Figures(
        outbox_lag(now), rights_requests(now.date()), breaches_open(now), sweep_cursors()
    )
