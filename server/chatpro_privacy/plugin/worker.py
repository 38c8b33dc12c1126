"""An organisation's plugin worker: ``python -m chatpro_privacy.plugin.worker``.

The server starts one per organisation with plugins (``supervisor``), with a minimal
environment, and speaks to it over its standard input and output in frames (``codec``).
The worker contains itself first (``sandbox``), then answers requests, each on a thread of
its own pool, so that a stream can pull from the server while another call runs:

- ``prepare``: set the import path and import the plugins' modules;
- ``load``: make the organisation's plugins, in its order, and say which hooks each has;
- ``trial``: make one plugin with a configuration to check it, keeping nothing;
- ``call``: call a hook's implementations in order (the first answer for a decide hook,
  every answer otherwise); a stream answer stays here and is pulled with ``next``;
- ``who``: which plugin a call is running now (asked before a call past its limit is killed).

The worker sees only what the server sends it: its organisation's view, configuration and
the arguments of each call. Error messages it reports are capped and lose every word of the
content the call was given.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from chatpro_privacy.plugin import codec, hookspecs
from chatpro_privacy.plugin.loading import Impl, PluginBroken, construct, load_factory
from chatpro_privacy.plugin.sandbox import contain
from chatpro_privacy.plugin.types import ContentView, OrganisationView

STREAM_CHUNK = 200
MESSAGE_CAP = 200
_WORD = re.compile(r"\w{3,}")


class _Seen(threading.local):
    """The words of the content the current call was given, kept out of its errors."""

    words: set[str]

    def __init__(self) -> None:
        self.words = set()


_seen = _Seen()


def _note(value: Any) -> None:
    if isinstance(value, ContentView):
        _seen.words.update(w.casefold() for w in _WORD.findall(value.text))


def redact(message: str) -> str:
    """``message`` capped, with every word of the call's content replaced."""
    cleaned = _WORD.sub(
        lambda m: "…" if m.group(0).casefold() in _seen.words else m.group(0), message
    )
    return cleaned[:MESSAGE_CAP]


def error_info(plugin: str, kind: str, exc: BaseException) -> dict[str, Any]:
    """What the server is told of a failure: the plugin, the kind, the exception's type and
    redacted message, and the traceback with that message in place of the real one."""
    message = redact(str(exc))
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return {
        "plugin": plugin,
        "kind": kind,
        "type": type(exc).__name__,
        "message": message,
        "traceback": f"Traceback (most recent call last):\n{frames}{type(exc).__name__}: {message}",
    }


class Failure(Exception):
    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(info["message"])
        self.info = info


@dataclass
class _Stream:
    plugin: str
    iterator: Iterator[Any]
    words: set[str]


