"""The client helper (chatpro_privacy_client) against small real gRPC servers.

The fake servicers abort with statuses built by the service's own edge mapping where one
exists, so the decoding is checked against what the service really sends.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chatpro_privacy_client as cp
import grpc
import pytest
from chatpro.privacy.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    outbox_service_pb2,
    policy_pb2,
    policy_service_pb2,
    policy_service_pb2_grpc,
)
from chatpro_privacy.domain.accounts import roles
from chatpro_privacy.domain.kernel import errors as domain
from chatpro_privacy.edge import status as edge_status
from chatpro_privacy.testing import InProcessServer
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

FAST_TIMEOUT = 0.1  # seconds: long enough for a loopback call, short enough for the suite


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _status(code: int, message: str, *details: Any) -> grpc.Status:
    status = status_pb2.Status(code=code, message=message, details=[_pack(d) for d in details])
    result: grpc.Status = rpc_status.to_status(status)
    return result


def _header(context: grpc.ServicerContext, key: str) -> str:
    for k, v in context.invocation_metadata():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


# Each scenario: how the server fails, given the request id it received.
STATUSES: dict[str, Callable[[str], grpc.Status]] = {
    "invalid": lambda rid: edge_status.to_status(
        domain.InvalidArgument(
            [
                domain.FieldViolation("username", "3 to 32 characters", "USERNAME_TOO_SHORT"),
                domain.FieldViolation("email", "not an email address", "EMAIL_INVALID"),
            ]
        ),
        rid,
    ),
    "unauthenticated": lambda rid: edge_status.to_status(
        domain.Unauthenticated("TOKEN_INVALID", "the session token is not valid"), rid
    ),
    "permission": lambda rid: edge_status.to_status(
        domain.PermissionDenied("ROLE_REQUIRED", "needs a data privacy manager", {"role": "dpm"}),
        rid,
    ),
    "not_found": lambda rid: edge_status.to_status(
        domain.NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": "a42"}), rid
    ),
    "exists": lambda rid: edge_status.to_status(
        domain.AlreadyExists("USERNAME_TAKEN", "that username is taken"), rid
    ),
    "precondition": lambda rid: edge_status.to_status(
        domain.FailedPrecondition(
            "POLICY_VERSION_NOT_CURRENT", "accept the current policy", {"current": "2023-02-12"}
        ),
        rid,
    ),
    "throttled": lambda rid: edge_status.to_status(
        domain.ResourceExhausted("SIGN_IN_THROTTLED", "too many attempts", 30), rid
    ),
    "unavailable": lambda rid: edge_status.to_status(
        domain.Unavailable("DATABASE_UNAVAILABLE", "try again shortly"), rid
    ),
    "internal": edge_status.internal,
    "deadline": lambda rid: _status(
        code_pb2.DEADLINE_EXCEEDED,
        "upstream timed out",
        error_details_pb2.ErrorInfo(
            reason="UPSTREAM_TIMEOUT", domain=cp.DOMAIN, metadata={"request_id": rid}
        ),
    ),
    "unmapped": lambda rid: _status(
        code_pb2.DATA_LOSS,
        "lost",
        error_details_pb2.ErrorInfo(reason="LOST", domain=cp.DOMAIN, metadata={"request_id": rid}),
    ),
    "fractional_retry": lambda rid: _status(
        code_pb2.RESOURCE_EXHAUSTED,
        "slow down",
        error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)
        ),
    ),
    "proxy_info_first": lambda rid: _status(
        code_pb2.NOT_FOUND,
        "no such account",
        error_details_pb2.ErrorInfo(reason="UPSTREAM", domain="proxy.example"),
        error_details_pb2.ErrorInfo(
            reason="ACCOUNT_NOT_FOUND", domain=cp.DOMAIN, metadata={"request_id": "server-id"}
        ),
    ),
}


@dataclass
class Seen:
    """What the fake servers received, for the tests to inspect."""

    metadata: list[dict[str, list[str]]] = field(default_factory=list)
    time_remaining: list[float | None] = field(default_factory=list)
    peer_names: list[str] = field(default_factory=list)

    def record(self, context: grpc.ServicerContext) -> None:
        headers: dict[str, list[str]] = {}
        for key, value in context.invocation_metadata():
            headers.setdefault(key, []).append(value if isinstance(value, str) else "<bin>")
        self.metadata.append(headers)
        self.time_remaining.append(context.time_remaining())
        auth: dict[str, Any] = dict(context.auth_context())  # values are lists of bytes
        self.peer_names.extend(n.decode() for n in auth.get("x509_common_name", []))

    @property
    def last(self) -> dict[str, list[str]]:
        return self.metadata[-1]


class PolicyServicer(policy_service_pb2_grpc.PolicyServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def GetCurrentPolicy(
        self, request: policy_service_pb2.GetCurrentPolicyRequest, context: Any
    ) -> policy_service_pb2.GetCurrentPolicyResponse:
        self.seen.record(context)
        return policy_service_pb2.GetCurrentPolicyResponse(
            policy=policy_pb2.PolicyVersion(version="2023-02-12")
        )

    def GetControllerInfo(
        self, request: policy_service_pb2.GetControllerInfoRequest, context: Any
    ) -> policy_service_pb2.GetControllerInfoResponse:
        """Waits x-test-delay seconds, or until the client has gone, then answers."""
        self.seen.record(context)
        gone = threading.Event()
        context.add_callback(gone.set)
        gone.wait(float(_header(context, "x-test-delay") or 0))
        return policy_service_pb2.GetControllerInfoResponse(
            controller=policy_pb2.ControllerInfo(name="ChatPro Ltd")
        )


class AccountServicer(account_service_pb2_grpc.AccountServiceServicer):
    """GetAccount fails as the scenario named by account_id says."""

    def GetAccount(
        self, request: account_service_pb2.GetAccountRequest, context: Any
    ) -> account_service_pb2.GetAccountResponse:
        scenario = request.account_id
        if scenario == "plain":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        context.abort_with_status(STATUSES[scenario](_header(context, "x-request-id")))
        raise AssertionError("abort returned")  # pragma: no cover


@contextlib.contextmanager
def _serve(seen: Seen, bind: Callable[[grpc.Server], int]) -> Iterator[str]:
    """Serve the fake servicers on a port ``bind`` picks; yields the target."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    # The fakes implement only the methods the client helper calls; the generated bases answer
    # UNIMPLEMENTED for the rest, though their stubs declare every method abstract.
    policy = PolicyServicer(seen)  # type: ignore[abstract]
    policy_service_pb2_grpc.add_PolicyServiceServicer_to_server(policy, server)
    accounts = AccountServicer()  # type: ignore[abstract]
    account_service_pb2_grpc.add_AccountServiceServicer_to_server(accounts, server)
    port = bind(server)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    with _serve(seen, lambda s: s.add_insecure_port("127.0.0.1:0")) as target:
        yield target, seen


