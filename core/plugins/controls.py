"""Which plugins may load: the allow-list and the block list.

- ``CHATPLUG_PLUGINS``: comma-separated entry-point or distribution names of the
  third-party plugins (providers and observers) allowed to load.  Unset: all;
  empty: none, only chatplug's own providers.  Built-ins are never filtered.
- ``CHATPLUG_DISABLED_PROVIDERS``: comma-separated names of providers (built-ins
  included) or observers that must not load; their modules are never imported.

Names match case-insensitively; distribution names also match with ``-``,
``_`` and ``.`` interchangeable (``chatplug_echo`` is ``chatplug-echo``).

Reading settings imports pydantic, which a plain ``registry.get()`` must not
pay for.  So the controls are read only when they can be set: when the
registry was given settings explicitly, when one of :data:`CONTROL_VARIABLES`
is in the environment, or when a ``.env`` file exists in the working directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["CONTROL_VARIABLES", "PluginControls", "controls_may_be_set", "normalize"]

CONTROL_VARIABLES = frozenset(
    {"CHATPLUG_PLUGINS", "CHATPLUG_DISABLED_PROVIDERS", "CHATPLUG_STRICT_PLUGINS"}
)


def normalize(name: str) -> str:
    """A name as the controls compare it: lower case, runs of ``-_.`` as ``-`` (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def controls_may_be_set(explicit_settings: bool) -> bool:
    """Whether the settings must be read to know the plugin controls.

    pydantic-settings matches variable names case-insensitively, so this does too.
    """
    if explicit_settings:
        return True
    if any(key.upper() in CONTROL_VARIABLES for key in os.environ):
        return True
    return Path(".env").is_file()


@dataclass(frozen=True)
class PluginControls:
    """The allow-list (``None``: everything allowed) and the block list, normalized."""

    allowed: frozenset[str] | None = None
    disabled: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> PluginControls:
        allowed = settings.plugin_allow_list
        return cls(
            allowed=None if allowed is None else frozenset(map(normalize, allowed)),
            disabled=frozenset(map(normalize, settings.disabled)),
        )

    def is_disabled(self, name: str) -> bool:
        """Whether the provider or observer called ``name`` is on the block list."""
        return normalize(name) in self.disabled

    def is_allowed(self, name: str, distribution: str | None, *, builtin: bool) -> bool:
        """Whether a plugin passes the allow-list (built-ins always do)."""
        if builtin or self.allowed is None:
            return True
        return normalize(name) in self.allowed or (
            distribution is not None and normalize(distribution) in self.allowed
        )
