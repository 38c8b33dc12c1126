"""One channel to the privacy service with the three stubs on it.

Callers should not repeat the same metadata, deadline and error decoding at every call
site, so a :class:`Client` puts them in one interceptor on the channel.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

import grpc
from chatpro.privacy.v1.account_service_pb2_grpc import AccountServiceStub
from chatpro.privacy.v1.consent_service_pb2_grpc import ConsentServiceStub
from chatpro.privacy.v1.disclosure_service_pb2_grpc import DisclosureServiceStub
from chatpro.privacy.v1.outbox_service_pb2_grpc import OutboxServiceStub
from chatpro.privacy.v1.policy_service_pb2_grpc import PolicyServiceStub

from chatpro_privacy_client._calls import CallInterceptor

DEFAULT_TIMEOUT = 10.0
"""Seconds a call may take when the caller gives no ``timeout=``; a hung call never ends."""


class Client:
    """The service stubs (accounts, policy, outbox, consent, disclosures) on one channel.

    Every call sends ``authorization: Bearer <token>`` (when there is a token), an
    ``x-request-id`` and a deadline, and raises a :class:`~chatpro_privacy_client.ChatProError`
    subclass when it fails. Use :func:`connect` to open one.
    """

    accounts: AccountServiceStub
    policy: PolicyServiceStub
    outbox: OutboxServiceStub
    consent: ConsentServiceStub
    disclosures: DisclosureServiceStub

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        token: str | None = None,
        default_timeout: float | None = DEFAULT_TIMEOUT,
        request_id_factory: Callable[[], str] | None = None,
        owns_channel: bool = True,
    ) -> None:
        """Wrap an open channel; ``owns_channel`` says whether :meth:`close` closes it."""
        if default_timeout is not None and default_timeout <= 0:
            raise ValueError("default_timeout must be positive (or None for no deadline)")
        self._raw_channel = channel
        self._token = token
        self._default_timeout = default_timeout
        self._request_id_factory = request_id_factory
        self._owns_channel = owns_channel
        self.channel: grpc.Channel = grpc.intercept_channel(
            channel, CallInterceptor(token, default_timeout, request_id_factory)
        )
        """The intercepted channel, for stubs of other services (e.g. health checks)."""
        self.accounts = AccountServiceStub(self.channel)
        self.policy = PolicyServiceStub(self.channel)
        self.outbox = OutboxServiceStub(self.channel)
        self.consent = ConsentServiceStub(self.channel)
        self.disclosures = DisclosureServiceStub(self.channel)

    @property
    def token(self) -> str | None:
        """The bearer token sent with every call, if any."""
        return self._token

    @property
    def default_timeout(self) -> float | None:
        """The deadline in seconds given to calls that pass no ``timeout=``."""
        return self._default_timeout

    def with_token(self, token: str | None) -> Client:
        """A client on the same channel that sends ``token`` instead.

        The connection is shared, so a signed-in person's calls cost no new handshake. The
        new client does not own the channel: closing it does nothing; close this one.
        """
        return Client(
            self._raw_channel,
            token=token,
            default_timeout=self._default_timeout,
            request_id_factory=self._request_id_factory,
            owns_channel=False,
        )

    def close(self) -> None:
        """Close the channel if this client opened it; calls in flight are cancelled."""
        if self._owns_channel:
            self._raw_channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    target: str,
    *,
    token: str | None = None,
    tls: bool = False,
    root_certificates: bytes | None = None,
    client_certificate: bytes | None = None,
    client_key: bytes | None = None,
    default_timeout: float | None = DEFAULT_TIMEOUT,
    request_id_factory: Callable[[], str] | None = None,
) -> Client:
    """Open a channel to ``target`` ("host:port") and return a :class:`Client` on it.

    ``token`` is a session token from SignIn or a service credential. The channel is
    plaintext unless ``tls`` is true or certificate material is given: ``root_certificates``
    (PEM) replaces the system trust store, and a ``client_certificate``/``client_key`` pair
    (PEM) adds mutual TLS, which the service accepts as a service's identity.
    ``request_id_factory`` makes the ``x-request-id`` of each call (default: uuid4 hex).
    The channel connects lazily, so this does not fail when the service is down; the first
    call does, with :class:`~chatpro_privacy_client.Unavailable`.
    """
    if (client_certificate is None) != (client_key is None):
        raise ValueError("client_certificate and client_key must be given together")
    secure = tls or any(
        pem is not None for pem in (root_certificates, client_certificate, client_key)
    )
    if secure:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=root_certificates,
            private_key=client_key,
            certificate_chain=client_certificate,
        )
        channel = grpc.secure_channel(target, credentials)
    else:
        channel = grpc.insecure_channel(target)
    try:
        return Client(
            channel,
            token=token,
            default_timeout=default_timeout,
            request_id_factory=request_id_factory,
        )
    except BaseException:
        channel.close()
        raise
