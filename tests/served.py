"""A `chatpro-privacy serve` process for the runtime trials (issue 14: database faults,
draining): its JSON log, client threads keeping it under a mixed load of reads and writes
while recording every answer, and a Health/Watch stream recording what health said when.
Shared by test_database_faults and test_drain, which need the same served process and load;
fixtures stay in conftest.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
from chatpro.privacy.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    consent_service_pb2,
    consent_service_pb2_grpc,
)
from chatpro_privacy.storage.db import close_database, open_database
from chatpro_privacy.storage.models import ConsentEvent, Device
from chatpro_privacy.testing import InProcessServer
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from helpers import PASSWORD, content_key_env, free_port, registration, wait_until_serving

IMPATIENCE = 0.05  # seconds an impatient client waits after a refusal
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` every 10 ms until it holds; fail naming ``what`` after ``timeout``
    seconds. Returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def served_url(url: str, schema: str | None, application_name: str = "") -> str:
    """``url`` as a served process must be given it: on PostgreSQL the test's schema as its
    search path, and an application name that tells its connections from the test's."""
    if schema is None:
        return url
    query = [f"options={quote(f'-c search_path={schema}')}"]
    if application_name:
        query.append(f"application_name={application_name}")
    return url + ("&" if "?" in url else "?") + "&".join(query)


