"""The client interceptor: credentials, request id and deadline on the way out, typed errors
on the way back.

Metadata is added here rather than with call credentials because gRPC only allows call
credentials on secure channels, and the service is also reached over plaintext (locally, or
behind a TLS-terminating proxy).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc

from chatpro_privacy_client.errors import ChatProError, from_rpc_error

if TYPE_CHECKING:
    from grpc import _CallFuture

    _FutureBase = grpc.Future[Any]
else:
    _FutureBase = grpc.Future

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

AUTHORIZATION = "authorization"
REQUEST_ID = "x-request-id"


def new_request_id() -> str:
    """A fresh request id: uuid4 hex, which the service accepts as given."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple[tuple[str, str | bytes], ...] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _TranslatingCall(grpc.Call, _FutureBase):
    """Wraps a call so its failure surfaces as a ChatProError however it is collected.

    Blocking calls read ``result()``; ``.future()`` callers may also use ``exception()`` or
    done-callbacks, so all of them are translated, and the same error object is returned
    each time.
    """

    def __init__(self, inner: _CallFuture[Any], request_id: str) -> None:
        self._inner = inner
        self._request_id = request_id
        self._error: ChatProError | None = None

    def _translate(self, error: grpc.RpcError) -> ChatProError:
        if self._error is None:
            self._error = from_rpc_error(error, self._request_id)
        return self._error

    # grpc.Future
    def result(self, timeout: float | None = None) -> Any:
        try:
            return self._inner.result(timeout)
        except ChatProError:
            raise
        except grpc.RpcError as error:
            raise self._translate(error) from error

    def exception(self, timeout: float | None = None) -> Exception | None:
        error = self._inner.exception(timeout)
        if isinstance(error, grpc.RpcError) and not isinstance(error, ChatProError):
            return self._translate(error)
        return error

    def traceback(self, timeout: float | None = None) -> TracebackType | None:
        return cast("TracebackType | None", self._inner.traceback(timeout))

    def add_done_callback(self, fn: Callable[[grpc.Future[Any]], None]) -> None:
        self._inner.add_done_callback(lambda _: fn(self))

    def cancel(self) -> bool:
        return self._inner.cancel()

    def cancelled(self) -> bool:
        return self._inner.cancelled()

    def running(self) -> bool:
        return self._inner.running()

    def done(self) -> bool:
        return self._inner.done()

    # grpc.Call
    def code(self) -> grpc.StatusCode:
        return self._inner.code()

    def details(self) -> str:
        return self._inner.details()

    def initial_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._inner.initial_metadata()

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._inner.trailing_metadata()

    def is_active(self) -> bool:
        return self._inner.is_active()

    def time_remaining(self) -> float:
        return self._inner.time_remaining()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return self._inner.add_callback(callback)


class CallInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Adds ``authorization``, ``x-request-id`` and a default deadline to every call, and
    turns failures into :class:`ChatProError` subclasses.

    What the caller passed wins: its own ``authorization`` or ``x-request-id`` metadata, and
    its ``timeout=``. Every method of the API is unary, so no streaming hooks are needed.
    """

    def __init__(
        self,
        token: str | None,
        default_timeout: float | None,
        request_id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.token = token
        self.default_timeout = default_timeout
        self.request_id_factory = request_id_factory or new_request_id

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _CallFuture[_Response]],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _CallFuture[_Response]:
        metadata = list(client_call_details.metadata or ())
        keys = {key for key, _ in metadata}
        if self.token and AUTHORIZATION not in keys:
            metadata.append((AUTHORIZATION, f"Bearer {self.token}"))
        request_id = next((v for k, v in metadata if k == REQUEST_ID), None)
        if request_id is None:
            request_id = self.request_id_factory()
            metadata.append((REQUEST_ID, request_id))
        timeout = client_call_details.timeout
        details = _CallDetails(
            method=client_call_details.method,
            timeout=self.default_timeout if timeout is None else timeout,
            metadata=tuple(metadata),
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
            compression=client_call_details.compression,
        )
        sent_id = request_id if isinstance(request_id, str) else request_id.decode()
        outcome = _TranslatingCall(continuation(details, request), sent_id)
        return cast("_CallFuture[_Response]", outcome)
