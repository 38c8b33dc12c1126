"""What the client retries, and how: only what the service marks as retryable.

Two rules, and nothing else is ever retried:

- ``UNAVAILABLE`` on an idempotent method (one that only reads: ``Get*`` and ``List*``) is
  retried by gRPC itself, through the channel's service config, with exponential backoff. The
  service answers UNAVAILABLE when a call did not take effect (it is draining, or its
  database is away and the transaction rolled back), and a read is safe to repeat anyway.
- A failure that carries ``google.rpc.RetryInfo`` is retried by the client after the delay
  the service asked for, on any unary method: the service sends RetryInfo only with a call it
  refused before doing anything (a throttle), so the call can be sent again as it is. A
  failure without RetryInfo (an oversized request, say) is final however it is coded.

Streams are not retried by the client (a client stream's messages are consumed as they are
sent); gRPC still retries an idempotent server stream that failed before its first message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import grpc
from chatpro.privacy.v1 import (
    account_service_pb2,
    audit_service_pb2,
    breach_service_pb2,
    consent_service_pb2,
    disclosure_service_pb2,
    messaging_service_pb2,
    monitoring_service_pb2,
    organisation_service_pb2,
    outbox_service_pb2,
    policy_service_pb2,
    retention_service_pb2,
    rights_service_pb2,
)
from google.protobuf.descriptor import FileDescriptor

from chatpro_privacy_client.errors import ChatProError

_FILES: Final[tuple[FileDescriptor, ...]] = tuple(
    module.DESCRIPTOR
    for module in (
        account_service_pb2,
        audit_service_pb2,
        breach_service_pb2,
        consent_service_pb2,
        disclosure_service_pb2,
        messaging_service_pb2,
        monitoring_service_pb2,
        organisation_service_pb2,
        outbox_service_pb2,
        policy_service_pb2,
        retention_service_pb2,
        rights_service_pb2,
    )
)

# Reads that are recorded as an administrator's check (ORG-3): repeating one records it twice.
_RECORDED_READS: Final = frozenset({"/chatpro.privacy.v1.MonitoringService/GetContentStatistics"})


def _methods() -> Iterable[tuple[str, str, bool]]:
    """(service full name, method name, whether it is unary-unary or unary-stream)."""
    for file in _FILES:
        for service in file.services_by_name.values():
            for method in service.methods:
                yield service.full_name, method.name, not method.client_streaming


IDEMPOTENT_METHODS: Final[frozenset[str]] = frozenset(
    f"/{service}/{name}"
    for service, name, unary_request in _methods()
    if unary_request
    and name.startswith(("Get", "List"))
    and f"/{service}/{name}" not in _RECORDED_READS
)
"""Full method paths ("/package.Service/Method") gRPC retries on UNAVAILABLE."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``max_attempts`` counts the first call (1 disables retries);
    gRPC caps its own retries at 5 attempts. ``max_retry_after`` is the longest delay from
    RetryInfo the client waits for; a longer one (or one past the call's deadline) fails
    the call at once with the error, whose ``retry_after`` says when to come back."""

    max_attempts: int = 4
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("backoffs must be positive, the initial one no larger than the max")
        if self.max_retry_after < 0:
            raise ValueError("max_retry_after must not be negative")

    def service_config(self) -> str:
        """The channel's service config (JSON): gRPC's retries of UNAVAILABLE on the
        idempotent methods."""
        if self.max_attempts < 2:
            return json.dumps({"methodConfig": []})
        names = []
        for path in sorted(IDEMPOTENT_METHODS):
            service, _, method = path[1:].partition("/")
            names.append({"service": service, "method": method})
        policy = {
            "maxAttempts": min(self.max_attempts, 5),
            "initialBackoff": f"{self.initial_backoff}s",
            "maxBackoff": f"{self.max_backoff}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
        return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})

    def channel_options(self) -> list[tuple[str, str | int]]:
        return [("grpc.enable_retries", 1), ("grpc.service_config", self.service_config())]

    def delay_before_retry(
        self, method: str, error: ChatProError, attempt: int, remaining: float | None
    ) -> float | None:
        """Seconds to wait before sending attempt ``attempt + 1`` again, or None: give up.

        UNAVAILABLE on an idempotent method was already retried by gRPC; it is not retried
        again here, so attempts never multiply."""
        if attempt >= self.max_attempts or error.retry_after is None:
            return None
        if error.status_code is grpc.StatusCode.UNAVAILABLE and method in IDEMPOTENT_METHODS:
            return None
        delay = max(0.0, error.retry_after)
        if delay > self.max_retry_after:
            return None
        if remaining is not None and delay >= remaining:
            return None
        return delay


NO_RETRIES: Final = RetryPolicy(max_attempts=1)
DEFAULT_RETRIES: Final = RetryPolicy()
