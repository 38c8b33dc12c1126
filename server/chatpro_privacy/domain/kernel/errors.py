"""Typed domain errors. The edge maps each class once to a gRPC code and a google.rpc.Status.

Every error carries an UPPER_SNAKE ``reason`` that callers can branch on, and an optional
``metadata`` map (ids, never personal data or secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str
    reason: str = "INVALID_FIELD"


class DomainError(Exception):
    """Base of every error a caller is meant to see."""

    def __init__(
        self, reason: str, message: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(DomainError):
    """The request is malformed; ``violations`` names each bad field."""

    def __init__(
        self,
        violations: list[FieldViolation],
        reason: str = "INVALID_ARGUMENT",
        message: str | None = None,
    ) -> None:
        first = violations[0] if violations else None
        text = message or (
            "; ".join(f"{v.field}: {v.description}" for v in violations) or "invalid request"
        )
        super().__init__(first.reason if (first and reason == "INVALID_ARGUMENT") else reason, text)
        self.violations = violations


class Unauthenticated(DomainError):
    """No valid credentials."""


class PermissionDenied(DomainError):
    """Credentials are valid but do not allow this."""


class NotFound(DomainError):
    """The named resource does not exist (or is not visible to the caller)."""


class AlreadyExists(DomainError):
    """A unique resource exists already."""


class FailedPrecondition(DomainError):
    """The system is not in a state that allows the request."""


class ResourceExhausted(DomainError):
    """Throttled; ``retry_after_seconds`` says when to try again."""

    def __init__(self, reason: str, message: str, retry_after_seconds: float) -> None:
        super().__init__(reason, message, {"retry_after_seconds": f"{retry_after_seconds:.0f}"})
        self.retry_after_seconds = retry_after_seconds


class DeadlineExceeded(DomainError):
    """The caller took too long: a client stream sent nothing for longer than allowed."""


class TooLarge(DomainError):
    """A message over the transport's limit: the same call will never fit, so no retry is
    offered (RESOURCE_EXHAUSTED without RetryInfo)."""


class Unavailable(DomainError):
    """A dependency is down; the call may be retried after ``retry_after_seconds``."""

    def __init__(
        self,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        retry_after_seconds: float = 1.0,
    ) -> None:
        super().__init__(reason, message, metadata)
        self.retry_after_seconds = retry_after_seconds


class Violations:
    """Collects field violations so that one response names every bad field."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str, reason: str = "INVALID_FIELD") -> None:
        self.items.append(FieldViolation(field, description, reason))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(list(self.items))
