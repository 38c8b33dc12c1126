"""Load: sixteen concurrent clients for a bounded time, with SIGTERM in the middle; every
write acknowledged to a client is in the database afterwards (SEC-3, "nothing acknowledged
is ever lost"), on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import grpc
from chatpro.privacy.v1 import account_pb2, account_service_pb2, account_service_pb2_grpc
from chatpro_privacy.storage.db import open_database
from chatpro_privacy.storage.models import Account, Device
from helpers import PASSWORD, content_key_env, free_port, registration, wait_until_serving

CLIENTS = 16
RUN_SECONDS = 1.5


def test_no_acknowledged_write_is_lost_across_sigterm(
    database_target: tuple[str, str | None], tmp_path: Path
) -> None:
    url, schema = database_target
    served_url = url if schema is None else f"{url}?options={quote(f'-c search_path={schema}')}"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": served_url,
        "CHATPRO_SECRET_KEY": secrets.token_hex(32),
        "CHATPRO_RECEIPT_SIGNING_KEY": secrets.token_hex(32),
        **content_key_env(tmp_path),
        "CHATPRO_LOG_FORMAT": "json",
    }
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "chatpro_privacy", "serve", "--address", f"127.0.0.1:{port}", "--grace-period", "10"],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        wait_until_serving(f"127.0.0.1:{port}", timeout=30)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = account_service_pb2_grpc.AccountServiceStub(channel)

        def signed_in(i: int) -> str:
            stub.Register(registration(username=f"load{i}"))
            signed = stub.SignIn(
                account_service_pb2.SignInRequest(login=f"load{i}", password=PASSWORD)
            )
            return str(signed.session_token)

        # At once, so that the server's hashing workers (argon2 at full cost) share the work.
        with ThreadPoolExecutor(CLIENTS) as pool:
            tokens = list(pool.map(signed_in, range(CLIENTS)))
        acknowledged = [0] * CLIENTS
        refused = [0] * CLIENTS
        stop = threading.Event()

        def client(i: int) -> None:
            request = account_service_pb2.RecordDeviceUseRequest(
                device=account_pb2.DeviceInfo(device_id=f"device-{i}")
            )
            metadata = (("authorization", f"Bearer {tokens[i]}"),)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    stub.RecordDeviceUse(request, metadata=metadata, timeout=10)
                except grpc.RpcError:
                    refused[i] += 1
                    if stop.is_set():
                        return  # the server is draining or gone
                    continue
                acknowledged[i] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(RUN_SECONDS)
        stop.set()
        server.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(30)
        assert server.wait(timeout=30) == 0
        channel.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    open_database(url, schema=schema)
    stored = {d.account.username: d.use_count for d in Device.select(Device, Account).join(Account)}
    assert sum(acknowledged) > CLIENTS * 5, "the load was too light to prove anything"
    for i in range(CLIENTS):
        # Every acknowledged use is stored; a refused call may or may not have committed.
        assert acknowledged[i] <= stored.get(f"load{i}", 0) <= acknowledged[i] + refused[i]
