"""The plugin the hook-call figures run, ten times over: it flags nothing, so a figure is the
cost of calling it. At a module's top level because it is made in a worker process."""

from __future__ import annotations

from chatpro_privacy.plugin import ContentView, Flag, PluginContext, hookimpl


class Quiet:
    def __init__(self, context: PluginContext) -> None:
        self.context = context

    @hookimpl
    def chatpro_flag_content(self, content: ContentView) -> list[Flag]:
        return []
