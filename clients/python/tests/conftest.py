"""Fixtures for the client's own tests (see server_process.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from server_process import Served, free_port, server_command, wait_until_serving


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    command = server_command()
    if command is None:
        message = (
            "no server to test against: set CHATPRO_PRIVACY_SERVER to a chatpro-privacy "
            "command (make install in the repository creates .venv/bin/chatpro-privacy)"
        )
        if os.environ.get("CHATPRO_CLIENT_TESTS_REQUIRE_SERVER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder}/privacy.sqlite3",
        "CHATPRO_ADDRESS": f"127.0.0.1:{port}",
        "CHATPRO_SECRET_KEY_FILE": f"{folder}/secret.key",
        "CHATPRO_RECEIPT_SIGNING_KEY_FILE": f"{folder}/receipt.key",
        "CHATPRO_MASTER_KEY_FILE": f"{folder}/master.key",
        "CHATPRO_KEY_STORE_URL": f"sqlite:///{folder}/keys.sqlite3",
        "CHATPRO_BLOB_DIR": f"{folder}/blobs",
        "CHATPRO_LOG_FORMAT": "json",
    }
    log = folder / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(command), "serve"], env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until_serving(f"127.0.0.1:{port}", process, log)
        yield Served(f"127.0.0.1:{port}", command, environment)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
