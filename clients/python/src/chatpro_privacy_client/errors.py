"""Typed errors decoded from the service's rich status (google.rpc.Status).

The service sends every failure as a gRPC code plus details: an ErrorInfo whose UPPER_SNAKE
``reason`` is the stable thing to branch on, BadRequest field violations for bad input and
RetryInfo when throttled. Callers should not have to unpack protobuf ``Any`` messages for
that, so :func:`from_rpc_error` does it once and raises one class per code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final, NamedTuple, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

# googleapis-common-protos ships .pyi files but no py.typed marker, so mypy will not read them.
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped, unused-ignore]

DOMAIN: Final = "privacy.chatpro.co.uk"
"""The ErrorInfo domain of errors raised by the service itself."""

_REQUEST_ID_KEY: Final = "request_id"
_REQUEST_ID_HEADER: Final = "x-request-id"
_M = TypeVar("_M", bound=Message)


class FieldViolation(NamedTuple):
    """One bad request field, from google.rpc.BadRequest."""

    field: str
    description: str
    reason: str


class ChatProError(grpc.RpcError):
    """Base of every error the client raises for a failed call.

    It subclasses ``grpc.RpcError`` so that ``except grpc.RpcError`` keeps catching it, and
    keeps grpc's ``code()`` and ``details()`` methods so code written for plain gRPC errors
    still works; the original error (trailing metadata and all) is ``rpc_error``.
    """

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    """The code this class stands for; ChatProError's own instances carry whatever code came."""

    def __init__(
        self,
        message: str = "",
        *,
        code: grpc.StatusCode | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        retry_after: float | None = None,
        request_id: str | None = None,
        domain: str = "",
        rpc_error: grpc.RpcError | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code: grpc.StatusCode = code if code is not None else self.grpc_code
        self.reason: str = reason or self.status_code.name
        self.message: str = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[FieldViolation] = list(field_violations)
        self.retry_after: float | None = retry_after
        self.request_id: str | None = request_id
        self.domain: str = domain
        self.rpc_error: grpc.RpcError | None = rpc_error
        """The original grpc error, for anything not decoded here (e.g. trailing metadata)."""

    @property
    def retryable(self) -> bool:
        """Whether the service marked the call worth retrying as it is, after
        ``retry_after`` seconds (it sent RetryInfo). A refusal without it, such as a message
        over the size limit (RESOURCE_EXHAUSTED with no RetryInfo), fails again if resent."""
        return self.retry_after is not None

    def code(self) -> grpc.StatusCode:
        """The status code, as ``grpc.Call.code()`` gives it."""
        return self.status_code

    def details(self) -> str:
        """The status message, as ``grpc.Call.details()`` gives it."""
        return self.message

    def __str__(self) -> str:
        label = (
            self.status_code.name
            if self.reason == self.status_code.name
            else f"{self.status_code.name} {self.reason}"
        )
        text = f"{label}: {self.message}"
        return f"{text} (request id {self.request_id})" if self.request_id else text

    def __reduce__(self) -> tuple[type[ChatProError], tuple[str], dict[str, object]]:
        # The live grpc error holds locks and cannot be pickled; everything decoded can.
        return type(self), (self.message,), {**self.__dict__, "rpc_error": None}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.status_code.name}, reason={self.reason!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class InvalidArgument(ChatProError):
    """The request is malformed; ``field_violations`` names each bad field."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(ChatProError):
    """No valid credentials: sign in again or check the service token."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ChatProError):
    """The credentials are valid but do not allow this call."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(ChatProError):
    """The named resource does not exist or is not visible to the caller."""

    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ChatProError):
    """A unique resource exists already."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ChatProError):
    """The system is not in a state that allows the call; retrying as is will not help."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ChatProError):
    """Throttled, when ``retry_after`` says how many seconds to wait; without it (e.g. a
    message over the size limit) the same call will never succeed: see ``retryable``."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ChatProError):
    """The service or a dependency is down; the call may be retried."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ChatProError):
    """The call's deadline passed; it may or may not have taken effect."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(ChatProError):
    """The service failed; quote ``request_id`` when reporting it."""

    grpc_code = grpc.StatusCode.INTERNAL


_CLASSES: Final[dict[grpc.StatusCode, type[ChatProError]]] = {
    cls.grpc_code: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
}


def error_class(code: grpc.StatusCode) -> type[ChatProError]:
    """The class raised for ``code``; ChatProError itself for codes without one."""
    return _CLASSES.get(code, ChatProError)


def _unpack(detail: any_pb2.Any, into: _M) -> _M | None:
    return into if detail.Unpack(into) else None  # False when the detail is another type


_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"


def _trailers(error: grpc.RpcError) -> list[tuple[str, str | bytes]]:
    """The trailing metadata of a sync call's error or a ``grpc.aio.AioRpcError`` alike
    (the latter is no ``grpc.Call`` and gives a ``grpc.aio.Metadata``)."""
    try:
        trailing: Any = error.trailing_metadata()  # type: ignore[attr-defined, unused-ignore]
    except AttributeError:  # a bare grpc.RpcError has no call methods
        return []
    return [cast("tuple[str, str | bytes]", tuple(item)) for item in trailing or ()]


def _status_of(error: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status the service sent in the trailers, if it agrees with the
    call's own code (as grpc_status.rpc_status.from_call checks, for aio errors too)."""
    for key, value in _trailers(error):
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:
            return None
        if status.code != _code_of(error).value[0]:
            return None
        return status
    return None


def _code_of(error: grpc.RpcError) -> grpc.StatusCode:
    try:
        code = error.code()
    except AttributeError:  # a bare grpc.RpcError has no call methods
        return grpc.StatusCode.UNKNOWN
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _details_of(error: grpc.RpcError) -> str:
    try:
        details = error.details()
    except AttributeError:
        return ""
    return details if isinstance(details, str) else ""


def _header(error: grpc.RpcError, key: str) -> str | None:
    for item_key, value in _trailers(error):
        if item_key == key:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def from_rpc_error(error: grpc.RpcError, request_id: str | None = None) -> ChatProError:
    """Decode a failed call into the typed error for its code.

    ``request_id`` is the id the call was sent with; the id the service reports (in ErrorInfo
    metadata or the ``x-request-id`` trailer) wins, since that is the one in its logs.
    """
    if isinstance(error, ChatProError):
        return error
    code = _code_of(error)
    message = _details_of(error)
    info: error_details_pb2.ErrorInfo | None = None
    violations: list[FieldViolation] = []
    retry_after: float | None = None
    status = _status_of(error)
    if status is not None:
        message = status.message or message
        for detail in status.details:
            found = _unpack(detail, error_details_pb2.ErrorInfo())
            # The first ErrorInfo, unless a later one is ours (a proxy may add its own).
            if found is not None and (
                info is None or (info.domain != DOMAIN and found.domain == DOMAIN)
            ):
                info = found
            bad_request = _unpack(detail, error_details_pb2.BadRequest())
            if bad_request is not None:
                violations.extend(
                    FieldViolation(v.field, v.description, v.reason)
                    for v in bad_request.field_violations
                )
            retry = _unpack(detail, error_details_pb2.RetryInfo())
            if retry is not None and retry.HasField("retry_delay"):
                delay = retry.retry_delay
                retry_after = delay.seconds + delay.nanos / 1e9
    metadata = dict(info.metadata) if info is not None else {}
    reported_id = metadata.get(_REQUEST_ID_KEY) or _header(error, _REQUEST_ID_HEADER)
    return error_class(code)(
        message,
        code=code,
        reason=info.reason if info is not None and info.reason else None,
        metadata=metadata,
        field_violations=violations,
        retry_after=retry_after,
        request_id=reported_id or request_id,
        domain=info.domain if info is not None else "",
        rpc_error=error,
    )
