"""What goes wrong with a plugin, and the domain error it becomes: the call fails, naming
the plugin, and nothing is changed."""

from __future__ import annotations

import enum

from chatpro_privacy.domain.kernel.errors import Unavailable


class FaultKind(enum.StrEnum):
    RAISED = "raised"
    TIMEOUT = "timeout"
    BAD_RESULT = "bad_result"
    FAULTED = "faulted"  # stopped after repeated faults: not called at all
    BUSY = "busy"  # no worker free, or earlier calls still stuck: not counted as a fault


class PluginFault(Exception):
    """A plugin raised, overran its time limit, or answered something it may not."""

    def __init__(self, plugin: str, kind: FaultKind, detail: str) -> None:
        super().__init__(f"plugin {plugin} {kind}: {detail}")
        self.plugin = plugin
        self.kind = kind
        self.detail = detail


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
