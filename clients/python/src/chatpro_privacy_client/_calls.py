"""The synchronous client interceptor: credentials, request id and deadline on the way out,
typed errors (and retries the service asked for) on the way back, for every kind of call.

Metadata is added here rather than with call credentials because gRPC only allows call
credentials on secure channels, and the service is also reached over plaintext (locally, or
behind a TLS-terminating proxy).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc

from chatpro_privacy_client.errors import ChatProError, from_rpc_error
from chatpro_privacy_client.retries import NO_RETRIES, RetryPolicy

if TYPE_CHECKING:
    from grpc import _CallFuture, _CallIterator

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


@dataclass(frozen=True)
class Outgoing:
    """A call's details as sent: the caller's, plus token, request id and deadline."""

    details: _CallDetails
    request_id: str
    deadline: float | None  # time.monotonic() by which the call must end


def prepare(
    details: grpc.ClientCallDetails | grpc.aio.ClientCallDetails,
    token: str | None,
    default_timeout: float | None,
    request_id_factory: Callable[[], str],
) -> Outgoing:
    """What the caller passed wins: its own ``authorization`` or ``x-request-id`` metadata,
    and its ``timeout=``. Shared by the synchronous and the asyncio client."""
    metadata = [(str(k), v) for k, v in (details.metadata or ())]
    keys = {key for key, _ in metadata}
    if token and AUTHORIZATION not in keys:
        metadata.append((AUTHORIZATION, f"Bearer {token}"))
    request_id = next((v for k, v in metadata if k == REQUEST_ID), None)
    if request_id is None:
        request_id = request_id_factory()
        metadata.append((REQUEST_ID, request_id))
    timeout = default_timeout if details.timeout is None else details.timeout
    method = details.method
    outgoing = _CallDetails(
        method=method if isinstance(method, str) else bytes(method).decode(),
        timeout=timeout,
        metadata=tuple(metadata),
        credentials=details.credentials,
        wait_for_ready=getattr(details, "wait_for_ready", None),
        compression=getattr(details, "compression", None),
    )
    sent_id = request_id if isinstance(request_id, str) else request_id.decode()
    deadline = None if timeout is None else time.monotonic() + timeout
    return Outgoing(outgoing, sent_id, deadline)


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def with_timeout(details: _CallDetails, timeout: float | None) -> _CallDetails:
    return _CallDetails(
        details.method,
        timeout,
        details.metadata,
        details.credentials,
        details.wait_for_ready,
        details.compression,
    )


class _TranslatingCall(grpc.Call, _FutureBase):
    """Wraps a unary-response call so its failure surfaces as a ChatProError however it is
    collected, after the retries the service asked for (RetryInfo).

    Blocking calls read ``result()``; ``.future()`` callers may also use ``exception()`` or
    done-callbacks, so all of them are translated, and the same error object is returned
    each time. Retries happen when the outcome is collected (``result()``, ``exception()``,
    ``code()``...); a done-callback sees the first attempt's call.
    """

    def __init__(
        self,
        inner: _CallFuture[Any],
        outgoing: Outgoing,
        reissue: Callable[[_CallDetails], _CallFuture[Any]] | None = None,
        policy: RetryPolicy = NO_RETRIES,
    ) -> None:
        self._inner = inner
        self._outgoing = outgoing
        self._reissue = reissue
        self._policy = policy
        self._error: ChatProError | None = None
        self._settled = reissue is None
        self._lock = threading.Lock()

    def _translate(self, error: grpc.RpcError) -> ChatProError:
        if self._error is None:
            self._error = from_rpc_error(error, self._outgoing.request_id)
        return self._error

    def _settle(self, timeout: float | None = None) -> None:
        """Wait for the outcome, sending the call again while the service asks for it."""
        with self._lock:
            attempt = 1
            while not self._settled:
                failure = self._inner.exception(timeout)
                if not isinstance(failure, grpc.RpcError):
                    break
                error = from_rpc_error(failure, self._outgoing.request_id)
                left = remaining(self._outgoing.deadline)
                delay = self._policy.delay_before_retry(
                    self._outgoing.details.method, error, attempt, left
                )
                if delay is None or self._reissue is None:
                    self._error = error
                    break
                time.sleep(delay)
                left = remaining(self._outgoing.deadline)
                self._inner = self._reissue(with_timeout(self._outgoing.details, left))
                attempt += 1
            self._settled = True

    # grpc.Future
    def result(self, timeout: float | None = None) -> Any:
        self._settle(timeout)
        try:
            return self._inner.result(timeout)
        except ChatProError:
            raise
        except grpc.RpcError as error:
            raise self._translate(error) from error

    def exception(self, timeout: float | None = None) -> Exception | None:
        self._settle(timeout)
        error = self._inner.exception(timeout)
        if isinstance(error, grpc.RpcError) and not isinstance(error, ChatProError):
            return self._translate(error)
        return error

    def traceback(self, timeout: float | None = None) -> TracebackType | None:
        self._settle(timeout)
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
        self._settle()
        return self._inner.code()

    def details(self) -> str:
        self._settle()
        return self._inner.details()

    def initial_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._inner.initial_metadata()

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        self._settle()
        return self._inner.trailing_metadata()

    def is_active(self) -> bool:
        return self._inner.is_active()

    def time_remaining(self) -> float:
        return self._inner.time_remaining()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return self._inner.add_callback(callback)


class _TranslatingStream(grpc.Call, Iterator[Any]):
    """A response stream whose failure, met while iterating, is a ChatProError."""

    def __init__(self, inner: _CallIterator[Any], request_id: str) -> None:
        self._inner = inner
        self._request_id = request_id

    def __iter__(self) -> _TranslatingStream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._inner)
        except ChatProError:
            raise
        except grpc.RpcError as error:
            raise from_rpc_error(error, self._request_id) from error

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

    def cancel(self) -> bool:
        return self._inner.cancel()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return self._inner.add_callback(callback)


class CallInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization``, ``x-request-id`` and a default deadline to every call, unary
    or streaming, and turns failures into :class:`ChatProError` subclasses; a unary call the
    service refused with RetryInfo is sent again after the delay it asked for."""

    def __init__(
        self,
        token: str | None,
        default_timeout: float | None,
        request_id_factory: Callable[[], str] | None = None,
        retries: RetryPolicy = NO_RETRIES,
    ) -> None:
        self.token = token
        self.default_timeout = default_timeout
        self.request_id_factory = request_id_factory or new_request_id
        self.retries = retries

    def _prepare(self, details: grpc.ClientCallDetails) -> Outgoing:
        return prepare(details, self.token, self.default_timeout, self.request_id_factory)

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _CallFuture[_Response]],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _CallFuture[_Response]:
        outgoing = self._prepare(client_call_details)
        call = _TranslatingCall(
            continuation(outgoing.details, request),
            outgoing,
            lambda details: continuation(details, request),
            self.retries,
        )
        return cast("_CallFuture[_Response]", call)

    def intercept_stream_unary(
        self,
        continuation: Callable[
            [grpc.ClientCallDetails, Iterator[_Request]], _CallFuture[_Response]
        ],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[_Request],
    ) -> _CallFuture[_Response]:
        outgoing = self._prepare(client_call_details)
        call = _TranslatingCall(continuation(outgoing.details, request_iterator), outgoing)
        return cast("_CallFuture[_Response]", call)

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _CallIterator[_Response]],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _CallIterator[_Response]:
        outgoing = self._prepare(client_call_details)
        stream = _TranslatingStream(continuation(outgoing.details, request), outgoing.request_id)
        return cast("_CallIterator[_Response]", stream)

    def intercept_stream_stream(
        self,
        continuation: Callable[
            [grpc.ClientCallDetails, Iterator[_Request]], _CallIterator[_Response]
        ],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[_Request],
    ) -> _CallIterator[_Response]:
        outgoing = self._prepare(client_call_details)
        inner = continuation(outgoing.details, request_iterator)
        return cast("_CallIterator[_Response]", _TranslatingStream(inner, outgoing.request_id))
