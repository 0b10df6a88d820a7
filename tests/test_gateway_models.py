"""The gateway's model names: ``/v1/models`` lists only ids that work (aliases, routes,
declared and server-listed models, bare where unambiguous), unknown ids 404, the lists are
cached for CHATPLUG_MODELS_TTL, a request without ``model`` gets the default model, the
API answers without ``/v1``, and a server list being fetched never stalls the loop."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

import openai
import pytest

from chatplug import Registry
from chatplug.gateway_settings import ServerSettings
from chatplug.server import create_app
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer

HI = [{"role": "user", "content": "hi"}]
LISTED = json.dumps({"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]}).encode()
ALIASES = {"fast": "OpenAI/gpt-4o-mini", "smart": ["OpenAI/gpt-4.1", "GravityEngine"]}


def all_but(*kept: str) -> str:
    """CHATPLUG_DISABLED_PROVIDERS keeping only ``kept`` (test plugins are installed too)."""
    return ",".join(ep.name for ep in entry_points(group="chatplug.providers")
                    if ep.name not in kept)


def model_lists(server: ScriptedServer) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.path.endswith("/models"))


def post(gateway: GatewayServer, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request("POST", path, json.dumps(body),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture
def served(chatplug_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[GatewayServer, Registry]]:
    monkeypatch.setenv("CHATPLUG_MODELS", json.dumps(ALIASES))
    registry = registry_for(chatplug_server, max_retries=0, timeout=5, disabled_providers=all_but(
        "OpenAI", "Anthropic", "Gemini", "GravityEngine"))
    with GatewayServer(create_app(registry, ServerSettings())) as gateway:
        yield gateway, registry
    registry.close()


def client_of(gateway: GatewayServer, path: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + path, api_key="client-key", max_retries=0,
                         timeout=10)


def test_the_list_holds_every_id_that_works_and_only_those(
        served: tuple[GatewayServer, Registry], chatplug_server: ScriptedServer) -> None:
    gateway, _ = served
    with client_of(gateway) as client:
        models = {model.id: model.owned_by for model in client.models.list()}
        assert {"fast": "OpenAI", "smart": "route", "GravityEngine": "GravityEngine",
                "GravityEngine/gpt-3.5-turbo-16k": "GravityEngine",
                # GravityEngine declares it; OpenAI's server lists it too: declared wins.
                "gpt-3.5-turbo-16k": "GravityEngine",
                "OpenAI/gpt-3.5-turbo-16k": "OpenAI",
                "Anthropic/claude-test-1": "Anthropic",
                "Gemini/claude-test-2": "Gemini"}.items() <= models.items()
        # Anthropic and Gemini both list it; OpenAI has no default model.
        assert not {"claude-test-1", "OpenAI", "Anthropic", "Gemini"} & set(models)
        for model_id in models:
            reply = client.chat.completions.create(model=model_id, messages=HI)  # type: ignore[arg-type]
            assert reply.choices[0].message.content == "You said: hi", model_id
            assert client.models.retrieve(model_id).id == model_id
        for unknown in ("OpenAI/gpt-9", "claude-test-1", "OpenAI", "nothing"):
            with pytest.raises(openai.NotFoundError):
                client.models.retrieve(unknown)
        with pytest.raises(openai.NotFoundError) as ambiguous:
            client.chat.completions.create(model="claude-test-1", messages=HI)  # type: ignore[arg-type]
        assert "'Anthropic/claude-test-1' or 'Gemini/claude-test-1'" in ambiguous.value.message


def test_the_servers_lists_are_cached_for_the_ttl(
        chatplug_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = registry_for(chatplug_server, models_ttl=0.5, disabled_providers=all_but("OpenAI"))
    for _ in range(3):
        chatplug_server.add(method="GET", body=LISTED)
    with GatewayServer(create_app(registry, ServerSettings())) as gateway, \
            client_of(gateway) as client:
        assert "gpt-4o" in {model.id for model in client.models.list()}
        assert "OpenAI/gpt-4o" in {model.id for model in client.models.list()}
        client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
        assert model_lists(chatplug_server) == 1
        time.sleep(0.6)
        client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
        assert model_lists(chatplug_server) == 2
    registry.close()


def test_a_request_without_model_gets_the_default_model(
        chatplug_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = registry_for(chatplug_server, disabled_providers=all_but("OpenAI"))
    with GatewayServer(create_app(registry, ServerSettings())) as gateway:
        status, body = post(gateway, "/v1/chat/completions", {"messages": HI})
        assert status == 400
        assert "configure a default model" in body["error"]["message"]
    registry.close()
    monkeypatch.setenv("CHATPLUG_MODELS", json.dumps(ALIASES))
    monkeypatch.setenv("CHATPLUG_DEFAULT_MODEL", "fast")
    registry = registry_for(chatplug_server, disabled_providers=all_but("OpenAI"))
    with GatewayServer(create_app(registry, ServerSettings())) as gateway:
        for path, body in (("/v1/chat/completions", {"messages": HI}),
                           ("/v1/messages", {"max_tokens": 20, "messages": HI}),
                           ("/v1/responses", {"input": "hi"})):
            status, _ = post(gateway, path, body)
            assert status == 200, path
            sent = json.loads(chatplug_server.requests[-1].body)
            assert sent["model"] == "gpt-4o-mini", path
    registry.close()


def test_the_api_answers_without_v1(served: tuple[GatewayServer, Registry]) -> None:
    gateway, _ = served
    with client_of(gateway, "") as client:
        assert "fast" in {model.id for model in client.models.list()}
        assert client.models.retrieve("fast").owned_by == "OpenAI"
        reply = client.chat.completions.create(model="fast", messages=HI)  # type: ignore[arg-type]
        assert reply.choices[0].message.content == "You said: hi"
        assert client.responses.create(model="fast", input="hi").output_text == "You said: hi"
    status, body = post(gateway, "/messages", {"model": "fast", "max_tokens": 20,
                                               "messages": HI})
    assert (status, body["content"][0]["text"]) == (200, "You said: hi")
    status, body = post(gateway, "/messages", {"model": "nothing", "max_tokens": 20,
                                               "messages": HI})
    assert (status, body["type"]) == (404, "error")  # Anthropic's envelope there too


def test_fetching_a_list_never_stalls_the_loop(chatplug_server: ScriptedServer) -> None:
    registry = registry_for(chatplug_server, disabled_providers=all_but("OpenAI"))
    chatplug_server.add(method="GET", body=LISTED, delay=1.5)
    answers: list[str] = []
    with GatewayServer(create_app(registry, ServerSettings())) as gateway, \
            client_of(gateway) as client:
        asking = threading.Thread(target=lambda: answers.append(
            client.chat.completions.create(model="gpt-4o",  # type: ignore[arg-type]
                                           messages=HI).choices[0].message.content or ""))
        asking.start()
        deadline = time.monotonic() + 5
        while model_lists(chatplug_server) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
        connection.request("GET", "/health/liveliness")
        assert connection.getresponse().status == 200
        connection.close()
        assert time.monotonic() - started < 1.0  # answered while the list was fetched
        asking.join(10)
    assert answers == ["You said: hi"]
    registry.close()
