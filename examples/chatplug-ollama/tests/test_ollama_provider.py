"""chatplug-ollama: the conformance suite plus what is particular to Ollama's protocol."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from chatplug import ProviderResponseError, Registry, StreamInterruptedError
from chatplug.testing import ScriptedServer
from chatplug.testing.conformance import ALL_EVENTS, ProviderConformance
from chatplug.testing.pytest_plugin import registry_for

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


class TestOllamaConformance(ProviderConformance):
    provider_name = "Ollama"
    model = "llama3.2"
    reports = ALL_EVENTS


@pytest.fixture
def registry(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    registry = registry_for(chatplug_server, api_keys={"Ollama": None})
    yield registry
    registry.close()


def test_installed_and_found_through_its_entry_point(registry: Registry) -> None:
    provider = registry.get("ollama")
    assert (provider.distribution, provider.module_name) == ("chatplug-ollama", "chatplug_ollama")
    assert provider.params == (
        "chatplug_ollama supports: (model: str, messages: list, stream: bool, "
        "temperature: float | None, top_p: float | None, top_k: int | None, "
        "num_ctx: int | None, num_predict: int | None, seed: int | None, "
        "tools: list[dict[str, Any]] | None)")


def test_streams_from_api_chat_with_options(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    pieces = list(registry.get("Ollama").create(
        messages=MESSAGES, model="llama3.2", stream=True, temperature=0.2, num_ctx=4096))
    assert pieces == ["You", " said:", " Why", " is", " the", " sky", " blue?"]
    request = chatplug_server.requests[-1]
    assert request.path == "/api/chat"
    assert request.json == {"model": "llama3.2", "messages": MESSAGES, "stream": True,
                            "options": {"temperature": 0.2, "num_ctx": 4096}}
    assert "Authorization" not in request.headers  # no key configured, none sent


def test_non_streaming_asks_for_one_object(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    assert registry.get("Ollama").create(messages=MESSAGES, model="llama3.2") == (
        "You said: Why is the sky blue?")
    assert chatplug_server.requests[-1].json["stream"] is False
    assert "options" not in chatplug_server.requests[-1].json


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_split_reads_and_blank_lines(
    registry: Registry, chatplug_server: ScriptedServer, newline: str
) -> None:
    chatplug_server.add(text="héllo wörld ✓ 🎉 done", newline=newline, split=1, comments=True)
    assert "".join(registry.get("Ollama").create(
        messages=MESSAGES, model="m", stream=True)) == "héllo wörld ✓ 🎉 done"


def test_an_error_line_after_pieces_means_an_incomplete_reply(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="partial reply", error_event={"message": "model 'x' not found"})
    received: list[str] = []
    with pytest.raises(StreamInterruptedError, match="model 'x' not found") as info:
        received.extend(registry.get("Ollama").create(messages=MESSAGES, model="x", stream=True))
    assert received == ["partial", " reply"]
    assert info.value.provider == "Ollama"
    assert info.value.received == len("partial reply")
    assert info.value.completion is not None
    assert info.value.completion.text == "partial reply"


def test_an_error_line_before_any_piece_is_a_response_error(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(pieces=[], error_event={"message": "model 'x' not found"})
    with pytest.raises(ProviderResponseError, match="model 'x' not found"):
        list(registry.get("Ollama").create(messages=MESSAGES, model="x", stream=True))


def test_a_stream_closed_before_done_is_incomplete(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="cut short here", done=False, stream=True)
    with pytest.raises(StreamInterruptedError, match="after 14 characters") as info:
        registry.get("Ollama").create(messages=MESSAGES, model="m", max_retries=0)
    assert info.value.received == len("cut short here")


def test_a_reply_without_message_content_is_malformed(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    line = json.dumps({"model": "m", "message": {"role": "assistant"}, "done": False})
    chatplug_server.add(body=(line + "\n").encode(), content_type="application/x-ndjson")
    with pytest.raises(ProviderResponseError, match="no text where the provider expects it"):
        registry.get("Ollama").create(messages=MESSAGES, model="m")


def test_tags_endpoint_answers_for_probes(chatplug_server: ScriptedServer) -> None:
    from urllib.request import urlopen

    with urlopen(chatplug_server.url + "/api/tags", timeout=5) as reply:
        assert json.load(reply)["models"][0]["name"] == "llama3.2:latest"


def test_lists_the_pulled_models(registry: Registry, chatplug_server: ScriptedServer) -> None:
    tags = {"models": [{"name": "llama3.2:latest"}, {"name": "qwen2.5:7b"}]}
    chatplug_server.add(method="GET", body=json.dumps(tags).encode())
    assert registry.get("Ollama").list_models() == ["llama3.2:latest", "qwen2.5:7b"]
    assert (chatplug_server.requests[-1].method, chatplug_server.requests[-1].path) == (
        "GET", "/api/tags")
    chatplug_server.add(method="GET", body=b'{"data": []}')
    with pytest.raises(ProviderResponseError, match="is CHATPLUG_OLLAMA_URL an Ollama server"):
        registry.get("Ollama").list_models()
