"""Client helper for the ChatPro privacy service (chatpro.privacy.v1).

``connect()`` returns a :class:`Client` (``connect_async()`` an :class:`AsyncClient` for
asyncio) with a stub for every service, whose calls send the bearer token, an
``x-request-id`` and a deadline, are retried when the service marks a failure retryable, and
raise a :class:`ChatProError` subclass, decoded from the service's google.rpc.Status, when
they fail.
"""

from chatpro_privacy_client._calls import new_request_id
from chatpro_privacy_client.aio import AsyncClient, connect_async
from chatpro_privacy_client.client import DEFAULT_TIMEOUT, SERVICES, Client, connect
from chatpro_privacy_client.errors import (
    DOMAIN,
    AlreadyExists,
    ChatProError,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    error_class,
    from_rpc_error,
)
from chatpro_privacy_client.retries import (
    DEFAULT_RETRIES,
    IDEMPOTENT_METHODS,
    NO_RETRIES,
    RetryPolicy,
)

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "DOMAIN",
    "IDEMPOTENT_METHODS",
    "NO_RETRIES",
    "SERVICES",
    "AlreadyExists",
    "AsyncClient",
    "ChatProError",
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "Unauthenticated",
    "Unavailable",
    "connect",
    "connect_async",
    "error_class",
    "from_rpc_error",
    "new_request_id",
]