@dataclass
class Served:
    """A running `chatpro-privacy serve` and the file its JSON log goes to."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON line logged so far."""
        text = self.log.read_text("utf-8", "replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def calls(self) -> dict[str, list[dict[str, Any]]]:
        """Access log lines by request id."""
        found: dict[str, list[dict[str, Any]]] = {}
        for line in self.lines():
            if line.get("event") == "call":
                found.setdefault(str(line.get("request_id")), []).append(line)
        return found

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, and the exit status once it has drained and stopped."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@contextmanager
def serve(folder: Path, database_url: str, *args: str, secret_key: bytes = b"") -> Iterator[Served]:
    """`chatpro-privacy serve` on a free loopback port with a JSON log; killed on exit if the
    test did not stop it."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CHATPRO_SECRET_KEY": (secret_key or secrets.token_bytes(32)).hex(),
        "CHATPRO_RECEIPT_SIGNING_KEY": secrets.token_hex(32),
        **content_key_env(folder),
        "CHATPRO_LOG_FORMAT": "json",
    }
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatpro_privacy", "serve", "--address", f"127.0.0.1:{port}", *args],
            env=environment, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        wait_until_serving(f"127.0.0.1:{port}", timeout=30)
        yield Served(process, port, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def log_time(line: dict[str, Any]) -> float:
    """A log line's timestamp in seconds since the epoch."""
    return dt.datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


# -- answers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One call as its client saw it."""

    method: str
    request_id: str
    code: grpc.StatusCode
    reason: str  # ErrorInfo's; empty when the server's application never answered
    retry_delay: float | None  # RetryInfo's, in seconds
    started: float  # time.monotonic()
    ended: float

    @property
    def answered(self) -> bool:
        """Whether the service answered it (OK, or a refusal with a google.rpc.Status), as
        opposed to a call that never reached it (the port closed)."""
        return self.code == grpc.StatusCode.OK or bool(self.reason)


def outcome(
    method: str, request_id: str, started: float, error: grpc.RpcError | None = None
) -> Outcome:
    ended = time.monotonic()
    if error is None:
        return Outcome(method, request_id, grpc.StatusCode.OK, "", None, started, ended)
    reason, delay = "", None
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.ToTimedelta().total_seconds()
    return Outcome(method, request_id, error.code(), reason, delay, started, ended)


# -- load -------------------------------------------------------------------------------------


def sign_up(url: str, schema: str | None, prefix: str, count: int, secret_key: bytes) -> list[str]:
    """``count`` adults registered and signed in; their session tokens. Through a server in
    this process that hashes passwords with argon2's test parameters: a served process hashes
    at full cost (a second a hash on a busy machine), and it verifies a hash at the cost the
    hash names. Sessions are rows, valid for whichever process serves the database after."""
    with InProcessServer.start(url, schema=schema, secret_key=secret_key) as server:
        channel = grpc.insecure_channel(server.target)
        stub = account_service_pb2_grpc.AccountServiceStub(channel)
        tokens = []
        for i in range(count):
            stub.Register(registration(username=f"{prefix}{i}"), timeout=30)
            signed = stub.SignIn(
                account_service_pb2.SignInRequest(login=f"{prefix}{i}", password=PASSWORD),
                timeout=30,
            )
            tokens.append(str(signed.session_token))
        channel.close()
    return tokens


@dataclass
class Load:
    """``clients`` threads each calling in turn GetAccount (a read), RecordDeviceUse (a count
    on a device of the client's own) and GrantConsent (an event appended), recording every
    answer. After a refusal a client waits, as long as RetryInfo asks if ``patient``. It
    stops at ``stop()``, or once the server is gone (a call that never reached the service)
    if ``until_gone``."""

    channel: grpc.Channel
    tokens: list[str]
    clients: int
    until_gone: bool = False
    # After a refusal, wait as long as its RetryInfo asks (a second), or at most IMPATIENCE.
    patient: bool = False
    outcomes: list[list[Outcome]] = field(init=False)
    devices_acknowledged: list[int] = field(init=False)
    devices_unknown: list[int] = field(init=False)  # failed: stored or not
    consents_acknowledged: list[str] = field(init=False)  # event record ids
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _threads: list[threading.Thread] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.outcomes = [[] for _ in range(self.clients)]
        self.devices_acknowledged = [0] * self.clients
        self.devices_unknown = [0] * self.clients
        self.consents_acknowledged = []

    @staticmethod
    def device_id(client: int) -> str:
        return f"load-device-{client}"

    def start(self) -> Load:
        self._threads = [
            threading.Thread(target=self._client, args=(i,), name=f"load-{i}")
            for i in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        assert not any(thread.is_alive() for thread in self._threads), "a client hung"

    def join(self, timeout: float) -> None:
        """Wait for every client to end by itself (``until_gone``)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in self._threads), "a client hung"

    def all(self) -> list[Outcome]:
        return [o for client in self.outcomes for o in client]

    def failures(self) -> list[Outcome]:
        return [o for o in self.all() if o.code != grpc.StatusCode.OK]

    def each_ok_since(self, instant: float, times: int = 1) -> bool:
        """Whether every client has had ``times`` calls started at ``instant`` or later
        answered OK."""
        return all(
            sum(1 for o in list(client) if o.code == grpc.StatusCode.OK and o.started >= instant)
            >= times
            for client in self.outcomes
        )

    def _client(self, i: int) -> None:
        accounts = account_service_pb2_grpc.AccountServiceStub(self.channel)
        consent = consent_service_pb2_grpc.ConsentServiceStub(self.channel)
        token = self.tokens[i % len(self.tokens)]
        device = account_service_pb2.RecordDeviceUseRequest(
            device=account_pb2.DeviceInfo(device_id=self.device_id(i))
        )
        step = 0
        while not self._stop.is_set():
            request_id = uuid.uuid4().hex
            metadata = (("authorization", f"Bearer {token}"), ("x-request-id", request_id))
            started = time.monotonic()
            kind = step % 3
            step += 1
            error: grpc.RpcError | None = None
            try:
                if kind == 0:
                    method = "GetAccount"
                    accounts.GetAccount(
                        account_service_pb2.GetAccountRequest(), metadata=metadata, timeout=10
                    )
                elif kind == 1:
                    method = "RecordDeviceUse"
                    accounts.RecordDeviceUse(device, metadata=metadata, timeout=10)
                    self.devices_acknowledged[i] += 1
                else:
                    method = "GrantConsent"
                    granted = consent.GrantConsent(
                        consent_service_pb2.GrantConsentRequest(purpose_id="analytics"),
                        metadata=metadata,
                        timeout=10,
                    )
                    self.consents_acknowledged.append(granted.event.record_id)
            except grpc.RpcError as exc:
                error = exc
                if kind == 1:
                    self.devices_unknown[i] += 1
            answer = outcome(method, request_id, started, error)
            self.outcomes[i].append(answer)
            if self.until_gone and error is not None and not answer.answered:
                return
            if error is not None:
                delay = answer.retry_delay or IMPATIENCE
                self._stop.wait(delay if self.patient else min(delay, IMPATIENCE))

    def check_writes(self, url: str, schema: str | None) -> None:
        """Every write a client saw acknowledged is stored: each acknowledged device use is
        counted (a failed one may or may not be: its outcome was unknown to the client), and
        each acknowledged consent event is in the ledger."""
        open_database(url, schema=schema)
        try:
            counts = {
                d.device_id: d.use_count
                for d in Device.select().where(
                    Device.device_id.in_([self.device_id(i) for i in range(self.clients)])
                )
            }
            events = self.consents_acknowledged
            stored = {
                e.id
                for start in range(0, len(events), 500)
                for e in ConsentEvent.select(ConsentEvent.id).where(
                    ConsentEvent.id.in_(events[start : start + 500])
                )
            }
        finally:
            close_database()
        for i in range(self.clients):
            acknowledged, unknown = self.devices_acknowledged[i], self.devices_unknown[i]
            assert acknowledged <= counts.get(self.device_id(i), 0) <= acknowledged + unknown
        assert set(events) <= stored, "an acknowledged consent is missing"


# -- health ---------------------------------------------------------------------------------


class HealthWatch:
    """A Health/Watch stream on the server's overall health, recording (time.monotonic(),
    status) for every change it is told of, and how the stream ended."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.seen: list[tuple[float, int]] = []
        self.ended: tuple[float, grpc.StatusCode] | None = None
        self._stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="")
        )
        self._thread = threading.Thread(target=self._read, name="health-watch")
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self._stream:
                self.seen.append((time.monotonic(), response.status))
        except grpc.RpcError as exc:
            self.ended = (time.monotonic(), exc.code())
        else:
            self.ended = (time.monotonic(), grpc.StatusCode.OK)

    def first(self, status: int, after: float = 0.0) -> float | None:
        """When ``status`` was first reported at ``after`` or later."""
        return next((t for t, s in list(self.seen) if s == status and t >= after), None)

    def close(self) -> None:
        self._stream.cancel()
        self._thread.join(10)
