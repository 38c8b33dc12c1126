"""What goes wrong with a plugin, and the domain error it becomes: the call fails, naming
the plugin, and nothing is changed."""

from __future__ import annotations

from chatpro_privacy.domain.kernel.errors import Unavailable


class PluginFault(Exception):
    """A plugin raised, overran its time limit, or answered something it may not."""

    def __init__(self, plugin: str, kind: str, detail: str) -> None:
        super().__init__(f"plugin {plugin} {kind}: {detail}")
        self.plugin = plugin
        self.kind = kind  # "raised" | "timeout" | "bad_result" | "faulted" | "busy"
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
            "raised": "PLUGIN_FAILED",
            "timeout": "PLUGIN_TIMEOUT",
            "bad_result": "PLUGIN_BAD_RESULT",
            "faulted": "PLUGIN_FAULTED",
            "busy": "PLUGIN_BUSY",
        }[fault.kind]
        super().__init__(
            reason,
            f"the organisation's plugin {fault.plugin!r} failed ({fault.kind}); "
            "nothing was changed",
            {"plugin": fault.plugin, "organisation_id": organisation_id},
        )
