"""`chatpro-privacy serve --workers N`: N server processes on one address, and this one
watching over them.

The parent binds no gRPC port. It migrates the database once (and makes the key store's and
the erasure ledger's tables), then starts N children with multiprocessing's spawn context:
fresh interpreters, so none of the parent's threads, locks or connections comes along. Each
serves the address with SO_REUSEPORT, and the kernel spreads new connections across them.
Whatever limits or schedules is shared through the database: the throttles
(``domain/records/throttle_counts.py``), the sweep's leases, and the hourly sweep itself
(``jobs/scheduler.py``).

SIGTERM or SIGINT is passed on to every child as SIGTERM, and the parent waits for them to
drain (the grace period, and a margin) before it kills what is left; it exits 0 when every
child stopped cleanly. A child that dies unexpectedly is started again after a back-off that
doubles with each death in the last minute, each logged; more deaths than that in a minute,
and the parent stops the rest and exits 1, for the service manager to see.

Keeping unrelated servers out. SO_REUSEPORT lets any other process of the same user bind the
port as well, and the kernel would hand it a share of the connections. So before anything
else the parent takes a lock named after the port in Linux's abstract socket namespace, and
holds it as long as it runs. That namespace belongs to the network namespace, as the port
does, and the kernel frees the name when the parent dies, however it dies: no stale lock file
to clean up, and no directory that two containers or a private /tmp might not share. A second
group on the port cannot take the lock; a lone server (``--workers 1``) binds without
SO_REUSEPORT, which the kernel refuses while the group holds the port; and the parent checks
that no such server holds it already by binding it once itself, without SO_REUSEPORT, before
the children start. A child whose parent has gone (killed, so its lock is free) stops too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import structlog

from chatpro_privacy import logs
from chatpro_privacy.app import AddressInUseError, prepare_database, serve
from chatpro_privacy.settings import Settings
from chatpro_privacy.storage.db import close_database
from chatpro_privacy.storage.erasure_ledger import ErasureLedger
from chatpro_privacy.storage.keystore import KeyStore

log = structlog.get_logger("chatpro_privacy.replicas")

CANNOT_BIND = 3  # a child's exit status when the address is taken: starting again won't help
STOP_MARGIN_SECONDS = 10.0  # beyond the grace period, for a child to finish stopping
ORPHAN_POLL_SECONDS = 1.0


def serve_replicas(settings: Settings) -> int:
    """Serve ``settings.address`` with ``settings.serve_workers`` processes; the exit status."""
    host, port = _host_and_port(settings.address)
    lock = _lock_port(port)
    try:
        _check_free(host, port)
        applied = prepare_database(settings)
        close_database()
        # Made here once: children making them at the same time could race.
        KeyStore(settings.key_store_url, settings.master_key).close()
        ErasureLedger(settings.key_store_url).close()
        log.info(
            "replicas starting",
            address=settings.address,
            workers=settings.serve_workers,
            migrations_applied=applied,
        )
        supervisor = Supervisor(
            settings.serve_workers,
            serve_one,
            (settings,),
            stop_timeout=settings.grace_period_seconds + STOP_MARGIN_SECONDS,
        )
        return supervisor.run()
    finally:
        lock.close()


def serve_one(settings: Settings, slot: int) -> None:
    """A child: serve until told to stop, or until its parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C reaches the parent, too
    logs.configure(settings.log_format, settings.log_level, pid=True)
    _stop_when_orphaned(os.getppid())
    settings = worker_settings(settings, slot)
    try:
        asyncio.run(serve(settings, migrate=False))
    except AddressInUseError as exc:
        log.error("worker cannot bind", slot=slot, error=str(exc))
        sys.exit(CANNOT_BIND)


def worker_settings(settings: Settings, slot: int) -> Settings:
    """Worker ``slot``'s settings: its metrics on a port of its own (the configured one plus
    the slot), since the workers share the gRPC port but not an HTTP one."""
    if settings.metrics_address is None:
        return settings
    host, _, port = settings.metrics_address.rpartition(":")
    shifted = int(port) + slot if int(port) else 0
    return dataclasses.replace(settings, metrics_address=f"{host}:{shifted}")


