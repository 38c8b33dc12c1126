"""The PostgreSQL figures' own databases and servers.

On the PostgreSQL server that ``--postgres`` names (by default the local one), the bench
makes two databases of its own for the run, ``chatpro_bench_<random>`` (content) and
``chatpro_bench_<random>_keys`` (the key store, which must be a database apart), migrates
the first, and drops both at the end. One bench server at a time runs on them, of the kind
the measurement asks for (:class:`Kind`): straight to PostgreSQL, through a delay proxy, or
``serve --workers N``. Servers of every kind share one set of keys and secrets, so a
session token signed in on one is good on the others.

The delay proxy is ``chatpro_privacy.tcp_proxy.TcpProxy`` in a process of its own
(``python bench/postgres.py proxy HOST PORT DELAY``), so that its copying does not compete
with the load generator for the bench process's interpreter lock. Both the content and the
key store URLs go through it, as they would to a database on another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import grpc

from server_process import (
    Database,
    ServerError,
    ServerProcess,
    Skip,
    grant_role,
    migrate,
    server_env,
)

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_URL_ENV = "BENCH_POSTGRES_URL"  # overrides the default; --postgres overrides both
CONNECT_TIMEOUT_S = 5
DELAY_S = 0.002  # each way, through the proxy
PROXY_START_TIMEOUT_S = 10.0
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 4 * 1024 * 1024)]


@dataclass(frozen=True)
class Kind:
    """How a bench server reaches PostgreSQL, and how many processes serve."""

    name: str
    delay_s: float = 0.0  # each way, through the proxy; 0: straight to PostgreSQL
    workers: int | None = None  # `serve --workers N`; None: the option is not given

    @property
    def serve_args(self) -> list[str]:
        return [] if self.workers is None else ["--workers", str(self.workers)]


DIRECT = Kind("direct")
DELAYED = Kind("delayed", delay_s=DELAY_S)
WORKERS_1 = Kind("workers-1", workers=1)
WORKERS_2 = Kind("workers-2", workers=2)


@dataclass(frozen=True)
class Served:
    """The bench server of one kind, started and SERVING."""

    kind: Kind
    address: str
    channel: grpc.aio.Channel
    log_path: Path
    pid: int
    proxy_pid: int | None
    database: str  # the content database's name, also in its backends' process titles


def _url(url: str, *, database: str | None = None, port: int | None = None) -> str:
    """``url`` with another database name, or with 127.0.0.1:``port`` as its host."""
    parsed = urlparse(url)
    if database is not None:
        parsed = parsed._replace(path=f"/{database}")
    if port is not None:
        auth, _, _ = parsed.netloc.rpartition("@")
        parsed = parsed._replace(netloc=f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}")
    return parsed.geturl()


def where(url: str) -> str:
    """The host and port of a URL, for messages (never its password)."""
    parsed = urlparse(url)
    return f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 5432}"


def _admin(url: str, *statements: str) -> str:
    """Run statements outside a transaction on the admin URL; the server's version."""
    import psycopg2

    connection = psycopg2.connect(url, connect_timeout=CONNECT_TIMEOUT_S)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            cursor.execute("SHOW server_version")
            row = cursor.fetchone()
            return str(row[0]) if row else "unknown"
    finally:
        connection.close()


