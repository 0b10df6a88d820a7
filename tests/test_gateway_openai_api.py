"""Today's OpenAI chat-completions API through the gateway, judged by real clients.

openai-python (sync, async, streamed) and langchain-openai send what they send today
(``max_completion_tokens``, ``n``, ``logprobs``/``top_logprobs``, ``reasoning_effort``,
``store``, ``metadata``); the scripted upstream records what reached it, and the
client must see every choice, the logprobs, the refusal and the usage details.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from chatplug.server import ServerSettings, create_app
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer

MESSAGES = [{"role": "user", "content": "Say hello"}]
#: What today's clients send beside model and messages.
TODAYS = {"max_completion_tokens": 30, "n": 2, "logprobs": True, "top_logprobs": 2,
          "reasoning_effort": "low", "store": False, "metadata": {"team": "search"}}
USAGE = {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15,
         "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0,
                                       "accepted_prediction_tokens": 1,
                                       "rejected_prediction_tokens": 0}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=120) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: ScriptedServer) -> Iterator[GatewayServer]:
    registry = registry_for(upstream, max_retries=0, timeout=5)
    with GatewayServer(create_app(registry, ServerSettings())) as server:
        yield server
    registry.close()


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0,
                       timeout=10) as client:
        yield client


def script(upstream: ScriptedServer) -> None:
    upstream.add(text="Hello there", choices=["Bonjour toi"], usage=USAGE,
                 system_fingerprint="fp_test", service_tier="default")


def sent(upstream: ScriptedServer) -> dict[str, Any]:
    body = upstream.requests[-1].json
    assert isinstance(body, dict)
    return body


def test_todays_parameters_reach_upstream_as_given_and_every_choice_comes_back(
    client: openai.OpenAI, upstream: ScriptedServer
) -> None:
    script(upstream)
    reply = client.chat.completions.create(model="OpenAI/gpt-test", messages=MESSAGES,
                                           **TODAYS)  # type: ignore[call-overload]
    body = sent(upstream)
    assert {name: body.get(name) for name in TODAYS} == TODAYS
    assert "max_tokens" not in body  # never renamed behind the client's back
    assert [(c.index, c.message.content) for c in reply.choices] == [
        (0, "Hello there"), (1, "Bonjour toi")]
    first = reply.choices[0].logprobs
    assert first is not None
    assert first.content is not None
    assert [entry.token for entry in first.content] == ["Hello", " there"]
    assert [len(entry.top_logprobs) for entry in first.content] == [2, 2]
    assert reply.system_fingerprint == "fp_test"
    assert reply.service_tier == "default"
    assert reply.usage is not None
    assert reply.usage.model_dump(exclude_none=True) == USAGE


def test_a_stream_relays_each_choice_with_its_index_and_its_logprobs(
    client: openai.OpenAI, upstream: ScriptedServer
) -> None:
    script(upstream)
    texts: dict[int, str] = {}
    tokens: dict[int, list[str]] = {}
    finishes: dict[int, str] = {}
    with client.chat.completions.create(model="OpenAI/gpt-test", messages=MESSAGES,
                                        stream=True, stream_options={"include_usage": True},
                                        **TODAYS) as stream:  # type: ignore[call-overload]
        chunks = list(stream)
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.logprobs is not None and choice.logprobs.content:
                tokens.setdefault(choice.index, []).extend(
                    entry.token for entry in choice.logprobs.content)
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts == {0: "Hello there", 1: "Bonjour toi"}
    assert tokens == {0: ["Hello", " there"], 1: ["Bonjour", " toi"]}
    assert finishes == {0: "stop", 1: "stop"}
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens_details is not None
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 4
    assert chunks[0].system_fingerprint == "fp_test"
    body = sent(upstream)
    assert {name: body.get(name) for name in TODAYS} == TODAYS


def test_the_async_client_streams_both_choices(gateway: GatewayServer,
                                               upstream: ScriptedServer) -> None:
    script(upstream)

    async def run() -> dict[int, str]:
        texts: dict[int, str] = {}
        async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="k",
                                      max_retries=0, timeout=10) as client:
            stream = await client.chat.completions.create(
                model="OpenAI/gpt-test", messages=MESSAGES,  # type: ignore[arg-type]
                stream=True, **TODAYS)
            async for chunk in stream:
                for choice in chunk.choices:
                    texts[choice.index] = texts.get(choice.index, "") + (
                        choice.delta.content or "")
        return texts

    assert asyncio.run(asyncio.wait_for(run(), 30)) == {0: "Hello there", 1: "Bonjour toi"}
    assert sent(upstream)["n"] == 2


def test_the_openai_sdk_stream_helper_accumulates_the_refusal(
    client: openai.OpenAI, upstream: ScriptedServer
) -> None:
    upstream.add(text="", refusal="I can't help with that.")
    reply = client.chat.completions.create(model="OpenAI/gpt-test", messages=MESSAGES)
    assert reply.choices[0].message.refusal == "I can't help with that."
    assert reply.choices[0].message.content is None
    upstream.add(text="", refusal="I can't help with that.")
    with client.chat.completions.stream(model="OpenAI/gpt-test", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.refusal == "I can't help with that."


def test_max_tokens_stays_max_tokens(client: openai.OpenAI, upstream: ScriptedServer) -> None:
    upstream.add(text="ok")
    client.chat.completions.create(model="OpenAI/gpt-test", messages=MESSAGES, max_tokens=7,
                                   seed=3, logit_bias={"50256": -100}, user="u-1",
                                   parallel_tool_calls=False, prompt_cache_key="k1",
                                   safety_identifier="s1", verbosity="low")
    body = sent(upstream)
    assert (body["max_tokens"], "max_completion_tokens" in body) == (7, False)
    assert (body["seed"], body["logit_bias"], body["user"], body["prompt_cache_key"],
            body["safety_identifier"], body["verbosity"]) == (
        3, {"50256": -100}, "u-1", "k1", "s1", "low")


def test_a_mistyped_parameter_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="OpenAI/gpt-test", messages=MESSAGES,
                                       n="two")  # type: ignore[arg-type]
    assert "n=" in info.value.message


def test_a_parameter_gravityengine_cannot_take_names_it_and_extra_body(
    client: openai.OpenAI, upstream: ScriptedServer
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="GravityEngine", messages=MESSAGES,
                                       reasoning_effort="low")
    message = info.value.message
    assert "GravityEngine" in message
    assert "'reasoning_effort'" in message
    assert "extra_body" in message
    upstream.add(text="ok")
    client.chat.completions.create(model="GravityEngine", messages=MESSAGES, n=2, seed=1,
                                   logprobs=True, max_completion_tokens=5,
                                   response_format={"type": "json_object"})
    body = sent(upstream)
    assert (body["n"], body["seed"], body["logprobs"], body["max_completion_tokens"],
            body["response_format"]) == (2, 1, True, 5, {"type": "json_object"})


def test_langchain_chat_openai_with_max_tokens(gateway: GatewayServer,
                                               upstream: ScriptedServer) -> None:
    import langchain_openai
    upstream.add(text="Hello from LangChain.")
    model = langchain_openai.ChatOpenAI(model="OpenAI/gpt-test", base_url=gateway.url + "/v1",
                                        api_key="k", max_tokens=30, max_retries=0,
                                        timeout=10)
    reply = model.invoke("Say hello")
    assert reply.content == "Hello from LangChain."
    body = sent(upstream)
    # langchain-openai 1.x sends max_completion_tokens: it arrives as it sent it.
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 30


def test_stream_options_beyond_include_usage_reach_the_provider(
    client: openai.OpenAI, upstream: ScriptedServer
) -> None:
    upstream.add(text="ok")
    with client.chat.completions.create(
            model="OpenAI/gpt-test", messages=MESSAGES,  # type: ignore[arg-type]
            stream=True, stream_options={"include_usage": False,
                                         "include_obfuscation": False}) as stream:
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "ok"
    assert sent(upstream)["stream_options"] == {"include_obfuscation": False,
                                                "include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
def test_the_wires_without_choices_relay_choice_0_only(
    gateway: GatewayServer, upstream: ScriptedServer, stream: bool
) -> None:
    import requests

    for path, body in (("/v1/messages", {"model": "OpenAI/gpt-test", "max_tokens": 50,
                                         "messages": MESSAGES, "stream": stream}),
                       ("/v1/responses", {"model": "OpenAI/gpt-test", "input": "Say hello",
                                          "stream": stream, "store": False})):
        upstream.add(text="First choice", choices=["Second choice"], logprobs=True,
                     refusal=None)
        reply = requests.post(gateway.url + path, json=body, timeout=10)
        assert reply.status_code == 200, reply.text
        assert "First" in reply.text
        assert "Second" not in reply.text
        assert '"token"' not in reply.text  # no logprobs entry either
