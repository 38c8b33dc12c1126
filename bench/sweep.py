"""The retention sweep figures: 1,000,000 expired messages deleted by the service's content
sweep, against plain sqlite3 deleting the same rows from an identical copy of the database.

The sweep world is a SQLite database of its own in the run's directory, with the service's
schema (``chatpro-privacy migrate``), seeded straight with ``sqlite3``: one organisation,
a few hundred authors, a few conversations, and ``SWEEP_MESSAGES`` messages created 2 to 3
years ago (all past the default 12-month period), each with 8 to 12 word tokens. Every
timed pass works on a fresh copy of that seeded file, in a process of its own:

    python bench/sweep.py sweep DATABASE_PATH   # ContentSweeper.run(), as the service runs it
    python bench/sweep.py raw DATABASE_PATH     # the baseline: DELETE ... WHERE seq IN (...)

Each prints one JSON object. See bench/README.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server_process import ServerError, migrate

SWEEP_MESSAGES = 1_000_000
SWEEP_AUTHORS = 300
SWEEP_CONVERSATIONS = 30
TOKENS_PER_MESSAGE = (8, 12)  # inclusive
TOKEN_BYTES = 16
BODY_BYTES = (90, 180)  # a sealed text of 8 to 20 words: nonce + ciphertext + tag
AGE_DAYS = (2 * 365, 3 * 365)  # every message is past the default 12-month period
SEED = 20240607
SEED_CHUNK = 100_000  # messages per seeding transaction
# The baseline's batch: the fastest of the sizes tried on a 2-core machine (see README);
# 32,766 is the most parameters one SQLite statement takes.
RAW_BATCH = 20_000
DEFAULT_TIME_LIMIT_S = 1200.0  # a sweep pass is stopped after this (bench --sweep-time-limit)
JOB_TIMEOUT_S = 3 * 3600.0  # the process itself, whatever happens


class SweepWorldError(RuntimeError):
    """The sweep world could not be built, or a pass did not do what it should."""


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stamp(moment: dt.datetime) -> str:
    """As the service stores a naive UTC DateTimeField on SQLite (``str(datetime)``)."""
    return str(moment)


@dataclass(frozen=True)
class SweepWorld:
    workdir: Path
    env: dict[str, str]  # the server's environment with this world's database and key store
    seeded: Path  # the seeded file; never swept itself, only copied
    messages: int
    tokens: int
    seed_seconds: float

    def url(self, path: Path) -> str:
        return f"sqlite:///{path}"

    def copy(self, name: str) -> Path:
        """A fresh copy of the seeded database, synced to disk (the seeded file is
        checkpointed and has no WAL, so the main file is the whole database)."""
        target = self.workdir / name
        remove(target)
        shutil.copyfile(self.seeded, target)
        # On disk before the pass starts: else the pass's first fsync of the file also
        # writes out the 2 GB the copy left dirty in the page cache (a second or more,
        # inside one batch's lock).
        with open(target, "rb+") as copied:
            os.fsync(copied.fileno())
        return target

    def run(self, mode: str, path: Path, argument: float) -> dict[str, Any]:
        """One timed pass on ``path``, in a process of its own: ``sweep`` (``argument``: its
        time limit in seconds) or ``raw`` (``argument``: the batch)."""
        env = {**self.env, "DATABASE_URL": self.url(path)}
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), mode, str(path), str(argument)],
            env=env,
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise SweepWorldError(
                f"the {mode} pass exited with {done.returncode}:\n{done.stderr[-4000:]}".rstrip()
            )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def build(
    workdir: Path, server_env: Mapping[str, str], messages: int = SWEEP_MESSAGES
) -> SweepWorld:
    """Migrate a database of its own and seed it (blocking)."""
    seeded = workdir / "sweep-seed.sqlite3"
    env = {
        **server_env,
        "DATABASE_URL": f"sqlite:///{seeded}",
        "CHATPRO_KEY_STORE_URL": f"sqlite:///{workdir / 'sweep-keys.sqlite3'}",
        "CHATPRO_BLOB_DIR": str(workdir / "sweep-blobs"),
    }
    try:
        migrate(workdir, env)
    except ServerError as exc:
        raise SweepWorldError(f"migrating the sweep database failed: {exc}") from exc
    started = time.perf_counter()
    tokens = seed(seeded, messages)
    seconds = time.perf_counter() - started
    _progress(
        f"sweep world: {messages:,} messages and {tokens:,} word tokens seeded in {seconds:.0f} s "
        f"({seeded.stat().st_size / 1e9:.2f} GB)"
    )
    return SweepWorld(workdir, env, seeded, messages, tokens, seconds)


def _indexes(db: sqlite3.Connection, tables: Sequence[str]) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of the tables' explicit indexes."""
    marks = ", ".join("?" for _ in tables)
    return list(
        db.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({marks}) ORDER BY name",
            tuple(tables),
        )
    )


