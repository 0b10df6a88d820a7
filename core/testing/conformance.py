"""The conformance suite a provider package runs against its own provider.

::

    # tests/test_conformance.py of a provider package
    from chatplug.testing.conformance import ProviderConformance

    class TestAcmeConformance(ProviderConformance):
        provider_name = "Acme"          # the entry-point name
        model = "acme-1"                # if the provider lists no models
        url_suffix = "/v1"              # if the provider's URL is not the server's root
        reports = ALL_EVENTS            # what its replies must carry beside text

Every test talks real HTTP to the scripted server (``chatplug_server``) on
127.0.0.1, which speaks the OpenAI chat-completions protocol (any path ending
in ``/chat/completions``) and Ollama's ``/api/chat``.  A provider for another
protocol can still run the metadata and parameter tests; override the others.

What "conformant" means here: metadata present and well-typed; ``params`` and
``parameters`` agree with the completion function's signature; ``create()``
returns the scripted text, whole and streamed; streaming is live and closing
a stream early releases its connection; wire failures arrive as chatplug's
typed errors; and a key the server echoes never appears in any error.

Events: whatever a provider yields beside text must be well formed (see
:func:`check_events`: one ``Finish`` at most, non-negative token counts,
tool-call fragments that join into JSON per index), whole and streamed.  A
text-only provider passes as it is; one that sets :attr:`~ProviderConformance.reports`
must also carry what it names (the finish reason, usage, tool calls, reasoning,
id and model) from a reply that has them.
"""

from __future__ import annotations

import inspect
import json
import time
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from ..errors import (
    AuthenticationError,
    ChatplugError,
    ProviderHTTPError,
    ProviderResponseError,
    RateLimitError,
    StreamInterruptedError,
)
from ..events import EVENT_TYPES, Finish, Meta, Reasoning, ToolCallDelta, Usage
from ..hooks import INJECTED_ARGUMENTS
from .pytest_plugin import TEST_API_KEY, registry_for
from .server import ScriptedServer

if TYPE_CHECKING:
    from .. import Provider, Registry

__all__ = ["ALL_EVENTS", "PLANTED_KEY", "ProviderConformance", "check_events"]

#: A key planted to prove it never leaks; it looks like no real provider's key.
PLANTED_KEY = "conformance-planted-key-4b7e19"
MESSAGES = [{"role": "user", "content": "Привет, conformance?"}]
TEXT = "Conformance reply: héllo wörld ✓ 🎉"
PIECES = ["Hello", ",", " wörld", " ✓", " 🎉"]
#: Seconds any single call of the suite may take; nothing here waits longer.
CALL_TIMEOUT = 10.0
#: Pieces of the long stream: many socket reads, so every wait the transport yields
#: must reach the loop (a plugin that drops one would freeze it).
LONG_PIECES = 3000
_INJECTED = INJECTED_ARGUMENTS
_CORE = ("model", "messages", "stream")

