"""How many calls one client may have in flight, so that no one client takes the capacity
everyone shares (issue 15, SEC-3).

Three budgets, counted in this process as calls start and end:

- work: every call of the service's own methods. The process takes ``calls`` at once; one
  principal (a person's or a guardian's session) ``calls_per_principal`` of them, an internal
  service ``calls_per_service``. Calls without credentials are counted in the first only:
  they are short (the public methods are unary), and sign-in has throttles of its own.
- infrastructure streams: Health/Watch and server reflection. They never end by
  themselves, so they have a budget of their own (``watches``), apart from the work's, and
  one network address may hold ``watches_per_address`` of them: a load balancer needs one or
  two, an attacker's thousand are refused at once.
- unary health checks are not counted: they take microseconds and must answer while
  everything else is full.

Per connection, HTTP/2 itself caps the streams in flight (``grpc.max_concurrent_streams``,
set in app.py): a client's extra calls wait in the client. A refusal here is
RESOURCE_EXHAUSTED with a RetryInfo, before any work is done for the call.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from chatpro_privacy.domain.kernel.errors import ResourceExhausted
from chatpro_privacy.domain.kernel.principals import Principal, PrincipalKind

WATCH_METHODS = ("/grpc.health.v1.Health/Watch", "/grpc.reflection.")
UNCOUNTED_PREFIXES = ("/grpc.health.v1.Health/",)


@dataclass(frozen=True)
class Limits:
    calls: int = 1000
    calls_per_principal: int = 32
    calls_per_service: int = 500
    watches: int = 1000
    watches_per_address: int = 8

    @property
    def transport_cap(self) -> int:
        """grpc's own limit (``maximum_concurrent_rpcs``): both budgets and room for health
        checks, so that grpc never refuses a call this module would have let in."""
        return self.calls + self.watches + 200


def address_of(peer: str) -> str:
    """The network address of a gRPC peer ("ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7"),
    without the port that tells one connection from another."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rpartition(":")[0]
    return peer


@dataclass
class Ticket:
    """One call's places in the budgets, given back when it ends."""

    kind: str  # "work", "watch" or "" (not counted)
    address: str = ""
    principal: str = ""
    released: bool = field(default=False)


class Admission:
    """The counts; safe to use from the server's loop and from call workers."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._work = 0
        self._watches = 0
        self._by_address: Counter[str] = Counter()
        self._by_principal: Counter[str] = Counter()

    def enter(self, method: str, peer: str) -> Ticket:
        """On the server's loop, as a call starts: refuse it if its budget is full."""
        if method.startswith(WATCH_METHODS):
            address = address_of(peer)
            with self._lock:
                if self._watches >= self.limits.watches:
                    raise _busy("WATCHES_EXHAUSTED", "too many health watches are open")
                if self._by_address[address] >= self.limits.watches_per_address:
                    raise _busy(
                        "WATCHES_PER_ADDRESS_EXHAUSTED",
                        f"at most {self.limits.watches_per_address} open health watches "
                        "or reflection streams from one address",
                    )
                self._watches += 1
                self._by_address[address] += 1
            return Ticket("watch", address=address)
        if method.startswith(UNCOUNTED_PREFIXES):
            return Ticket("")
        with self._lock:
            if self._work >= self.limits.calls:
                raise _busy("SERVER_BUSY", "the server has too many calls in flight")
            self._work += 1
        return Ticket("work")

    def enter_principal(self, ticket: Ticket, principal: Principal) -> None:
        """On the call's worker, once the caller is known: refuse a principal over its cap."""
        if ticket.kind != "work" or principal.kind in (
            PrincipalKind.ANONYMOUS,
            PrincipalKind.SYSTEM,
        ):
            return
        cap = (
            self.limits.calls_per_service
            if principal.is_service
            else self.limits.calls_per_principal
        )
        key = f"{principal.kind.value}:{principal.service_name or principal.account_id}"
        with self._lock:
            if self._by_principal[key] >= cap:
                raise _busy(
                    "CALLS_PER_PRINCIPAL_EXHAUSTED",
                    f"at most {cap} calls in flight for one caller; wait for some to end",
                )
            self._by_principal[key] += 1
        ticket.principal = key

    def leave(self, ticket: Ticket) -> None:
        """As the call ends (whatever its outcome); a second call does nothing."""
        with self._lock:
            if ticket.released:
                return
            ticket.released = True
            if ticket.kind == "watch":
                self._watches -= 1
                _decrement(self._by_address, ticket.address)
            elif ticket.kind == "work":
                self._work -= 1
            if ticket.principal:
                _decrement(self._by_principal, ticket.principal)

    def in_flight(self) -> dict[str, int]:
        """The counts, for tests and logs."""
        with self._lock:
            return {
                "work": self._work,
                "watches": self._watches,
                "principals": sum(self._by_principal.values()),
            }


def _decrement(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]  # an address or principal with nothing in flight holds no memory


def _busy(reason: str, message: str) -> ResourceExhausted:
    return ResourceExhausted(reason, message, retry_after_seconds=1)
