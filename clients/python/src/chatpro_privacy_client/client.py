"""One channel to the privacy service with a stub for each of its services on it.

Callers should not repeat the same metadata, deadline and error decoding at every call
site, so a :class:`Client` puts them in one interceptor on the channel.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

import grpc
from chatpro.privacy.v1.account_service_pb2_grpc import AccountServiceStub
from chatpro.privacy.v1.audit_service_pb2_grpc import AuditServiceStub
from chatpro.privacy.v1.breach_service_pb2_grpc import BreachServiceStub
from chatpro.privacy.v1.consent_service_pb2_grpc import ConsentServiceStub
from chatpro.privacy.v1.disclosure_service_pb2_grpc import DisclosureServiceStub
from chatpro.privacy.v1.messaging_service_pb2_grpc import MessagingServiceStub
from chatpro.privacy.v1.monitoring_service_pb2_grpc import MonitoringServiceStub
from chatpro.privacy.v1.organisation_service_pb2_grpc import OrganisationServiceStub
from chatpro.privacy.v1.outbox_service_pb2_grpc import OutboxServiceStub
from chatpro.privacy.v1.policy_service_pb2_grpc import PolicyServiceStub
from chatpro.privacy.v1.retention_service_pb2_grpc import RetentionServiceStub
from chatpro.privacy.v1.rights_service_pb2_grpc import RightsServiceStub

from chatpro_privacy_client._calls import CallInterceptor
from chatpro_privacy_client.retries import DEFAULT_RETRIES, RetryPolicy

SERVICES: dict[str, str] = {
    "accounts": "chatpro.privacy.v1.AccountService",
    "policy": "chatpro.privacy.v1.PolicyService",
    "consent": "chatpro.privacy.v1.ConsentService",
    "disclosures": "chatpro.privacy.v1.DisclosureService",
    "organisations": "chatpro.privacy.v1.OrganisationService",
    "messaging": "chatpro.privacy.v1.MessagingService",
    "monitoring": "chatpro.privacy.v1.MonitoringService",
    "rights": "chatpro.privacy.v1.RightsService",
    "retention": "chatpro.privacy.v1.RetentionService",
    "outbox": "chatpro.privacy.v1.OutboxService",
    "audit": "chatpro.privacy.v1.AuditService",
    "breaches": "chatpro.privacy.v1.BreachService",
}
"""Each attribute of :class:`Client` and :class:`~chatpro_privacy_client.AsyncClient`, and
the service whose stub it is."""

DEFAULT_TIMEOUT = 10.0
"""Seconds a call may take when the caller gives no ``timeout=``; a hung call never ends."""


class Client:
    """A stub for every service of the API on one channel (see :data:`SERVICES`).

    Every call, unary or streaming, sends ``authorization: Bearer <token>`` (when there is
    a token), an ``x-request-id`` and a deadline, and raises a
    :class:`~chatpro_privacy_client.ChatProError` subclass when it fails. Use :func:`connect`
    to open one.
    """

    accounts: AccountServiceStub
    policy: PolicyServiceStub
    consent: ConsentServiceStub
    disclosures: DisclosureServiceStub
    organisations: OrganisationServiceStub
    messaging: MessagingServiceStub
    monitoring: MonitoringServiceStub
    rights: RightsServiceStub
    retention: RetentionServiceStub
    outbox: OutboxServiceStub
    audit: AuditServiceStub
    breaches: BreachServiceStub

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        token: str | None = None,
        default_timeout: float | None = DEFAULT_TIMEOUT,
        request_id_factory: Callable[[], str] | None = None,
        owns_channel: bool = True,
        retries: RetryPolicy = DEFAULT_RETRIES,
    ) -> None:
        """Wrap an open channel; ``owns_channel`` says whether :meth:`close` closes it.

        ``retries`` governs the retries the service asks for with RetryInfo; gRPC's own
        retries of UNAVAILABLE come from the channel's service config (see :func:`connect`).
        """
        if default_timeout is not None and default_timeout <= 0:
            raise ValueError("default_timeout must be positive (or None for no deadline)")
        self._raw_channel = channel
        self._token = token
        self._default_timeout = default_timeout
        self._request_id_factory = request_id_factory
        self._owns_channel = owns_channel
        self._retries = retries
        self.channel: grpc.Channel = grpc.intercept_channel(
            channel, CallInterceptor(token, default_timeout, request_id_factory, retries)
        )
        """The intercepted channel, for stubs of other services (e.g. health checks)."""
        self.accounts = AccountServiceStub(self.channel)
        self.policy = PolicyServiceStub(self.channel)
        self.consent = ConsentServiceStub(self.channel)
        self.disclosures = DisclosureServiceStub(self.channel)
        self.organisations = OrganisationServiceStub(self.channel)
        self.messaging = MessagingServiceStub(self.channel)
        self.monitoring = MonitoringServiceStub(self.channel)
        self.rights = RightsServiceStub(self.channel)
        self.retention = RetentionServiceStub(self.channel)
        self.outbox = OutboxServiceStub(self.channel)
        self.audit = AuditServiceStub(self.channel)
        self.breaches = BreachServiceStub(self.channel)

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
            retries=self._retries,
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
    retries: RetryPolicy = DEFAULT_RETRIES,
) -> Client:
    """Open a channel to ``target`` ("host:port") and return a :class:`Client` on it.

    ``token`` is a session token from SignIn or a service credential. The channel is
    plaintext unless ``tls`` is true or certificate material is given: ``root_certificates``
    (PEM) replaces the system trust store, and a ``client_certificate``/``client_key`` pair
    (PEM) adds mutual TLS, which the service accepts as a service's identity.
    ``request_id_factory`` makes the ``x-request-id`` of each call (default: uuid4 hex).
    ``retries`` (see :mod:`chatpro_privacy_client.retries`) says how often a call the
    service marks retryable is sent again: UNAVAILABLE on a read, or any call refused with
    RetryInfo; ``NO_RETRIES`` turns both off.
    The channel connects lazily, so this does not fail when the service is down; the first
    call does, with :class:`~chatpro_privacy_client.Unavailable`.
    """
    credentials = channel_credentials(tls, root_certificates, client_certificate, client_key)
    options = retries.channel_options()
    if credentials is not None:
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    try:
        return Client(
            channel,
            token=token,
            default_timeout=default_timeout,
            request_id_factory=request_id_factory,
            retries=retries,
        )
    except BaseException:
        channel.close()
        raise


def channel_credentials(
    tls: bool,
    root_certificates: bytes | None,
    client_certificate: bytes | None,
    client_key: bytes | None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials, or None for plaintext: TLS when asked for or when any certificate
    material is given; shared by :func:`connect` and ``connect_async``."""
    if (client_certificate is None) != (client_key is None):
        raise ValueError("client_certificate and client_key must be given together")
    secure = tls or any(
        pem is not None for pem in (root_certificates, client_certificate, client_key)
    )
    if not secure:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=root_certificates,
        private_key=client_key,
        certificate_chain=client_certificate,
    )
