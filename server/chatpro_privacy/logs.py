"""Structured logging: structlog for our lines, stdlib (grpc, peewee) through the same
processors. JSON in production, console on a terminal. Call lines carry ids and codes,
never a password, token or message body: nothing logs a request message."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

_SENSITIVE_KEYS = frozenset(
    {"password", "token", "authorization", "body", "session_token", "secret"}
)


def _drop_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """A last guard: a key that names a secret never reaches the output."""
    for key in list(event):
        if key.lower() in _SENSITIVE_KEYS:
            event[key] = "[redacted]"
    return event


def _process_id(pid: int) -> Any:
    def add(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event["pid"] = pid
        return event

    return add


def configure(
    fmt: str = "auto", level: str = "info", stream: TextIO | None = None, *, pid: bool = False
) -> None:
    """``pid``: every line says which process wrote it (replicas share one output)."""
    out = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *([_process_id(os.getpid())] if pid else []),
        _drop_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
    logging.getLogger("peewee").setLevel(logging.WARNING)  # peewee DEBUG would log SQL parameters


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