class ProxyProcess:
    """A :class:`TcpProxy` to one host and port, in a subprocess, until :meth:`stop`."""

    def __init__(self, host: str, port: int, delay_s: float) -> None:
        self.port = 0
        self._process = subprocess.Popen(
            [sys.executable, __file__, "proxy", host, str(port), str(delay_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # the proxy prints its port once listening
        if not line.strip().isdigit():
            self.stop()
            raise ServerError(f"the delay proxy did not start (it said {line!r})")
        self.port = int(line)

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(OSError):
                assert self._process.stdin is not None
                self._process.stdin.close()  # the proxy's signal to stop
            try:
                self._process.wait(timeout=PROXY_START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


class PostgresSite:
    """The run's databases on one PostgreSQL server, and the one bench server running on
    them. :meth:`use` raises :class:`Skip` when no PostgreSQL is reachable there."""

    def __init__(self, admin_url: str | None, workdir: Path) -> None:
        self.admin_url = admin_url
        self.workdir = workdir
        token = secrets.token_hex(4)
        self.databases = (f"chatpro_bench_{token}", f"chatpro_bench_{token}_keys")
        self.version = ""
        self._unavailable = "" if admin_url else "PostgreSQL figures turned off (--postgres none)"
        self._created = False
        self._env: dict[str, str] = {}
        self._proxies: dict[float, ProxyProcess] = {}
        self._server: ServerProcess | None = None
        self._served: Served | None = None

    async def use(self, kind: Kind) -> Served:
        """The server of ``kind`` SERVING on the run's databases, started if it is not the
        one running (which is then stopped: one at a time holds database connections)."""
        await self._open()
        if self._served is not None and self._served.kind == kind:
            return self._served
        await self._stop_server()
        env = dict(self._env)
        proxy_pid = None
        if kind.delay_s:
            proxy = await self._proxy(kind.delay_s)
            proxy_pid = proxy.pid
            for key in ("DATABASE_URL", "CHATPRO_KEY_STORE_URL"):
                env[key] = _url(env[key], port=proxy.port)
        log_path = self.workdir / f"server-pg-{kind.name}.log"
        server = ServerProcess(self.workdir, env, log_path, kind.serve_args)
        try:
            await server.start()
        except ServerError as exc:
            tail = server.log_tail()
            if kind.workers is not None and "unrecognized arguments" in tail:
                raise Skip(
                    f"`chatpro-privacy serve` rejects --workers {kind.workers} (not in this "
                    "tree yet)"
                ) from exc
            raise ServerError(f"the {kind.name} PostgreSQL server: {exc}\n{tail}") from exc
        assert server.pid is not None
        self._server = server
        channel = grpc.aio.insecure_channel(server.address, options=CHANNEL_OPTIONS)
        self._served = Served(
            kind, server.address, channel, log_path, server.pid, proxy_pid, self.databases[0]
        )
        return self._served

    async def grant_role(self, login: str, role: str) -> None:
        """`chatpro-privacy grant-role` against the run's PostgreSQL database."""
        await self._open()
        await asyncio.to_thread(grant_role, self.workdir, self._env, login, role)

    async def _open(self) -> None:
        """Check that PostgreSQL answers, make the databases and migrate (once)."""
        if self._unavailable:
            raise Skip(self._unavailable)
        if self._created:
            return
        assert self.admin_url is not None
        content, keys = self.databases
        try:
            self.version = await asyncio.to_thread(
                _admin, self.admin_url, f'CREATE DATABASE "{content}"'
            )
        except Exception as exc:  # psycopg2.OperationalError and kin: no server, refused
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            self._unavailable = f"no PostgreSQL reachable at {where(self.admin_url)} ({reason})"
            raise Skip(self._unavailable) from exc
        self._created = True  # from here on, close() drops what was made
        await asyncio.to_thread(_admin, self.admin_url, f'CREATE DATABASE "{keys}"')
        self._env = server_env(
            Database(_url(self.admin_url, database=content), "postgresql"), self.workdir
        )
        self._env["CHATPRO_KEY_STORE_URL"] = _url(self.admin_url, database=keys)
        self._env["CHATPRO_BLOB_DIR"] = str(self.workdir / "pg-blobs")
        _progress(f"PostgreSQL {self.version} at {where(self.admin_url)}: migrating {content}")
        await asyncio.to_thread(migrate, self.workdir, self._env)

    async def _proxy(self, delay_s: float) -> ProxyProcess:
        if delay_s not in self._proxies:
            assert self.admin_url is not None
            parsed = urlparse(self.admin_url)
            self._proxies[delay_s] = await asyncio.to_thread(
                ProxyProcess, parsed.hostname or "127.0.0.1", parsed.port or 5432, delay_s
            )
        return self._proxies[delay_s]

    async def _stop_server(self) -> None:
        served, self._served = self._served, None
        server, self._server = self._server, None
        if served is not None:
            await served.channel.close()
        if server is not None:
            code = await asyncio.to_thread(server.stop)
            if code not in (None, 0):
                _progress(f"warning: the {served and served.kind.name} server exited with {code}")

    async def close(self) -> None:
        """Stop the server and the proxies and drop the run's databases."""
        await self._stop_server()
        for proxy in self._proxies.values():
            await asyncio.to_thread(proxy.stop)
        self._proxies.clear()
        if self._created and self.admin_url is not None:
            self._created = False
            drops = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in self.databases]
            try:
                await asyncio.to_thread(_admin, self.admin_url, *drops)
            except Exception as exc:
                _progress(
                    f"warning: could not drop {', '.join(self.databases)} at "
                    f"{where(self.admin_url)}: {exc!r}"
                )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_admin_url() -> str:
    return os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL


def _serve_proxy(host: str, port: int, delay_s: float) -> None:
    """Run a delay proxy until stdin closes; print its port first."""
    from chatpro_privacy.tcp_proxy import TcpProxy

    with TcpProxy(host, port, delay_seconds=delay_s) as proxy:
        print(proxy.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "proxy":
        sys.exit("usage: postgres.py proxy HOST PORT DELAY_SECONDS")
    _serve_proxy(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