def seed(path: Path, messages: int) -> int:
    """Seed the migrated database at ``path``: returns the number of word tokens.

    Bulk loading only: the content tables' secondary indexes are dropped and made again
    afterwards with the very statements the migrations created them with, the load runs
    without a journal, and the file is back in WAL mode, checkpointed, at the end."""
    rng = random.Random(SEED)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = DELETE")
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("PRAGMA cache_size = -1000000")
        indexes = _indexes(db, ("content_item", "content_token"))
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
        organisation = secrets.token_hex(16)
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO organisation (id, name, privacy_contact_email, created_at) "
            "VALUES (?, ?, ?, ?)",
            (organisation, "Sweep Bench Ltd", "privacy@sweep.example", _stamp(now)),
        )
        authors: list[tuple[str, str]] = []  # (account id, subject ref)
        for n in range(SWEEP_AUTHORS):
            account_id, ref = secrets.token_hex(16), secrets.token_hex(16)
            authors.append((account_id, ref))
            db.execute(
                "INSERT INTO account (id, subject_ref, username, username_key, email, email_key, "
                "name, date_of_birth, password_hash, state, created_at, last_active_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account_id,
                    ref,
                    f"sweep-{n}",
                    secrets.token_hex(16),
                    f"sweep-{n}@example.com",
                    secrets.token_hex(16),
                    "Sweep Author",
                    "1990-05-01",
                    "$argon2id$unused",
                    "active",
                    _stamp(now - dt.timedelta(days=AGE_DAYS[1] + 30)),
                    _stamp(now),
                ),
            )
        conversations = [secrets.token_hex(16) for _ in range(SWEEP_CONVERSATIONS)]
        created = _stamp(now - dt.timedelta(days=AGE_DAYS[1] + 1))
        db.executemany(
            "INSERT INTO conversation (id, organisation_id, kind, mode, created_at) "
            "VALUES (?, ?, 'group', 'two_way', ?)",
            [(c, organisation, created) for c in conversations],
        )
        db.execute("COMMIT")
        oldest = now - dt.timedelta(days=AGE_DAYS[1])
        span = dt.timedelta(days=AGE_DAYS[1] - AGE_DAYS[0]).total_seconds()
        tokens = 0
        for start in range(0, messages, SEED_CHUNK):
            count = min(SEED_CHUNK, messages - start)
            items = []
            item_tokens: list[tuple[str, bytes, int]] = []
            for seq in range(start + 1, start + count + 1):
                account_id, ref = authors[rng.randrange(SWEEP_AUTHORS)]
                at = oldest + dt.timedelta(seconds=span * (seq - 1) / messages + rng.random())
                items.append(
                    (
                        seq,
                        secrets.token_hex(16),
                        organisation,
                        conversations[seq % SWEEP_CONVERSATIONS],
                        "message",
                        ref,
                        account_id,
                        secrets.token_hex(8),
                        f"bench-key-{ref[:8]}",
                        rng.randbytes(rng.randint(*BODY_BYTES)),
                        _stamp(at),
                    )
                )
                n = rng.randint(*TOKENS_PER_MESSAGE)
                block = rng.randbytes(n * TOKEN_BYTES)
                item_tokens.extend(
                    (organisation, block[i : i + TOKEN_BYTES], seq)
                    for i in range(0, len(block), TOKEN_BYTES)
                )
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO content_item (seq, id, organisation_id, conversation_id, kind, "
                "author_ref, author_account_id, request_id, key_id, body, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                items,
            )
            db.executemany(
                "INSERT INTO content_token (organisation_id, token, item_seq) VALUES (?, ?, ?)",
                item_tokens,
            )
            db.execute("COMMIT")
            tokens += len(item_tokens)
        for _, sql in indexes:
            db.execute(sql)
        db.execute("PRAGMA foreign_keys = ON")
        if problems := db.execute("PRAGMA foreign_key_check").fetchmany(5):
            raise SweepWorldError(f"the seeded rows break foreign keys: {problems}")
        db.execute("PRAGMA journal_mode = WAL")
        # The statistics a server that has swept before has: each sweep ends with
        # PRAGMA optimize under analysis_limit=1000 (jobs/scheduler.py).
        db.execute("PRAGMA analysis_limit = 1000")
        db.execute("ANALYZE")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return tokens


# -- the timed passes, each in a process of its own -----------------------------------------


def _open(url: str) -> Any:
    """The database as the service opens it (same pragmas), connected."""
    from chatpro_privacy.settings import from_env
    from chatpro_privacy.storage.db import open_database

    settings = from_env(os.environ)
    db = open_database(url, sqlite_synchronous=settings.sqlite_synchronous)
    db.connect(reuse_if_open=True)
    return db


def _pragmas(connection: sqlite3.Connection) -> dict[str, Any]:
    return {
        name: connection.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("journal_mode", "synchronous", "foreign_keys", "secure_delete", "cache_size")
    }


def _count(connection: sqlite3.Connection) -> tuple[int, int]:
    items = connection.execute("SELECT count(*) FROM content_item").fetchone()[0]
    tokens = connection.execute("SELECT count(*) FROM content_token").fetchone()[0]
    return int(items), int(tokens)


