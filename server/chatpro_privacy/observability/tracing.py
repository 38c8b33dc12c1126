"""OpenTelemetry traces, when ``opentelemetry-instrumentation-grpc`` is installed (the
``tracing`` extra): a server span per call, exported wherever the deployment's
OpenTelemetry SDK is configured to send them (OTEL_* variables, or code of its own). Without
the package the server runs exactly as before: the import is optional."""

from __future__ import annotations

from typing import Any

import structlog

log = structlog.get_logger("chatpro_privacy.tracing")


def server_interceptors() -> list[Any]:
    """The instrumentation's grpc.aio server interceptor, or none when it is not installed."""
    try:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor
    except ImportError:
        return []
    log.info("tracing calls with OpenTelemetry")
    return [aio_server_interceptor()]
