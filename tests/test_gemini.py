"""The Gemini provider on Gemini's own wire, over real HTTP.

First the real ``google-genai`` SDK judges the scripted server: it must parse every
scripted reply, whole and streamed, to the content scripted.  Then chatplug's
provider runs against the same server: text, function calls (Gemini sends no ids:
chatplug makes stable ones and maps the results back by them), thought signatures
sent back on the part they came with, cached and thought token counts, finish
reasons, a blocked prompt, errors, the paged model list.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from chatplug import (
    AuthenticationError,
    Completion,
    ContentFilteredError,
    InvalidRequestError,
    ProviderHTTPError,
    RateLimitError,
    Registry,
    StreamInterruptedError,
    Usage,
)
from chatplug.testing import ScriptedServer
from chatplug.testing.conformance import ALL_EVENTS, ProviderConformance, check_events
from chatplug.testing.pytest_plugin import TEST_API_KEY, registry_for
from chatplug.wire.gemini import MADE_ID_PREFIX

MODEL = "gemini-test-flash"
USER = [{"role": "user", "content": "Weather in Zürich and Paris?"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The temperature in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}]
CALLS = [
    {"id": "x", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city":"Zürich"}'}},
    {"id": "y", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
]
SIGNATURE = "Z2VtaW5pIHRob3VnaHQgc2lnbmF0dXJlLCBvcGFxdWUgYnl0ZXMgAAH+"
USAGE = {"promptTokenCount": 2100, "candidatesTokenCount": 40, "thoughtsTokenCount": 200,
         "totalTokenCount": 2340, "cachedContentTokenCount": 2000}
SCRIPTS: dict[str, dict[str, Any]] = {
    "text": {"text": "Hello from Gemini, héllo ✓"},
    "tools": {"text": "Checking.", "tool_calls": CALLS},
    "thinking": {"text": "", "reasoning": "The user wants weather.", "signature": SIGNATURE,
                 "tool_calls": CALLS[:1]},
    "thinking-text": {"text": "Warm.", "reasoning": "Think.", "signature": SIGNATURE},
    "usage": {"text": "cached", "usage": USAGE},
    "max-tokens": {"text": "cut", "finish_reason": "MAX_TOKENS"},
    "safety": {"text": "", "finish_reason": "SAFETY"},
}


@pytest.fixture
def registry(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    registry = registry_for(chatplug_server)
    yield registry
    registry.close()


def _sdk(server: ScriptedServer) -> genai.Client:
    # v1beta, as chatplug's wire calls it (the server answers both versions).
    return genai.Client(api_key=TEST_API_KEY, http_options=types.HttpOptions(
        base_url=server.url, api_version="v1beta", timeout=10_000))


def _parts(response: Any) -> list[dict[str, Any]]:
    parts = response.candidates[0].content.parts or []
    return [part.model_dump(exclude_none=True) for part in parts]


# -- the SDK judges the scripted server ----------------------------------------------


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_the_sdk_parses_every_scripted_reply_whole_and_streamed(
        chatplug_server: ScriptedServer, name: str) -> None:
    client = _sdk(chatplug_server)
    script = SCRIPTS[name]
    chatplug_server.add(**script)
    whole = client.models.generate_content(model=MODEL, contents="hi")
    chatplug_server.add(**script)
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    finish = script.get("finish_reason", "STOP")
    assert whole.candidates[0].finish_reason == finish
    assert chunks[-1].candidates[0].finish_reason == finish
    streamed_text = "".join(part.text for chunk in chunks
                            for part in chunk.candidates[0].content.parts or ()
                            if part.text and not part.thought)
    assert streamed_text == script["text"] == "".join(
        part.text for part in whole.candidates[0].content.parts or ()
        if part.text and not part.thought)
    calls = [part.function_call for part in whole.candidates[0].content.parts or ()
             if part.function_call]
    streamed_calls = [part.function_call for chunk in chunks
                      for part in chunk.candidates[0].content.parts or ()
                      if part.function_call]
    expected = [(c["function"]["name"], json.loads(c["function"]["arguments"]))
                for c in script.get("tool_calls", ())]
    assert [(c.name, c.args) for c in calls] == expected
    assert [(c.name, c.args) for c in streamed_calls] == expected
    if "reasoning" in script:
        signatures = [part.thought_signature for part in whole.candidates[0].content.parts
                      if part.thought_signature]
        assert len(signatures) == 1
        assert any(part.thought for part in whole.candidates[0].content.parts)
    if "usage" in script:
        assert whole.usage_metadata.cached_content_token_count == 2000
        assert whole.usage_metadata.thoughts_token_count == 200
        assert chunks[-1].usage_metadata.total_token_count == 2340


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
def test_the_sdk_reads_the_scripted_error_bodies(chatplug_server: ScriptedServer,
                                                 status: int) -> None:
    chatplug_server.add(status=status, text="scripted failure")
    client = _sdk(chatplug_server)  # kept: a client that is collected closes its session
    with pytest.raises(genai_errors.APIError) as info:
        client.models.generate_content(model=MODEL, contents="hi")
    assert info.value.code == status
    assert "scripted failure" in str(info.value)


def test_the_sdk_pages_the_scripted_model_list(chatplug_server: ScriptedServer) -> None:
    chatplug_server.models = ["gemini-a", "embed-b", "gemini-c", "gemini-d", "gemini-e"]
    client = _sdk(chatplug_server)
    listed = [m.name for m in client.models.list(config={"page_size": 2})]
    assert listed == [f"models/{name}" for name in chatplug_server.models]


# -- chatplug's provider against the same server -------------------------------------


def _complete(registry: Registry, messages: list[dict[str, Any]], *, stream: bool,
              **options: Any) -> tuple[Completion, list[Any]]:
    provider = registry.get("Gemini")
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
    chatplug_server.add(text="Hello there, wörld", usage=USAGE, id="resp-1",
                        model="gemini-served-001")
    completion, _ = _complete(registry, USER, stream=stream)
    assert completion.text == "Hello there, wörld"
    assert (completion.finish_reason, completion.native_finish_reason) == ("stop", "STOP")
    assert (completion.id, completion.model) == ("resp-1", "gemini-served-001")
    assert completion.usage == Usage(prompt_tokens=2100, completion_tokens=240,
                                     total_tokens=2340, cached_tokens=2000,
                                     reasoning_tokens=200)
    sent = chatplug_server.requests[-1]
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    assert sent.path == f"/v1beta/models/{MODEL}:{method}"
    assert sent.headers["x-goog-api-key"] == TEST_API_KEY
    assert sent.json == {"contents": [{"role": "user", "parts": [
        {"text": USER[0]["content"]}]}]}


@pytest.mark.parametrize(("native", "reason"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"),
    ("MALFORMED_FUNCTION_CALL", "stop")])
@pytest.mark.parametrize("stream", [False, True])
def test_finish_reasons_are_mapped_and_kept(registry: Registry,
                                            chatplug_server: ScriptedServer, native: str,
                                            reason: str, stream: bool) -> None:
    chatplug_server.add(text="x", finish_reason=native)
    completion, _ = _complete(registry, USER, stream=stream)
    assert (completion.finish_reason, completion.native_finish_reason) == (reason, native)


@pytest.mark.parametrize("stream", [False, True])
def test_function_calls_get_stable_ids_and_stay_apart(
        registry: Registry, chatplug_server: ScriptedServer, stream: bool) -> None:
    chatplug_server.add(text="Checking both.", tool_calls=CALLS)
    completion, _ = _complete(registry, USER, stream=stream, tools=TOOLS)
    assert completion.text == "Checking both."
    assert completion.finish_reason == "tool_calls"  # Gemini says STOP
    calls = completion.tool_calls
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Zürich"}), ("get_weather", {"city": "Paris"})]
    assert all(c.id and c.id.startswith(MADE_ID_PREFIX) for c in calls)
    assert calls[0].id != calls[1].id
    chatplug_server.add(text="Checking both.", tool_calls=CALLS)
    again, _ = _complete(registry, USER, stream=stream, tools=TOOLS)
    assert [c.id for c in again.tool_calls] == [c.id for c in calls], "ids are stable"
    sent = chatplug_server.requests[-1].json
    assert sent["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "The temperature in a city.",
        "parametersJsonSchema": TOOLS[0]["function"]["parameters"]}]}]


def test_a_two_turn_tool_conversation_with_thinking_round_trips(
        registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="", reasoning="Call it twice.", signature=SIGNATURE,
                        tool_calls=CALLS)
    first, _ = _complete(registry, USER, stream=True, tools=TOOLS,
                         thinking_config={"includeThoughts": True})
    assert first.reasoning == "Call it twice."
    ids = [call.id for call in first.tool_calls]
    messages = [{"role": "system", "content": "Be brief."}, *USER, first.message,
                {"role": "tool", "tool_call_id": ids[0], "content": '{"temp_c": 21}'},
                {"role": "tool", "tool_call_id": ids[1], "content": "18 °C"}]
    chatplug_server.add(text="21 °C and 18 °C.")
    second, _ = _complete(registry, messages, stream=False, tools=TOOLS)
    assert second.text == "21 °C and 18 °C."
    sent = chatplug_server.requests[-1].json
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": USER[0]["content"]}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Zürich"}},
             "thoughtSignature": SIGNATURE},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "18 °C"}}}]},
    ]
    assert json.dumps(SIGNATURE).encode() in chatplug_server.requests[-1].body


def test_options_are_translated(registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text='{"a": 1}')
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]}]
    registry.get("Gemini").complete(
        messages, model=MODEL, temperature=0.3, top_k=4, max_tokens=64, stop=["END"],
        seed=7, response_format={"type": "json_schema", "json_schema": {"schema": schema}},
        thinking_config={"thinkingBudget": 0}, tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        safety_settings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        max_retries=0)
    sent = chatplug_server.requests[-1].json
    assert sent["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/jpeg",
                                                              "data": "/9j/4AAQ"}}
    assert sent["generationConfig"] == {
        "temperature": 0.3, "topK": 4, "maxOutputTokens": 64, "seed": 7,
        "thinkingConfig": {"thinkingBudget": 0}, "stopSequences": ["END"],
        "responseMimeType": "application/json", "responseJsonSchema": schema}
    assert sent["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert sent["safetySettings"][0]["threshold"] == "BLOCK_NONE"


def test_what_gemini_cannot_take_is_refused_before_sending(
        registry: Registry, chatplug_server: ScriptedServer) -> None:
    image = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}}]}]
    with pytest.raises(InvalidRequestError, match="Files API"):
        registry.get("Gemini").complete(image, model=MODEL, max_retries=0)
    orphan = [*USER, {"role": "assistant", "content": "ok"},
              {"role": "tool", "tool_call_id": "nowhere", "content": "1"}]
    with pytest.raises(InvalidRequestError, match="nowhere"):
        registry.get("Gemini").complete(orphan, model=MODEL, max_retries=0)
    assert chatplug_server.requests == []


def test_a_blocked_prompt_is_a_typed_error(registry: Registry,
                                           chatplug_server: ScriptedServer) -> None:
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
               "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}
    chatplug_server.add(body=json.dumps(blocked).encode())
    with pytest.raises(ContentFilteredError, match="PROHIBITED_CONTENT") as info:
        registry.get("Gemini").complete(USER, model=MODEL, max_retries=0)
    assert info.value.reason_code == "PROHIBITED_CONTENT"
    assert not info.value.retryable


def test_errors_keep_their_kind(registry: Registry, chatplug_server: ScriptedServer) -> None:
    provider = registry.get("Gemini")
    chatplug_server.add(status=503, text="The model is overloaded.")
    chatplug_server.add(text="after a retry")
    assert provider.complete(USER, model=MODEL, max_retries=1).text == "after a retry"
    chatplug_server.add(status=500, text="internal")
    with pytest.raises(ProviderHTTPError) as info:
        provider.complete(USER, model=MODEL, max_retries=0)
    assert info.value.status_code == 500
    chatplug_server.add(status=401, text="unauthenticated")
    with pytest.raises(AuthenticationError):
        provider.complete(USER, model=MODEL, max_retries=0)


def test_a_stream_that_stops_before_its_finish_reason_is_interrupted(
        registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(pieces=["one", " two"], finish=False, stream=True)
    received: list[str] = []
    with pytest.raises(StreamInterruptedError), registry.get("Gemini").create(
            USER, model=MODEL, stream=True, max_retries=0) as stream:
        received.extend(stream)
    assert received == ["one", " two"]


def test_the_model_list_is_paged_and_filtered(registry: Registry,
                                              chatplug_server: ScriptedServer) -> None:
    chatplug_server.models = [f"gemini-{n}" for n in range(1500)] + ["embed-x"]
    assert registry.get("Gemini").list_models() == [f"gemini-{n}" for n in range(1500)]
    pages = [r for r in chatplug_server.requests if r.path.startswith("/v1beta/models")]
    assert len(pages) == 2


def test_the_async_api_runs_it(registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="async hello", tool_calls=CALLS[:1])

    async def run() -> Completion:
        stream = await registry.get("Gemini").acreate(USER, model=MODEL, stream=True,
                                                      tools=TOOLS, max_retries=0)
        async with stream:
            async for _ in stream:
                pass
        return stream.completion

    completion = asyncio.run(run())
    assert completion.text == "async hello"
    assert json.loads(completion.tool_calls[0].arguments) == {"city": "Zürich"}


@pytest.mark.parametrize(("variables", "sent"), [
    ({"GOOGLE_API_KEY": "google-key-1234567", "GEMINI_API_KEY": "gemini-key-1234567"},
     "google-key-1234567"),
    ({"GEMINI_API_KEY": "gemini-key-1234567"}, "gemini-key-1234567")])
def test_the_conventional_variables_in_googles_order(
        monkeypatch: pytest.MonkeyPatch, chatplug_server: ScriptedServer,
        variables: dict[str, str], sent: str) -> None:
    from chatplug.settings import Settings

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHATPLUG_GEMINI_URL", chatplug_server.url)
    registry = Registry(settings=Settings())
    try:
        chatplug_server.add(text="ok")
        registry.get("Gemini").create(USER, model=MODEL, max_retries=0)
        assert chatplug_server.requests[-1].headers["x-goog-api-key"] == sent
    finally:
        registry.close()


class TestGeminiConformance(ProviderConformance):
    provider_name = "Gemini"
    model = MODEL
    reports = ALL_EVENTS


def test_a_refused_key_is_an_authentication_error_though_gemini_says_400(
        chatplug_server: ScriptedServer) -> None:
    from chatplug.settings import Settings

    chatplug_server.api_key = "the-right-key-000000"
    registry = Registry(settings=Settings(provider_urls={"gemini": chatplug_server.url},
                                          provider_api_keys={"gemini": "a-wrong-key-0000000"}))
    try:
        with pytest.raises(AuthenticationError, match="GOOGLE_API_KEY") as info:
            registry.get("Gemini").complete(USER, model=MODEL, max_retries=2)
        assert info.value.status_code == 400
        assert len(chatplug_server.requests) == 1, "a refused key is not retried"
    finally:
        registry.close()


def test_retry_info_is_honoured_on_429(registry: Registry,
                                       chatplug_server: ScriptedServer) -> None:
    exhausted = {"error": {"code": 429, "message": "Quota exceeded.",
                           "status": "RESOURCE_EXHAUSTED", "details": [
                               {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                               {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                "retryDelay": "0.3s"}]}}
    chatplug_server.add(status=429, body=json.dumps(exhausted).encode())
    chatplug_server.add(text="after the quota's wait")
    started = time.monotonic()
    completion = registry.get("Gemini").complete(USER, model=MODEL, max_retries=1)
    waited = time.monotonic() - started
    assert completion.text == "after the quota's wait"
    assert waited >= 0.3, "the RetryInfo delay was waited"
    chatplug_server.add(status=429, body=json.dumps(exhausted).encode())
    with pytest.raises(RateLimitError) as info:
        registry.get("Gemini").complete(USER, model=MODEL, max_retries=0)
    assert info.value.retry_after == 0.3
