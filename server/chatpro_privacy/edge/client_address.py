"""The end user's network address: the key sign-in and registration are throttled by (SEC-3).

It is the peer's, unless the caller is an internal service granted the ``forwarded_for``
scope (the app's backend, which calls for many people from one address) and states the
person's address in ``x-forwarded-for``: then it is the last entry, the one that service
added itself. Anyone else's ``x-forwarded-for`` is ignored: believed, it would let a client
name a fresh address for every guess, or someone else's to have them held back.

Addresses are keys, never stored (ACC-2). An IPv6 address counts by its /64, the block one
subscriber is normally given, so that one client cannot spread its attempts over 2^64
addresses; an IPv4 address mapped into IPv6 counts as that IPv4 address.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote

from chatpro_privacy.domain.accounts.roles import FORWARDED_FOR_SCOPE
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument
from chatpro_privacy.domain.kernel.principals import Principal

HEADER = "x-forwarded-for"


def throttling_key(text: str) -> str | None:
    """An IP address as the key it is counted under; None if ``text`` is none."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def peer_address(peer: str) -> str:
    """grpc's peer ("ipv4:10.0.0.1:5678", "ipv6:[::1]:5678", "unix:...") as a key."""
    kind, _, rest = unquote(peer).partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rsplit(":", 1)[0].strip("[]")
        return throttling_key(host) or host
    return peer


def forwarded_address(header: str) -> str:
    """The address a trusted service states for the person it calls for."""
    key = throttling_key(header.rsplit(",", 1)[-1])
    if key is None:
        raise InvalidArgument(
            [FieldViolation(HEADER, "must end with the end user's IP address", "INVALID")]
        )
    return key


def may_forward(principal: Principal) -> bool:
    return principal.is_service and FORWARDED_FOR_SCOPE in principal.scopes


def client_address(principal: Principal, peer: str, header: str) -> str:
    """The address a call counts under: forwarded by a trusted service, else the peer."""
    if header and may_forward(principal):
        return forwarded_address(header)
    return peer_address(peer)
