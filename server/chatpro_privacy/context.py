"""Per-call context the edge sets and the domain reads: the request id for audit entries."""

from __future__ import annotations

import contextvars

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

from chatpro_privacy.domain.kernel.principals import ANONYMOUS, Principal  # noqa: E402

principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "principal", default=ANONYMOUS
)
