"""The Anthropic provider on Anthropic's own wire, over real HTTP.

First the real ``anthropic`` SDK judges the scripted server: it must parse every
scripted reply, whole and streamed, to the content scripted (so the server speaks
Anthropic's wire, not our idea of it).  Then chatplug's provider runs against the
same server: text, tool calls in many fragments, thinking with its signature sent
back byte for byte, redacted thinking, cache usage, every stop reason, errors
before and after the first piece, retries of 529, the paged model list.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from chatplug import (
    AuthenticationError,
    Completion,
    InvalidRequestError,
    ProviderHTTPError,
    RateLimitError,
    Reasoning,
    ReasoningSignature,
    Registry,
    StreamInterruptedError,
    ToolCallDelta,
    Usage,
)
from chatplug.testing import ScriptedServer
from chatplug.testing.conformance import ALL_EVENTS, ProviderConformance, check_events
from chatplug.testing.pytest_plugin import TEST_API_KEY, registry_for

MODEL = "claude-test-1"
USER = [{"role": "user", "content": "Weather in Zürich and Paris?"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The temperature in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
CALLS = [
    {"id": "toolu_zrh", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city":"Zürich"}'}},
    {"id": "toolu_par", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
]
SIGNATURE = "EqQBCkYIARgCIkB0aGlzIGlzIGEgc2lnbmF0dXJl+/="
CACHE_USAGE = {"input_tokens": 12, "cache_creation_input_tokens": 100,
               "cache_read_input_tokens": 2000, "output_tokens": 42}
#: Every scripted reply the SDK must parse, and what it must see.
SCRIPTS: dict[str, dict[str, Any]] = {
    "text": {"text": "Hello from Claude, héllo ✓"},
    "tools": {"text": "Let me check.", "tool_calls": CALLS, "fragment": 3},
    "thinking": {"text": "It is warm.", "reasoning": "The user wants weather.",
                 "signature": SIGNATURE, "tool_calls": CALLS[:1]},
    "redacted": {"text": "Done.", "reasoning": "Visible thought.", "redacted": ["ZW5jcnlwdGVk"]},
    "cache-usage": {"text": "cached", "usage": CACHE_USAGE},
    "max-tokens": {"text": "cut", "finish_reason": "max_tokens"},
    "stop-sequence": {"text": "up to", "finish_reason": "stop_sequence",
                      "stop_sequence": "END"},
    "refusal": {"text": "", "finish_reason": "refusal"},
    "pause": {"text": "paused", "finish_reason": "pause_turn"},
}


@pytest.fixture
def registry(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    registry = registry_for(chatplug_server)
    yield registry
    registry.close()


def _sdk(server: ScriptedServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=TEST_API_KEY, max_retries=0,
                               timeout=10)


def _blocks(message: Any) -> list[dict[str, Any]]:
    return [block.model_dump(exclude_none=True) for block in message.content]


# -- the SDK judges the scripted server ----------------------------------------------


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_the_sdk_parses_every_scripted_reply_whole_and_streamed(
        chatplug_server: ScriptedServer, name: str) -> None:
    client = _sdk(chatplug_server)
    chatplug_server.add(**SCRIPTS[name])
    whole = client.messages.create(model=MODEL, max_tokens=100, messages=USER)
    chatplug_server.add(**SCRIPTS[name])
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        streamed = stream.get_final_message()
    script = SCRIPTS[name]
    for message in (whole, streamed):
        assert message.stop_reason == script.get("finish_reason",
                                                 "tool_use" if "tool_calls" in script
                                                 else "end_turn")
        assert message.stop_sequence == script.get("stop_sequence")
        kinds = [block.type for block in message.content]
        expected = (["thinking"] if "reasoning" in script else []) \
            + ["redacted_thinking"] * len(script.get("redacted", ())) \
            + (["text"] if script["text"] else []) \
            + ["tool_use"] * len(script.get("tool_calls", ()))
        assert kinds == expected
        for block in message.content:
            if block.type == "text":
                assert block.text == script["text"]
            elif block.type == "thinking":
                assert block.thinking == script["reasoning"]
                assert block.signature == script.get("signature", block.signature)
            elif block.type == "tool_use":
                call = next(c for c in script["tool_calls"] if c["id"] == block.id)
                assert block.name == call["function"]["name"]
                assert block.input == json.loads(call["function"]["arguments"])
        if "usage" in script:
            assert message.usage.cache_read_input_tokens == 2000
            assert message.usage.cache_creation_input_tokens == 100
            assert message.usage.output_tokens == 42
    assert _blocks(whole) == _blocks(streamed)


@pytest.mark.parametrize(("status", "error"), [
    (400, anthropic.BadRequestError), (401, anthropic.AuthenticationError),
    (404, anthropic.NotFoundError), (429, anthropic.RateLimitError),
    (529, anthropic.InternalServerError)])
def test_the_sdk_reads_the_scripted_error_bodies(
        chatplug_server: ScriptedServer, status: int, error: type[Exception]) -> None:
    chatplug_server.add(status=status, text="scripted failure")
    with pytest.raises(error) as info:
        _sdk(chatplug_server).messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert "scripted failure" in str(info.value)


def test_the_sdk_reads_a_mid_stream_error_event(chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="partial reply here", error_event={
        "type": "overloaded_error", "message": "Overloaded"}, stream=True)
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"), \
            _sdk(chatplug_server).messages.stream(model=MODEL, max_tokens=10,
                                                  messages=USER) as stream:
        stream.get_final_message()


def test_the_sdk_pages_the_scripted_model_list(chatplug_server: ScriptedServer) -> None:
    chatplug_server.models = [f"claude-{n}" for n in range(7)]
    listed = [model.id for model in _sdk(chatplug_server).models.list(limit=3)]
    assert listed == chatplug_server.models


# -- chatplug's provider against the same server -------------------------------------


def _complete(registry: Registry, messages: list[dict[str, Any]], *, stream: bool,
              **options: Any) -> tuple[Completion, list[Any]]:
    provider = registry.get("Anthropic")
    options.setdefault("max_retries", 0)
    if not stream:
        return provider.complete(messages, model=MODEL, **options), []
    with provider.create(messages, model=MODEL, stream=True, **options) as running:
        items = list(running.events())
    check_events(items)
    return running.completion, items


@pytest.mark.parametrize("stream", [False, True])
def test_text_usage_and_finish(registry: Registry, chatplug_server: ScriptedServer,
                               stream: bool) -> None:
    chatplug_server.add(text="Hello there, wörld", usage=CACHE_USAGE, id="msg_1",
                        model="claude-served")
    completion, _ = _complete(registry, USER, stream=stream)
    assert completion.text == "Hello there, wörld"
    assert completion.finish_reason == "stop"
    assert completion.native_finish_reason == "end_turn"
    assert (completion.id, completion.model) == ("msg_1", "claude-served")
    # Every input token counts in prompt_tokens; the last value of each count is kept.
    assert completion.usage == Usage(prompt_tokens=2112, completion_tokens=42,
                                     total_tokens=2154, cached_tokens=2000,
                                     cache_creation_tokens=100)
    sent = chatplug_server.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == TEST_API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in sent.headers
    assert sent.json["max_tokens"] == 4096
    assert sent.json.get("stream", False) is stream


@pytest.mark.parametrize(("native", "reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop")])
@pytest.mark.parametrize("stream", [False, True])
def test_every_stop_reason_is_mapped_and_kept(registry: Registry,
                                              chatplug_server: ScriptedServer, native: str,
                                              reason: str, stream: bool) -> None:
    chatplug_server.add(text="x", finish_reason=native,
                        stop_sequence="END" if native == "stop_sequence" else None)
    completion, _ = _complete(registry, USER, stream=stream)
    assert (completion.finish_reason, completion.native_finish_reason) == (reason, native)
    assert completion.stop_sequence == ("END" if native == "stop_sequence" else None)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_streamed_in_fragments_stay_whole_and_apart(
        registry: Registry, chatplug_server: ScriptedServer, stream: bool) -> None:
    chatplug_server.add(text="Checking both.", tool_calls=CALLS, fragment=2)
    completion, items = _complete(registry, USER, stream=stream, tools=TOOLS)
    assert completion.text == "Checking both."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("toolu_zrh", "get_weather", {"city": "Zürich"}),
        ("toolu_par", "get_weather", {"city": "Paris"})]
    assert completion.finish_reason == "tool_calls"
    if stream:
        fragments = [i for i in items if isinstance(i, ToolCallDelta)]
        assert len(fragments) > 10, "the arguments arrive as they were streamed"
        assert all(f.arguments for f in fragments if f.id is None), "no empty fragment"
    sent = chatplug_server.requests[-1].json
    assert sent["tools"] == [{"name": "get_weather",
                              "input_schema": TOOLS[0]["function"]["parameters"],
                              "description": "The temperature in a city."}]


def test_a_two_turn_tool_conversation_with_thinking_round_trips_byte_for_byte(
        registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="", reasoning="I should call the tool twice.",
                        signature=SIGNATURE, redacted=["cmVkYWN0ZWQ="], tool_calls=CALLS,
                        fragment=4)
    first, items = _complete(registry, USER, stream=True, tools=TOOLS,
                             thinking={"type": "enabled", "budget_tokens": 1024})
    assert first.reasoning == "I should call the tool twice."
    assert [i for i in items if isinstance(i, ReasoningSignature)] == [
        ReasoningSignature(SIGNATURE)]
    assert any(isinstance(i, Reasoning) for i in items)
    assert first.message["thinking_blocks"] == [
        {"type": "thinking", "thinking": "I should call the tool twice.",
         "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="}]
    messages = [{"role": "system", "content": "Be brief."}, *USER, first.message,
                {"role": "tool", "tool_call_id": "toolu_zrh", "content": "21 °C"},
                {"role": "tool", "tool_call_id": "toolu_par", "content": "18 °C"}]
    chatplug_server.add(text="21 °C in Zürich, 18 °C in Paris.")
    second, _ = _complete(registry, messages, stream=False, tools=TOOLS,
                          thinking={"type": "enabled", "budget_tokens": 1024})
    assert second.text == "21 °C in Zürich, 18 °C in Paris."
    sent = chatplug_server.requests[-1].json
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": USER[0]["content"]}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should call the tool twice.",
             "signature": SIGNATURE},
            {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="},
            {"type": "tool_use", "id": "toolu_zrh", "name": "get_weather",
             "input": {"city": "Zürich"}},
            {"type": "tool_use", "id": "toolu_par", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [  # consecutive tool results: one user turn
            {"type": "tool_result", "tool_use_id": "toolu_zrh", "content": "21 °C"},
            {"type": "tool_result", "tool_use_id": "toolu_par", "content": "18 °C"}]},
    ]
    # The signature's bytes went back exactly as they came.
    raw = chatplug_server.requests[-1].body
    assert json.dumps(SIGNATURE).encode() in raw


def test_the_openai_wire_leaves_out_what_only_anthropic_takes(
        registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="", reasoning="thought", signature=SIGNATURE, tool_calls=CALLS[:1])
    first, _ = _complete(registry, USER, stream=False, tools=TOOLS)
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}]},
        first.message, {"role": "tool", "tool_call_id": "toolu_zrh", "content": "21"}]
    chatplug_server.add(text="ok")
    registry.get("OpenAI").complete(messages, model="gpt-4o-mini", tools=TOOLS,
                                    max_retries=0)
    sent = chatplug_server.requests[-1].json["messages"]
    assert "thinking_blocks" not in sent[1]
    assert sent[0]["content"] == [{"type": "text", "text": "long context"}]
    # ... and Anthropic gets cache_control as it is.
    chatplug_server.add(text="ok")
    registry.get("Anthropic").complete(messages, model=MODEL, tools=TOOLS, max_retries=0)
    assert chatplug_server.requests[-1].json["messages"][0]["content"] == [
        {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}]


def test_options_and_images_are_translated(registry: Registry,
                                           chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="a cat")
    messages = [{"role": "developer", "content": "Answer in one word."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is it?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://example.test/c.png"}}]}]
    registry.get("Anthropic").complete(
        messages, model=MODEL, max_tokens=50, temperature=0.2, top_k=5, stop="END",
        stop_sequences=["STOP"], tools=TOOLS, tool_choice="required",
        parallel_tool_calls=False, user="user-7", max_retries=0)
    sent = chatplug_server.requests[-1].json
    assert sent["system"] == [{"type": "text", "text": "Answer in one word."}]
    assert sent["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBOR"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.test/c.png"}}]
    assert (sent["max_tokens"], sent["temperature"], sent["top_k"]) == (50, 0.2, 5)
    assert sent["stop_sequences"] == ["STOP", "END"]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["metadata"] == {"user_id": "user-7"}


def test_what_anthropic_cannot_take_is_refused_before_sending(
        registry: Registry, chatplug_server: ScriptedServer) -> None:
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]}]
    with pytest.raises(InvalidRequestError, match="base64"):
        registry.get("Anthropic").complete(messages, model=MODEL, max_retries=0)
    assert chatplug_server.requests == []


def test_errors_keep_their_kind(registry: Registry, chatplug_server: ScriptedServer) -> None:
    provider = registry.get("Anthropic")
    chatplug_server.add(status=401, text="invalid x-api-key")
    with pytest.raises(AuthenticationError):
        provider.complete(USER, model=MODEL, max_retries=0)
    chatplug_server.add(status=429, text="slow down", headers={"retry-after": "0"})
    chatplug_server.add(text="after the wait")
    assert provider.complete(USER, model=MODEL, max_retries=1).text == "after the wait"
    chatplug_server.add(status=429, text="slow down", headers={"retry-after": "0"})
    with pytest.raises(RateLimitError):
        provider.complete(USER, model=MODEL, max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
def test_overloaded_529_is_retried(registry: Registry, chatplug_server: ScriptedServer,
                                   stream: bool) -> None:
    chatplug_server.add(status=529, text="Overloaded", headers={"retry-after": "0"})
    chatplug_server.add(text="fine now")
    completion, _ = _complete(registry, USER, stream=stream, max_retries=1)
    assert completion.text == "fine now"
    assert completion.attempts == 2
    chatplug_server.add(status=529, text="Overloaded")
    with pytest.raises(ProviderHTTPError) as info:
        registry.get("Anthropic").complete(USER, model=MODEL, max_retries=0)
    assert info.value.status_code == 529


def test_an_error_event_before_content_is_retried_after_content_interrupts(
        registry: Registry, chatplug_server: ScriptedServer) -> None:
    provider = registry.get("Anthropic")
    chatplug_server.add(pieces=[], error_event={"type": "overloaded_error",
                                                "message": "Overloaded"}, stream=True)
    chatplug_server.add(text="second try")
    with provider.create(USER, model=MODEL, stream=True, max_retries=1) as stream:
        assert "".join(stream) == "second try"
    chatplug_server.add(pieces=["Half", " a reply"], error_event={
        "type": "overloaded_error", "message": "Overloaded"}, stream=True)
    received: list[str] = []
    with pytest.raises(StreamInterruptedError, match="Overloaded") as info, \
            provider.create(USER, model=MODEL, stream=True, max_retries=1) as stream:
        received.extend(stream)
    assert "".join(received) == "Half a reply"
    assert info.value.received == len("Half a reply")


def test_a_stream_cut_before_its_stop_reason_is_interrupted(
        registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(pieces=["one", " two"], finish=False, done=False, stream=True)
    with pytest.raises(StreamInterruptedError), registry.get("Anthropic").create(
            USER, model=MODEL, stream=True, max_retries=0) as stream:
        list(stream)


def test_the_model_list_is_paged(registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.models = [f"claude-{n}" for n in range(2500)]
    assert registry.get("Anthropic").list_models() == chatplug_server.models
    pages = [r for r in chatplug_server.requests if r.path.startswith("/v1/models")]
    assert len(pages) == 3
    assert "after_id=claude-999" in pages[1].path


def test_the_async_api_runs_it_on_the_loop(registry: Registry,
                                           chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="async hello", tool_calls=CALLS[:1], fragment=3)

    async def run() -> Completion:
        stream = await registry.get("Anthropic").acreate(USER, model=MODEL, stream=True,
                                                         tools=TOOLS, max_retries=0)
        async with stream:
            async for _ in stream:
                pass
        return stream.completion

    completion = asyncio.run(run())
    assert completion.text == "async hello"
    assert json.loads(completion.tool_calls[0].arguments) == {"city": "Zürich"}


def test_the_conventional_variables_are_honoured(monkeypatch: pytest.MonkeyPatch,
                                                 chatplug_server: ScriptedServer) -> None:
    from chatplug.settings import Settings

    monkeypatch.setenv("ANTHROPIC_API_KEY", "conventional-key-123456")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", chatplug_server.url)
    registry = Registry(settings=Settings())
    try:
        chatplug_server.add(text="via the conventional variables")
        assert registry.get("Anthropic").create(USER, model=MODEL, max_retries=0) == \
            "via the conventional variables"
        assert chatplug_server.requests[-1].headers["x-api-key"] == "conventional-key-123456"
    finally:
        registry.close()


class TestAnthropicConformance(ProviderConformance):
    provider_name = "Anthropic"
    model = MODEL
    reports = ALL_EVENTS

