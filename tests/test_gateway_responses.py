"""``/v1/responses`` through the real ``openai`` SDK, in front of every wire.

Text, function calls streamed as ``response.function_call_arguments.delta``, usage
details, ``max_output_tokens`` cuts as ``incomplete``, a failure after the first piece
as ``response.failed``, stored responses and ``previous_response_id``, and what Codex
sends (developer messages, namespace and hosted tools, a tool turn's whole history).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests

from chatplug.server import ServerSettings, create_app
from chatplug.server.store import ResponseStore
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer

TARGETS = {"OpenAI": "OpenAI/gpt-4o-mini", "Anthropic": "Anthropic/claude-test-1",
           "Gemini": "Gemini/gemini-test-flash"}
TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "Weather.",
                     "parameters": {"type": "object",
                                    "properties": {"city": {"type": "string"}}}}]
CALL = {"id": "call_w1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=120) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: ScriptedServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayServer]:
    registry = registry_for(upstream, max_retries=0, timeout=5)
    store = ResponseStore(tmp_path_factory.mktemp("store") / "responses.db")
    with GatewayServer(create_app(registry, ServerSettings(), responses=store)) as server:
        yield server
    registry.close()


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0,
                       timeout=10) as client:
        yield client


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_whole_response(client: openai.OpenAI, upstream: ScriptedServer,
                          target: str) -> None:
    upstream.add(text="Hello from the gateway.",
                 usage={"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26})
    response = client.responses.create(model=TARGETS[target], input="hi",
                                       instructions="Be brief.")
    assert response.output_text == "Hello from the gateway."
    assert response.status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 6)
    sent = upstream.requests[-1].json
    first = (sent.get("messages") or sent.get("contents"))[0]
    assert "Be brief." in json.dumps(first) or "Be brief." in json.dumps(sent)


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_stream_with_a_function_call(client: openai.OpenAI, upstream: ScriptedServer,
                                       target: str) -> None:
    upstream.add(text="Checking.", tool_calls=[CALL], fragment=3)
    with client.responses.stream(model=TARGETS[target], input="Weather in Paris?",
                                 tools=TOOLS) as stream:
        events = list(stream)
        response = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    numbers = [event.sequence_number for event in events]
    assert numbers == list(range(len(events)))
    assert response.output_text == "Checking."
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert json.loads("".join(deltas)) == {"city": "Paris"}
    assert "response.output_text.delta" in kinds


def test_usage_details_and_reasoning_summaries(client: openai.OpenAI,
                                               upstream: ScriptedServer) -> None:
    upstream.add(text="Done.", reasoning="Thinking it through.", usage={
        "promptTokenCount": 100, "cachedContentTokenCount": 80, "candidatesTokenCount": 5,
        "thoughtsTokenCount": 30, "totalTokenCount": 135})
    with client.responses.stream(model="Gemini/gemini-test-flash", input="hi",
                                 reasoning={"effort": "low", "summary": "auto"}) as stream:
        events = list(stream)
        response = stream.get_final_response()
    assert response.usage is not None
    assert response.usage.input_tokens_details.cached_tokens == 80
    assert response.usage.output_tokens_details.reasoning_tokens == 30
    summary = "".join(e.delta for e in events
                      if e.type == "response.reasoning_summary_text.delta")
    assert summary == "Thinking it through."
    assert upstream.requests[-1].json["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 2048, "includeThoughts": True}


def test_a_cut_reply_is_incomplete(client: openai.OpenAI, upstream: ScriptedServer) -> None:
    upstream.add(text="cut short", finish_reason="length")
    response = client.responses.create(model="OpenAI/gpt-4o-mini", input="hi",
                                       max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    sent = upstream.requests[-1].json
    # The provider's own limit: max_completion_tokens where it declares it, else max_tokens.
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 16


def test_a_failure_after_the_first_piece_is_never_a_completed_response(
        gateway: GatewayServer, upstream: ScriptedServer) -> None:
    upstream.add(pieces=["Half", " a reply"], drop_after=2, stream=True)
    reply = requests.post(gateway.url + "/v1/responses", timeout=10, json={
        "model": "OpenAI/gpt-4o-mini", "input": "hi", "stream": True})
    assert reply.status_code == 200
    kinds = [line.split(": ", 1)[1] for line in reply.text.splitlines()
             if line.startswith("event: ")]
    assert kinds[-2:] == ["error", "response.failed"]
    assert "response.completed" not in kinds


def test_stored_responses_and_follow_ups(client: openai.OpenAI, gateway: GatewayServer,
                                         upstream: ScriptedServer) -> None:
    upstream.add(text="Paris is in France.")
    first = client.responses.create(model="OpenAI/gpt-4o-mini", input="Where is Paris?",
                                    instructions="Answer in one sentence.")
    upstream.add(text="About 2 million people.")
    second = client.responses.create(model="OpenAI/gpt-4o-mini", input="How many live there?",
                                     previous_response_id=first.id)
    assert second.output_text == "About 2 million people."
    assert upstream.requests[-1].json["messages"] == [
        {"role": "user", "content": "Where is Paris?"},
        {"role": "assistant", "content": "Paris is in France."},
        {"role": "user", "content": "How many live there?"}]
    assert client.responses.retrieve(first.id).output_text == "Paris is in France."
    requests.delete(f"{gateway.url}/v1/responses/{first.id}", timeout=10).raise_for_status()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="OpenAI/gpt-4o-mini", input="again?",
                                previous_response_id=first.id)
    upstream.add(text="not kept")
    unstored = client.responses.create(model="OpenAI/gpt-4o-mini", input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_what_codex_sends_is_accepted(gateway: GatewayServer,
                                      upstream: ScriptedServer) -> None:
    """The shape of a recorded ``codex exec`` tool turn (Codex 0.17x)."""
    body = {
        "model": "OpenAI/gpt-4o-mini", "instructions": "You are Codex.", "stream": True,
        "store": False, "include": ["reasoning.encrypted_content"],
        "reasoning": {"summary": "auto"}, "parallel_tool_calls": False, "tool_choice": "auto",
        "prompt_cache_key": "0194-session", "client_metadata": {"thread_id": "t-1"},
        "tools": [
            {"type": "function", "name": "shell", "description": "Run a command.",
             "strict": False, "parameters": {"type": "object",
                                             "properties": {"cmd": {"type": "string"}}}},
            {"type": "namespace", "name": "mcp__files", "description": "File tools.",
             "tools": [{"type": "function", "name": "read", "description": "Read a file.",
                        "strict": False, "parameters": {"type": "object", "properties": {
                            "path": {"type": "string"}}}}]},
            {"type": "web_search"},
        ],
        "input": [
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "sandbox: read-only"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "show README"}]},
            {"type": "function_call", "call_id": "call_1", "namespace": "mcp__files",
             "name": "read", "arguments": '{"path": "README.md"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "# chatplug"},
        ],
    }
    upstream.add(text="", tool_calls=[{"id": "call_2", "type": "function", "function": {
        "name": "mcp__files__read", "arguments": '{"path":"docs/a.md"}'}}])
    reply = requests.post(gateway.url + "/v1/responses", json=body, timeout=10,
                          headers={"Authorization": "Bearer codex-key"})
    assert reply.status_code == 200, reply.text
    dropped = reply.headers["x-chatplug-dropped"].split(", ")
    assert {"tools.web_search", "include", "prompt_cache_key",
            "client_metadata"} <= set(dropped)
    sent = upstream.requests[-1].json
    assert [m["role"] for m in sent["messages"]] == ["system", "developer", "user",
                                                      "assistant", "tool"]
    assert sent["messages"][3]["tool_calls"][0]["function"]["name"] == "mcp__files__read"
    assert [t["function"]["name"] for t in sent["tools"]] == ["shell", "mcp__files__read"]
    assert sent["parallel_tool_calls"] is False
    done = [json.loads(line[6:]) for line in reply.text.splitlines()
            if line.startswith("data: ") and '"response.output_item.done"' in line]
    call = done[-1]["item"]
    assert (call["type"], call["namespace"], call["name"]) == ("function_call", "mcp__files",
                                                               "read")
    assert call["call_id"] == "call_2"
