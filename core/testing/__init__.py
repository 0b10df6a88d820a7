"""Test support for chatplug and for provider authors.

:class:`ScriptedServer` is a chat-completions server on 127.0.0.1 with
scripted replies; the pytest plugin (``chatplug.testing.pytest_plugin``,
registered automatically) offers it as the ``chatplug_server`` fixture.
"""

from .server import RecordedRequest, Script, ScriptedServer, split_words

__all__ = ["RecordedRequest", "Script", "ScriptedServer", "split_words"]
