"""Test support for chatplug and for provider authors.

- :class:`ScriptedServer`: a chat-completions server on 127.0.0.1 with scripted
  replies, delays and faults, speaking OpenAI's protocol (JSON and server-sent
  events) and Ollama's ``/api/chat`` (newline-delimited JSON);
- ``chatplug.testing.pytest_plugin`` (registered automatically through
  ``pytest11``): the ``chatplug_server`` and ``chatplug_registry`` fixtures;
- ``chatplug.testing.conformance.ProviderConformance``: the conformance suite a
  provider package subclasses to prove its provider correct (imported on its
  own, since it needs pytest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import RecordedRequest, Script, ScriptedServer, split_words

__all__ = ["RecordedRequest", "Script", "ScriptedServer", "split_words"]


def __getattr__(name: str) -> Any:
    # Imported on use, so that `python -m chatplug.testing.server` runs the module once.
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'chatplug.testing' has no attribute {name!r}")
