"""Prometheus metrics, served on a port of their own when ``metrics_address`` is set.

Counters and histograms move as things happen (calls at the edge, plugin calls and faults,
sweep rounds); the figures that live in the database (outbox lag, rights requests against
their due dates, breaches against their deadline, the sweep's cursors) are read every
``metrics_refresh_seconds`` on a background worker, never on the scrape's thread, so a
scrape costs no query and a slow database cannot stall it.

The metric objects are module-level, as Prometheus clients expect, in a registry of the
service's own (no process or platform collectors from elsewhere). This module imports
nothing of the service, so any layer may report to it; ``figures.py`` reads the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
_NS = "chatpro_privacy"

CALLS = Counter(
    "calls", "RPCs answered, by method and the status code the client got",
    ["method", "code"], namespace=_NS, registry=REGISTRY,
)  # fmt: skip
CALL_SECONDS = Histogram(
    "call_duration_seconds", "Time from a call's arrival to its answer, by method",
    ["method"], namespace=_NS, registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip
POOL_SIZE = Gauge(
    "database_pool_size", "Call workers, each with a database connection of its own",
    namespace=_NS, registry=REGISTRY,
)  # fmt: skip
POOL_IN_USE = Gauge(
    "database_pool_in_use", "Call workers (connections) held by a call now",
    namespace=_NS, registry=REGISTRY,
)  # fmt: skip
POOL_WAITING = Gauge(
    "database_pool_waiting", "Calls waiting for a free call worker now",
    namespace=_NS, registry=REGISTRY,
)  # fmt: skip
PLUGIN_CALLS = Counter(
    "plugin_calls", "Hook calls into an organisation's plugins",
    ["organisation_id", "hook"], namespace=_NS, registry=REGISTRY,
)  # fmt: skip
PLUGIN_FAULTS = Counter(
    "plugin_faults", "Plugin faults (raised, timed out, bad answer...) per organisation",
    ["organisation_id", "plugin", "kind"], namespace=_NS, registry=REGISTRY,
)  # fmt: skip
OUTBOX_LAG_EVENTS = Gauge(
    "outbox_lag_events", "Outbox events a consumer has not acknowledged",
    ["consumer"], namespace=_NS, registry=REGISTRY,
)  # fmt: skip
OUTBOX_LAG_SECONDS = Gauge(
    "outbox_lag_seconds", "Age of the oldest event a consumer has not acknowledged",
    ["consumer"], namespace=_NS, registry=REGISTRY,
)  # fmt: skip
SWEEP_ROUNDS = Counter(
    "sweep_rounds", "Scheduled sweep rounds by outcome (ok, failed, skipped: another ran)",
    ["outcome"], namespace=_NS, registry=REGISTRY,
)  # fmt: skip
SWEEP_LAST_SUCCESS = Gauge(
    "sweep_last_success_timestamp_seconds", "Unix time the last sweep round finished well",
    namespace=_NS, registry=REGISTRY,
)  # fmt: skip
SWEEP_RUNNING = Gauge(
    "sweep_running", "1 while this process sweeps", namespace=_NS, registry=REGISTRY
)
SWEEP_CURSOR = Gauge(
    "sweep_cursor_position", "How far a resumable sweep cursor has come (0: between passes)",
    ["cursor"], namespace=_NS, registry=REGISTRY,
)  # fmt: skip
RIGHTS_REQUESTS = Gauge(
    "rights_requests_open", "Open rights requests by state and days to their due date",
    ["state", "due_in_days"], namespace=_NS, registry=REGISTRY,
)  # fmt: skip
BREACHES_OPEN = Gauge(
    "breaches_open", "Open breaches by hours to the regulator's 72-hour deadline",
    ["hours_to_deadline"], namespace=_NS, registry=REGISTRY,
)  # fmt: skip
FIGURES_REFRESHED = Gauge(
    "figures_refreshed_timestamp_seconds", "Unix time the database figures were last read",
    namespace=_NS, registry=REGISTRY,
)  # fmt: skip


def observe_call(method: str, code: str, seconds: float) -> None:
    """The edge's report of one answered call."""
    CALLS.labels(method, code).inc()
    CALL_SECONDS.labels(method).observe(seconds)


def plugin_called(organisation_id: str, hook: str) -> None:
    PLUGIN_CALLS.labels(organisation_id, hook).inc()


def plugin_faulted(organisation_id: str, plugin: str, kind: str) -> None:
    PLUGIN_FAULTS.labels(organisation_id, plugin, kind).inc()


def sweep_round(outcome: str) -> None:
    SWEEP_ROUNDS.labels(outcome).inc()
    if outcome == "ok":
        SWEEP_LAST_SUCCESS.set(time.time())


def watch_pool(size: int, in_use: Callable[[], int], waiting: Callable[[], int]) -> None:
    """Read the call workers' use at each scrape (plain integers: no query, no lock)."""
    POOL_SIZE.set(size)
    POOL_IN_USE.set_function(in_use)
    POOL_WAITING.set_function(waiting)


def replace_series(gauge: Gauge, values: dict[tuple[str, ...], float]) -> None:
    """Set a labelled gauge to exactly ``values``: series that went away are dropped."""
    gauge.clear()
    for labels, value in values.items():
        gauge.labels(*labels).set(value)


@dataclass
class MetricsEndpoint:
    """The HTTP server the metrics are scraped from."""

    server: Any
    thread: Any

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve(address: str) -> MetricsEndpoint:
    """Serve /metrics on ``address`` ("host:port"; port 0 picks a free one)."""
    host, _, port = address.rpartition(":")
    server, thread = start_http_server(int(port), host or "127.0.0.1", registry=REGISTRY)
    return MetricsEndpoint(server, thread)
