"""Anthropic and Gemini behind the gateway, seen by the real ``openai`` client.

An OpenAI user asking ``model="Anthropic/..."`` or ``"Gemini/..."`` gets streamed
text, tool-call deltas whose arguments join whole, reasoning, and usage with the
cache and reasoning counts in OpenAI's ``*_tokens_details``; whole replies too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from chatplug.server import ServerSettings, create_app
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer

MESSAGES = [{"role": "user", "content": "Weather in Zürich?"}]
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}]
CALL = {"id": "toolu_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Zürich","unit":"c"}'}}
#: Each provider's usage in its own wire's shape, and what OpenAI's shape says of it.
USAGE = {
    "Anthropic": {"input_tokens": 10, "cache_read_input_tokens": 300,
                  "cache_creation_input_tokens": 20, "output_tokens": 15},
    "Gemini": {"promptTokenCount": 330, "cachedContentTokenCount": 300,
               "candidatesTokenCount": 5, "thoughtsTokenCount": 10, "totalTokenCount": 345},
}
MODELS = {"Anthropic": "claude-test-1", "Gemini": "gemini-test-flash"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=120) as server:
        yield server


@pytest.fixture(scope="module")
def client(upstream: ScriptedServer) -> Iterator[openai.OpenAI]:
    registry = registry_for(upstream, max_retries=0, timeout=5)
    with GatewayServer(create_app(registry, ServerSettings())) as gateway, openai.OpenAI(
            base_url=gateway.url + "/v1", api_key="client-key", max_retries=0,
            timeout=10) as client:
        yield client
    registry.close()


@pytest.mark.parametrize("provider", list(MODELS))
def test_a_stream_carries_text_tool_calls_reasoning_and_detailed_usage(
        client: openai.OpenAI, upstream: ScriptedServer, provider: str) -> None:
    upstream.add(text="Let me look.", reasoning="Need the tool.", tool_calls=[CALL],
                 fragment=3, usage=USAGE[provider])
    stream = client.chat.completions.create(
        model=f"{provider}/{MODELS[provider]}", messages=MESSAGES,  # type: ignore[arg-type]
        tools=TOOLS, stream=True, stream_options={"include_usage": True})
    text, reasoning, arguments, names, finish, usage = [], [], [], [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            text.append(delta.content or "")
            reasoning.append(getattr(delta, "reasoning_content", None) or "")
            for call in delta.tool_calls or ():
                arguments.append(call.function.arguments or "")  # type: ignore[union-attr]
                if call.function.name:  # type: ignore[union-attr]
                    names.append(call.function.name)  # type: ignore[union-attr]
            finish = choice.finish_reason or finish
    assert "".join(text) == "Let me look."
    assert "".join(reasoning) == "Need the tool."
    assert names == ["get_weather"]
    assert json.loads("".join(arguments)) == {"city": "Zürich", "unit": "c"}
    assert finish == "tool_calls"
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 300
    if provider == "Anthropic":
        assert (usage.prompt_tokens, usage.completion_tokens) == (330, 15)
    else:
        assert usage.completion_tokens_details is not None
        assert usage.completion_tokens_details.reasoning_tokens == 10
        assert (usage.prompt_tokens, usage.completion_tokens) == (330, 15)


@pytest.mark.parametrize("provider", list(MODELS))
def test_a_whole_reply(client: openai.OpenAI, upstream: ScriptedServer, provider: str) -> None:
    upstream.add(text="", tool_calls=[CALL], usage=USAGE[provider])
    reply = client.chat.completions.create(
        model=f"{provider}/{MODELS[provider]}", messages=MESSAGES,  # type: ignore[arg-type]
        tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        {"city": "Zürich", "unit": "c"}]
    assert reply.usage is not None
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 300
