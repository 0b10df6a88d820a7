"""Rich completions over real HTTP: every event through ``complete()``, a finished
``Stream.completion``, ``Stream.events()`` and observers; message shapes on the wire;
capability refusals that send nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chatplug import (
    Completion,
    Finish,
    InvalidRequestError,
    Meta,
    ProviderResponseError,
    Reasoning,
    Registry,
    StreamInterruptedError,
    ToolCall,
    ToolCallDelta,
    Usage,
    hookimpl,
)
from chatplug.testing import ScriptedServer
from chatplug.testing.conformance import check_events
from chatplug.testing.pytest_plugin import registry_for

MESSAGES = [{"role": "user", "content": "What is the weather in Zürich?"}]
USAGE = {"prompt_tokens": 21, "completion_tokens": 13, "total_tokens": 34}
CALLS = [{"id": "call_w", "type": "function",
          "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'}}]
#: A reply with every kind of event: id and model, reasoning, text, a tool call, usage.
RICH: dict[str, Any] = {"text": "Let me check.", "reasoning": "The user wants weather.",
                        "tool_calls": CALLS, "usage": USAGE, "id": "chatcmpl-rich",
                        "model": "gpt-4o-mini-2024-07-18", "fragment": 4}


class Responses:
    """An observer that keeps what ``chatplug_on_response`` heard (observers are
    notified after the call returns: reading waits until they heard everything)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._heard: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def heard(self) -> list[dict[str, Any]]:
        assert self.registry.flush_observers(5)
        return self._heard

    @hookimpl
    def chatplug_on_response(self, outcome: str, finish_reason: str | None,
                             usage: Usage | None) -> None:
        with self.lock:
            self._heard.append({"outcome": outcome, "finish_reason": finish_reason,
                               "usage": usage})


