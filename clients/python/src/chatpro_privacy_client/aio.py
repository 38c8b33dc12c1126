"""The asyncio client: the same surface as :class:`~chatpro_privacy_client.Client`, on a
``grpc.aio`` channel.

``await client.accounts.GetAccount(request)`` and ``async for chunk in
client.rights.StreamRightsExport(request)`` send the token, a request id and a deadline, and
raise the same :class:`~chatpro_privacy_client.ChatProError` subclasses as the synchronous
client; the same retries apply.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import grpc
from chatpro.privacy.v1 import (
    account_service_pb2_grpc,
    audit_service_pb2_grpc,
    breach_service_pb2_grpc,
    consent_service_pb2_grpc,
    disclosure_service_pb2_grpc,
    messaging_service_pb2_grpc,
    monitoring_service_pb2_grpc,
    organisation_service_pb2_grpc,
    outbox_service_pb2_grpc,
    policy_service_pb2_grpc,
    retention_service_pb2_grpc,
    rights_service_pb2_grpc,
)
from grpc import aio

from chatpro_privacy_client import _aio_calls
from chatpro_privacy_client.client import DEFAULT_TIMEOUT, channel_credentials
from chatpro_privacy_client.retries import DEFAULT_RETRIES, RetryPolicy

if TYPE_CHECKING:
    # The generated stubs' asyncio types exist in their .pyi files only.
    from chatpro.privacy.v1.account_service_pb2_grpc import AccountServiceAsyncStub
    from chatpro.privacy.v1.audit_service_pb2_grpc import AuditServiceAsyncStub
    from chatpro.privacy.v1.breach_service_pb2_grpc import BreachServiceAsyncStub
    from chatpro.privacy.v1.consent_service_pb2_grpc import ConsentServiceAsyncStub
    from chatpro.privacy.v1.disclosure_service_pb2_grpc import DisclosureServiceAsyncStub
    from chatpro.privacy.v1.messaging_service_pb2_grpc import MessagingServiceAsyncStub
    from chatpro.privacy.v1.monitoring_service_pb2_grpc import MonitoringServiceAsyncStub
    from chatpro.privacy.v1.organisation_service_pb2_grpc import OrganisationServiceAsyncStub
    from chatpro.privacy.v1.outbox_service_pb2_grpc import OutboxServiceAsyncStub
    from chatpro.privacy.v1.policy_service_pb2_grpc import PolicyServiceAsyncStub
    from chatpro.privacy.v1.retention_service_pb2_grpc import RetentionServiceAsyncStub
    from chatpro.privacy.v1.rights_service_pb2_grpc import RightsServiceAsyncStub


class AsyncClient:
    """A stub for every service on one ``grpc.aio`` channel; open one with
    :func:`connect_async` (its attributes are those of ``SERVICES``)."""

    accounts: AccountServiceAsyncStub
    policy: PolicyServiceAsyncStub
    consent: ConsentServiceAsyncStub
    disclosures: DisclosureServiceAsyncStub
    organisations: OrganisationServiceAsyncStub
    messaging: MessagingServiceAsyncStub
    monitoring: MonitoringServiceAsyncStub
    rights: RightsServiceAsyncStub
    retention: RetentionServiceAsyncStub
    outbox: OutboxServiceAsyncStub
    audit: AuditServiceAsyncStub
    breaches: BreachServiceAsyncStub

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        default_timeout: float | None = DEFAULT_TIMEOUT,
        request_id_factory: Callable[[], str] | None = None,
        retries: RetryPolicy = DEFAULT_RETRIES,
    ) -> None:
        """Open a channel to ``target``; prefer :func:`connect_async`."""
        if default_timeout is not None and default_timeout <= 0:
            raise ValueError("default_timeout must be positive (or None for no deadline)")
        self._target = target
        self._credentials = credentials
        self._token = token
        self._default_timeout = default_timeout
        self._request_id_factory = request_id_factory
        self._retries = retries
        interceptors = _aio_calls.interceptors(token, default_timeout, request_id_factory, retries)
        options = retries.channel_options()
        if credentials is None:
            self.channel = aio.insecure_channel(target, options, interceptors=interceptors)
        else:
            self.channel = aio.secure_channel(
                target, credentials, options, interceptors=interceptors
            )
        """The intercepted channel, for stubs of other services (e.g. health checks)."""
        self.accounts = account_service_pb2_grpc.AccountServiceStub(self.channel)
        self.policy = policy_service_pb2_grpc.PolicyServiceStub(self.channel)
        self.consent = consent_service_pb2_grpc.ConsentServiceStub(self.channel)
        self.disclosures = disclosure_service_pb2_grpc.DisclosureServiceStub(self.channel)
        self.organisations = organisation_service_pb2_grpc.OrganisationServiceStub(self.channel)
        self.messaging = messaging_service_pb2_grpc.MessagingServiceStub(self.channel)
        self.monitoring = monitoring_service_pb2_grpc.MonitoringServiceStub(self.channel)
        self.rights = rights_service_pb2_grpc.RightsServiceStub(self.channel)
        self.retention = retention_service_pb2_grpc.RetentionServiceStub(self.channel)
        self.outbox = outbox_service_pb2_grpc.OutboxServiceStub(self.channel)
        self.audit = audit_service_pb2_grpc.AuditServiceStub(self.channel)
        self.breaches = breach_service_pb2_grpc.BreachServiceStub(self.channel)

    @property
    def token(self) -> str | None:
        """The bearer token sent with every call, if any."""
        return self._token

    @property
    def default_timeout(self) -> float | None:
        """The deadline in seconds given to calls that pass no ``timeout=``."""
        return self._default_timeout

    def with_token(self, token: str | None) -> AsyncClient:
        """A client that sends ``token`` instead. grpc.aio fixes a channel's interceptors,
        so it has a channel of its own, with the same target and options: gRPC's shared
        subchannel pool gives it the same connection. Close it too (or use ``async with``).
        """
        return AsyncClient(
            self._target,
            token=token,
            credentials=self._credentials,
            default_timeout=self._default_timeout,
            request_id_factory=self._request_id_factory,
            retries=self._retries,
        )

    async def close(self, grace: float | None = None) -> None:
        """Close the channel; calls in flight get ``grace`` seconds, then are cancelled."""
        await self.channel.close(grace)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def connect_async(
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
) -> AsyncClient:
    """:func:`~chatpro_privacy_client.connect` for asyncio: the same arguments, an
    :class:`AsyncClient`. Call it inside the event loop that will make the calls::

        async with connect_async("127.0.0.1:50051", token=token) as client:
            account = await client.accounts.GetAccount(GetAccountRequest())
    """
    return AsyncClient(
        target,
        token=token,
        credentials=channel_credentials(tls, root_certificates, client_certificate, client_key),
        default_timeout=default_timeout,
        request_id_factory=request_id_factory,
        retries=retries,
    )