@pytest.fixture
def ids() -> Iterator[str]:
    return (f"req-{n}" for n in itertools.count(1))


@pytest.fixture
def client(fake: tuple[str, Seen], ids: Iterator[str]) -> Iterator[cp.Client]:
    target, _ = fake
    with cp.connect(target, token="tok-1", request_id_factory=lambda: next(ids)) as c:
        yield c


def _policy(c: cp.Client, **kw: Any) -> policy_service_pb2.GetCurrentPolicyResponse:
    return c.policy.GetCurrentPolicy(policy_service_pb2.GetCurrentPolicyRequest(), **kw)


def _fail(c: cp.Client, scenario: str) -> cp.ChatProError:
    with pytest.raises(cp.ChatProError) as caught:
        c.accounts.GetAccount(account_service_pb2.GetAccountRequest(account_id=scenario))
    return caught.value


# --- metadata ---------------------------------------------------------------------------


def test_bearer_token_and_request_id_arrive(client: cp.Client, fake: tuple[str, Seen]) -> None:
    _, seen = fake
    assert _policy(client).policy.version == "2023-02-12"
    assert seen.last["authorization"] == ["Bearer tok-1"]
    assert seen.last["x-request-id"] == ["req-1"]
    _policy(client)
    assert seen.last["x-request-id"] == ["req-2"]


def test_default_request_id_is_fresh_uuid4_hex(fake: tuple[str, Seen]) -> None:
    target, seen = fake
    with cp.connect(target) as c:
        _policy(c)
        first = seen.last
        _policy(c)
        second = seen.last
    assert "authorization" not in first  # no token, no header
    assert re.fullmatch(r"[0-9a-f]{32}", first["x-request-id"][0])
    assert first["x-request-id"] != second["x-request-id"]


