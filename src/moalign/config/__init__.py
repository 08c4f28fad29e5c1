"""Configuration primitives: strict models, YAML with line numbers and overrides, plug-in entries.

The recipe schema built from them is :mod:`moalign.recipe`.
"""

from moalign.config.base import StrictModel
from moalign.config.plugins import PluginSpec, plugin_spec

__all__ = ["PluginSpec", "StrictModel", "plugin_spec"]
