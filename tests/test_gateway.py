"""The gateway through the real ``openai`` client: what an OpenAI user sees.

The gateway runs on uvicorn on 127.0.0.1 in front of the scripted server;
the client is ``openai.OpenAI`` (no retries, so each status is seen as sent).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, ClassVar

import openai
import pytest

from chatplug import Registry, hookimpl
from chatplug.events import Finish, Meta, Reasoning, ToolCallDelta, Usage
from chatplug.server import ServerSettings, create_app
from chatplug.testing import ScriptedServer
from chatplug.testing.conformance import PIECES, PLANTED_KEY, ProviderConformance
from chatplug.testing.pytest_plugin import TEST_API_KEY, registry_for
from tests.gatewayserver import GatewayServer

MESSAGES = [{"role": "user", "content": "Привет, gateway?"}]
GATEWAY_KEY = "gateway-test-key-0001"


class EventsProvider:
    """A provider that yields what a tool-calling, reasoning, usage-reporting server sends
    (as a wire-format provider that parses them yields it); ``script`` is the next reply."""

    url = "http://127.0.0.1:9"  # never contacted
    model: ClassVar[list[str]] = ["tool-model"]
    supports_stream = True
    needs_auth = False
    supports_tools = True

    def __init__(self) -> None:
        self.script: list[Any] = []

    @hookimpl
    def create_completion(self, model: str, messages: list, stream: bool,  # type: ignore[type-arg]
                          tools: list | None = None,  # type: ignore[type-arg]
                          tool_choice: str | None = None) -> Iterator[Any]:
        yield from self.script


TOOL_SCRIPT = [
    Meta(id="chatcmpl-tools-1", model="tool-model-2024"),
    Reasoning("thinking"),
    ToolCallDelta(index=0, id="call_1", name="lookup", arguments='{"q": '),
    ToolCallDelta(index=0, arguments='"weather"}'),
    Finish("tool_calls"),
    Usage(prompt_tokens=12, completion_tokens=7, total_tokens=19),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=120) as server:
        yield server


@pytest.fixture(scope="module")
def events() -> EventsProvider:
    return EventsProvider()


@pytest.fixture(scope="module")
def gateway(upstream: ScriptedServer, events: EventsProvider) -> Iterator[GatewayServer]:
    registry = registry_for(upstream, max_retries=0, timeout=2)
    registry.register(events, "Tools")
    with GatewayServer(create_app(registry, ServerSettings())) as server:
        yield server
    registry.close()


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0,
                       timeout=10) as client:
        yield client


def test_a_whole_reply(client: openai.OpenAI, upstream: ScriptedServer) -> None:
    upstream.add(text="Hello from upstream.")
    raw = client.chat.completions.with_raw_response.create(
        model="GravityEngine", messages=MESSAGES, extra_headers={"x-request-id": "req-42"})
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello from upstream."
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "gpt-3.5-turbo-16k"
    assert raw.headers["x-request-id"] == "req-42"
    assert raw.headers["x-chatplug-provider"] == "GravityEngine"
    assert raw.headers["x-chatplug-attempts"] == "1"
    assert float(raw.headers["x-chatplug-overhead-ms"]) >= 0
    # The client's key authenticates it to the gateway only; upstream gets the provider's.
    # GravityEngine sends its own configured access code, never the client's gateway key.
    assert upstream.requests[-1].headers.get("Authorization") == f"Bearer nk-{TEST_API_KEY}"
    assert upstream.requests[-1].json["messages"] == MESSAGES


def test_a_stream_role_first_then_the_pieces(client: openai.OpenAI,
                                             upstream: ScriptedServer) -> None:
    upstream.add(pieces=PIECES)
    with client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=MESSAGES,
                                        stream=True) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:] if c.choices[0].delta.content] \
        == PIECES
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1
    sent = upstream.requests[-1]
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.json["stream"] is True
    assert sent.headers["Authorization"] == f"Bearer {TEST_API_KEY}"  # never "client-key"


def test_tool_calls_reasoning_and_usage_streamed(client: openai.OpenAI,
                                                 events: EventsProvider) -> None:
    events.script = TOOL_SCRIPT
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    with client.chat.completions.create(model="Tools", messages=MESSAGES, stream=True,
                                        tools=tools,  # type: ignore[list-item]
                                        stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    assert {c.id for c in chunks} == {"chatcmpl-tools-1"}
    assert chunks[0].model == "tool-model-2024"
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert any(getattr(d, "reasoning_content", None) == "thinking" for d in deltas)
    calls = [call for d in deltas for call in d.tool_calls or ()]
    assert calls[0].id == "call_1"
    assert calls[0].function.name == "lookup"
    assert "".join(call.function.arguments or "" for call in calls) == '{"q": "weather"}'
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "tool_calls"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 19
    assert all(c.usage is None for c in chunks[:-1])


def test_tool_calls_in_a_whole_reply(client: openai.OpenAI, events: EventsProvider) -> None:
    events.script = TOOL_SCRIPT
    reply = client.chat.completions.create(model="Tools/tool-model", messages=MESSAGES)
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.id == "call_1"
    assert call.function.name == "lookup"
    assert call.function.arguments == '{"q": "weather"}'  # type: ignore[union-attr]
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 12


def test_usage_is_not_sent_unless_asked(client: openai.OpenAI, events: EventsProvider) -> None:
    events.script = ["Hi", Finish("stop"), Usage(1, 1, 2)]
    with client.chat.completions.create(model="Tools", messages=MESSAGES,
                                        stream=True) as stream:
        chunks = list(stream)
    assert all(c.choices for c in chunks)
    assert [c.choices[0].delta.content for c in chunks] == ["", "Hi", None]


@pytest.mark.parametrize(("model", "code"), [("NoSuchProvider", "provider_not_found"),
                                             ("GravityEngine/gpt-9", "model_not_found")])
def test_unknown_model_or_provider_is_not_found(client: openai.OpenAI, model: str,
                                                code: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model=model, messages=MESSAGES)
    assert info.value.code == code


def test_an_undeclared_parameter_is_a_bad_request_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="GravityEngine", messages=MESSAGES,
                                       extra_body={"top_k": 3})
    assert "top_k" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="GravityEngine", messages=MESSAGES,
                                       temperature=9)
    assert "temperature" in info.value.message


def test_invalid_messages_are_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="GravityEngine",
                                       messages=[{"role": "wizard", "content": "hi"}])
    assert info.value.code == "invalid_request"


def test_the_passthrough_reaches_upstream(client: openai.OpenAI,
                                          upstream: ScriptedServer) -> None:
    client.chat.completions.create(model="GravityEngine", messages=MESSAGES,
                                   extra_body={"extra_body": {"user": "u-1"}})
    assert upstream.requests[-1].json["user"] == "u-1"


@pytest.mark.parametrize("option", ["api_key", "url", "headers", "timeout", "max_retries"])
def test_call_options_cannot_be_set_by_a_client(client: openai.OpenAI, option: str) -> None:
    value: Any = {"X": "1"} if option == "headers" else (
        1 if option in ("timeout", "max_retries") else "http://127.0.0.1:1")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="GravityEngine", messages=MESSAGES,
                                       extra_body={option: value})
    assert info.value.param == option


def test_upstream_rate_limit_passes_retry_after(client: openai.OpenAI,
                                                upstream: ScriptedServer) -> None:
    upstream.add(status=429, text="slow down", headers={"Retry-After": "7"})
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="GravityEngine", messages=MESSAGES)
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_5xx_is_a_502(client: openai.OpenAI, upstream: ScriptedServer,
                                  stream: bool) -> None:
    upstream.add(status=503, text="overloaded")
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="GravityEngine", messages=MESSAGES,
                                       stream=stream)
    assert info.value.status_code == 502
    assert "overloaded" in info.value.message


def test_upstream_refusing_the_gateways_key_is_502_not_401(client: openai.OpenAI,
                                                           upstream: ScriptedServer) -> None:
    upstream.add(status=401, text="Incorrect API key provided")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=MESSAGES)
    assert info.value.status_code == 502
    assert "the gateway's configuration is at fault" in info.value.message
    assert info.value.response.headers["x-should-retry"] == "false"


def test_an_upstream_timeout_is_a_504(client: openai.OpenAI, upstream: ScriptedServer) -> None:
    upstream.add(delay=2.5)  # past the gateway's 2 s deadline (CHATPLUG_TIMEOUT)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="GravityEngine", messages=MESSAGES)
    assert info.value.status_code == 504
    assert info.value.code == "timeout"
    assert time.monotonic() - started < 2.4


def test_a_failure_after_the_first_piece_ends_the_stream_as_an_error(
        client: openai.OpenAI, upstream: ScriptedServer) -> None:
    upstream.add(pieces=PIECES, drop_after=2, stream=True)
    received = []
    with pytest.raises(openai.APIError) as info, client.chat.completions.create(
            model="GravityEngine", messages=MESSAGES, stream=True) as stream:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["", *PIECES[:2]]
    assert "incomplete" in info.value.message


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = {model.id: model.owned_by for model in client.models.list()}
    assert models["GravityEngine"] == "GravityEngine"
    assert models["GravityEngine/gpt-3.5-turbo-16k"] == "GravityEngine"
    assert "OpenAI" not in models  # it declares no default model: the bare name would fail
    assert models["OpenAI/gpt-3.5-turbo-16k"] == "OpenAI"  # what its server lists
    assert models["Tools/tool-model"] == "Tools"
    assert client.models.retrieve("GravityEngine/gpt-3.5-turbo-0613").owned_by == \
        "GravityEngine"
    for unknown in ("GravityEngine/gpt-9", "OpenAI/meta-llama/Llama-3", "OpenAI"):
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve(unknown)


def test_gateway_keys(upstream: ScriptedServer) -> None:
    registry = registry_for(upstream, max_retries=0)
    settings = ServerSettings(api_keys=f"other-gateway-key-02, {GATEWAY_KEY}")  # type: ignore[arg-type]
    try:
        with GatewayServer(create_app(registry, settings)) as gateway:
            for key in (GATEWAY_KEY + "x", "", "other-gateway-key"):
                with openai.OpenAI(base_url=gateway.url + "/v1", api_key=key or "-",
                                   max_retries=0) as bad, \
                        pytest.raises(openai.AuthenticationError) as info:
                    bad.models.list()
                assert info.value.code == "invalid_api_key"
            with openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY,
                               max_retries=0) as good:
                reply = good.chat.completions.create(model="OpenAI/gpt-4o-mini",
                                                     messages=MESSAGES)
                assert reply.choices[0].message.content == f"You said: {MESSAGES[0]['content']}"
            # The gateway key is never forwarded: upstream saw the provider's own.
            assert upstream.requests[-1].headers["Authorization"] == f"Bearer {TEST_API_KEY}"
    finally:
        registry.close()


#: The conformance faults as the gateway answers them: (script, streamed, status, said).
GATEWAY_FAULTS: dict[str, tuple[dict[str, Any], bool, int | None, str]] = {
    "http-500": ({"status": 500, "text": "conformance failure"}, False, 502, "failure"),
    "http-401": ({"status": 401, "text": "bad key"}, False, 502, "configuration"),
    "http-429": ({"status": 429, "text": "slow down"}, False, 429, "slow down"),
    "html-200": ({"body": b"<html>Sign in</html>", "content_type": "text/html"}, False,
                 502, "not"),
    "cut-stream": ({"pieces": PIECES, "drop_after": 2, "stream": True}, True, None,
                   "incomplete"),
    "no-last-event": ({"pieces": PIECES, "finish": False, "done": False, "stream": True},
                      True, None, "incomplete"),
    "error-in-stream": ({"pieces": PIECES[:2], "error_event": {"message":
                         "upstream overloaded"}, "stream": True}, True, None,
                        "upstream overloaded"),
}


class TestRoundTripConformance(ProviderConformance):
    """chatplug's OpenAI provider -> the gateway -> chatplug -> the scripted server passes
    the conformance suite.  The failure cases are the gateway's own mapping: upstream
    failures before the first piece are 502 (a 429 stays 429), after it an in-band error."""

    provider_name = "OpenAI"
    model = "GravityEngine"  # the gateway's model name: served by its GravityEngine

    @pytest.fixture
    def conformance_registry(self, chatplug_server: ScriptedServer) -> Iterator[Registry]:
        upstream = registry_for(chatplug_server, max_retries=0)
        with GatewayServer(create_app(upstream, ServerSettings())) as gateway:
            # The client's key is one the upstream must never see.
            registry = registry_for(chatplug_server, urls={"OpenAI": gateway.url + "/v1"},
                                    api_keys={"OpenAI": PLANTED_KEY})
            yield registry
            registry.close()
        upstream.close()

    def make_registry(self, server: ScriptedServer, *, api_key: str = TEST_API_KEY) -> Registry:
        pytest.skip("the round trip needs the gateway between client and server")


    @pytest.mark.parametrize("fault", list(GATEWAY_FAULTS))
    def test_wire_failures_are_typed_errors(  # type: ignore[override]
            self, provider: Any, chatplug_server: ScriptedServer, fault: str) -> None:
        from chatplug import ChatplugError

        script, streamed, status, said = GATEWAY_FAULTS[fault]
        chatplug_server.add(**script)
        received: list[str] = []
        with pytest.raises(ChatplugError) as info:
            self.consume(provider, stream=streamed, into=received)
        assert info.value.provider == "OpenAI"
        assert getattr(info.value, "status_code", None) == status
        assert said in str(info.value)
        if streamed:
            arrived = PIECES if fault == "no-last-event" else PIECES[:2]
            assert received == arrived, "the pieces that arrived are delivered first"

    @pytest.mark.parametrize("fault", ["http-401", "http-500", "error-in-stream"])
    def test_no_key_in_any_error_text(  # type: ignore[override]
            self, provider: Any, chatplug_server: ScriptedServer, fault: str) -> None:
        # The client's planted key travels to the gateway only; whatever the upstream
        # echoes, no error the client sees carries it.
        from chatplug import ChatplugError
        from chatplug.testing.conformance import ECHO_FAULTS

        script = ECHO_FAULTS[fault]
        chatplug_server.add(echo_key=True, **script)
        with pytest.raises(ChatplugError) as info:
            self.consume(provider, stream=bool(script.get("stream")), into=[])
        error = info.value
        rendered = " ".join([str(error), repr(error), repr(error.args), repr(vars(error))])
        assert PLANTED_KEY not in rendered

    def test_the_clients_key_never_reaches_upstream(
            self, provider: Any, chatplug_server: ScriptedServer) -> None:
        self.create(provider, stream=False)
        with self.create(provider, stream=True) as stream:
            list(stream)
        seen = [r.headers.get("Authorization") for r in chatplug_server.requests]
        # The gateway's GravityEngine sends its own access code; the client's is not forwarded.
        assert seen == [f"Bearer nk-{TEST_API_KEY}"] * 2
        assert all(PLANTED_KEY not in repr(r) for r in chatplug_server.requests)
