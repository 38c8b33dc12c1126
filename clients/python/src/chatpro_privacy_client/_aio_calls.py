"""The asyncio client interceptors: the same metadata, deadline, typed errors and retries as
the synchronous client's (``_calls.py``), for ``grpc.aio`` channels.

grpc.aio lets an interceptor return the response (or an async iterator of responses) in
place of the call, so a failure is raised here already translated: ``await stub.Method(r)``
and ``async for item in stub.Stream(r)`` raise :class:`ChatProError` subclasses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
from grpc import aio

from chatpro_privacy_client._calls import Outgoing, new_request_id, prepare, remaining
from chatpro_privacy_client.errors import ChatProError, from_rpc_error
from chatpro_privacy_client.retries import NO_RETRIES, RetryPolicy

_C = TypeVar("_C")
_Continuation = Callable[[aio.ClientCallDetails, Any], Awaitable[_C]]


def _aio_details(outgoing: Outgoing, timeout: float | None) -> aio.ClientCallDetails:
    details = outgoing.details
    return aio.ClientCallDetails(
        method=cast(Any, details.method.encode()),  # grpc.aio sends bytes
        timeout=timeout,
        metadata=aio.Metadata(*(details.metadata or ())),
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


async def _translated(items: AsyncIterator[Any] | aio.Call, request_id: str) -> AsyncIterator[Any]:
    try:
        async for item in items:  # type: ignore[union-attr]
            yield item
    except ChatProError:
        raise
    except grpc.RpcError as error:
        raise from_rpc_error(error, request_id) from error


class _Base:
    def __init__(
        self,
        token: str | None,
        default_timeout: float | None,
        request_id_factory: Callable[[], str] | None,
        retries: RetryPolicy,
    ) -> None:
        self.token = token
        self.default_timeout = default_timeout
        self.request_id_factory = request_id_factory or new_request_id
        self.retries = retries

    def _prepare(self, details: aio.ClientCallDetails) -> Outgoing:
        return prepare(details, self.token, self.default_timeout, self.request_id_factory)


class UnaryUnaryInterceptor(_Base, aio.UnaryUnaryClientInterceptor):
    """Unary calls: translated errors, and the call sent again when the service's RetryInfo
    asks for it (see ``retries.py``)."""

    async def intercept_unary_unary(
        self,
        continuation: _Continuation[aio.UnaryUnaryCall[Any, Any]],
        client_call_details: aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        outgoing = self._prepare(client_call_details)
        attempt = 1
        timeout = outgoing.details.timeout
        while True:
            call = await continuation(_aio_details(outgoing, timeout), request)
            try:
                await call
                return call
            except ChatProError:
                raise
            except grpc.RpcError as failure:
                error = from_rpc_error(failure, outgoing.request_id)
            delay = self.retries.delay_before_retry(
                outgoing.details.method, error, attempt, remaining(outgoing.deadline)
            )
            if delay is None:
                raise error
            await asyncio.sleep(delay)
            timeout = remaining(outgoing.deadline)
            attempt += 1


class UnaryStreamInterceptor(_Base, aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self,
        continuation: _Continuation[aio.UnaryStreamCall[Any, Any]],
        client_call_details: aio.ClientCallDetails,
        request: Any,
    ) -> AsyncIterator[Any]:
        outgoing = self._prepare(client_call_details)
        call = await continuation(_aio_details(outgoing, outgoing.details.timeout), request)
        return _translated(call, outgoing.request_id)


class StreamUnaryInterceptor(_Base, aio.StreamUnaryClientInterceptor):
    """A client stream given as an iterator is awaited here, so its failure is translated;
    one written with ``call.write()`` is handed back as it is."""

    async def intercept_stream_unary(
        self,
        continuation: _Continuation[aio.StreamUnaryCall[Any, Any]],
        client_call_details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> aio.StreamUnaryCall[Any, Any]:
        outgoing = self._prepare(client_call_details)
        call = await continuation(
            _aio_details(outgoing, outgoing.details.timeout), request_iterator
        )
        if request_iterator is None:
            return call
        try:
            await call
        except ChatProError:
            raise
        except grpc.RpcError as failure:
            raise from_rpc_error(failure, outgoing.request_id) from failure
        return call


class StreamStreamInterceptor(_Base, aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: _Continuation[aio.StreamStreamCall[Any, Any]],
        client_call_details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> AsyncIterator[Any] | aio.StreamStreamCall[Any, Any]:
        outgoing = self._prepare(client_call_details)
        call = await continuation(
            _aio_details(outgoing, outgoing.details.timeout), request_iterator
        )
        if request_iterator is None:
            return call
        return _translated(call, outgoing.request_id)


def interceptors(
    token: str | None,
    default_timeout: float | None,
    request_id_factory: Callable[[], str] | None = None,
    retries: RetryPolicy = NO_RETRIES,
) -> list[aio.ClientInterceptor]:
    """One interceptor per kind of call, sharing the settings."""
    args = (token, default_timeout, request_id_factory, retries)
    return [
        UnaryUnaryInterceptor(*args),
        UnaryStreamInterceptor(*args),
        StreamUnaryInterceptor(*args),
        StreamStreamInterceptor(*args),
    ]
