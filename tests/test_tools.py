"""A whole tool-calling round trip over real HTTP against the scripted server:
tools sent, tool calls streamed in fragments, assembled, the assistant message and
the tool results sent back, the final answer; what the server received each time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chatplug import Completion, InvalidRequestError, Registry, ToolCall, ToolCallDelta
from chatplug.testing import ScriptedServer
from chatplug.testing.conformance import check_events
from chatplug.testing.pytest_plugin import registry_for

TOOLS = [{"type": "function", "function": {
    "name": "get_weather",
    "description": "The current temperature in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}}]
CALLS = [
    {"id": "call_zrh", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'}},
    {"id": "call_par", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
]
TEMPERATURES = {"Zürich": 21, "Paris": 18}
ANSWER = "It is 21 °C in Zürich and 18 °C in Paris."


def get_weather(city: str) -> dict[str, Any]:
    return {"city": city, "temp_c": TEMPERATURES[city]}


@pytest.fixture
def registry(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    registry = registry_for(chatplug_server)
    yield registry
    registry.close()


def ask(registry: Registry, name: str, messages: list[dict[str, Any]], *,
        stream: bool, **options: Any) -> tuple[Completion, list[Any]]:
    """One turn: the completion and, when streamed, everything the stream yielded."""
    provider = registry.get(name)
    model = None if provider.models else "gpt-4o-mini"
    if not stream:
        return provider.complete(messages=messages, model=model, **options), []
    with provider.create(messages=messages, model=model, stream=True, **options) as reply:
        items = list(reply.events())
    check_events(items)
    return reply.completion, items


ROUTES: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "openai-streamed": ("OpenAI", True, {"tool_choice": "auto", "parallel_tool_calls": True}),
    "openai-whole": ("OpenAI", False, {"tool_choice": {"type": "function",
                                                       "function": {"name": "get_weather"}}}),
    "gravityengine-streamed": ("GravityEngine", True, {"tool_choice": "auto"}),
    "ollama-streamed": ("Ollama", True, {}),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_whole_tool_calling_round_trip(
    registry: Registry, chatplug_server: ScriptedServer, route: str
) -> None:
    name, stream, options = ROUTES[route]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Zürich and Paris?"}]

    # 1. The model asks for two tool calls, streamed in fragments of 3 characters.
    chatplug_server.add(pieces=[], tool_calls=CALLS, fragment=3)
    completion, items = ask(registry, name, messages, stream=stream, tools=TOOLS, **options)
    first = chatplug_server.requests[-1].json
    assert first["tools"] == TOOLS
    for key, value in options.items():
        assert first[key] == value
    assert first["messages"] == messages
    if stream and name != "Ollama":  # OpenAI streams fragments; Ollama sends whole calls
        fragments = [item for item in items if isinstance(item, ToolCallDelta)]
        assert len(fragments) > len(CALLS) * 3, "the arguments arrived in pieces"
    assert completion.finish_reason == "tool_calls"
    assert completion.text == ""
    assert [(call.name, json.loads(call.arguments)) for call in completion.tool_calls] == [
        ("get_weather", {"city": "Zürich"}), ("get_weather", {"city": "Paris"})]
    if name != "Ollama":  # Ollama sends no ids; chatplug names them call_0, call_1
        assert completion.tool_calls == [
            ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in CALLS]
    assert completion.message["content"] is None

    # 2. The app runs the tools and sends back the assistant message and the results.
    messages.append(completion.message)
    for call in completion.tool_calls:
        messages.append({"role": "tool", "tool_call_id": call.id,
                         "content": json.dumps(get_weather(**json.loads(call.arguments)),
                                               ensure_ascii=False)})
    chatplug_server.add(text=ANSWER, usage={"prompt_tokens": 80, "completion_tokens": 14,
                                            "total_tokens": 94})
    final, _ = ask(registry, name, messages, stream=stream, tools=TOOLS)
    assert final.text == ANSWER
    assert final.finish_reason == "stop"
    assert final.tool_calls == []
    assert final.message == {"role": "assistant", "content": ANSWER}
    assert final.usage is not None
    assert final.usage.completion_tokens == 14

    # 3. What the server received the second time: the whole exchange.
    second = chatplug_server.requests[-1].json["messages"]
    assert second[0] == messages[0]
    if name == "Ollama":
        # Ollama's own shape: arguments as objects, results named by their tool.
        assert second[1] == {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Zürich"}}},
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
        assert second[2:] == [
            {"role": "tool", "tool_name": "get_weather",
             "content": '{"city": "Zürich", "temp_c": 21}'},
            {"role": "tool", "tool_name": "get_weather",
             "content": '{"city": "Paris", "temp_c": 18}'}]
    else:
        assert second[1] == {"role": "assistant", "content": None, "tool_calls": CALLS}
        assert second[2:] == [
            {"role": "tool", "tool_call_id": "call_zrh",
             "content": '{"city": "Zürich", "temp_c": 21}'},
            {"role": "tool", "tool_call_id": "call_par",
             "content": '{"city": "Paris", "temp_c": 18}'}]
    assert len(chatplug_server.requests) == 2


@pytest.mark.parametrize(("options", "fragment"), [
    ({"tools": "get_weather"}, "tools"),
    ({"tools": [{"type": "function"}], "tool_choice": 3}, "tool_choice"),
    ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"response_format": "json"}, "response_format"),
    ({"stop": ["a", 1]}, "stop"),
    ({"logit_bias": {"50256": 101}}, "logit_bias"),
    ({"logit_bias": {"50256": 1.5}}, "logit_bias"),
    ({"user": 42}, "user"),
])
def test_openai_parameters_are_validated_before_anything_is_sent(
    registry: Registry, chatplug_server: ScriptedServer, options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        registry.get("OpenAI").create(messages=[{"role": "user", "content": "hi"}],
                                      model="m", **options)
    assert chatplug_server.requests == []


def test_openai_parameters_reach_the_body(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    options: dict[str, Any] = {
        "response_format": {"type": "json_object"}, "stop": ["\n\n", "END"],
        "logit_bias": {"50256": -100}, "user": "user-1234", "seed": 7, "max_tokens": 5}
    registry.get("OpenAI").create(messages=[{"role": "user", "content": "hi"}], model="m",
                                  **options)
    body = chatplug_server.requests[-1].json
    assert {key: body[key] for key in options} == options
    assert "tools" not in body
    assert "stream_options" not in body  # only a stream asks for usage


