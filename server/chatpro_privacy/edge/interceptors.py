"""One server interceptor for every call: request id and log context, authentication,
domain error -> google.rpc.Status, and exactly one access log line.

It wraps each method's behaviour, so the code runs in the call's own task and the
context variables it sets (request id, principal) are visible to the servicer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import re
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
import structlog
from google.protobuf.message import Message

from chatpro_privacy import context
from chatpro_privacy.domain.accounts.sessions import Sessions
from chatpro_privacy.domain.consent.policy import PolicyGate
from chatpro_privacy.domain.kernel.errors import (
    DomainError,
    PermissionDenied,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from chatpro_privacy.domain.kernel.principals import ANONYMOUS, Principal
from chatpro_privacy.edge import client_address, request_caps, requests
from chatpro_privacy.edge import status as status_map
from chatpro_privacy.edge.admission import Admission, Ticket
from chatpro_privacy.edge.call_workers import CallWorkers
from chatpro_privacy.edge.inline_calls import InlineCalls
from chatpro_privacy.settings import MAX_MESSAGE_BYTES

log = structlog.get_logger("chatpro_privacy.access")
T = TypeVar("T")

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
        "ConsentService/GetLegitimateInterestAssessment",
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
# Served on call workers of their own (issue 15): calls waiting on other work (a flood of
# password changes waiting for their hashes) cannot hold every worker sign-in needs.
SIGN_IN_METHODS = frozenset({_V1 + "AccountService/SignIn"})
# Authenticated by a statement that also reads the caller's account (Principal.own_account).
READS_OWN_ACCOUNT = frozenset({_V1 + "AccountService/GetAccount"})
# Methods throttled by the end user's address (``client_address.py``): only these read it, so
# no other call is slowed or refused over an x-forwarded-for it does not use.
ADDRESS_METHODS = frozenset({_V1 + "AccountService/SignIn", _V1 + "AccountService/Register"})
# What a person may still do before accepting a policy version that requires it (CON-1).
GATE_EXEMPT_METHODS = frozenset(
    _V1 + name
    for name in (
        "PolicyService/AcceptPolicy",
        "PolicyService/ListPendingAcceptances",
        "ConsentService/WithdrawConsent",
        "ConsentService/PreviewWithdrawal",
        "RightsService/CreateRightsRequest",
        # Following a request up: a person's rights never wait on accepting a policy.
        "RightsService/GetRightsRequest",
        "RightsService/ListRightsRequests",
        "RightsService/StreamRightsExport",
        "RightsService/CancelRightsRequest",
        # What the person consented to, and the proof of it.
        "ConsentService/GetConsentState",
        "ConsentService/ListConsentEvents",
        "ConsentService/GetConsentReceipt",
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
# grpc (1.85) cancels a call that reaches it once it has begun to stop (grpc/grpc#41785): the
# client sees CANCELLED, which it does not retry, and no code of ours runs to answer it. So
# if calls are still being refused at the end of a drain, the next ones are held this long
# (each client calling in a loop then waits on one) and answered UNAVAILABLE only once grpc
# has told every connection to go away (after GOAWAY_SECONDS): a client's next call finds the
# port closed, an UNAVAILABLE of its own, instead of arriving while grpc stops. A server
# nobody calls any more (a test's) stops at once.
HOLD_SECONDS = 0.1
GOAWAY_SECONDS = 0.02
# How long the end of a client stream waits to be sure the client ended it (see _whole).
END_SETTLE_SECONDS = 0.1
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_public(method: str) -> bool:
    return method in PUBLIC_METHODS or method.startswith(PUBLIC_PREFIXES)


async def _empty() -> AsyncIterator[Any]:
    return
    yield  # pragma: no cover - makes this an async generator


def _metadata(ctx: Any, key: str) -> str:
    for k, v in ctx.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode("utf-8", "replace")
    return ""


class DatabaseGuard(Protocol):
    """What the edge needs to know of the database's health (see database_health.py)."""

    def before_call(self) -> None: ...

    def failure(self, exc: BaseException) -> DomainError | None: ...

    def refuse_if_down(self) -> None: ...


@dataclass
class _Call:
    """One call's state shared between the server's loop and its worker."""

    principal: Principal = ANONYMOUS
    ticket: Ticket | None = None  # its places in the admission budgets