@dataclass
class Worker:
    write: Any
    view: OrganisationView = field(default_factory=lambda: OrganisationView("", ""))
    hooks: dict[str, list[Impl]] = field(default_factory=dict)
    running: dict[int, str] = field(default_factory=dict)
    streams: dict[int, _Stream] = field(default_factory=dict)
    pulls: dict[int, Any] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # -- requests ------------------------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> None:
        """Answer one request (on a pool thread): {"id", "ok"} or {"id", "err"}."""
        op = message["op"]
        ident = message["id"]
        _seen.words = set()
        try:
            result = getattr(self, f"op_{op}")(message)
            self.write({"id": ident, "ok": result})
        except Failure as failure:
            self.write({"id": ident, "err": failure.info})
        except Exception as exc:  # the worker's own bug: named as such
            self.write({"id": ident, "err": error_info("(worker)", "raised", exc)})
        finally:
            self.running.pop(ident, None)

    def op_prepare(self, message: dict[str, Any]) -> None:
        for entry in reversed(message["path"]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        for name, target in message["targets"]:
            try:
                load_factory(target)
            except Exception as exc:
                raise Failure(error_info(name, "broken", exc)) from None

    def op_load(self, message: dict[str, Any]) -> dict[str, Any]:
        """Make every plugin in order; a plugin that fails is left out and reported."""
        view = codec.decode(message["view"])
        hooks: dict[str, list[Impl]] = {}
        made: dict[str, list[str]] = {}
        failed: dict[str, Any] = {}
        for name, target, config in message["plugins"]:
            self.running[message["id"]] = name
            try:
                _, impls = construct(name, target, view, codec.decode(config))
            except Exception as exc:
                failed[name] = error_info(name, _construction_kind(exc), exc)
                continue
            made[name] = [impl.hook for impl in impls]
            for impl in impls:
                hooks.setdefault(impl.hook, []).append(impl)
        self.view, self.hooks = view, hooks
        return {"hooks": made, "failed": failed}

    def op_trial(self, message: dict[str, Any]) -> list[str]:
        name, target, config = message["plugin"]
        self.running[message["id"]] = name
        try:
            _, impls = construct(name, target, codec.decode(message["view"]), codec.decode(config))
        except Exception as exc:
            raise Failure(error_info(name, _construction_kind(exc), exc)) from None
        return [impl.hook for impl in impls]

    def op_call(self, message: dict[str, Any]) -> list[Any]:
        """Each implementation in the organisation's order; a decide hook stops at the first
        answer that is not None."""
        hook = message["hook"]
        arguments = {"organisation": self.view, **self._arguments(message["args"])}
        first = hookspecs.HOOK_KINDS[hook] == "decide"
        answers: list[Any] = []
        for impl in self.hooks.get(hook, ()):
            self.running[message["id"]] = impl.plugin
            try:
                answer = impl.function(*[arguments[name] for name in impl.argnames])
            except Exception as exc:
                raise Failure(error_info(impl.plugin, "raised", exc)) from None
            if answer is None:
                continue
            answers.append([impl.plugin, self._answer(impl.plugin, hook, answer)])
            if first:
                break
        return answers

    def op_next(self, message: dict[str, Any]) -> dict[str, Any]:
        """The next chunk of a stream a plugin answered with."""
        stream = self.streams[message["sid"]]
        self.running[message["id"]] = stream.plugin
        _seen.words = stream.words
        items = []
        done = False
        try:
            for item in stream.iterator:
                items.append(_encoded(stream.plugin, item))
                if len(items) >= STREAM_CHUNK:
                    break
            else:
                done = True
        except Failure:
            raise
        except Exception as exc:
            raise Failure(error_info(stream.plugin, "raised", exc)) from None
        if done:
            self.streams.pop(message["sid"], None)
        return {"items": items, "done": done}

    def op_close(self, message: dict[str, Any]) -> None:
        self.streams.pop(message["sid"], None)

    # -- values ----------------------------------------------------------------------------

    def _arguments(self, encoded: dict[str, Any]) -> dict[str, Any]:
        arguments = {}
        for name, value in encoded.items():
            if isinstance(value, dict) and "$in" in value:
                arguments[name] = self._pulled(value["$in"])
            else:
                arguments[name] = codec.decode(value)
                _note(arguments[name])
        return arguments

    def _answer(self, plugin: str, hook: str, answer: Any) -> Any:
        if hook in hookspecs.STREAM_HOOKS and not isinstance(answer, bytes | str | dict):
            try:
                iterator = iter(answer)
            except TypeError:
                return _encoded(plugin, answer)
            sid = next(self.ids)
            self.streams[sid] = _Stream(plugin, iterator, _seen.words)
            return {"$s": sid}
        return _encoded(plugin, answer)

    def _pulled(self, sid: int) -> Iterator[Any]:
        """Items the server streams to a plugin, pulled a chunk at a time as it iterates."""
        while True:
            reply = self.pull(sid)
            for item in reply.get("items", ()):
                value = codec.decode(item)
                _note(value)
                yield value
            if reply.get("done", True):
                return

    def pull(self, sid: int) -> dict[str, Any]:
        waiter: dict[str, Any] = {"event": threading.Event()}
        ident = -next(self.ids)
        self.pulls[ident] = waiter
        self.write({"op": "pull", "id": ident, "sid": sid})
        waiter["event"].wait()
        self.pulls.pop(ident, None)
        return waiter.get("reply", {"done": True})

    def pulled(self, message: dict[str, Any]) -> None:
        waiter = self.pulls.get(message["id"])
        if waiter is not None:
            waiter["reply"] = message
            waiter["event"].set()


def _encoded(plugin: str, value: Any) -> Any:
    try:
        return codec.encode(value)
    except codec.CodecError as exc:
        raise Failure({**error_info(plugin, "bad_result", exc), "traceback": ""}) from None


def _construction_kind(exc: BaseException) -> str:
    if isinstance(exc, PluginBroken | ImportError | AttributeError):
        return "broken"
    return "config" if isinstance(exc, ValueError) else "raised"


def _channels() -> tuple[int, int]:
    """The protocol's descriptors, moved off 0 and 1 so that a plugin's print() goes to
    standard error and its input() reads nothing."""
    reading, writing = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    return reading, writing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="chatpro_privacy.plugin.worker")
    parser.add_argument("--user", default="nobody")
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--path", action="append", default=[])
    options = parser.parse_args(argv)
    reading, writing = _channels()
    threading.stack_size(1024 * 1024)
    for entry in reversed(options.path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    code = [sys.base_prefix, sys.prefix, *(p for p in sys.path if p)]
    contained = contain(options.user, options.memory_mb, code)
    lock = threading.Lock()

    def write(message: dict[str, Any]) -> None:
        data = codec.dumps(message)
        with lock:
            codec.write_all(writing, data)

    worker = Worker(write)
    write({"op": "ready", "uid": contained.uid, "network_isolated": contained.network_isolated})
    reading_lock = threading.Lock()
    threads = [
        threading.Thread(target=_serve, args=(worker, reading, reading_lock), daemon=True)
        for _ in range(options.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _serve(worker: Worker, reading: int, reading_lock: threading.Lock) -> None:
    """One of the worker's threads, taking turns to read (leader and followers): a thread
    reads a request, hands reading on and answers it itself, so that no request waits for
    another thread to wake, and a stuck call leaves the others reading and answering."""
    while True:
        with reading_lock:
            body = codec.read_frame(reading)
        if body is None:
            os._exit(0)  # the server has gone: stop, whatever plugin threads still run
        message = codec.loads(body)
        op = message.get("op")
        if op == "pulled":
            worker.pulled(message)
        elif op == "who":
            worker.write({"id": message["id"], "ok": worker.running.get(message["call"])})
        else:
            worker.handle(message)


if __name__ == "__main__":
    main()
