"""Throughput of the ChatPro privacy service, as ratios to baselines measured in the same run.

    .venv/bin/python bench/run.py --output bench-results.json \
        [--duration SECONDS] [--concurrency N] [--repeat N] [--warmup SECONDS] \
        [--keep-temp] [--only FIGURE[,FIGURE...]] [--seed-over-grpc] \
        [--sweep-time-limit SECONDS] [--postgres URL|none]

Starts the server on a free loopback port with a fresh SQLite database (or the PostgreSQL
database in DATABASE_URL), drives load over one grpc.aio channel, prints a table and
writes the figures as JSON. The PostgreSQL figures run servers of their own on databases
of their own (bench/postgres.py), and are skipped when no PostgreSQL answers. Any failed
call in a measured window fails the run (exit 1). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

import figures
import postgres
import sweep
import world
from server_process import (
    Database,
    ServerError,
    ServerProcess,
    Skip,
    failed_calls,
    grant_role,
    migrate,
    server_env,
)

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
]
SETTLE_S = 0.25  # lets work cut off at the end of one window drain before the next begins


class BenchFailure(RuntimeError):
    """The run cannot produce trustworthy figures."""


@dataclass(frozen=True)
class Selection:
    """The ratio figures, measurements, per-call and db_statements figures a run reports."""

    ratios: list[figures.RatioFigure]
    measurements: list[str]  # in registry order
    per_call_us: dict[str, tuple[str, str]]
    statements: dict[str, str]  # figure: the measurement whose calls it counts

    @classmethod
    def choose(cls, only: str | None) -> Selection:
        """Everything, or the figures named (comma separated) and what they are made of."""
        all_statements = figures.statement_figures()
        if not only:
            return cls(
                list(figures.RATIOS),
                list(figures.MEASUREMENTS),
                dict(figures.PER_CALL_US),
                all_statements,
            )
        names = {n.strip() for n in only.split(",") if n.strip()}
        known = {r.name for r in figures.RATIOS} | set(figures.MEASUREMENTS)
        known |= set(figures.PER_CALL_US) | set(all_statements)
        if unknown := sorted(names - known):
            raise BenchFailure(f"unknown figure(s) {', '.join(unknown)}; known: {sorted(known)}")
        ratios = [r for r in figures.RATIOS if r.name in names]
        per_call = {n: parts for n, parts in figures.PER_CALL_US.items() if n in names}
        statements = {n: m for n, m in all_statements.items() if n in names}
        wanted = names | {p for r in ratios for p in (r.target, r.baseline)}
        wanted |= {p for parts in per_call.values() for p in parts}
        wanted |= set(statements.values())
        measured = [n for n in figures.MEASUREMENTS if n in wanted]
        return cls(ratios, measured, per_call, statements)


@dataclass
class Results:
    samples: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # by round
    skipped: dict[str, str] = field(default_factory=dict)  # measurement: why
    postgres: dict[str, Any] = field(default_factory=dict)  # the PostgreSQL figures' server


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark the ChatPro privacy service against in-run baselines."
    )
    parser.add_argument("--output", required=True, type=Path, help="where to write the JSON")
    parser.add_argument(
        "--duration", type=_positive(float), default=5.0, help="measured seconds per figure"
    )
    parser.add_argument(
        "--warmup", type=_positive(float), default=1.0, help="unmeasured seconds before each"
    )
    parser.add_argument(
        "--concurrency", type=_positive(int), default=64, help="calls in flight (default 64)"
    )
    parser.add_argument(
        "--repeat", type=_positive(int), default=3, help="rounds; medians are reported"
    )
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep the temporary database and server log"
    )
    parser.add_argument(
        "--seed-over-grpc",
        action="store_true",
        help="seed the 100,000 searched messages with SendMessage, not straight into the "
        "database (takes minutes)",
    )
    parser.add_argument(
        "--sweep-time-limit",
        type=_positive(float),
        default=sweep.DEFAULT_TIME_LIMIT_S,
        help="stop a retention sweep pass after this many seconds (its rate is then that of "
        f"the part it did; default {sweep.DEFAULT_TIME_LIMIT_S:.0f})",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL|none",
        default=postgres.default_admin_url(),
        help="the PostgreSQL server of the PostgreSQL figures: a URL of a database there "
        "from which to create and drop the run's own databases (default "
        f"${postgres.ADMIN_URL_ENV} or {postgres.DEFAULT_ADMIN_URL}); none: skip them",
    )
    parser.add_argument(
        "--only",
        metavar="FIGURE[,FIGURE...]",
        help="report only these figures (and measure what they are made of)",
    )
    return parser


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _measure(
    ctx: figures.BenchContext, server: ServerProcess, name: str, results: Results, label: str
) -> float:
    m = figures.MEASUREMENTS[name]
    sample = await m.measure(ctx)
    value = m.value(sample)
    await asyncio.sleep(SETTLE_S)
    if sample.error_count:
        log_path = sample.server_log or server.log_path
        failed = "\n  ".join(failed_calls(log_path)) or "(none logged)"
        raise BenchFailure(
            f"{name}: {sample.describe_errors()}\n"
            f"  server log ({log_path}), last failed calls:\n  {failed}"
        )
    if sample.completed == 0:
        raise BenchFailure(f"{name}: no call completed in the {sample.duration:.1f} s window")
    if sample.detail:
        detail = sample.detail
    elif m.latency:
        detail = f"median of {sample.completed} calls, {sample.warmup_completed} warm-up"
    else:
        detail = (
            f"{sample.completed} in window, {sample.warmup_completed} warm-up, "
            f"{sample.cut_off} cut off"
        )
    if sample.statements is not None:
        detail += f"; median db_statements {sample.statements:g}"
    if sample.note:
        detail += f"; {sample.note}"
    shown = f"{value:12.3f}" if abs(value) < 100 else f"{value:12.1f}"
    _progress(f"{label} {name:<24} {shown} {m.unit:<7} ({detail})")
    results.samples.setdefault(name, []).append(value)
    if m.statements is not None and sample.statements is not None:
        results.samples.setdefault(m.statements, []).append(sample.statements)
    if sample.cpu:
        results.cpu.setdefault(name, []).append(sample.cpu)
    return value


async def _rounds(
    ctx: figures.BenchContext, server: ServerProcess, repeat: int, selection: Selection
) -> Results:
    results = Results()
    used = {part for r in selection.ratios for part in (r.target, r.baseline)}
    standalone = [name for name in selection.measurements if name not in used]
    for name in selection.measurements:
        try:
            await figures.MEASUREMENTS[name].setup(ctx)
        except Skip as exc:
            results.skipped[name] = str(exc)
            _progress(f"SKIPPED {name}: {exc}")

    def due(name: str, round_no: int) -> bool:
        rounds = figures.MEASUREMENTS[name].rounds
        return name not in results.skipped and (rounds is None or round_no < rounds)

    for round_no in range(repeat):
        label = f"[round {round_no + 1}/{repeat}]"
        for ratio in selection.ratios:
            if not (due(ratio.target, round_no) and due(ratio.baseline, round_no)):
                continue
            # Baseline and target back to back; the order flips each round (ABBA) so
            # that a drift in the machine's speed does not favour either.
            order = [ratio.baseline, ratio.target]
            if round_no % 2:
                order.reverse()
            rates = {name: await _measure(ctx, server, name, results, label) for name in order}
            if rates[ratio.baseline] == 0:
                raise BenchFailure(f"{ratio.name}: its baseline {ratio.baseline} measured 0")
            value = rates[ratio.target] / rates[ratio.baseline]
            results.ratios.setdefault(ratio.name, []).append(value)
            _progress(f"{label} {ratio.name:<24} {value:12.3f}")
        for name in standalone:
            if due(name, round_no):
                await _measure(ctx, server, name, results, label)
    return results


async def _bench(
    args: argparse.Namespace, workdir: Path, database: Database, selection: Selection
) -> Results:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # so that the server is stopped
    env = server_env(database, workdir)
    admin_url = None if args.postgres.strip().lower() in ("", "none") else args.postgres
    site = postgres.PostgresSite(admin_url, workdir)

    async def grant(login: str, role: str) -> None:
        await asyncio.to_thread(grant_role, workdir, env, login, role)

    async def store(organisation_id: str, messages: Sequence[world.Message]) -> None:
        try:
            await asyncio.to_thread(world.store_messages, env, organisation_id, messages)
        except Exception as exc:  # the server's storage code, in the bench process
            raise figures.SetupFailure(f"storing the seed messages failed: {exc!r}") from exc

    @contextlib.asynccontextmanager
    async def fresh_server() -> AsyncIterator[tuple[grpc.aio.Channel, int]]:
        """Another server process on the same database and keys, for the memory figures."""
        fresh = ServerProcess(workdir, env, workdir / "server-fresh.log")
        try:
            try:
                await fresh.start()
            except ServerError as exc:
                raise ServerError(f"a fresh server: {exc}\n{fresh.log_tail()}") from exc
            assert fresh.pid is not None
            async with grpc.aio.insecure_channel(fresh.address, options=CHANNEL_OPTIONS) as channel:
                yield channel, fresh.pid
        finally:
            await asyncio.to_thread(fresh.stop)

    async def build_sweep_world() -> sweep.SweepWorld:
        _progress(f"seeding the sweep world ({sweep.SWEEP_MESSAGES:,} messages)")
        try:
            return await asyncio.to_thread(sweep.build, workdir, env)
        except sweep.SweepWorldError as exc:
            raise figures.SetupFailure(str(exc)) from exc

    async def read_authored(organisation_id: str, account_id: str) -> tuple[int, float]:
        return await asyncio.to_thread(world.read_authored, env, organisation_id, account_id)

    _progress(f"migrating the {database.kind} database")
    await asyncio.to_thread(migrate, workdir, env)
    server = ServerProcess(workdir, env, workdir / "server.log")
    try:
        await server.start()
        _progress(f"server SERVING on {server.address}; log {server.log_path}")
        async with grpc.aio.insecure_channel(server.address, options=CHANNEL_OPTIONS) as channel:
            ctx = figures.BenchContext(
                channel=channel,
                warmup=args.warmup,
                duration=args.duration,
                concurrency=args.concurrency,
                run_prefix=f"bench{secrets.token_hex(4)}",
                grant_role=grant,
                store_messages=None if args.seed_over_grpc else store,
                read_authored=read_authored,
                server_pid=server.pid,
                address=server.address,
                log_path=server.log_path,
                pg_site=site,
                fresh_server=fresh_server,
                build_sweep_world=build_sweep_world,
                sweep_time_limit=args.sweep_time_limit,
            )
            started = loop.time()
            results = await _rounds(ctx, server, args.repeat, selection)
            _progress(f"setup and rounds took {loop.time() - started:.0f} s")
            if site.version:
                results.postgres = {
                    "server": postgres.where(site.admin_url or ""),
                    "version": site.version,
                    "delay_ms_each_way": postgres.DELAY_S * 1000,
                    "concurrency": figures.PG_CONCURRENCY,
                    "workers_concurrency": figures.WORKERS_CONCURRENCY,
                    "workers_channels": figures.WORKERS_CHANNELS,
                }
            return results
    except ServerError as exc:
        raise BenchFailure(
            f"{exc}\n  server log ({server.log_path}):\n{server.log_tail()}"
        ) from exc
    except figures.SetupFailure as exc:
        raise BenchFailure(f"setup failed: {exc}") from exc
    except grpc.aio.AioRpcError as exc:  # a setup call (sign-in, policy) failed
        raise BenchFailure(
            f"setup call failed: {exc.code().name}: {exc.details()}\n"
            f"  server log ({server.log_path}):\n{server.log_tail()}"
        ) from exc
    finally:
        code = server.stop()
        if code not in (None, 0):
            _progress(f"warning: the server exited with {code} after SIGTERM")
        await site.close()


def _figures(results: Results, selection: Selection) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def raw(name: str) -> None:
        if name in out or name not in results.samples:
            return
        out[name] = {
            "value": statistics.median(results.samples[name]),
            "unit": figures.MEASUREMENTS[name].unit,
            "ratio": None,
            "baseline": None,
        }

    for ratio in selection.ratios:
        raw(ratio.baseline)
        raw(ratio.target)
        if ratio.name not in results.ratios:
            continue
        value = statistics.median(results.ratios[ratio.name])
        out[ratio.name] = {
            "value": value,
            "unit": "ratio",
            "ratio": value,
            "baseline": ratio.baseline,
        }
    for name in selection.measurements:
        raw(name)
    for name, (target, baseline) in selection.per_call_us.items():
        target_rate = statistics.median(results.samples[target])
        baseline_rate = statistics.median(results.samples[baseline])
        out[name] = {
            "value": 1e6 / target_rate,
            "unit": "us",
            "ratio": baseline_rate / target_rate,
            "baseline": baseline,
        }
    for name in selection.statements:
        if name in results.samples:
            out[name] = {
                "value": statistics.median(results.samples[name]),
                "unit": "stmt/call",
                "ratio": None,
                "baseline": None,
            }
    return out


def _skipped(results: Results, selection: Selection) -> dict[str, str]:
    """Every figure selected but not reported, and why."""
    why = dict(results.skipped)
    for ratio in selection.ratios:
        for part in (ratio.baseline, ratio.target):
            if part in results.skipped and ratio.name not in results.ratios:
                why.setdefault(ratio.name, results.skipped[part])
    for name, measurement in selection.statements.items():
        if name not in results.samples:
            why[name] = results.skipped.get(
                measurement, f"no access log line of {measurement}'s calls gave db_statements"
            )
    return why


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _meta(
    args: argparse.Namespace, database: Database, selection: Selection, results: Results
) -> dict[str, Any]:
    chosen = [figures.MEASUREMENTS[name] for name in selection.measurements]
    meta: dict[str, Any] = {
        "python": platform.python_version(),
        "grpc": grpc.__version__,
        "argon2_cffi": _version("argon2-cffi"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "duration": args.duration,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "concurrency_overrides": {m.name: m.concurrency for m in chosen if m.concurrency},
        "latency_calls": {m.name: m.calls for m in chosen if m.calls},
        "repeat": args.repeat,
        "database": database.kind,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if args.only:
        meta["only"] = args.only
    if {"monitor_search_100k_ms", "export_10k_s", "export_100k_s"} & set(selection.measurements):
        meta["seeded_with"] = "SendMessage" if args.seed_over_grpc else "database"
    if {"sweep_rows_per_s", "sqlite_delete_rows_per_s", "sweep_max_batch_lock_ms"} & set(
        selection.measurements
    ):
        meta["sweep"] = {
            "messages": sweep.SWEEP_MESSAGES,
            "raw_batch": sweep.RAW_BATCH,
            "rounds": figures.SWEEP_ROUNDS,
            "time_limit_s": args.sweep_time_limit,
        }
    if database.kind == "sqlite":
        meta["sqlite_synchronous"] = os.environ.get("CHATPRO_SQLITE_SYNCHRONOUS", "FULL").upper()
    if results.postgres:
        meta["postgres"] = results.postgres
    if results.cpu:
        meta["cpu_percent"] = results.cpu
    if skipped := _skipped(results, selection):
        meta["skipped"] = skipped
    return meta


def _table(rows: dict[str, dict[str, Any]]) -> str:
    def number(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"

    header = ("name", "value", "unit", "ratio", "baseline")
    body = [
        (
            name,
            number(f["value"]),
            f["unit"],
            number(f["ratio"]),
            f["baseline"] or "-",
        )
        for name, f in rows.items()
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    right = {1, 3}

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    figures.check_registry()
    try:
        selection = Selection.choose(args.only)
    except BenchFailure as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="chatpro-bench-"))
    database = Database.choose(workdir, os.environ.get("DATABASE_URL"))
    finished = False
    try:
        results = asyncio.run(_bench(args, workdir, database, selection))
        finished = True
    except BenchFailure as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        print("bench: no results written", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; the server was stopped", file=sys.stderr)
        return 130
    finally:
        if finished and not args.keep_temp:
            with contextlib.suppress(OSError):
                shutil.rmtree(workdir)
        else:
            print(f"bench: temporary files kept in {workdir}", file=sys.stderr)
    rows = _figures(results, selection)
    print(_table(rows))
    for name, why in _skipped(results, selection).items():
        print(f"skipped {name}: {why}")
    meta = _meta(args, database, selection, results)
    _write_json(args.output, {"figures": rows, "meta": meta})
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
