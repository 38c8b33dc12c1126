"""The server under test: a `chatpro-privacy serve` subprocess on a free loopback port.

It gets a fresh temporary SQLite database (or the PostgreSQL database named by
DATABASE_URL), its own key store, blob directory and random keys, and JSON logs written to
a file in a temporary directory. :meth:`ServerProcess.stop` always ends it: SIGTERM, then
SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

STOP_GRACE_S = 15.0  # the server drains in-flight calls for up to 10 s by default
START_TIMEOUT_S = 30.0
MIGRATE_TIMEOUT_S = 120.0
GRANT_TIMEOUT_S = 60.0
BIND_ATTEMPTS = 3


class ServerError(RuntimeError):
    """The server could not be prepared, started or reached."""


class Skip(Exception):
    """A measurement cannot be made here (no PostgreSQL, a flag the server rejects): its
    figures are reported as skipped, with this message, and the rest of the run goes on."""


@dataclass(frozen=True)
class Database:
    url: str
    kind: str  # "sqlite" or "postgresql"

    @classmethod
    def choose(cls, workdir: Path, env_url: str | None) -> Database:
        """PostgreSQL from DATABASE_URL if it names one, else a fresh SQLite file."""
        if env_url and env_url.startswith(("postgresql://", "postgres://")):
            return cls(env_url, "postgresql")
        return cls(f"sqlite:///{workdir / 'bench.sqlite3'}", "sqlite")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("chatpro-privacy")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "chatpro_privacy"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_env(database: Database, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CHATPRO_ADDRESS", None)
    env.update(
        DATABASE_URL=database.url,
        CHATPRO_SECRET_KEY=secrets.token_hex(32),
        CHATPRO_RECEIPT_SIGNING_KEY=secrets.token_hex(32),
        # Content keys, call audio and audit checkpoints stay in the run's directory, never in
        # ./data.
        CHATPRO_MASTER_KEY=secrets.token_hex(32),
        CHATPRO_KEY_STORE_URL=f"sqlite:///{workdir / 'keys.sqlite3'}",
        CHATPRO_BLOB_DIR=str(workdir / "blobs"),
        CHATPRO_AUDIT_CHECKPOINT_FILE=str(workdir / "audit-checkpoints.jsonl"),
        # The bench registers and signs in from one address far faster than anyone may.
        CHATPRO_REGISTER_PER_PEER="1000000",
        CHATPRO_SIGN_IN_PER_PEER="1000000",
        # One bench caller keeps up to 64 calls in flight, more than a person may: on SQLite
        # the writes that wait on their shared fsync overlap (storage/group_commit.py).
        CHATPRO_CALLS_PER_PRINCIPAL="1000000",
        CHATPRO_LOG_FORMAT="json",
    )
    return env


def migrate(workdir: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [*_command(), "migrate"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise ServerError(
            f"`chatpro-privacy migrate` exited with {done.returncode}:\n"
            f"{done.stdout}{done.stderr}".rstrip()
        )


def grant_role(workdir: Path, env: dict[str, str], login: str, role: str) -> None:
    """`chatpro-privacy grant-role`, against the database the server under test uses."""
    done = subprocess.run(
        [*_command(), "grant-role", login, role, "--by", "bench"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=GRANT_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise ServerError(
            f"`chatpro-privacy grant-role {login} {role}` exited with {done.returncode}:\n"
            f"{done.stdout}{done.stderr}".rstrip()
        )


class ServerProcess:
    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        log_path: Path,
        serve_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.env = env
        self.log_path = log_path
        self.serve_args = tuple(serve_args)  # more `serve` options, e.g. --workers 2
        self.address = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The id of the process started, while it runs (with --workers, the parent)."""
        return None if self._process is None else self._process.pid

    def _launch(self) -> None:
        self.address = f"127.0.0.1:{_free_port()}"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [*_command(), "serve", "--address", self.address, *self.serve_args],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our Ctrl-C reaches it only through stop()
        )

    async def start(self) -> None:
        """Launch and wait for health SERVING; retry on another port if the one probed
        free was taken in the meantime."""
        for attempt in range(1, BIND_ATTEMPTS + 1):
            self._launch()
            try:
                await self._wait_serving()
                return
            except ServerError:
                exited = self._process is not None and self._process.poll() is not None
                self.stop()
                if not (exited and "cannot bind" in self.log_tail()) or attempt == BIND_ATTEMPTS:
                    raise

    async def _wait_serving(self) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + START_TIMEOUT_S
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self._process is None or self._process.poll() is not None:
                    code = None if self._process is None else self._process.returncode
                    raise ServerError(f"the server exited with {code} before serving")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if loop.time() > give_up:
                    raise ServerError(f"the server was not SERVING after {START_TIMEOUT_S:.0f} s")
                await asyncio.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM, wait for the drain, then SIGKILL. Safe to call more than once."""
        process, self._process = self._process, None
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    process.wait()
            code = process.returncode
            # Its session (start_new_session): anything it started and left behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failed_calls(self, limit: int = 5) -> list[str]:
        """Access log lines of calls that did not end OK, most recent last."""
        return failed_calls(self.log_path, limit)

    def log_size(self) -> int:
        """Where the next log line will start (to read only what comes after)."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0


def _entries(log_path: Path, offset: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """(line, JSON object) of each JSON line of a log from byte ``offset`` on."""
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            for raw in log:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    yield raw.decode("utf-8", errors="replace").strip(), entry
    except OSError:
        return


def failed_calls(log_path: Path, limit: int = 5) -> list[str]:
    """Access log lines of calls that did not end OK, most recent last."""
    found: list[str] = []
    for line, entry in _entries(log_path):
        if entry.get("event") == "call" and entry.get("code") not in (
            "OK",
            "CANCELLED",
            "DEADLINE_EXCEEDED",
        ):
            found.append(line)
            del found[:-limit]
    return found


def call_statements(
    log_path: Path, offset: int, method: str, window: tuple[float, float]
) -> list[int]:
    """``db_statements`` of each call of ``method`` (``Service/Method``) that ended OK inside
    ``window`` (wall clock), from the access log lines after byte ``offset``."""
    found: list[int] = []
    for _, entry in _entries(log_path, offset):
        if (
            entry.get("event") == "call"
            and entry.get("code") == "OK"
            and str(entry.get("method", "")).endswith(f".{method}")
            and "db_statements" in entry
        ):
            ended = dt.datetime.fromisoformat(str(entry["timestamp"])).timestamp()
            if window[0] <= ended <= window[1]:
                found.append(int(entry["db_statements"]))
    return found
