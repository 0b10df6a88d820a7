"""A native_async provider whose wire call drops the transport's waits must not freeze
the event loop: every text filter passes :class:`Pending` through, and a wait that a
layer created but never had awaited is a typed error naming the plugin."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from chatplug import ProviderResponseError, Registry, hookimpl
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

MESSAGES = [{"role": "user", "content": "hello"}]
PIECES = 2500  # far more than one socket read holds
#: Seconds the test waits for the loop's thread; a frozen loop never ends by itself.
BOUND = 30.0


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=90) as scripted:
        yield scripted


class TextOnly:
    """Native IO through chatplug.wire.openai.chat with its default events=False."""

    model: ClassVar[list[str]] = ["m"]
    supports_stream = True
    needs_auth = False
    native_async = True

    def __init__(self, url: str) -> None:
        self.url = url

    @hookimpl
    def create_completion(self, model: str, messages: list[Any], stream: bool,
                          url: str, http: Any) -> Any:
        from chatplug.wire import openai

        return openai.chat(http, url + "/v1/chat/completions", model=model,
                           messages=messages, stream=stream)


class Dropping(TextOnly):
    """A plugin that filters the wire's items itself and drops everything but text."""

    @hookimpl
    def create_completion(self, model: str, messages: list[Any], stream: bool,
                          url: str, http: Any) -> Any:
        from chatplug.wire import openai

        items = openai.chat(http, url + "/v1/chat/completions", model=model,
                            messages=messages, stream=stream, events=True)
        return (item for item in items if type(item) is str)


def _registry(server: ScriptedServer, plugin: Any) -> Registry:
    registry = registry_for(SimpleNamespace(url=server.url),  # type: ignore[arg-type]
                            urls={"GravityEngine": server.url}, plugins="", max_retries=0)
    registry.register(plugin, name="Plug")
    return registry


def _bounded(function: Any) -> Any:
    """Run ``function`` (an asyncio.run) on a daemon thread; fail if it outlives BOUND."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), "the event loop froze"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _stream(registry: Registry, timeout: float = 30) -> str:
    async def main() -> str:
        stream = await registry.provider("Plug").acreate(MESSAGES, stream=True,
                                                         timeout=timeout)
        return "".join([piece async for piece in stream])

    return str(_bounded(lambda: asyncio.run(main())))


def test_text_only_wire_calls_keep_the_loop_running(server: ScriptedServer) -> None:
    pieces = [f"p{i} " for i in range(PIECES)]
    server.add(pieces=pieces)
    registry = _registry(server, TextOnly(server.url))
    try:
        assert registry.runtime.transport.native
        assert _stream(registry) == "".join(pieces)

        async def whole() -> str:
            return await registry.provider("Plug").acreate(MESSAGES, stream=False)

        server.add(text="x " * 20000)
        assert _bounded(lambda: asyncio.run(whole())) == "x " * 20000
    finally:
        registry.close()


def test_a_plugin_that_drops_the_waits_is_named(server: ScriptedServer) -> None:
    server.add(pieces=[f"p{i} " for i in range(PIECES)])
    registry = _registry(server, Dropping(server.url))
    try:
        with pytest.raises(ProviderResponseError, match="Plug") as caught:
            _stream(registry)
        assert "Pending" in str(caught.value) or "wait" in str(caught.value)
    finally:
        registry.close()


class Blocking(TextOnly):
    """Declares native IO, then blocks the loop's thread between pieces."""

    @hookimpl
    def create_completion(self, model: str, messages: list[Any], stream: bool,
                          url: str, http: Any) -> Any:
        def pieces() -> Iterator[str]:
            time.sleep(8)  # longer than the kit waits (6 s here), and bounded
            yield "late"

        return pieces()


def _kit_check(server: ScriptedServer, plugin: TextOnly) -> None:
    """The conformance kit's loop check, run on ``plugin`` registered as "Plug"."""
    from chatplug.testing import conformance

    class Kit(conformance.ProviderConformance):
        provider_name = "Plug"

    Kit.plugin = plugin
    kit = Kit()
    registry = kit.make_registry(server)
    try:
        kit.test_a_long_async_stream_keeps_the_loop_running(registry.provider("Plug"), server)
    finally:
        registry.close()


@pytest.mark.parametrize("plugin", [Dropping, Blocking])
def test_the_conformance_kit_fails_a_plugin_that_would_freeze_the_loop(
        server: ScriptedServer, plugin: type[TextOnly],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chatplug.testing import conformance

    monkeypatch.setattr(conformance, "CALL_TIMEOUT", 1.0)  # the kit waits 6 s
    with pytest.raises((AssertionError, pytest.fail.Exception)) as caught:
        _kit_check(server, plugin(server.url))
    assert "Plug" in str(caught.value)
    if plugin is Blocking:
        assert "froze" in str(caught.value)


def test_the_conformance_kit_passes_a_text_only_plugin(server: ScriptedServer) -> None:
    _kit_check(server, TextOnly(server.url))