class _CallView:
    """The call as its worker sees it: what was read of it on the server's loop. gRPC's
    context belongs to the server's loop and is not touched from a worker."""

    def __init__(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._peer = ctx.peer()
        self._metadata = tuple(ctx.invocation_metadata() or ())
        self._auth = dict(ctx.auth_context())

    def peer(self) -> str:
        return str(self._peer)

    def invocation_metadata(self) -> tuple[Any, ...]:
        return self._metadata

    def auth_context(self) -> dict[str, Any]:
        return self._auth


_END = object()  # a server stream has no more items


async def _whole(
    messages: AsyncIterator[Any], ctx: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    """A client stream's messages; its end only if the client ended it. grpc ends the
    stream of a call the client cancelled (or whose connection broke) as if the client had
    sent its last message, and may tell of the cancellation only a moment later: read as the
    end, half an upload would be stored as a whole (4 cancelled uploads in 20 were). So the
    end waits up to END_SETTLE_SECONDS for the call to turn out cancelled; a client that
    really ended its stream keeps its call open for the answer, and nothing comes."""
    try:
        async for message in messages:
            yield message
    except grpc.aio.AbortError:  # answered already (the server drains): the call is over
        raise asyncio.CancelledError from None
    if not ctx.done():
        ended = asyncio.get_running_loop().create_future()

        def done(_: grpc.aio.ServicerContext[Any, Any]) -> None:
            if not ended.done():
                ended.set_result(None)

        # grpc takes any callable; its stubs name a class of their own.
        ctx.add_done_callback(done)  # type: ignore[arg-type]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended, END_SETTLE_SECONDS)
    if ctx.cancelled() or ctx.done():
        raise asyncio.CancelledError


def _fits(response: T) -> T:
    """``response``, if it fits the largest message the server may send. Left to grpc, one
    that does not fails RESOURCE_EXHAUSTED after the call was logged OK; here it fails with
    a reason, and the log line says what the client got."""
    if isinstance(response, Message) and response.ByteSize() > MAX_MESSAGE_BYTES:
        raise TooLarge(
            "RESPONSE_TOO_LARGE",
            f"the response would be {response.ByteSize()} bytes, over {MAX_MESSAGE_BYTES}",
        )
    return response


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        sessions: Sessions,
        gate: PolicyGate,
        workers: CallWorkers | None = None,
        guard: DatabaseGuard | None = None,
        admission: Admission | None = None,
        sign_in_workers: CallWorkers | None = None,
        on_call: Callable[[str, str, float], None] | None = None,
        inline: InlineCalls | None = None,
    ) -> None:
        self.sessions = sessions
        self.inline = inline  # SQLite: hot calls on the server's loop (inline_calls.py)
        self.gate = gate
        self.workers = workers
        self.sign_in_workers = sign_in_workers
        self.guard = guard
        self.admission = admission or Admission()
        # Told of every answered call: (method, code name, seconds), e.g. for metrics.
        self.on_call = on_call
        self.draining = False
        self._cut_off = False
        self._calls: set[asyncio.Task[Any]] = set()  # the service's: the drain waits for them
        # Health and reflection calls: not waited for (a Health/Watch never ends by itself),
        # but answered at the cut-off like the rest, so that none is left for grpc to cancel.
        self._infrastructure: set[asyncio.Task[Any]] = set()
        self._last_refused = 0.0  # time.monotonic() of the latest call refused as draining
        self._release: asyncio.Event | None = None  # set: held refusals are answered
        # method -> (the servicer's handler, it wrapped by this interceptor)
        self._handlers: dict[
            str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}

    @staticmethod
    def _credentials(ctx: Any) -> tuple[str, str | None]:
        """The bearer token (or "") and the verified client certificate's subject, if any."""
        header = _metadata(ctx, "authorization")
        scheme, _, token = header.partition(" ")
        if header and scheme.lower() != "bearer":
            raise Unauthenticated("TOKEN_MALFORMED", "authorization must be 'Bearer <token>'")
        subject = None
        auth = ctx.auth_context()
        names = list(auth.get("x509_common_name") or ())
        if list(auth.get("transport_security_type") or ()) == [b"ssl"] and names:
            subject = names[0].decode("utf-8", "replace")
        return token.strip(), subject

    def _forwarder(self, ctx: Any) -> Principal:
        """On a public call carrying x-forwarded-for: the service that forwards it, if its
        credentials are good; otherwise anonymous (the header is then ignored). A public call
        never fails for its credentials: an app may send a stale session token with all."""
        try:
            token, subject = self._credentials(ctx)
            if token or subject:
                return self.sessions.authenticate(token, subject)
        except Unauthenticated:
            pass
        return ANONYMOUS

    def _client_address(self, method: str, ctx: Any, principal: Principal) -> str:
        header = _metadata(ctx, client_address.HEADER)
        if header and is_public(method):
            principal = self._forwarder(ctx)
        return client_address.client_address(principal, str(ctx.peer() or ""), header)

    def _authenticate(self, method: str, ctx: Any, call: _Call) -> None:
        """Sets ``call.principal`` as soon as the caller is known, so that a refusal of
        theirs (a guardian's session out of scope, a policy to accept) is logged as theirs."""
        if is_public(method):
            return
        token, subject = self._credentials(ctx)
        principal = self.sessions.authenticate(
            token, subject, with_account=method in READS_OWN_ACCOUNT
        )
        call.principal = principal
        if principal.is_guardian and not method.startswith(GUARDIAN_PREFIXES):
            raise PermissionDenied(
                "GUARDIAN_SESSION_SCOPE",
                "a guardian's session covers consent and rights requests only",
            )
        if method not in GATE_EXEMPT_METHODS:
            self.gate.check(principal)

    async def _enter(
        self, method: str, ctx: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[str, float]:
        supplied = _metadata(ctx, "x-request-id")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        context.request_id.set(request_id)
        context.statements.set(context.Statements())
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

    def _log(self, started: float, code: str, reason: str | None, principal: Principal) -> None:
        counted = context.statements.get()
        log.info(
            "call",
            code=code,
            reason=reason,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            db_statements=counted.count if counted is not None else 0,
            principal=principal.kind.value,
            **({"service": principal.service_name} if principal.service_name else {}),
        )

    @contextlib.asynccontextmanager
    async def _scope(
        self, method: str, ctx: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[_Call]:
        """Everything around one call on the server's loop: context, error mapping, the log
        line. While the server drains, new calls are refused and those still running at the
        end of the grace period are answered UNAVAILABLE, so a client retries elsewhere."""
        request_id, started = await self._enter(method, ctx)
        code, reason = "OK", None
        call = _Call()
        task = asyncio.current_task()
        tracked = not method.startswith(PUBLIC_PREFIXES)
        running = self._calls if tracked else self._infrastructure
        if task is not None:
            running.add(task)
        try:
            if self.draining and tracked:
                self._last_refused = time.monotonic()
                if self._release is not None:
                    await self._release.wait()
                raise Unavailable(
                    "SERVER_DRAINING", "this server is shutting down; retry on another"
                )
            ctx.set_trailing_metadata((("x-request-id", request_id),))
            call.ticket = self.admission.enter(method, ctx.peer())
            yield call
        except grpc.aio.AbortError:
            code = ctx.code().name if ctx.code() else "UNKNOWN"
            raise
        except asyncio.CancelledError as exc:
            if not self._cut_off:
                code = "CANCELLED"  # the caller went away or the deadline passed
                raise
            drained = Unavailable(
                "SERVER_DRAINING", "this server shut down before the call finished; retry"
            )
            code, reason = self._status_names(drained)
            await self._fail(ctx, drained, request_id)
            raise AssertionError("unreachable") from exc  # pragma: no cover - abort raises
        except Exception as exc:
            code, reason = self._status_names(exc)
            await self._fail(ctx, exc, request_id)
        finally:
            if call.ticket is not None:
                self.admission.leave(call.ticket)
            if task is not None:
                running.discard(task)
            self._log(started, code, reason, call.principal)
            if self.on_call is not None:
                self.on_call(method, code, time.perf_counter() - started)

    async def drain(self, grace: float) -> None:
        """Refuse new calls, give running ones ``grace`` seconds, then answer the rest
        UNAVAILABLE (never CANCELLED: the client retries with its request id). Open health
        watches end UNAVAILABLE too, having been told NOT_SERVING: left to the server's stop,
        grpc would cancel them, and log each as an error."""
        self.draining = True
        deadline = time.monotonic() + grace
        while self._calls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._cut_off = True
        for task in (*self._calls, *self._infrastructure):
            task.cancel()
        while (self._calls or self._infrastructure) and time.monotonic() < deadline + 2:
            await asyncio.sleep(0.01)

    async def stop(self, server: grpc.aio.Server, grace: float = 0.5) -> None:
        """After ``drain``: stop ``server``, holding the refusal of calls that keep arriving
        until grpc has told their connections to go away (see HOLD_SECONDS); ``grace`` is
        grpc's own, for whatever is still running."""
        release = asyncio.Event()
        holding = time.monotonic() - self._last_refused < HOLD_SECONDS
        if holding:
            self._release = release
            await asyncio.sleep(HOLD_SECONDS)
        stopping = asyncio.ensure_future(server.stop(grace))
        try:
            if holding:
                await asyncio.sleep(GOAWAY_SECONDS)
        finally:
            release.set()
            for task in list(self._infrastructure):  # a health watch opened since the cut-off
                task.cancel()
        await stopping

    def _admit(self, method: str, ctx: Any, call: _Call) -> None:
        """Authenticate the caller and check the request, on the call's worker."""
        if self.guard is not None:
            self.guard.refuse_if_down()
            self.guard.before_call()
        self._authenticate(method, ctx, call)
        context.principal.set(call.principal)
        if call.ticket is not None:
            self.admission.enter_principal(call.ticket, call.principal)
        if method in ADDRESS_METHODS:
            context.client_address.set(self._client_address(method, ctx, call.principal))

    async def _guarded(self, work: Awaitable[T]) -> T:
        """On a worker: a database failure becomes the retryable error it is."""
        try:
            return await work
        except DomainError:
            raise
        except Exception as exc:
            mapped = self.guard.failure(exc) if self.guard is not None else None
            if mapped is not None:
                raise mapped from exc
            raise

    def _workers_for(self, method: str) -> CallWorkers | None:
        """The call workers a call runs on; None: on the server's loop (health, reflection)."""
        if method.startswith(PUBLIC_PREFIXES):
            return None
        if method in SIGN_IN_METHODS and self.sign_in_workers is not None:
            return self.sign_in_workers
        return self.workers

    def _wrap_unary(
        self, method: str, behaviour: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def work(request: Any, view: Any, call: _Call) -> Any:
            self._admit(method, view, call)
            requests.check(request)
            return _fits(await behaviour(request, view))

        async def handle(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with self._scope(method, ctx) as call:
                if request is requests.UNDECODABLE:
                    requests.check(request)
                if isinstance(request, Message):
                    request_caps.check(request)  # before any work, on the server's loop
                else:  # a client stream
                    request = requests.checked(request)
                workers = self._workers_for(method)
                if workers is None:
                    return await work(request, ctx, call)
                inline = self.inline
                if inline is not None and inline.take(method):
                    try:
                        answer, mark = await self._guarded(inline.marked(work(request, ctx, call)))
                    finally:
                        inline.give_back()
                    await self._guarded(inline.written(mark))  # never OK before it is durable
                    return answer
                async with workers.lease() as lease:
                    if not isinstance(request, Message):  # a client stream
                        request = lease.incoming(_whole(request, ctx), request_caps.check)
                    return await lease.run(self._guarded(work(request, _CallView(ctx), call)))

        return handle

    def _wrap_stream(
        self, method: str, behaviour: Callable[[Any, Any], Any]
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def start(
            request: Any, view: Any, call: _Call
        ) -> tuple[AsyncIterator[Any], contextvars.Context]:
            """The stream's items, and the context (the principal) they are made in."""
            self._admit(method, view, call)
            requests.check(request)
            result = behaviour(request, view)
            if not inspect.isasyncgen(result):
                await result
                result = _empty()
            return result, contextvars.copy_context()

        async def step(items: AsyncIterator[Any]) -> Any:
            """The next item, and whether the worker may be lent out while it is sent."""
            item = await anext(items, _END)
            lendable = self.workers is not None and self.workers.may_lend()
            return (item if item is _END else _fits(item)), lendable

        async def handle(
            request: Any, ctx: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with self._scope(method, ctx) as call:
                if request is requests.UNDECODABLE:
                    requests.check(request)
                if isinstance(request, Message):
                    request_caps.check(request)  # before any work, on the server's loop
                else:  # a bidirectional stream
                    request = requests.checked(request)
                workers = self._workers_for(method)
                if workers is None:
                    items, _ = await start(request, ctx, call)
                    async for item in items:
                        yield _fits(item)
                    return
                async with workers.lease() as lease:
                    started = start(request, _CallView(ctx), call)
                    items, made_in = await lease.run(self._guarded(started))
                    try:
                        while True:
                            item, lendable = await lease.run(
                                self._guarded(step(items)), made_in.copy()
                            )
                            if item is _END:
                                break
                            if lendable:  # a client slow to read holds no worker meanwhile
                                lease.lend()
                            try:
                                yield item
                            finally:
                                await lease.take_back()
                    finally:
                        if inspect.isasyncgen(items):
                            with contextlib.suppress(BaseException):
                                await lease.run(items.aclose(), made_in.copy())

        return handle

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
        made = self._handlers.get(method)
        if made is None or made[0] is not handler:  # wrapped once, not on every call
            made = self._handlers[method] = (handler, self._wrap(method, handler))
        return made[1]

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        kwargs = {
            "request_deserializer": requests.tolerant(handler.request_deserializer),
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
