"""The plugin architecture: organisations' retention, monitoring and export rules.

Plugin authors import ``hookimpl`` and the value types from here::

    from chatpro_privacy.plugin import hookimpl, OrganisationView

and ship a package with an entry point in the group ``chatpro_privacy`` naming a factory
that takes a :class:`PluginContext` and returns the plugin object.
"""

import pluggy

from chatpro_privacy.plugin import types
from chatpro_privacy.plugin.hookspecs import PROJECT
from chatpro_privacy.plugin.types import *  # noqa: F403  (the values plugins see and return)

ENTRY_POINT_GROUP = PROJECT
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["ENTRY_POINT_GROUP", "hookimpl"]
__all__ += types.__all__
