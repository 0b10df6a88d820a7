"""``/v1/messages`` through the real ``anthropic`` SDK, in front of every wire.

The gateway runs on uvicorn on 127.0.0.1 in front of the scripted server, which
speaks OpenAI's, Anthropic's and Gemini's wires; the client is ``anthropic.Anthropic``.
What Claude Code sends (the shape recorded from ``claude -p``) is accepted, and
what no target takes is named in ``x-chatplug-dropped``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
import requests

from chatplug.server import ServerSettings, create_app
from chatplug.server.store import ResponseStore
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer

GATEWAY_KEY = "gateway-messages-key-0001"
USER = [{"role": "user", "content": "Weather in Paris?"}]
TOOLS: list[Any] = [{"name": "get_weather", "description": "The weather.",
                     "input_schema": {"type": "object",
                                      "properties": {"city": {"type": "string"}}}}]
CALL = {"id": "call_abc", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"c"}'}}
#: The model each upstream wire is asked for through the gateway.
TARGETS = {"OpenAI": "OpenAI/gpt-4o-mini", "Anthropic": "Anthropic/claude-test-1",
           "Gemini": "Gemini/gemini-test-flash", "GravityEngine": "GravityEngine"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=120) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: ScriptedServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayServer]:
    registry = registry_for(upstream, max_retries=1, timeout=5)
    settings = ServerSettings(api_keys=GATEWAY_KEY)
    store = ResponseStore(tmp_path_factory.mktemp("store") / "responses.db")
    with GatewayServer(create_app(registry, settings, responses=store)) as server:
        yield server
    registry.close()


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=GATEWAY_KEY, max_retries=0,
                             timeout=10) as client:
        yield client


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_whole_reply_with_text_thinking_and_a_tool_call(
        client: anthropic.Anthropic, upstream: ScriptedServer, target: str) -> None:
    upstream.add(text="Let me check.", reasoning="Need the tool.", tool_calls=[CALL],
                 usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
    message = client.messages.create(model=TARGETS[target], max_tokens=200, messages=USER,
                                     tools=TOOLS)
    kinds = [block.type for block in message.content]
    assert kinds == ["thinking", "text", "tool_use"]
    assert message.content[1].text == "Let me check."  # type: ignore[union-attr]
    tool = message.content[2]
    assert tool.type == "tool_use"
    assert tool.input == {"city": "Paris", "unit": "c"}
    assert tool.name == "get_weather"
    assert message.stop_reason == "tool_use"
    assert message.model == TARGETS[target]


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_stream_keeps_tool_arguments_whole_and_text_out_of_json_deltas(
        gateway: GatewayServer, client: anthropic.Anthropic, upstream: ScriptedServer,
        target: str) -> None:
    upstream.add(text="Checking the weather now.", reasoning="Think first.", tool_calls=[CALL],
                 fragment=2)
    with client.messages.stream(model=TARGETS[target], max_tokens=200, messages=USER,
                                tools=TOOLS) as stream:
        events = list(stream)
        message = stream.get_final_message()
    # Gemini signs the function call, after it: the signature closes a thinking block of its
    # own there (the grammar has no signature outside a thinking block).
    tail = ["thinking"] if target == "Gemini" else []
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use", *tail]
    assert message.content[2].input == {"city": "Paris", "unit": "c"}  # type: ignore[union-attr]
    json_deltas = [e.delta.partial_json for e in events  # type: ignore[union-attr]
                   if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    # As the upstream streamed them: in fragments, in order (Gemini sends a call whole).
    assert len(json_deltas) >= (1 if target == "Gemini" else 5)
    assert json.loads("".join(json_deltas)) == {"city": "Paris", "unit": "c"}
    text_deltas = [e.delta.text for e in events  # type: ignore[union-attr]
                   if e.type == "content_block_delta" and e.delta.type == "text_delta"]
    assert "".join(text_deltas) == "Checking the weather now."
    starts = [e.index for e in events if e.type == "content_block_start"]
    stops = [e.index for e in events if e.type == "content_block_stop"]
    assert starts == stops == list(range(3 + len(tail)))
    assert message.stop_reason == "tool_use"


def test_an_anthropic_upstream_keeps_signatures_cache_usage_and_its_stop_reason(
        client: anthropic.Anthropic, upstream: ScriptedServer) -> None:
    upstream.add(text="Up to here", reasoning="Signed thought.", signature="c2lnLTE=",
                 redacted=["cmVk"], finish_reason="stop_sequence", stop_sequence="END",
                 usage={"input_tokens": 7, "cache_read_input_tokens": 900,
                        "cache_creation_input_tokens": 40, "output_tokens": 12})
    with client.messages.stream(model="Anthropic/claude-test-1", max_tokens=100,
                                messages=USER) as stream:
        events = list(stream)
        message = stream.get_final_message()
    thinking = message.content[0]
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("Signed thought.", "c2lnLTE=")
    assert message.content[1].type == "redacted_thinking"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    start = next(e for e in events if e.type == "message_start")
    # The input usage, cache counts included, is in message_start already (never 0).
    assert start.message.usage.cache_read_input_tokens == 900
    assert start.message.usage.input_tokens == 7
    assert message.usage.cache_read_input_tokens == 900
    assert message.usage.cache_creation_input_tokens == 40
    assert message.usage.output_tokens == 12


def test_a_tool_round_trip_reaches_the_upstream_as_a_tool_conversation(
        client: anthropic.Anthropic, upstream: ScriptedServer) -> None:
    upstream.add(text="It is 18 °C.")
    client.messages.create(model="OpenAI/gpt-4o-mini", max_tokens=100, tools=TOOLS, messages=[
        *USER,
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 °C"},
            {"type": "text", "text": "And tomorrow?"}]}])
    sent = upstream.requests[-1].json["messages"]
    assert sent[1] == {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "toolu_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    assert sent[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "18 °C"}
    assert sent[3] == {"role": "user", "content": "And tomorrow?"}


def test_what_claude_code_sends_is_accepted_and_the_rest_named(
        gateway: GatewayServer, upstream: ScriptedServer) -> None:
    """The shape of a recorded ``claude -p`` request (Claude Code 2.1), in front of an
    OpenAI-wire provider."""
    tools = [{"name": f"Tool{n}", "description": f"tool {n}", "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "properties": {"arg": {"type": "string"}}, "additionalProperties": False}}
        for n in range(12)]
    tools[5]["defer_loading"] = True
    body = {
        "model": "OpenAI/gpt-4o-mini", "max_tokens": 32000, "stream": True,
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
        "metadata": {"user_id": "user_abc_account_1_session_2"},
        "system": [{"type": "text", "text": "You are Claude Code.",
                    "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Be concise."}],
        "messages": [
            {"role": "system", "content": "Environment: linux."},
            {"role": "user", "content": [{"type": "text", "text": "list files",
                                          "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9",
                                               "name": "Tool1", "input": {"arg": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9",
                                          "content": "a.txt\nb.txt",
                                          "cache_control": {"type": "ephemeral"}}]}],
        "tools": tools,
    }
    upstream.add(text="Two files.")
    headers = {"x-api-key": GATEWAY_KEY, "anthropic-version": "2023-06-01",
               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
               "content-type": "application/json"}
    reply = requests.post(gateway.url + "/v1/messages?beta=true", json=body, headers=headers,
                          timeout=10)
    assert reply.status_code == 200, reply.text
    dropped = reply.headers["x-chatplug-dropped"].split(", ")
    assert {"context_management", "output_config", "tools.defer_loading"} <= set(dropped)
    assert "event: message_stop" in reply.text
    sent = upstream.requests[-1].json
    # OpenAI declares reasoning_effort (issue 19): adaptive thinking maps to it.
    assert ("thinking" not in dropped, sent["reasoning_effort"]) == (True, "medium")
    assert sent["user"] == "user_abc_account_1_session_2"
    assert sent["max_tokens"] == 32000
    assert [m["role"] for m in sent["messages"]] == ["system", "system", "user", "assistant",
                                                      "tool"]
    assert len(sent["tools"]) == 12
    assert sent["tools"][0]["function"]["parameters"]["$schema"].startswith("http")
    assert "cache_control" not in json.dumps(sent), "the OpenAI wire takes no cache_control"


@pytest.mark.parametrize(("script", "error", "status"), [
    ({"status": 400, "text": "bad input"}, anthropic.BadRequestError, 400),
    ({"status": 429, "text": "slow down", "headers": {"retry-after": "0"}},
     anthropic.RateLimitError, 429),
    ({"status": 503, "text": "busy"}, anthropic.OverloadedError, 529),
    ({"status": 500, "text": "broken"}, anthropic.APIStatusError, 502),
])
def test_upstream_errors_come_in_anthropics_envelope(
        client: anthropic.Anthropic, upstream: ScriptedServer, script: dict[str, Any],
        error: type[Exception], status: int) -> None:
    for _ in range(2):  # the gateway retries once what is retryable
        upstream.add(**script)
    with pytest.raises(error) as info:
        client.messages.create(model="OpenAI/gpt-4o-mini", max_tokens=10, messages=USER)
    assert getattr(info.value, "status_code", None) == status
    body = info.value.body  # type: ignore[attr-defined]
    assert body["type"] == "error"
    assert body["error"]["type"] == {400: "invalid_request_error", 429: "rate_limit_error",
                                     529: "overloaded_error", 502: "api_error"}[status]
    while upstream._scripts:  # what the gateway did not ask for is not left for others
        upstream._scripts.popleft()


def test_gateway_refusals_come_in_anthropics_envelope(gateway: GatewayServer) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key="wrong-key-0000000000",
                             max_retries=0) as wrong, pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model="OpenAI/gpt-4o-mini", max_tokens=10, messages=USER)
    with anthropic.Anthropic(base_url=gateway.url, api_key=GATEWAY_KEY,
                             max_retries=0) as client:
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(model="Nobody/x", max_tokens=10, messages=USER)
        with pytest.raises(anthropic.BadRequestError, match="messages"):
            client.messages.create(model="OpenAI/gpt-4o-mini", max_tokens=10, messages=[])


def test_a_failure_after_the_first_piece_is_an_error_event(
        client: anthropic.Anthropic, upstream: ScriptedServer) -> None:
    upstream.add(pieces=["Half", " a reply"], drop_after=2, stream=True)
    with pytest.raises(anthropic.APIStatusError), client.messages.stream(
            model="OpenAI/gpt-4o-mini", max_tokens=10, messages=USER) as stream:
        for _ in stream:
            pass


def test_count_tokens_answers_an_estimate(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model="OpenAI/gpt-4o-mini", messages=USER,
                                           tools=TOOLS)  # type: ignore[arg-type]
    assert 20 < counted.input_tokens < 200


def test_with_raw_response_shows_the_gateways_headers(client: anthropic.Anthropic,
                                                      upstream: ScriptedServer) -> None:
    upstream.add(text="hello")
    raw = client.messages.with_raw_response.create(model="OpenAI/gpt-4o-mini", max_tokens=10,
                                                   messages=USER,
                                                   extra_body={"top_k": 3})
    assert raw.headers["x-chatplug-provider"] == "OpenAI"
    assert raw.headers["x-chatplug-dropped"] == "top_k"
    assert raw.parse().content[0].text == "hello"  # type: ignore[union-attr]


def test_pings_keep_a_quiet_stream_alive(gateway: GatewayServer, upstream: ScriptedServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from chatplug.wire.anthropic_gateway import MessagesEncoder

    monkeypatch.setattr(MessagesEncoder, "PING_SECONDS", 0.1)
    upstream.add(pieces=["before", " after"], hold_after=1, hold=0.5, stream=True)
    reply = requests.post(gateway.url + "/v1/messages", timeout=10, json={
        "model": "OpenAI/gpt-4o-mini", "max_tokens": 10, "messages": USER, "stream": True},
        headers={"x-api-key": GATEWAY_KEY})
    kinds = [line[7:] for line in reply.text.splitlines() if line.startswith("event: ")]
    between = kinds[kinds.index("content_block_start"):kinds.index("content_block_stop")]
    assert 2 <= between.count("ping") <= 8, kinds
    assert kinds[-1] == "message_stop"
