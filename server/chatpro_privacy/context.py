"""Per-call context the edge sets and the domain reads: the request id for audit entries."""

from __future__ import annotations

import contextvars

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Statements:
    """Round trips to the databases one call made (statements, BEGIN, COMMIT), counted by
    storage for the access log: a call that makes a dozen is slow on a database a network
    hop away, whatever its queries cost."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    @staticmethod
    def add(n: int = 1) -> None:
        counter = statements.get()
        if counter is not None:
            counter.count += n


statements: contextvars.ContextVar[Statements | None] = contextvars.ContextVar(
    "statements", default=None
)

from chatpro_privacy.domain.kernel.principals import ANONYMOUS, Principal  # noqa: E402

principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "principal", default=ANONYMOUS
)

# The end user's address as the edge found it (``edge/client_address.py``): a throttling key.
client_address: contextvars.ContextVar[str] = contextvars.ContextVar("client_address", default="")