def test_caller_metadata_wins(client: cp.Client, fake: tuple[str, Seen]) -> None:
    _, seen = fake
    _policy(
        client,
        metadata=(("x-request-id", "mine"), ("authorization", "Bearer other"), ("x-extra", "1")),
    )
    assert seen.last["x-request-id"] == ["mine"]
    assert seen.last["authorization"] == ["Bearer other"]
    assert seen.last["x-extra"] == ["1"]


def test_with_token_shares_the_channel_with_another_token(
    client: cp.Client, fake: tuple[str, Seen]
) -> None:
    _, seen = fake
    other = client.with_token("tok-2")
    _policy(other)
    assert seen.last["authorization"] == ["Bearer tok-2"]
    assert other.token == "tok-2"
    _policy(client.with_token(None))
    assert "authorization" not in seen.last
    other.close()  # does not own the channel: the original keeps working
    _policy(client)
    assert seen.last["authorization"] == ["Bearer tok-1"]


# --- deadlines --------------------------------------------------------------------------


def test_default_deadline_is_sent_and_a_caller_timeout_replaces_it(
    client: cp.Client, fake: tuple[str, Seen]
) -> None:
    _, seen = fake
    _policy(client)
    remaining = seen.time_remaining[-1]
    # gRPC rounds the deadline it sends up a little, hence the slack.
    assert remaining is not None and 0 < remaining <= cp.DEFAULT_TIMEOUT + 1
    _policy(client, timeout=60)
    remaining = seen.time_remaining[-1]
    assert remaining is not None and cp.DEFAULT_TIMEOUT + 1 < remaining <= 61


def test_default_deadline_expires(fake: tuple[str, Seen]) -> None:
    target, _ = fake
    with cp.connect(target, default_timeout=FAST_TIMEOUT, request_id_factory=lambda: "r") as c:
        slow = (("x-test-delay", "5"),)
        request = policy_service_pb2.GetControllerInfoRequest()
        with pytest.raises(cp.DeadlineExceeded) as caught:
            c.policy.GetControllerInfo(request, metadata=slow)
        assert isinstance(caught.value, grpc.RpcError)
        assert caught.value.status_code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert caught.value.reason == "DEADLINE_EXCEEDED"
        assert caught.value.request_id == "r"
        # A caller's own timeout= outlives the small default.
        quick = (("x-test-delay", str(FAST_TIMEOUT * 1.5)),)
        answer = c.policy.GetControllerInfo(request, metadata=quick, timeout=10)
        assert answer.controller.name == "ChatPro Ltd"


# --- typed errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "cls", "reason", "metadata"),
    [
        ("unauthenticated", cp.Unauthenticated, "TOKEN_INVALID", {}),
        ("permission", cp.PermissionDenied, "ROLE_REQUIRED", {"role": "dpm"}),
        ("not_found", cp.NotFound, "ACCOUNT_NOT_FOUND", {"account_id": "a42"}),
        ("exists", cp.AlreadyExists, "USERNAME_TAKEN", {}),
        (
            "precondition",
            cp.FailedPrecondition,
            "POLICY_VERSION_NOT_CURRENT",
            {"current": "2023-02-12"},
        ),
        ("unavailable", cp.Unavailable, "DATABASE_UNAVAILABLE", {}),
        ("internal", cp.Internal, "INTERNAL", {}),
        ("deadline", cp.DeadlineExceeded, "UPSTREAM_TIMEOUT", {}),
        ("unmapped", cp.ChatProError, "LOST", {}),
    ],
)
def test_each_code_maps_to_its_class(
    client: cp.Client,
    scenario: str,
    cls: type[cp.ChatProError],
    reason: str,
    metadata: dict[str, str],
) -> None:
    error = _fail(client, scenario)
    assert type(error) is cls
    assert isinstance(error, grpc.RpcError)
    assert error.status_code is (
        cls.grpc_code if cls is not cp.ChatProError else grpc.StatusCode.DATA_LOSS
    )
    assert error.reason == reason
    assert error.metadata == {**metadata, "request_id": "req-1"}
    assert error.request_id == "req-1"
    assert error.domain == cp.DOMAIN
    assert error.field_violations == []
    # UNAVAILABLE says when to retry (RetryInfo), as every retryable refusal does.
    assert error.retry_after == (1.0 if cls is cp.Unavailable else None)
    assert error.message and error.details() == error.message
    assert reason in str(error) and "req-1" in str(error)