#: Scripted faults: name -> (script fields, streamed?, expected error, status code).
FAULTS: dict[str, tuple[dict[str, Any], bool, type[ChatplugError], int | None]] = {
    "http-500": ({"status": 500, "text": "conformance failure"}, False,
                 ProviderHTTPError, 500),
    "http-401": ({"status": 401, "text": "bad key"}, False, AuthenticationError, 401),
    "http-429": ({"status": 429, "text": "slow down"}, False, RateLimitError, 429),
    "html-200": ({"body": b"<!DOCTYPE html><html><body>Sign in</body></html>",
                  "content_type": "text/html"}, False, ProviderResponseError, None),
    "cut-stream": ({"pieces": PIECES, "drop_after": 2, "stream": True}, True,
                   StreamInterruptedError, None),
    "no-last-event": ({"pieces": PIECES, "finish": False, "done": False, "stream": True}, True,
                      StreamInterruptedError, None),
    # After content arrived, a server's error event means the reply is incomplete.
    "error-in-stream": ({"pieces": PIECES[:2], "error_event": {"message": "upstream overloaded"},
                         "stream": True}, True, StreamInterruptedError, None),
    "error-event-first": ({"pieces": [], "error_event": {"message": "upstream overloaded"},
                           "stream": True}, True, ProviderResponseError, None),
}
#: What :attr:`ProviderConformance.reports` may name.
ALL_EVENTS = ("finish", "usage", "tool_calls", "reasoning", "meta")
#: A reply carrying everything a provider may report beside text.
RICH_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
RICH_TOOL_CALLS: list[dict[str, Any]] = [
    {"id": "call_conf_0", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city": "Zürich", "unit": "c"}'}},
    {"id": "call_conf_1", "type": "function",
     "function": {"name": "get_time", "arguments": '{"zone": "Europe/Zurich"}'}},
]
RICH: dict[str, Any] = {
    "pieces": PIECES, "reasoning": "Think first, then answer.", "tool_calls": RICH_TOOL_CALLS,
    "fragment": 5, "finish_reason": "length", "usage": RICH_USAGE,
    "id": "chatcmpl-conformance", "model": "served-model-1"}
#: Faults whose error text the server fills with the credential it received.
ECHO_FAULTS = {
    "http-401": {"status": 401, "text": "Incorrect API key provided"},
    "http-500": {"status": 500, "text": "internal error"},
    "http-429": {"status": 429, "text": "quota exceeded"},
    "error-in-stream": {"pieces": PIECES[:1], "stream": True,
                        "error_event": {"message": "bad credential"}},
}


def _shown(hint: Any) -> str:
    """How a type hint reads in ``params`` (independent of chatplug.params)."""
    if hint is inspect.Parameter.empty or hint is None:
        return ""
    if isinstance(hint, str):
        return hint
    if typing.get_origin(hint) is typing.Annotated:
        return _shown(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_shown(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if isinstance(hint, type):
        return hint.__name__
    if typing.get_args(hint) and isinstance(typing.get_origin(hint), type):
        return (f"{typing.get_origin(hint).__name__}"
                f"[{', '.join(_shown(arg) for arg in typing.get_args(hint))}]")
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _resolved(function: Callable[..., Any], annotation: Any) -> Any:
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, dict(getattr(function, "__globals__", {})))
    except Exception:
        return annotation  # names imported only for type checkers stay as written


def _outcome(run: Any) -> tuple[str, Any]:
    """What a call gave: ``("ok", its result)``, or its error's class and message."""
    try:
        return "ok", run()
    except ChatplugError as error:
        return type(error).__name__, str(error)


class ProviderConformance:
    """Subclass as ``Test<Something>`` and set :attr:`provider_name`; pytest does the rest.

    The suite uses the ``chatplug_server`` fixture of chatplug's pytest plugin,
    registered automatically when chatplug is installed.  Each test takes well
    under two seconds (the live-streaming test about one).
    """

    #: The provider's name (its entry-point name), as ``registry.get`` takes it.
    provider_name: ClassVar[str] = ""
    #: The model to ask for; ``None`` uses the provider's first model.
    model: ClassVar[str | None] = None
    #: Appended to the scripted server's URL to form the provider's URL setting.
    url_suffix: ClassVar[str] = ""
    #: Extra call parameters for every ``create()``.
    options: ClassVar[Mapping[str, Any]] = {}
    #: A provider object to register directly instead of the installed entry point
    #: (lets a package run the suite before it is installed).
    plugin: ClassVar[object | None] = None
    #: What the provider's replies carry beside text, among :data:`ALL_EVENTS`; the
    #: suite checks each named one arrives.  Empty: a text-only provider.
    reports: ClassVar[tuple[str, ...]] = ()

    # -- set-up ----------------------------------------------------------------------

    def make_registry(self, server: ScriptedServer, *, api_key: str = TEST_API_KEY) -> Registry:
        """A registry whose provider talks to ``server`` with ``api_key``."""
        if not self.provider_name:
            pytest.fail(f"{type(self).__name__}: set provider_name to the provider's name")
        registry = registry_for(server, urls={self.provider_name: server.url + self.url_suffix},
                                api_keys={self.provider_name: api_key})
        if self.plugin is not None:
            from .. import Registry

            registry = Registry(settings=registry.settings, entry_points=())
            registry.register(self.plugin, self.provider_name)
        return registry

    @pytest.fixture
    def conformance_registry(self, chatplug_server: ScriptedServer) -> Iterator[Registry]:
        registry = self.make_registry(chatplug_server)
        yield registry
        registry.close()

    @pytest.fixture
    def provider(self, conformance_registry: Registry) -> Provider:
        return conformance_registry.provider(self.provider_name)

    def create(self, provider: Provider, *, stream: bool) -> Any:
        """One call as every test makes it: bounded in time, never retried."""
        return provider.create(messages=MESSAGES, model=self.model, stream=stream,
                               timeout=CALL_TIMEOUT, max_retries=0, **self.options)

    def consume(self, provider: Provider, *, stream: bool, into: list[str]) -> None:
        """Make one call and collect its text in ``into`` (piece by piece when streamed)."""
        if stream:
            with self.create(provider, stream=True) as pieces:
                into.extend(pieces)
        else:
            into.append(self.create(provider, stream=False))

    # -- metadata and parameters -----------------------------------------------------

    def test_metadata_is_present_and_well_typed(self, provider: Provider) -> None:
        plugin = provider.plugin
        assert provider.name.lower() == self.provider_name.lower()
        assert isinstance(plugin.url, str)  # type: ignore[attr-defined]
        assert plugin.url.startswith(("http://", "https://"))  # type: ignore[attr-defined]
        assert provider.default_url == plugin.url.rstrip("/")  # type: ignore[attr-defined]
        models = plugin.model  # type: ignore[attr-defined]
        assert isinstance(models, (list, tuple))
        assert all(isinstance(m, str) and m.strip() == m and m for m in models)
        assert provider.models == list(models)
        assert type(plugin.supports_stream) is bool  # type: ignore[attr-defined]
        assert type(plugin.needs_auth) is bool  # type: ignore[attr-defined]
        assert provider.distribution is None or isinstance(provider.distribution, str)
        assert provider.version is None or isinstance(provider.version, str)
        if not models:
            assert self.model, "the provider lists no models: set model on the test class"
        json.dumps(provider.as_dict())  # JSON-ready, as `chatplug providers --json` needs

    def _function(self, provider: Provider, registry: Registry) -> Callable[..., Any]:
        impls = [impl for impl in registry.plugin_manager.hook.create_completion.get_hookimpls()
                 if impl.plugin is provider.plugin]
        assert len(impls) == 1, "exactly one @hookimpl create_completion per provider"
        return impls[0].function

    def _expected(self, provider: Provider, function: Callable[..., Any]) -> list[
            tuple[str, str, Any, bool]]:
        """(name, type, default, required) per parameter, straight from the signature."""
        expected = []
        for name, spec in inspect.signature(function).parameters.items():
            if spec.kind is spec.VAR_KEYWORD:
                # **options: Unpack[SomeTypedDict]: each field, optional, default None.
                hint = _resolved(function, spec.annotation)
                if str(typing.get_origin(hint)).endswith("Unpack"):
                    (declared,) = typing.get_args(hint)
                    expected += [(field, _shown(typing.Optional[field_hint]), None, False)  # noqa: UP045
                                 for field, field_hint in typing.get_type_hints(
                                     declared, include_extras=True).items()]
                continue
            if name in _INJECTED or spec.kind is spec.VAR_POSITIONAL:
                continue
            shown = _shown(_resolved(function, spec.annotation))
            required = spec.default is spec.empty
            default = None if required else spec.default
            if name == "model" and required and provider.models:
                default, required = provider.models[0], False
            if name == "stream" and required:
                default, required = False, False
            expected.append((name, shown, default, required))
        return expected

    def test_params_string_matches_the_function(
        self, provider: Provider, conformance_registry: Registry
    ) -> None:
        function = self._function(provider, conformance_registry)
        shown = [f"{n}: {t}" if t else n for n, t, _, _ in self._expected(provider, function)]
        assert provider.params == f"{provider.module_name} supports: ({', '.join(shown)})"

    def test_structured_parameters_agree_with_the_function(
        self, provider: Provider, conformance_registry: Registry
    ) -> None:
        function = self._function(provider, conformance_registry)
        actual = [(p.name, p.type, None if p.required else p.default, p.required)
                  for p in provider.parameters]
        assert actual == self._expected(provider, function)
        assert [p.name for p in provider.parameters][: len(_CORE)] == list(_CORE), \
            "a completion function starts with (model, messages, stream)"
        for parameter in provider.parameters:
            assert set(parameter.as_dict()) == {"name", "type", "default", "required"}
            json.dumps(parameter.as_dict())

    # -- replies ---------------------------------------------------------------------

    def test_create_returns_the_scripted_text(
        self, provider: Provider, chatplug_server: ScriptedServer
    ) -> None:
        chatplug_server.add(text=TEXT)
        assert self.create(provider, stream=False) == TEXT

    def test_streaming_returns_the_scripted_pieces(
        self, provider: Provider, chatplug_server: ScriptedServer
    ) -> None:
        chatplug_server.add(pieces=PIECES)
        with self.create(provider, stream=True) as stream:
            pieces = list(stream)
        assert pieces == (PIECES if provider.supports_stream else ["".join(PIECES)])

    def test_streaming_is_live(self, provider: Provider, chatplug_server: ScriptedServer) -> None:
        if not provider.supports_stream:
            pytest.skip("the provider does not stream")
        chatplug_server.add(pieces=["first", " then", " the", " rest"], hold_after=1, hold=1.0)
        started = time.monotonic()
        arrivals = []
        with self.create(provider, stream=True) as stream:
            for piece in stream:
                arrivals.append((piece, time.monotonic() - started))
        assert [piece for piece, _ in arrivals] == ["first", " then", " the", " rest"]
        assert arrivals[0][1] < 0.5, "the first piece waited for the rest of the reply"
        assert arrivals[1][1] >= 0.9

    def test_closing_a_stream_early_releases_the_response(
        self, provider: Provider, chatplug_server: ScriptedServer
    ) -> None:
        if not provider.supports_stream:
            pytest.skip("the provider does not stream")
        chatplug_server.add(pieces=["a", " b", " c", " d", " e", " f"], piece_delay=0.3)
        started = time.monotonic()
        with self.create(provider, stream=True) as stream:
            assert next(stream) == "a"
        assert time.monotonic() - started < 1.0, "closing waited for the rest of the reply"
        with pytest.raises(StopIteration):
            next(stream)
        started = time.monotonic()
        assert self.create(provider, stream=False) == f"You said: {MESSAGES[-1]['content']}"
        assert time.monotonic() - started < 1.0, "the next call waited for a connection"

    # -- failures --------------------------------------------------------------------

    @pytest.mark.parametrize("fault", list(FAULTS))
    def test_wire_failures_are_typed_errors(
        self, provider: Provider, chatplug_server: ScriptedServer, fault: str
    ) -> None:
        script, streamed, expected, status = FAULTS[fault]
        if streamed and not provider.supports_stream:
            pytest.skip("a streaming fault; the provider does not stream")
        chatplug_server.add(**script)
        received: list[str] = []
        with pytest.raises(expected) as info:
            self.consume(provider, stream=streamed, into=received)
        assert info.value.provider == provider.name
        if status is not None:
            assert getattr(info.value, "status_code", None) == status
        if fault == "cut-stream":
            assert received == PIECES[:2], "the pieces that arrived are delivered first"
        if fault in ("cut-stream", "error-in-stream", "no-last-event"):
            error = info.value
            assert isinstance(error, StreamInterruptedError)
            delivered = "".join(received)
            assert error.received == len(delivered), "received counts the characters"
            assert error.completion is not None, "the reply so far comes with the error"
            assert error.completion.text == delivered
            assert error.completion.finish_reason is None
        if fault in ("error-in-stream", "error-event-first"):
            assert "upstream overloaded" in str(info.value)

    # -- async -----------------------------------------------------------------------

    @pytest.mark.parametrize("fault", [None, *FAULTS])
    def test_the_async_api_does_what_the_sync_one_does(
        self, provider: Provider, chatplug_server: ScriptedServer, fault: str | None
    ) -> None:
        """``acreate`` (on the event loop itself for a provider that declares
        ``native_async``) gives what ``create`` gives for the same reply: the text, the
        pieces, and for every fault the same typed error with the same message."""
        import asyncio

        streams = [True, False] if fault is None else [FAULTS[fault][1]]
        if not provider.supports_stream and fault is not None and streams[0]:
            pytest.skip("a streaming fault; the provider does not stream")

        def script() -> None:
            if fault is None:
                chatplug_server.add(pieces=PIECES)
                chatplug_server.add(text=TEXT)
            else:
                chatplug_server.add(**FAULTS[fault][0])

        def sync() -> list[Any]:
            outcomes: list[Any] = []
            for streamed in streams:
                if streamed:
                    with self.create(provider, stream=True) as stream:
                        outcomes.append(list(stream))
                else:
                    outcomes.append(self.create(provider, stream=False))
            return outcomes

        async def run_async() -> list[Any]:
            options = {"model": self.model, "timeout": CALL_TIMEOUT, "max_retries": 0,
                       **self.options}
            outcomes: list[Any] = []
            for streamed in streams:
                if streamed:
                    stream = await provider.acreate(MESSAGES, stream=True, **options)
                    assert not isinstance(stream, str)
                    async with stream:
                        outcomes.append([piece async for piece in stream])
                else:
                    outcomes.append(await provider.acreate(MESSAGES, **options))
            return outcomes

        script()
        expected = _outcome(sync)
        script()
        assert _outcome(lambda: asyncio.run(run_async())) == expected

    def test_a_long_async_stream_keeps_the_loop_running(
        self, provider: Provider, chatplug_server: ScriptedServer
    ) -> None:
        """A reply that needs many socket reads, streamed through ``acreate``, arrives
        whole, and the event loop is never frozen meanwhile (a ``native_async`` plugin
        that drops the transport's waits would spin it).  The loop runs on a thread the
        kit waits for a bounded time, so the kit itself never hangs."""
        if not provider.supports_stream:
            pytest.skip("the provider does not stream")
        import asyncio
        import threading

        pieces = [f" p{index}" for index in range(LONG_PIECES)]
        chatplug_server.add(pieces=pieces)
        options = {"model": self.model, "timeout": CALL_TIMEOUT, "max_retries": 0,
                   **self.options}
        outcome: list[Any] = []

        async def run() -> str:
            stream = await provider.acreate(MESSAGES, stream=True, **options)
            assert not isinstance(stream, str)
            async with stream:
                return "".join([piece async for piece in stream])

        def loop() -> None:
            outcome.append(_outcome(lambda: asyncio.run(run())))

        thread = threading.Thread(target=loop, name="conformance-loop", daemon=True)
        thread.start()
        thread.join(CALL_TIMEOUT + 5)
        if thread.is_alive():
            pytest.fail(f"{self.provider_name}: acreate's event loop was still busy "
                        f"{CALL_TIMEOUT + 5:g} s after a streamed call with a "
                        f"{CALL_TIMEOUT:g} s timeout began: the plugin froze it (a "
                        "native_async plugin must pass the transport's waits through; "
                        "see docs/writing-a-provider.md)")
        if outcome != [("ok", "".join(pieces))]:
            kind, said = outcome[0]
            pytest.fail(f"{self.provider_name}: a long stream through acreate did not "
                        f"arrive whole: {kind}: {str(said)[:300]}")

    # -- events ----------------------------------------------------------------------

    @pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
    def test_events_are_well_formed_and_complete(
        self, provider: Provider, chatplug_server: ScriptedServer, streamed: bool
    ) -> None:
        if streamed and not provider.supports_stream:
            pytest.skip("the provider does not stream")
        chatplug_server.add(**RICH)
        if streamed:
            with self.create(provider, stream=True) as stream:
                items = list(stream.events())
            completion = stream.completion
            check_events(items)
            assert "".join(i for i in items if isinstance(i, str)) == completion.text
        else:
            completion = provider.complete(messages=MESSAGES, model=self.model,
                                           timeout=CALL_TIMEOUT, max_retries=0, **self.options)
        assert completion.text == "".join(PIECES)
        reports = set(self.reports)
        assert not reports - set(ALL_EVENTS), f"reports names unknown events: {reports}"
        if "finish" in reports or completion.finish_reason is not None:
            assert completion.finish_reason == "length"
        if "usage" in reports or completion.usage is not None:
            assert completion.usage is not None
            assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
                RICH_USAGE["prompt_tokens"], RICH_USAGE["completion_tokens"])
            assert completion.usage.total_tokens in (None, RICH_USAGE["total_tokens"])
        if "tool_calls" in reports or completion.tool_calls:
            calls = [(call.name, json.loads(call.arguments)) for call in completion.tool_calls]
            assert calls == [(c["function"]["name"], json.loads(c["function"]["arguments"]))
                             for c in RICH_TOOL_CALLS]
            assert all(call.id for call in completion.tool_calls), "tool calls need an id"
            assert completion.message["tool_calls"][0]["function"]["name"] == "get_weather"
        if "reasoning" in reports or completion.reasoning is not None:
            assert completion.reasoning == RICH["reasoning"]
        if "meta" in reports:
            assert completion.model == RICH["model"]

    def test_a_text_only_reply_has_no_stray_events(
        self, provider: Provider, chatplug_server: ScriptedServer
    ) -> None:
        if not provider.supports_stream:
            pytest.skip("the provider does not stream")
        chatplug_server.add(pieces=PIECES)
        with self.create(provider, stream=True) as stream:
            items = list(stream.events())
        check_events(items)
        completion = stream.completion
        assert completion.tool_calls == []
        assert completion.reasoning is None
        assert completion.message == {"role": "assistant", "content": "".join(PIECES)}
        if "finish" in self.reports:
            assert completion.finish_reason == "stop"

    @pytest.mark.parametrize("fault", list(ECHO_FAULTS))
    def test_no_key_in_any_error_text(self, chatplug_server: ScriptedServer, fault: str) -> None:
        registry = self.make_registry(chatplug_server, api_key=PLANTED_KEY)
        try:
            provider = registry.provider(self.provider_name)
            script = ECHO_FAULTS[fault]
            streamed = bool(script.get("stream"))
            if streamed and not provider.supports_stream:
                pytest.skip("a streaming fault; the provider does not stream")
            chatplug_server.add(echo_key=True, **script)
            with pytest.raises(ChatplugError) as info:
                self.consume(provider, stream=streamed, into=[])
            error = info.value
            rendered = " ".join([str(error), repr(error), repr(error.args),
                                 repr(vars(error)), *map(str, _chain(error))])
            assert PLANTED_KEY not in rendered, f"the key leaked into {type(error).__name__}"
        finally:
            registry.close()


def check_events(items: list[Any]) -> None:
    """Assert that what a provider yielded is well formed.

    Text is ``str``; anything else is one of :mod:`chatplug.events`' types; at most one
    ``Finish``, with a non-empty reason; token counts are ``None`` or whole numbers
    >= 0; tool-call fragments have an ``index`` >= 0 and text ``arguments``, and the
    fragments of each index join into valid JSON, with a name.

    :raises AssertionError: naming what is wrong.
    """
    finishes = [item for item in items if isinstance(item, Finish)]
    assert len(finishes) <= 1, f"{len(finishes)} Finish events; a reply ends once"
    tools: dict[int, list[ToolCallDelta]] = {}
    for item in items:
        assert isinstance(item, (str, *EVENT_TYPES)), \
            f"{type(item).__name__} is neither text nor a chatplug.events event"
        if isinstance(item, Finish):
            assert isinstance(item.reason, str), "a finish reason must be text"
            assert item.reason, "an empty finish reason"
        elif isinstance(item, Usage):
            for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
                count = getattr(item, name)
                assert count is None or (type(count) is int and count >= 0), \
                    f"usage {name} is {count!r}, not a count"
        elif isinstance(item, ToolCallDelta):
            assert type(item.index) is int, f"tool call index {item.index!r}"
            assert item.index >= 0, f"tool call index {item.index!r}"
            assert isinstance(item.arguments, str), "tool call arguments must be JSON text"
            tools.setdefault(item.index, []).append(item)
        elif isinstance(item, Reasoning):
            assert isinstance(item.text, str), "reasoning must be text"
        elif isinstance(item, Meta):
            assert item.id is None or isinstance(item.id, str)
            assert item.model is None or isinstance(item.model, str)
    for index, fragments in tools.items():
        arguments = "".join(fragment.arguments for fragment in fragments)
        try:
            json.loads(arguments or "{}")
        except ValueError:
            raise AssertionError(
                f"the fragments of tool call {index} do not join into JSON: {arguments!r}"
            ) from None
        assert any(fragment.name for fragment in fragments), f"tool call {index} has no name"


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and its causes and contexts (a bounded walk: chains can loop)."""
    current: BaseException | None = error
    for _ in range(10):
        if current is None:
            return
        yield current
        current = current.__cause__ or current.__context__
