"""What goes wrong with a plugin, and the domain error it becomes: the call fails, naming
the plugin, and nothing is changed."""

from __future__ import annotations

import enum
from typing import Any

from chatpro_privacy.domain.kernel.errors import Unavailable


class FaultKind(enum.StrEnum):
    RAISED = "raised"
    TIMEOUT = "timeout"
    BAD_RESULT = "bad_result"
    FAULTED = "faulted"  # stopped after repeated faults: not called at all
    BUSY = "busy"  # no worker free, or earlier calls still stuck: not counted as a fault


class PluginFault(Exception):
    """A plugin raised, overran its time limit, or answered something it may not.

    ``detail`` says what, never content: for an exception its type and capped message,
    from which the worker removed every word of the content the call was given.
    ``traceback`` is the plugin's own (for the server's log and the kit, not for callers);
    ``stage`` says whether making the plugin failed on its configuration ("config"), on
    how it is written ("broken"), or otherwise ("raised").
    """

    def __init__(
        self,
        plugin: str,
        kind: FaultKind,
        detail: str,
        *,
        traceback: str = "",
        stage: str = "raised",
    ) -> None:
        super().__init__(f"plugin {plugin} {kind}: {detail}")
        self.plugin = plugin
        self.kind = kind
        self.detail = detail
        self.traceback = traceback
        self.stage = stage


_REMOTE_KINDS = {"raised": FaultKind.RAISED, "bad_result": FaultKind.BAD_RESULT}


def remote_fault(info: dict[str, Any]) -> PluginFault:
    """The fault a worker reported: {"plugin", "kind", "type", "message", "traceback"}."""
    kind = str(info.get("kind", "raised"))
    error_type = str(info.get("type", "Exception"))[:64]
    message = str(info.get("message", ""))[:200]
    return PluginFault(
        str(info.get("plugin", "(worker)"))[:64],
        _REMOTE_KINDS.get(kind, FaultKind.RAISED),
        f"{error_type}: {message}" if message else error_type,
        traceback=str(info.get("traceback", ""))[:20_000],
        stage=kind if kind in ("config", "broken") else "raised",
    )


class BadAnswer(Exception):
    """A typed wrapper's verdict that a plugin answered something it may not."""

    def __init__(self, plugin: str, detail: str) -> None:
        super().__init__(detail)
        self.plugin = plugin
        self.detail = detail


class PluginError(Unavailable):
    """The domain error a plugin fault becomes: the call fails, naming the plugin."""

    def __init__(self, organisation_id: str, fault: PluginFault) -> None:
        reason = {
            FaultKind.RAISED: "PLUGIN_FAILED",
            FaultKind.TIMEOUT: "PLUGIN_TIMEOUT",
            FaultKind.BAD_RESULT: "PLUGIN_BAD_RESULT",
            FaultKind.FAULTED: "PLUGIN_FAULTED",
            FaultKind.BUSY: "PLUGIN_BUSY",
        }[fault.kind]
        super().__init__(
            reason,
            f"the organisation's plugin {fault.plugin!r} failed ({fault.kind}); "
            "nothing was changed",
            {"plugin": fault.plugin, "organisation_id": organisation_id},
        )