def _stop_when_orphaned(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_POLL_SECONDS)
        log.warning("the supervising process is gone: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _host_and_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _lock_port(port: int) -> socket.socket:
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0chatpro-privacy-port-{port}")
    except OSError as exc:
        lock.close()
        raise AddressInUseError(
            f"cannot bind port {port}: another chatpro-privacy serve --workers holds it"
        ) from exc
    return lock


def _check_free(host: str, port: int) -> None:
    """Bind each address ``host`` names once, without SO_REUSEPORT, as a lone server would."""
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, _, address in found:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise AddressInUseError(f"cannot bind {host}:{port}: address in use") from exc
                # Not usable here (say, IPv6 switched off): gRPC passes it over too.


@dataclass
class Supervisor:
    """``workers`` children, each running ``target(*args, slot)``, until SIGTERM or SIGINT;
    ``run`` returns the exit status (see the module's docstring)."""

    workers: int
    target: Callable[..., object]
    args: tuple[Any, ...]
    stop_timeout: float
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    deaths_allowed: int = 5  # within death_window_seconds; one more and the parent gives up
    death_window_seconds: float = 60.0
    _children: dict[int, BaseProcess] = field(default_factory=dict)
    _deaths: list[float] = field(default_factory=list)
    _stopping: bool = False

    def run(self) -> int:
        wake, wake_write = os.pipe()
        for fd in (wake, wake_write):
            os.set_blocking(fd, False)
        # A signal writes to the pipe, so the wait below returns at once.
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.workers):
                self._start(slot)
            gave_up = self._watch(wake)
            clean = self._stop_all()
            return 1 if gave_up or not clean else 0
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake)
            os.close(wake_write)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _start(self, slot: int) -> None:
        process = multiprocessing.get_context("spawn").Process(
            target=self.target, args=(*self.args, slot), name=f"chatpro-privacy-worker-{slot}"
        )
        process.start()
        self._children[slot] = process
        log.info("worker started", slot=slot, worker_pid=process.pid)

    def _watch(self, wake: int) -> bool:
        """Until told to stop, start again each child that dies. True: they kept dying."""
        due: dict[int, float] = {}  # slot: when to start it again
        while not self._stopping:
            timeout = max(0.0, min(due.values()) - time.monotonic()) if due else None
            connection.wait([*(p.sentinel for p in self._children.values()), wake], timeout)
            with contextlib.suppress(BlockingIOError):
                os.read(wake, 512)
            if self._stopping:
                break
            now = time.monotonic()
            for slot, process in list(self._children.items()):
                if process.exitcode is None:
                    continue
                del self._children[slot]
                delay = self._died(slot, process, now)
                if delay is None:
                    return True
                due[slot] = now + delay
            for slot, at in list(due.items()):
                if at <= now:
                    del due[slot]
                    self._start(slot)
        return False

    def _died(self, slot: int, process: BaseProcess, now: float) -> float | None:
        """How long to wait before starting ``slot`` again; None to give up."""
        self._deaths = [t for t in self._deaths if now - t < self.death_window_seconds]
        self._deaths.append(now)
        fields = {"slot": slot, "worker_pid": process.pid, "exit_code": process.exitcode}
        if process.exitcode == CANNOT_BIND:
            log.error("a worker cannot bind the address: stopping", **fields)
            return None
        if len(self._deaths) > self.deaths_allowed:
            log.error(
                "workers keep dying: stopping",
                deaths=len(self._deaths),
                within_seconds=self.death_window_seconds,
                **fields,
            )
            return None
        delay = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (len(self._deaths) - 1))
        log.warning("worker died", restart_in_seconds=delay, **fields)
        return delay

    def _stop_all(self) -> bool:
        """SIGTERM to every child, then wait for their drain; whether all stopped cleanly."""
        log.info("stopping workers", workers=len(self._children))
        for process in self._children.values():
            if process.exitcode is None:
                process.terminate()
        deadline = time.monotonic() + self.stop_timeout
        clean = True
        for slot, process in self._children.items():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("worker did not stop in time: killed", slot=slot, worker_pid=process.pid)
                process.kill()
                process.join()
            # Told to stop before it could listen for the signal, a child dies of it: clean.
            if process.exitcode not in (0, -signal.SIGTERM):
                clean = False
        log.info("workers stopped", clean=clean)
        return clean
