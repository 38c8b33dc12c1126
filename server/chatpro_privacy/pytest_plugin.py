"""pytest fixtures for plugin authors (registered through the ``pytest11`` entry point).

``chatpro_plugin_kit`` starts a real in-process ChatPro privacy server with your plugin
installed and enabled for one organisation::

    def test_retention(chatpro_plugin_kit):
        kit = chatpro_plugin_kit("my_plugin", MyPlugin, {"months": 24})
        assert kit.retention()["message"] == (24, "my_plugin")

Leave out the factory to use the installed entry point of that name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatpro_privacy.plugin.discovery import Factory
from chatpro_privacy.testing import PluginKit


@pytest.fixture
def chatpro_plugin_kit(tmp_path: Path) -> Iterator[Callable[..., PluginKit]]:
    with contextlib.ExitStack() as stack:

        def start(
            plugin_name: str,
            factory: Factory | None = None,
            config: dict[str, Any] | None = None,
            **options: Any,
        ) -> PluginKit:
            database = options.pop("database_url", f"sqlite:///{tmp_path}/{plugin_name}.sqlite3")
            return stack.enter_context(
                PluginKit.start(plugin_name, factory, config, database, **options)
            )

        yield start
