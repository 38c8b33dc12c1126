"""One server interceptor for every call: request id and log context, authentication,
domain error -> google.rpc.Status, and exactly one access log line.

It wraps each method's behaviour, so the code runs in the call's own task and the
context variables it sets (request id, principal) are visible to the servicer.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message

from chatpro_privacy import context
from chatpro_privacy.domain.accounts.sessions import Sessions
from chatpro_privacy.domain.consent.policy import PolicyGate
from chatpro_privacy.domain.kernel.errors import DomainError, PermissionDenied, Unauthenticated
from chatpro_privacy.domain.kernel.principals import ANONYMOUS, Principal
from chatpro_privacy.domain.kernel.text import refuse_nul
from chatpro_privacy.edge import status as status_map

log = structlog.get_logger("chatpro_privacy.access")

_V1 = "/chatpro.privacy.v1."
# Methods that need no credentials (SEC-3 names these and nothing else).
PUBLIC_METHODS = frozenset(
    _V1 + name
    for name in (
        "PolicyService/GetCurrentPolicy",
        "PolicyService/GetControllerInfo",
        "PolicyService/ListPolicyVersions",
        "PolicyService/GetPolicyVersion",
        "ConsentService/ListPurposes",
        "ConsentService/GetReceiptSigningKeys",
        "AccountService/Register",
        "AccountService/ConfirmGuardianConsent",
        "AccountService/RequestGuardianAccess",
        "AccountService/StartGuardianSession",
        "AccountService/SignIn",
        "AccountService/CompleteAccountSetup",
        "RetentionService/GetRetentionSchedule",
    )
)
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# What a person may still do before accepting a policy version that requires it (CON-1).
GATE_EXEMPT_METHODS = frozenset(
    _V1 + name
    for name in (
        "PolicyService/AcceptPolicy",
        "PolicyService/ListPendingAcceptances",
        "ConsentService/WithdrawConsent",
        "ConsentService/PreviewWithdrawal",
        "RightsService/CreateRightsRequest",
        "AccountService/SignOut",
    )
)
# A guardian's session acts for the child in consent and rights only (ACC-11).
GUARDIAN_PREFIXES = (
    _V1 + "ConsentService/",
    _V1 + "PolicyService/AcceptPolicy",
    _V1 + "RightsService/",
    _V1 + "AccountService/SignOut",
)
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_public(method: str) -> bool:
    return method in PUBLIC_METHODS or method.startswith(PUBLIC_PREFIXES)


def _metadata(ctx: grpc.aio.ServicerContext[Any, Any], key: str) -> str:
    for k, v in ctx.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode("utf-8", "replace")
    return ""


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, sessions: Sessions, gate: PolicyGate) -> None:
        self.sessions = sessions
        self.gate = gate

    def _authenticate(self, method: str, ctx: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        if is_public(method):
            return ANONYMOUS
        header = _metadata(ctx, "authorization")
        scheme, _, token = header.partition(" ")
        if header and scheme.lower() != "bearer":
            raise Unauthenticated("TOKEN_MALFORMED", "authorization must be 'Bearer <token>'")
        subject = None
        auth = ctx.auth_context()
        names = list(auth.get("x509_common_name") or ())
        if list(auth.get("transport_security_type") or ()) == [b"ssl"] and names:
            subject = names[0].decode("utf-8", "replace")
        principal = self.sessions.authenticate(token.strip(), subject)
        if principal.is_guardian and not method.startswith(GUARDIAN_PREFIXES):
            raise PermissionDenied(
                "GUARDIAN_SESSION_SCOPE",
                "a guardian's session covers consent and rights requests only",
            )
        if method not in GATE_EXEMPT_METHODS:
            self.gate.check(principal)
        return principal

    async def _enter(
        self, method: str, ctx: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[str, float]:
        supplied = _metadata(ctx, "x-request-id")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        context.request_id.set(request_id)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, method=method)
        return request_id, time.perf_counter()

    async def _fail(
        self, ctx: grpc.aio.ServicerContext[Any, Any], exc: BaseException, request_id: str
    ) -> tuple[str, str]:
        """Abort the call with the mapped status; returns (code, reason) for the log line."""
        if isinstance(exc, DomainError):
            status = status_map.to_status(exc, request_id)
            reason = exc.reason
        else:
            # Not the message: a database error can quote the values it refused.
            log.error(
                "unhandled error",
                error=type(exc).__name__,
                where="".join(traceback.format_tb(exc.__traceback__)[-3:]),
            )
            status = status_map.internal(request_id)
            reason = "INTERNAL"
        await ctx.abort_with_status(status)
        return status.code.name, reason  # pragma: no cover - abort raises

    def _log(self, started: float, code: str, reason: str | None) -> None:
        principal = context.principal.get()
        log.info(
            "call",
            code=code,
            reason=reason,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            principal=principal.kind.value,
            **({"service": principal.service_name} if principal.service_name else {}),
        )

    @contextlib.asynccontextmanager
    async def _scope(
        self, method: str, ctx: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        """Everything around one call: context, authentication, error mapping, the log line."""
        request_id, started = await self._enter(method, ctx)
        code, reason = "OK", None
        try:
            context.principal.set(self._authenticate(method, ctx))
            ctx.set_trailing_metadata((("x-request-id", request_id),))
            yield
        except grpc.aio.AbortError:
            code = ctx.code().name if ctx.code() else "UNKNOWN"
            raise
        except asyncio.CancelledError:  # the caller went away or the deadline passed
            code = "CANCELLED"
            raise
        except Exception as exc:
            code, reason = self._status_names(exc)
            await self._fail(ctx, exc, request_id)
        finally:
            self._log(started, code, reason)

    def _wrap_unary(
        self, method: str, behaviour: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def call(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with self._scope(method, ctx):
                if isinstance(request, Message):
                    refuse_nul(request)
                return await behaviour(request, ctx)

        return call

    def _wrap_stream(
        self, method: str, behaviour: Callable[[Any, Any], Any]
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def call(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            async with self._scope(method, ctx):
                result = behaviour(request, ctx)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:
                    await result

        return call

    @staticmethod
    def _status_names(exc: BaseException) -> tuple[str, str]:
        if isinstance(exc, DomainError):
            return _CODE_NAMES[status_map.code_for(exc)], exc.reason
        return "INTERNAL", "INTERNAL"

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream), **kwargs
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(method, handler.stream_stream), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(method, handler.stream_unary), **kwargs
            )
        return handler