def test_invalid_argument_carries_field_violations(client: cp.Client) -> None:
    error = _fail(client, "invalid")
    assert isinstance(error, cp.InvalidArgument)
    assert error.status_code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "USERNAME_TOO_SHORT"  # the service reports the first field's reason
    assert error.field_violations == [
        cp.FieldViolation("username", "3 to 32 characters", "USERNAME_TOO_SHORT"),
        cp.FieldViolation("email", "not an email address", "EMAIL_INVALID"),
    ]
    assert error.field_violations[1].field == "email"
    assert error.message == "username: 3 to 32 characters; email: not an email address"


def test_resource_exhausted_carries_retry_after(client: cp.Client) -> None:
    error = _fail(client, "throttled")
    assert isinstance(error, cp.ResourceExhausted)
    assert error.reason == "SIGN_IN_THROTTLED"
    assert error.retry_after == 30.0
    assert error.metadata["retry_after_seconds"] == "30"
    fractional = _fail(client, "fractional_retry")
    assert isinstance(fractional, cp.ResourceExhausted)
    assert fractional.retry_after == 1.5
    assert fractional.reason == "RESOURCE_EXHAUSTED"  # no ErrorInfo sent


def test_only_what_the_service_marks_retryable_is_retryable(client: cp.Client) -> None:
    """Issue 19 item 3: RetryInfo, not the code, says whether a call is worth resending."""
    assert _fail(client, "throttled").retryable
    assert not _fail(client, "plain").retryable
    assert not cp.ResourceExhausted("too large", reason="RESPONSE_TOO_LARGE").retryable


def test_a_request_over_the_limit_is_not_retryable(server: InProcessServer) -> None:
    """A request over 4 MiB: refused, never marked retryable, so it is not resent for ever."""
    with cp.connect(server.target) as client:
        with pytest.raises(cp.ChatProError) as caught:
            client.accounts.SignIn(
                account_service_pb2.SignInRequest(login="x" * (5 << 20), password="p")
            )
        assert caught.value.code() in {
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.INVALID_ARGUMENT,
        }
        assert not caught.value.retryable and caught.value.retry_after is None


def test_our_error_info_wins_over_a_proxys(client: cp.Client) -> None:
    error = _fail(client, "proxy_info_first")
    assert isinstance(error, cp.NotFound)
    assert (error.reason, error.domain) == ("ACCOUNT_NOT_FOUND", cp.DOMAIN)
    assert error.request_id == "server-id"  # the service's own id beats the one sent


def test_error_without_details_still_maps(client: cp.Client) -> None:
    error = _fail(client, "plain")
    assert type(error) is cp.NotFound
    assert error.reason == "NOT_FOUND"
    assert error.message == "no such thing"
    assert error.metadata == {}
    assert error.field_violations == []
    assert error.retry_after is None
    assert error.request_id == "req-1"  # the id the call was sent with
    assert isinstance(error.rpc_error, grpc.RpcError)
    assert str(error) == "NOT_FOUND: no such thing (request id req-1)"


def test_errors_survive_pickling(client: cp.Client) -> None:
    """So that they can cross process boundaries (process pools, task queues)."""
    error = _fail(client, "invalid")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cp.InvalidArgument
    assert (copy.status_code, copy.reason, copy.request_id) == (
        error.status_code,
        error.reason,
        "req-1",
    )
    assert copy.field_violations == error.field_violations
    assert copy.rpc_error is None
    assert str(copy) == str(error)


def test_still_caught_as_grpc_rpc_error(client: cp.Client) -> None:
    request = account_service_pb2.GetAccountRequest(account_id="not_found")
    with pytest.raises(grpc.RpcError) as caught:
        client.accounts.GetAccount(request)
    assert isinstance(caught.value, cp.NotFound)


def test_future_and_with_call_are_translated(client: cp.Client) -> None:
    request = account_service_pb2.GetAccountRequest(account_id="not_found")
    future = client.accounts.GetAccount.future(request)
    called: list[Any] = []
    future.add_done_callback(called.append)
    error = future.exception()
    assert isinstance(error, cp.NotFound)
    with pytest.raises(cp.NotFound) as caught:
        future.result()
    assert caught.value is error
    assert called and called[0].exception() is error
    with pytest.raises(cp.NotFound):
        client.accounts.GetAccount.with_call(request)
    response, call = client.policy.GetCurrentPolicy.with_call(
        policy_service_pb2.GetCurrentPolicyRequest()
    )
    assert response.policy.version == "2023-02-12"
    assert call.code() is grpc.StatusCode.OK