@pytest.fixture
def registry(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    registry = registry_for(chatplug_server)
    yield registry
    registry.close()


@pytest.fixture
def observer(registry: Registry) -> Responses:
    responses = Responses(registry)
    registry.register_observer(responses, "responses")
    return responses


def openai_complete(registry: Registry, **options: Any) -> Completion:
    return registry.get("OpenAI").complete(messages=MESSAGES, model="gpt-4o-mini",
                                           max_retries=0, **options)


def expected_completion(provider: str = "OpenAI") -> Completion:
    return Completion(
        text="Let me check.", finish_reason="tool_calls", usage=Usage(21, 13, 34),
        tool_calls=[ToolCall("call_w", "get_weather", '{"city": "Zürich"}')],
        reasoning="The user wants weather.", id="chatcmpl-rich",
        model="gpt-4o-mini-2024-07-18", provider=provider, attempts=1)


def test_complete_assembles_every_event_of_a_json_reply(
    registry: Registry, chatplug_server: ScriptedServer, observer: Responses
) -> None:
    chatplug_server.add(**RICH)
    completion = openai_complete(registry)
    assert completion == expected_completion()
    assert completion.message == {
        "role": "assistant", "content": "Let me check.",
        "tool_calls": [{"id": "call_w", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Zürich"}'}}]}
    assert observer.heard == [{"outcome": "complete", "finish_reason": "tool_calls",
                               "usage": Usage(21, 13, 34)}]
    assert chatplug_server.requests[-1].json["stream"] is False
    assert "stream_options" not in chatplug_server.requests[-1].json


def test_stream_events_yield_everything_in_order_and_the_completion_is_final(
    registry: Registry, chatplug_server: ScriptedServer, observer: Responses
) -> None:
    chatplug_server.add(**RICH)
    with registry.get("OpenAI").create(messages=MESSAGES, model="gpt-4o-mini",
                                       stream=True) as stream:
        items = list(stream.events())
    check_events(items)
    assert items[0] == Meta("chatcmpl-rich", "gpt-4o-mini-2024-07-18")
    kinds = [type(item).__name__ for item in items]
    # reasoning first, then the text, then the tool call's fragments, the finish, the usage
    # (4 reasoning pieces, 3 text pieces, the call's opening fragment and its 18
    # characters of arguments in fragments of 4)
    assert kinds == ["Meta", *["Reasoning"] * 4, *["str"] * 3, *["ToolCallDelta"] * 6,
                     "Finish", "Usage"]
    assert next(i for i in items if isinstance(i, ToolCallDelta)) == ToolCallDelta(
        0, "call_w", "get_weather", "")
    assert items[-2:] == [Finish("tool_calls"), Usage(21, 13, 34)]
    assert stream.completion == expected_completion()
    assert observer.heard[-1]["finish_reason"] == "tool_calls"
    # The provider asked for the usage chunk.
    assert chatplug_server.requests[-1].json["stream_options"] == {"include_usage": True}


def test_iterating_text_still_records_the_events_in_the_completion(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(**RICH)
    stream = registry.get("OpenAI").create(messages=MESSAGES, model="gpt-4o-mini", stream=True)
    assert "".join(stream) == "Let me check."
    assert stream.completion == expected_completion()


def test_text_and_events_views_consume_one_reply(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(pieces=["a", "b", "c"], usage=USAGE)
    with registry.get("OpenAI").create(messages=MESSAGES, model="m", stream=True) as stream:
        assert next(stream) == "a"  # the text view first...
        rest = list(stream.events())  # ...then the events view takes up where it stopped
    assert rest[:2] == ["b", "c"]
    assert rest[-2:] == [Finish("stop"), Usage(21, 13, 34)]
    assert stream.completion.text == "abc"


@pytest.mark.parametrize("provider", ["OpenAI", "GravityEngine", "Ollama", "LlamaCpp"])
def test_a_reply_cut_by_length_says_so_everywhere(
    registry: Registry, chatplug_server: ScriptedServer, observer: Responses, provider: str
) -> None:
    served = registry.get(provider)
    model = None if served.models else "m"
    chatplug_server.add(text="cut short by max", finish_reason="length")
    assert served.complete(messages=MESSAGES, model=model).finish_reason == "length"
    chatplug_server.add(text="cut short by max", finish_reason="length")
    stream = served.create(messages=MESSAGES, model=model, stream=True)
    assert "".join(stream) == "cut short by max"
    assert stream.completion.finish_reason == "length"
    assert [heard["finish_reason"] for heard in observer.heard] == ["length", "length"]


def test_acomplete_says_length_too(registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="cut", finish_reason="length", usage=USAGE)
    completion = asyncio.run(registry.get("OpenAI").acomplete(messages=MESSAGES, model="m"))
    assert (completion.finish_reason, completion.usage) == ("length", Usage(21, 13, 34))


def test_a_stream_cut_before_any_finish_reason_still_raises_with_the_completion(
    registry: Registry, chatplug_server: ScriptedServer, observer: Responses
) -> None:
    chatplug_server.add(pieces=["half", " a", " reply"], reasoning="plan", finish=False,
                        done=False, stream=True)
    received: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        received.extend(registry.get("OpenAI").create(messages=MESSAGES, model="m",
                                                      stream=True, max_retries=0))
    error = info.value
    assert received == ["half", " a", " reply"]
    assert error.received == len("half a reply")
    assert error.completion is not None
    assert (error.completion.text, error.completion.finish_reason) == ("half a reply", None)
    assert error.completion.reasoning == "plan"
    assert error.completion.id == "chatcmpl-test"
    assert observer.heard == []  # on_error, not on_response
    # complete() of a cut reply raises too: a reply without its end is not a Completion.
    chatplug_server.add(pieces=["half"], finish=False, done=False, stream=True)
    with pytest.raises(StreamInterruptedError) as info:
        openai_complete(registry)
    assert info.value.completion is not None
    assert info.value.completion.text == "half"


def test_a_connection_dropped_mid_stream_counts_what_arrived(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(pieces=["one", " two", " three"], drop_after=2, stream=True)
    with pytest.raises(StreamInterruptedError) as info:
        list(registry.get("OpenAI").create(messages=MESSAGES, model="m", stream=True))
    assert info.value.received == len("one two")
    assert info.value.completion is not None
    assert info.value.completion.text == "one two"


def test_ollama_events_through_complete(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(**RICH)
    completion = registry.get("Ollama").complete(messages=MESSAGES, model="llama3.2")
    assert completion.text == "Let me check."
    assert completion.reasoning == "The user wants weather."
    assert completion.tool_calls == [ToolCall("call_0", "get_weather", '{"city": "Zürich"}')]
    assert (completion.finish_reason, completion.usage) == ("tool_calls", Usage(21, 13, 34))
    assert completion.model == "gpt-4o-mini-2024-07-18"


# -- message shapes on the wire --------------------------------------------------------

IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNg"
SHAPES = [
    {"role": "developer", "content": "Answer briefly."},
    {"role": "system", "content": [{"type": "text", "text": "Be kind."}]},
    {"role": "user", "content": [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]},
    {"role": "assistant", "content": None, "tool_calls": CALLS},
    {"role": "tool", "tool_call_id": "call_w", "content": '{"temp_c": 21}'},
    {"role": "assistant", "content": "It is 21 °C.", "name": "helper"},
    {"role": "user", "content": "Thanks!"},
]


def test_message_shapes_reach_the_server_intact(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    assert registry.get("OpenAI").create(messages=SHAPES, model="gpt-4o") == "You said: Thanks!"
    assert chatplug_server.requests[-1].json["messages"] == SHAPES


def test_capability_refusals_send_nothing(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    image = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]
    tool_round = [MESSAGES[0], SHAPES[3], SHAPES[4]]
    refusals = [
        ("GravityEngine", image, {}, "does not support images"),
        ("Ollama", image, {}, "does not support images"),
        ("LlamaCpp", tool_round, {}, "does not support tools"),
        ("LlamaCpp", MESSAGES, {"extra_body": {"x": 1}}, None),  # no refusal: a control
    ]
    for name, messages, options, refusal in refusals:
        provider = registry.get(name)
        model = None if provider.models else "m"
        before = len(chatplug_server.requests)
        if refusal is None:
            provider.create(messages=messages, model=model, **options)
            assert len(chatplug_server.requests) == before + 1
            continue
        with pytest.raises(InvalidRequestError, match=refusal) as info:
            provider.create(messages=messages, model=model, **options)
        assert name in str(info.value)
        assert len(chatplug_server.requests) == before, f"{name} sent a refused request"


def test_a_provider_that_yields_what_is_no_event_is_named(chatplug_server: ScriptedServer) -> None:
    from types import SimpleNamespace

    @hookimpl
    def create_completion(model, messages, stream):  # type: ignore[no-untyped-def]
        yield Meta(id="x")
        yield Reasoning("fine")
        yield {"finish_reason": "stop"}  # a dict is no event

    registry = Registry(entry_points=())
    provider = registry.register(SimpleNamespace(
        url="http://127.0.0.1:9", model=["m"], supports_stream=True, needs_auth=False,
        create_completion=create_completion), "Sloppy")
    with pytest.raises(ProviderResponseError, match=r"yielded dict.*bug in") as info:
        provider.complete(messages=MESSAGES)
    assert info.value.provider == "Sloppy"


def test_a_plugin_that_handles_pieces_as_text_still_gets_only_text(
    chatplug_server: ScriptedServer,
) -> None:
    """openai.chat() without events=True yields str only, as in chatplug 0.1."""
    from types import SimpleNamespace

    from chatplug.wire import openai

    @hookimpl
    def create_completion(model, messages, stream, url, http):  # type: ignore[no-untyped-def]
        for piece in openai.chat(http, url + "/v1/chat/completions", model=model,
                                 messages=messages, stream=stream):
            yield piece.upper()  # a str method: an event here would break the plugin

    registry = Registry(entry_points=())
    provider = registry.register(SimpleNamespace(
        url=chatplug_server.url, model=["m"], supports_stream=True, needs_auth=False,
        create_completion=create_completion), "Shouter")
    for stream in (False, True):
        chatplug_server.add(**RICH)
        reply = provider.create(messages=MESSAGES, stream=stream)
        assert (reply if isinstance(reply, str) else "".join(reply)) == "LET ME CHECK."
    chatplug_server.add(**RICH)
    assert provider.complete(messages=MESSAGES).finish_reason is None  # it reported none
    registry.close()
