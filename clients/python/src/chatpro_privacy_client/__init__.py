"""Client helper for the ChatPro privacy service (chatpro.privacy.v1).

``connect()`` returns a :class:`Client` whose stubs send the bearer token, an ``x-request-id``
and a deadline on every call, and raise a :class:`ChatProError` subclass, decoded from the
service's google.rpc.Status, when a call fails.
"""

from chatpro_privacy_client._calls import new_request_id
from chatpro_privacy_client.client import DEFAULT_TIMEOUT, Client, connect
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

__all__ = [
    "DEFAULT_TIMEOUT",
    "DOMAIN",
    "AlreadyExists",
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
    "Unauthenticated",
    "Unavailable",
    "connect",
    "error_class",
    "from_rpc_error",
    "new_request_id",
]