@contextlib.contextmanager
def _refusing_port() -> Iterator[int]:
    """A loopback port that is bound but not listening, so connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_unreachable_service_is_unavailable() -> None:
    with (
        _refusing_port() as port,
        cp.connect(f"127.0.0.1:{port}", default_timeout=2) as c,
        pytest.raises(cp.Unavailable) as caught,
    ):
        _policy(c)
    assert caught.value.reason == "UNAVAILABLE"


def test_from_rpc_error_on_a_bare_rpc_error() -> None:
    error = cp.from_rpc_error(grpc.RpcError(), request_id="r1")
    assert type(error) is cp.ChatProError
    assert (error.status_code, error.reason, error.request_id) == (
        grpc.StatusCode.UNKNOWN,
        "UNKNOWN",
        "r1",
    )
    assert cp.from_rpc_error(error) is error
    assert cp.error_class(grpc.StatusCode.CANCELLED) is cp.ChatProError


# --- connect ----------------------------------------------------------------------------


def test_connect_rejects_half_a_client_key_pair_and_bad_timeouts() -> None:
    with pytest.raises(ValueError, match="together"):
        cp.connect("127.0.0.1:1", client_certificate=b"cert")
    with pytest.raises(ValueError, match="positive"):
        cp.connect("127.0.0.1:1", default_timeout=0)


def _make_pki(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate for a service."""

    def openssl(command: str) -> None:
        subprocess.run(
            ["openssl", *command.split()], cwd=directory, check=True, capture_output=True
        )

    new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl(
        f"req -x509 {new_key} -keyout ca.key -out ca.pem -days 1 -subj /CN=test-ca"
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
    )
    for name, extension in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("notifications", "extendedKeyUsage=clientAuth"),
    ):
        (directory / f"{name}.ext").write_text(extension + "\n")
        openssl(f"req {new_key} -keyout {name}.key -out {name}.csr -subj /CN={name}")
        openssl(
            f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
            f" -out {name}.pem -days 1 -extfile {name}.ext"
        )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl tool")
def test_mutual_tls_with_a_service_certificate(tmp_path: Path) -> None:
    _make_pki(tmp_path)

    def pem(name: str) -> bytes:
        return (tmp_path / name).read_bytes()

    credentials = grpc.ssl_server_credentials(
        [(pem("server.key"), pem("server.pem"))],
        root_certificates=pem("ca.pem"),
        require_client_auth=True,
    )
    seen = Seen()
    with _serve(seen, lambda s: s.add_secure_port("127.0.0.1:0", credentials)) as target:
        with cp.connect(
            target,
            token="cpsvc1_token",
            root_certificates=pem("ca.pem"),
            client_certificate=pem("notifications.pem"),
            client_key=pem("notifications.key"),
        ) as c:
            _policy(c)
        assert seen.peer_names == ["notifications"]
        assert seen.last["authorization"] == ["Bearer cpsvc1_token"]
        # Without a client certificate the server refuses the handshake.
        with (
            cp.connect(target, tls=True, root_certificates=pem("ca.pem"), default_timeout=2) as c,
            pytest.raises(cp.Unavailable),
        ):
            _policy(c)


# --- against the real service -----------------------------------------------------------


def test_against_the_real_service(server: InProcessServer) -> None:
    with cp.connect(server.target) as anonymous:
        assert _policy(anonymous).policy.version  # public: no token needed
        with pytest.raises(cp.Unauthenticated) as caught:
            anonymous.accounts.GetAccount(account_service_pb2.GetAccountRequest())
        assert caught.value.reason == "CREDENTIALS_REQUIRED"
        assert caught.value.domain == cp.DOMAIN
        assert caught.value.request_id
        with pytest.raises(cp.Unauthenticated) as caught:
            anonymous.with_token("cps1_" + "A" * 43).accounts.GetAccount(
                account_service_pb2.GetAccountRequest()
            )
        assert caught.value.reason == "TOKEN_INVALID"
        service = anonymous.with_token(roles.add_service("notifications", scopes=("outbox",)))
        listed = service.outbox.ListOutboxEvents(outbox_service_pb2.ListOutboxEventsRequest())
        assert listed.acknowledged_sequence == 0
        with pytest.raises(cp.InvalidArgument) as invalid:
            service.outbox.ListOutboxEvents(
                outbox_service_pb2.ListOutboxEventsRequest(page_size=-1)
            )
        assert [v.field for v in invalid.value.field_violations] == ["page_size"]
