"""The database figures behind the metrics (see ``metrics.py``): read on a background
worker every ``metrics_refresh_seconds`` and published as gauges."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from chatpro_privacy.domain.records import operational_figures
from chatpro_privacy.domain.records.operational_figures import Figures
from chatpro_privacy.observability import metrics
from chatpro_privacy.observability.metrics import replace_series

__all__ = ["Figures", "publish", "refresh_forever"]

log = structlog.get_logger("chatpro_privacy.metrics")


def publish(figures: Figures) -> None:
    """Set the gauges to what ``operational_figures.read`` found."""
    replace_series(
        metrics.OUTBOX_LAG_EVENTS, {(lag.consumer,): lag.events_behind for lag in figures.outbox}
    )
    replace_series(
        metrics.OUTBOX_LAG_SECONDS,
        {(lag.consumer,): lag.oldest_unacknowledged_seconds for lag in figures.outbox},
    )
    replace_series(
        metrics.RIGHTS_REQUESTS, {key: count for key, count in figures.rights_requests.items()}
    )
    replace_series(
        metrics.BREACHES_OPEN, {(key,): count for key, count in figures.breaches_open.items()}
    )
    replace_series(
        metrics.SWEEP_CURSOR, {(name,): pos for name, pos in figures.sweep_cursors.items()}
    )
    metrics.FIGURES_REFRESHED.set_to_current_time()


async def refresh_forever(
    run: Callable[[Callable[[], Figures]], Awaitable[Figures]], interval: float
) -> None:
    """Read and publish the figures now and every ``interval`` seconds; ``run`` runs the
    read where a database connection is (a background worker). A failed read keeps the
    last figures (``figures_refreshed_timestamp_seconds`` shows how old they are)."""
    while True:
        try:
            publish(await run(operational_figures.read))
        except Exception:
            log.warning("metrics figures not read", exc_info=True)
        await asyncio.sleep(interval)