def _sweep_job(url: str, time_limit: float) -> dict[str, Any]:
    """ContentSweeper.run() as `chatpro-privacy sweep` runs it (the same objects as
    Runtime.build), timed from the call to its return; cancelled at its next await after
    ``time_limit`` seconds (then ``finished`` is false and the rows are counted)."""
    from chatpro_privacy import logs
    from chatpro_privacy.domain.organisations.plugin_settings import PluginSettings
    from chatpro_privacy.domain.organisations.retention_periods import Retention
    from chatpro_privacy.domain.records import audit
    from chatpro_privacy.domain.retention.content_sweep import ContentSweeper
    from chatpro_privacy.domain.vault.envelope import Vault
    from chatpro_privacy.plugin.host import PluginHost
    from chatpro_privacy.settings import from_env
    from chatpro_privacy.storage.blobs import BlobStore
    from chatpro_privacy.storage.db import close_database
    from chatpro_privacy.storage.keystore import KeyStore

    logs.configure("json", "warning", sys.stderr)
    settings = from_env(os.environ)
    # The sweep records its deletions in the audit trail, chained under the server's key.
    audit.configure(settings.secret_key)
    db = _open(url)
    host = PluginHost(
        store=PluginSettings(),
        timeout=settings.plugin_timeout_seconds,
        fault_limit=settings.plugin_fault_limit,
    )
    keys = KeyStore(settings.key_store_url, settings.master_key)
    # Every transaction that held the write lock, observed as it ends, so that a pass
    # stopped at the time limit still tells them; a finished pass's own report must agree.
    held: list[tuple[int, float]] = []  # (rows, lock ms)
    sweeper = ContentSweeper(
        Retention(host),
        host,
        Vault(keys, BlobStore(settings.blob_dir)),
        observer=lambda rows, ms: held.append((rows, ms)),
    )
    connection = db.connection()
    before = _count(connection)

    async def timed() -> tuple[Any, float]:
        started = time.perf_counter()
        try:
            report = await asyncio.wait_for(sweeper.run(), time_limit)
        except TimeoutError:
            report = None
        return report, time.perf_counter() - started

    try:
        report, seconds = asyncio.run(timed())
        after = _count(connection)
        sizes = [n for n, _ in held]
        locks = sorted(ms for _, ms in held)
        return {
            "mode": "sweep",
            "finished": report is not None,
            "rows": report.deleted if report is not None else before[0] - after[0],
            "seconds": seconds,
            "report": report.as_dict() if report is not None else None,
            "max_batch_lock_ms": locks[-1] if locks else 0.0,
            "median_lock_ms": statistics.median(locks) if locks else 0.0,
            "p99_lock_ms": locks[int(len(locks) * 0.99)] if locks else 0.0,
            "transactions": len(held),
            "batches": report.batches if report is not None else None,
            "transaction_rows": [min(sizes, default=0), max(sizes, default=0)],
            "before": before,
            "after": after,
            "pragmas": _pragmas(connection),
        }
    finally:
        host.shutdown()
        keys.close()
        close_database()


def _batches(seqs: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(seqs), size):
        yield seqs[start : start + size]


def _raw_job(url: str, batch: int = RAW_BATCH) -> dict[str, Any]:
    """The baseline: the rows' keys read with one SELECT, then
    ``DELETE FROM content_item WHERE seq IN (...)`` of ``batch`` keys a transaction on the
    sqlite3 connection the service's own open_database made (same pragmas; the foreign key
    deletes the word tokens). Timed from the SELECT to the last COMMIT."""
    from chatpro_privacy.storage.db import close_database

    db = _open(url)
    connection: sqlite3.Connection = db.connection()
    before = _count(connection)
    longest = 0.0
    try:
        started = time.perf_counter()
        seqs = [seq for (seq,) in connection.execute("SELECT seq FROM content_item ORDER BY seq")]
        for keys in _batches(seqs, batch):
            began = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                f"DELETE FROM content_item WHERE seq IN ({', '.join('?' * len(keys))})", keys
            )
            connection.execute("COMMIT")
            longest = max(longest, time.perf_counter() - began)
        seconds = time.perf_counter() - started
        return {
            "mode": "raw",
            "rows": len(seqs),
            "seconds": seconds,
            "batch": batch,
            "max_batch_ms": longest * 1000,
            "before": before,
            "after": _count(connection),
            "pragmas": _pragmas(connection),
        }
    finally:
        close_database()


def main(argv: Sequence[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("sweep", "raw"):
        print("usage: sweep.py sweep DATABASE_PATH TIME_LIMIT_S", file=sys.stderr)
        print("       sweep.py raw DATABASE_PATH BATCH", file=sys.stderr)
        return 2
    url = f"sqlite:///{Path(argv[1]).resolve()}"
    job = _sweep_job(url, float(argv[2])) if argv[0] == "sweep" else _raw_job(url, int(argv[2]))
    print(json.dumps(job))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
