"""Data at rest on the host (SEC-): the data directory is 0700 and every file in it 0600
from `make run`'s first start, files an older release left open are closed at start, and a
server will not serve plaintext to other hosts unless told `--insecure`."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chatpro_privacy.settings import SettingsError, is_loopback
from chatpro_privacy.testing import InProcessServer
from helpers import free_port, wait_until_serving

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "chatpro_privacy"]
# What `make run` reads, copied with their times so that make finds the venv and the
# generated code up to date and rebuilds nothing.
MAKE_RUN_NEEDS = (
    "Makefile",
    "pyproject.toml",
    "constraints.txt",
    "clients/python/pyproject.toml",
    "scripts/gen_protos.sh",
    "protos",
    "clients/python/src/chatpro/privacy/v1",
    "plugins",
)


def clean_env() -> dict[str, str]:
    """No DATABASE_URL or CHATPRO_* setting: the defaults, under ./data."""
    return {
        k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("CHATPRO_")
    }


def modes(root: Path) -> dict[str, str]:
    """Every path under ``root`` (itself included) -> its permission bits, octal."""
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def assert_private(root: Path) -> None:
    wrong = {
        name: mode
        for name, mode in modes(root).items()
        if mode != (oct(0o700) if (root / name).is_dir() else oct(0o600))
    }
    assert not wrong, f"readable by others: {wrong}"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    folder = tmp_path / "checkout"
    for name in MAKE_RUN_NEEDS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("*.egg-info"))
        else:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    return folder


@pytest.fixture
def make_run(checkout: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    command = (
        f"umask 022 && exec make --no-print-directory run ADDRESS=127.0.0.1:{port}"
        f" VENV={REPO / '.venv'}"
    )
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=checkout,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until_serving(f"127.0.0.1:{port}", timeout=60)
        yield proc, f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_make_runs_first_start_leaves_the_data_directory_private(
    checkout: Path, make_run: tuple[subprocess.Popen[bytes], str]
) -> None:
    """Under a umask of 022, which used to leave the databases and key store 0644."""
    data = checkout / "data"
    names = set(modes(data))
    assert {"chatpro-privacy.sqlite3", "keys.sqlite3", "secret.key", "master.key"} <= names
    assert_private(data)


def test_files_an_older_release_left_open_are_made_private_at_start(tmp_path: Path) -> None:
    env = clean_env()
    first = subprocess.run([*CLI, "migrate"], cwd=tmp_path, env=env, capture_output=True)
    assert first.returncode == 0, first.stderr
    data = tmp_path / "data"
    data.chmod(0o755)
    for path in data.iterdir():
        path.chmod(0o644 if path.is_file() else 0o755)
    again = subprocess.run([*CLI, "migrate"], cwd=tmp_path, env=env, capture_output=True)
    assert again.returncode == 0, again.stderr
    assert b"made private" in again.stderr
    assert_private(data)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.5.0.1:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.0.0.4:50051", False),
        ("chatpro.example:50051", False),
    ],
)
def test_which_addresses_only_this_host_reaches(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_plaintext_on_a_non_loopback_address_is_refused_unless_insecure(
    tmp_path: Path, database_target: tuple[str, str | None]
) -> None:
    port = free_port()
    refused = subprocess.run(
        [*CLI, "serve", "--address", f"0.0.0.0:{port}"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "refusing to serve plaintext on 0.0.0.0" in refused.stderr
    assert not (tmp_path / "data" / "chatpro-privacy.sqlite3").exists()  # nothing was done
    url, schema = database_target
    with (
        pytest.raises(SettingsError, match="--insecure"),
        InProcessServer.start(url, schema=schema, address="0.0.0.0:0"),
    ):
        pass
    with InProcessServer.start(url, schema=schema, address="0.0.0.0:0", insecure=True) as srv:
        wait_until_serving(f"127.0.0.1:{srv.port}", timeout=20)
