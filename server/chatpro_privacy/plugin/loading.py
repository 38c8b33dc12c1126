"""Making and checking an organisation's plugins, inside its worker process.

A plugin's factory is found by its ``module:attribute`` target (an entry point's value, or
a factory installed by a test), imported only in the worker, and called with the
organisation's ``PluginContext``. Every implementation is checked against the hook it names
before any is called, so that a mistake is refused when the plugin is enabled, naming the
hook and the argument, rather than misbehaving later:

- a name with no hook (a typo);
- an argument the hook does not give;
- ``wrapper``/``hookwrapper`` implementations (the host calls each plugin in a fixed order
  and has no wrappers) and ``async def`` ones (hooks are called synchronously);
- a generator for a hook whose answer is not a stream.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chatpro_privacy.plugin import hookspecs
from chatpro_privacy.plugin.types import OrganisationView, PluginContext

MARKER = f"{hookspecs.PROJECT}_impl"


class PluginBroken(Exception):
    """A plugin that cannot be called as it is written: the message names the hook."""


@dataclass(frozen=True)
class Impl:
    """One plugin's implementation of one hook, with the arguments it takes."""

    plugin: str
    hook: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]


def load_factory(target: str) -> Callable[[PluginContext], object]:
    """The factory named ``module:attribute`` (attributes may be dotted)."""
    module_name, _, attribute = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else ():
        found = getattr(found, part)
    if not callable(found):
        raise PluginBroken(f"{target} is not a factory (a class or function)")
    return found


def construct(
    name: str, target: str, view: OrganisationView, config: Mapping[str, Any]
) -> tuple[object, list[Impl]]:
    """The plugin made for ``view`` with ``config``, and its checked implementations."""
    plugin = load_factory(target)(PluginContext(view, config))
    return plugin, implementations(name, plugin)


def implementations(name: str, plugin: object) -> list[Impl]:
    """The plugin's hook implementations, each checked (PluginBroken names what is wrong)."""
    found = []
    for attribute in dir(plugin):
        if attribute.startswith("__"):
            continue
        method = getattr(plugin, attribute, None)
        options = getattr(method, MARKER, None)
        if not isinstance(options, dict) or method is None:
            continue
        found.append(_checked(name, attribute, method, options))
    return found


def _checked(plugin: str, hook: str, method: Any, options: dict[str, Any]) -> Impl:
    if hook not in hookspecs.HOOK_ARGS:
        raise PluginBroken(
            f"hook {hook}: there is no such hook (a typo?); the hooks are listed in "
            "chatpro_privacy.plugin.hookspecs"
        )
    if options.get("wrapper") or options.get("hookwrapper"):
        raise PluginBroken(
            f"hook {hook}: wrapper and hookwrapper implementations are not supported; "
            "the host calls each plugin in the organisation's order"
        )
    if options.get("specname"):
        raise PluginBroken(f"hook {hook}: specname is not supported; name the method as the hook")
    if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method):
        raise PluginBroken(f"hook {hook}: async def implementations are not supported; use def")
    if inspect.isgeneratorfunction(method) and hook not in hookspecs.STREAM_HOOKS:
        raise PluginBroken(f"hook {hook}: its answer is a value, not a generator")
    given = hookspecs.HOOK_ARGS[hook]
    argnames = []
    for parameter in inspect.signature(method).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise PluginBroken(f"hook {hook}: name the arguments you take, not *args or **kwargs")
        if parameter.default is not parameter.empty:
            continue  # left to its default, as pluggy does
        if parameter.name not in given:
            raise PluginBroken(
                f"hook {hook}: argument {parameter.name!r} is not one the hook gives "
                f"({', '.join(given)})"
            )
        argnames.append(parameter.name)
    return Impl(plugin, hook, method, tuple(argnames))
