"""The model catalog: bare model names, ``Provider/model``, aliases (CHATPLUG_MODELS and
chatplug.toml), ambiguity, suggestions, the default model and the servers' lists (TTL)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chatplug import (
    AmbiguousModelError,
    ConfigurationError,
    InvalidRequestError,
    ProviderNotFoundError,
    Registry,
    hookimpl,
)
from chatplug.calls.bound import BoundModel
from chatplug.routes import Route
from chatplug.settings import load_settings
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

HI = [{"role": "user", "content": "hi"}]
#: An OpenAI models page, as its server lists them.
LISTED = json.dumps({"object": "list", "data": [{"id": "gpt-4o", "object": "model"},
                                                {"id": "o3-mini", "object": "model"}]}).encode()



def all_but(*kept: str) -> str:
    """CHATPLUG_DISABLED_PROVIDERS keeping only ``kept`` (test plugins are installed too)."""
    return ",".join(ep.name for ep in entry_points(group="chatplug.providers")
                    if ep.name not in kept)


#: Only OpenAI is left to ask its server (whose GET answers the tests queue).
ONLY_OPENAI = all_but("OpenAI")


@pytest.fixture
def home() -> Path:
    path = Path(os.environ["CHATPLUG_HOME"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def chats(server: ScriptedServer) -> list[tuple[str, str]]:
    """``(path, model)`` of the chat requests the server got."""
    return [(r.path, json.loads(r.body)["model"]) for r in server.requests
            if r.method == "POST"]


def model_lists(server: ScriptedServer) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.path.endswith("/models"))


@pytest.fixture
def openai_only(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    registry = registry_for(chatplug_server, disabled_providers=ONLY_OPENAI)
    yield registry
    registry.close()


def test_provider_slash_model_and_a_declared_bare_name_call_their_provider(
        chatplug_server: ScriptedServer) -> None:
    registry = registry_for(chatplug_server)
    bound = registry.get("OpenAI/gpt-4o-mini")
    assert isinstance(bound, BoundModel)
    assert (bound.name, bound.model) == ("OpenAI", "gpt-4o-mini")
    assert bound.create(HI) == "You said: hi"
    # GravityEngine declares it: no server is asked.
    declared = registry.get("gpt-3.5-turbo-0613")
    assert declared.create(HI) == "You said: hi"
    assert model_lists(chatplug_server) == 0
    assert chats(chatplug_server) == [
        ("/v1/chat/completions", "gpt-4o-mini"),
        ("/api/openai/v1/chat/completions", "gpt-3.5-turbo-0613")]
    # A provider's name is still the provider; the call may still name another model.
    assert registry.get("openai") is registry.provider("OpenAI")
    assert asyncio.run(bound.acreate(HI, "gpt-4.1")) == "You said: hi"
    assert chats(chatplug_server)[-1] == ("/v1/chat/completions", "gpt-4.1")
    registry.close()


def test_a_bare_name_the_server_lists(openai_only: Registry,
                                      chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(method="GET", body=LISTED)
    assert openai_only.resolve("o3-mini") == (openai_only.provider("OpenAI"), "o3-mini")
    assert openai_only.get("gpt-4o").complete(HI).text == "You said: hi"
    assert chats(chatplug_server) == [("/v1/chat/completions", "gpt-4o")]
    assert model_lists(chatplug_server) == 1  # cached: one request for both names


def test_the_lists_are_cached_for_the_ttl(chatplug_server: ScriptedServer) -> None:
    registry = registry_for(chatplug_server, disabled_providers=ONLY_OPENAI, models_ttl=0.5)
    for _ in range(3):
        chatplug_server.add(method="GET", body=LISTED)
    registry.resolve("gpt-4o")
    registry.resolve("o3-mini")
    with pytest.raises(ProviderNotFoundError):
        registry.resolve("gpt-9")  # unknown: the fresh list answers, no new request
    assert model_lists(chatplug_server) == 1
    time.sleep(0.6)
    registry.resolve("gpt-4o")
    assert model_lists(chatplug_server) == 2
    asyncio.run(registry.aresolve("o3-mini"))  # fresh again: no request, no thread
    assert model_lists(chatplug_server) == 2
    registry.close()


def test_an_unknown_name_suggests_the_closest_and_the_provider_slash_model_form(
        openai_only: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(method="GET", body=LISTED)
    with pytest.raises(ProviderNotFoundError) as unknown:
        openai_only.get("o3-mni")
    message = str(unknown.value)
    assert "no provider, route, alias or model named 'o3-mni'" in message
    assert "Did you mean 'o3-mini'?" in message
    assert "Provider/model (e.g. 'OpenAI/o3-mni')" in message


def test_a_name_several_providers_serve_is_ambiguous(chatplug_server: ScriptedServer) -> None:
    # Anthropic and Gemini both list the scripted server's models.
    registry = registry_for(chatplug_server, disabled_providers=all_but("Anthropic", "Gemini"))
    with pytest.raises(AmbiguousModelError) as ambiguous:
        registry.get("claude-test-1")
    assert ambiguous.value.candidates == ["Anthropic/claude-test-1", "Gemini/claude-test-1"]
    assert "'Anthropic/claude-test-1' or 'Gemini/claude-test-1'" in str(ambiguous.value)
    assert registry.get("Gemini/claude-test-1").create(HI) == "You said: hi"
    registry.close()


class Declaring:
    """A provider that declares ``shared`` and asks a server that counts."""

    url = "http://127.0.0.1:9"
    model: ClassVar[list[str]] = ["shared", "own"]
    supports_stream = False
    needs_auth = False

    def __init__(self) -> None:
        self.asked = 0

    @hookimpl
    def create_completion(self, model: str, messages: list[Any], stream: bool) -> Any:
        yield f"{model} answers"

    @hookimpl
    def list_models(self) -> list[str]:
        self.asked += 1
        return ["own", "live"]


def test_declared_models_ambiguity_and_only_configured_servers_are_asked() -> None:
    registry = Registry(entry_points=(), settings=load_settings())
    first, second = Declaring(), Declaring()
    registry.register(first, name="First")
    registry.register(second, name="Second")
    with pytest.raises(AmbiguousModelError, match="First, Second all declare it"):
        registry.get("shared")
    # Neither has a key or a URL of its own: nobody's server is asked.
    with pytest.raises(ProviderNotFoundError):
        registry.get("live")
    assert (first.asked, second.asked) == (0, 0)
    keyed = Registry(entry_points=(),
                     settings=load_settings(provider_api_keys={"first": "test-key-1"}))
    keyed.register(first, name="First")
    keyed.register(second, name="Second")
    # "live" is listed but not declared: a provider that declares models takes only those.
    with pytest.raises(ProviderNotFoundError):
        keyed.get("live")
    assert (first.asked, second.asked) == (1, 0)


def test_aliases_from_the_variable_win_over_the_file(
        home: Path, chatplug_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "chatplug.toml").write_text(
        '# the team\'s models\n[models]\nfast = "GravityEngine/gpt-3.5-turbo-16k"\n'
        'cheap = "OpenAI/gpt-4o-mini"  # the cheap one\n'
        'both = ["OpenAI/gpt-4.1", "GravityEngine"]\n', encoding="utf-8")
    monkeypatch.setenv("CHATPLUG_MODELS", json.dumps({"fast": "OpenAI/gpt-4.1-nano"}))
    registry = registry_for(chatplug_server)
    assert registry.resolve("fast") == (registry.provider("OpenAI"), "gpt-4.1-nano")
    assert registry.resolve("cheap") == (registry.provider("OpenAI"), "gpt-4o-mini")
    both = registry.get("both")
    assert isinstance(both, Route)
    assert [str(entry) for entry in both.entries] == ["OpenAI/gpt-4.1", "GravityEngine"]
    assert both in registry.routes()
    assert registry.get("cheap").create(HI) == "You said: hi"
    assert both.create(HI) == "You said: hi"
    assert chats(chatplug_server) == [("/v1/chat/completions", "gpt-4o-mini"),
                                      ("/v1/chat/completions", "gpt-4.1")]
    assert registry.errors == {}
    registry.close()


def test_malformed_aliases_are_configuration_errors(monkeypatch: pytest.MonkeyPatch,
                                                    chatplug_server: ScriptedServer) -> None:
    monkeypatch.setenv("CHATPLUG_MODELS", "{fast: gpt}")
    registry = registry_for(chatplug_server)
    assert registry.get("GravityEngine").name == "GravityEngine"  # providers still resolve
    with pytest.raises(ConfigurationError, match="CHATPLUG_MODELS is not valid JSON"):
        registry.get("fast")
    assert "CHATPLUG_MODELS is not valid JSON" in registry.errors["aliases"]
    monkeypatch.setenv("CHATPLUG_MODELS", json.dumps({"OpenAI": "GravityEngine"}))
    shadowing = registry_for(chatplug_server)
    assert shadowing.get("OpenAI").name == "OpenAI"
    assert "is a provider's name" in shadowing.errors["alias:OpenAI"]
    registry.close()
    shadowing.close()


def test_the_default_model(home: Path, chatplug_server: ScriptedServer,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    registry = registry_for(chatplug_server)
    assert registry.default_model is None
    with pytest.raises(InvalidRequestError, match="configure a default model"):
        registry.resolve(None)
    (home / "chatplug.toml").write_text('default_model = "cheap"\n[models]\n'
                                        'cheap = "OpenAI/gpt-4o-mini"\n', encoding="utf-8")
    from_file = registry_for(chatplug_server)
    assert from_file.default_model == "cheap"
    assert from_file.resolve(None) == (from_file.provider("OpenAI"), "gpt-4o-mini")
    monkeypatch.setenv("CHATPLUG_DEFAULT_MODEL", "GravityEngine/gpt-3.5-turbo-0613")
    from_variable = registry_for(chatplug_server)
    assert from_variable.resolve("") == (from_variable.provider("GravityEngine"),
                                         "gpt-3.5-turbo-0613")
    for each in (registry, from_file, from_variable):
        each.close()


@pytest.mark.parametrize("page", ["README.md", "docs/configuration.md", "docs/coming-from.md"])
def test_the_docs_config_files_load_and_every_alias_resolves(page: str, home: Path) -> None:
    import re

    from chatplug.configfile import load_config

    text = (Path(__file__).resolve().parent.parent / page).read_text(encoding="utf-8")
    blocks = re.findall(r"^```toml\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert blocks, page
    for block in blocks:
        (home / "chatplug.toml").write_text(block, encoding="utf-8")
        config = load_config()
        registry = Registry(settings=load_settings())  # no key: no server is asked
        assert registry.errors == {}
        for alias in config.models:
            target, _ = registry.resolve(alias)
            assert target.name, alias
        if config.default_model is not None:
            registry.resolve(None)


def test_a_bad_ttl_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATPLUG_MODELS_TTL", "-1")
    with pytest.raises(ConfigurationError, match="CHATPLUG_MODELS_TTL"):
        load_settings()
