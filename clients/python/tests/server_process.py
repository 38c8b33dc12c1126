"""A real server process for the client's own tests, started from the server project's
environment, which these tests reach only over gRPC and its command line.

The client is installed alone (CI puts it in a fresh venv at its declared minimum
versions), so the server runs from another interpreter: ``CHATPRO_PRIVACY_SERVER`` names
its ``chatpro-privacy`` command, by default the repository's ``.venv/bin/chatpro-privacy``.
Without one the tests that need it are skipped, saying why; with
``CHATPRO_CLIENT_TESTS_REQUIRE_SERVER=1`` (as in CI) that is a failure instead.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import chatpro_privacy_client as cp
from chatpro.privacy.v1 import common_pb2, policy_service_pb2

REPOSITORY = Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery staple"


def server_command() -> Path | None:
    named = os.environ.get("CHATPRO_PRIVACY_SERVER")
    path = Path(named) if named else REPOSITORY / ".venv" / "bin" / "chatpro-privacy"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A server process and what it takes to act on it as an operator would."""

    target: str
    command: Path
    environment: dict[str, str]

    def cli(self, *arguments: str) -> str:
        """Run ``chatpro-privacy ARGUMENTS`` against the server's database."""
        done = subprocess.run(
            [str(self.command), *arguments],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def register(self, client: cp.Client, username: str) -> str:
        """Register an adult through the API and sign in; returns the session token."""
        from chatpro.privacy.v1 import account_service_pb2 as accounts

        version = client.policy.GetCurrentPolicy(
            policy_service_pb2.GetCurrentPolicyRequest()
        ).policy.version
        client.accounts.Register(
            accounts.RegisterRequest(
                request_id=secrets.token_hex(8),
                username=username,
                email=f"{username}@example.com",
                name="Client Test",
                date_of_birth=common_pb2.CalendarDate(year=1990, month=5, day=17),
                password=PASSWORD,
                accepted_policy_version=version,
            )
        )
        signed_in = client.accounts.SignIn(
            accounts.SignInRequest(login=username, password=PASSWORD)
        )
        return signed_in.session_token


def wait_until_serving(target: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    with cp.connect(target, default_timeout=2, retries=cp.NO_RETRIES) as client:
        while True:
            try:
                client.policy.GetCurrentPolicy(policy_service_pb2.GetCurrentPolicyRequest())
                return
            except cp.ChatProError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start:\n{log.read_text()}") from None
                time.sleep(0.2)
