"""Model lists: the ``list_models`` hook (OpenAI wire: ``GET {url}/models``),
``Provider.list_models()`` and ``chatplug models``, live and when the server fails."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chatplug import (
    AuthenticationError,
    PluginLoadError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeoutError,
    Registry,
    hookimpl,
)
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

from .conftest import PLANTED_KEY, free_port, run_cli
from .rawserver import RawServer, sleep_until_stopped

MODELS = json.dumps({"object": "list", "data": [{"id": "gpt-4o", "object": "model"},
                                                 {"id": "gpt-3.5-turbo-16k", "object": "model"}]})


@pytest.fixture
def registry(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    registry = registry_for(chatplug_server, api_keys={"OpenAI": PLANTED_KEY})
    yield registry
    registry.close()


def env_for(server: ScriptedServer | RawServer, **extra: str) -> dict[str, str]:
    return {"CHATPLUG_GRAVITYENGINE_URL": server.url, "CHATPLUG_OPENAI_URL": server.url + "/v1",
            "CHATPLUG_OLLAMA_URL": server.url, **extra}


def test_providers_ask_their_servers(registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(method="GET", body=MODELS.encode())
    gravity = registry.get("GravityEngine")
    assert gravity.lists_models
    assert gravity.list_models() == ["gpt-4o", "gpt-3.5-turbo-16k"]
    probe = chatplug_server.requests[-1]
    assert (probe.method, probe.path) == ("GET", "/api/openai/v1/models")
    assert probe.headers["Origin"] == chatplug_server.url  # Next-Web's proxy checks it
    chatplug_server.add(method="GET", body=MODELS.encode())
    assert registry.get("OpenAI").list_models() == ["gpt-4o", "gpt-3.5-turbo-16k"]
    probe = chatplug_server.requests[-1]
    assert (probe.path, probe.headers["Authorization"]) == ("/v1/models", f"Bearer {PLANTED_KEY}")


def test_failures_are_chatplug_errors(registry: Registry, chatplug_server: ScriptedServer) -> None:
    openai = registry.get("OpenAI")
    chatplug_server.add(method="GET", status=500, text="models are down")
    with pytest.raises(ProviderHTTPError, match="500 Internal Server Error: models are down"):
        openai.list_models()
    chatplug_server.add(method="GET", body=b'{"models": ["not", "openai"]}')
    with pytest.raises(ProviderResponseError, match="not OpenAI's"):
        openai.list_models()
    chatplug_server.add(method="GET", status=401, text=f"bad key {PLANTED_KEY}", echo_key=True)
    with pytest.raises(AuthenticationError) as refused:
        openai.list_models()
    assert PLANTED_KEY not in str(refused.value)
    without_key = registry_for(chatplug_server, api_keys={"OpenAI": None})
    count = len(chatplug_server.requests)
    with pytest.raises(AuthenticationError, match="no API key is configured"):
        without_key.get("OpenAI").list_models()
    assert len(chatplug_server.requests) == count  # nothing was sent
    without_key.close()


def test_asking_is_bounded_in_time() -> None:
    with RawServer() as server:
        server.then(lambda conn, request: sleep_until_stopped(server, 30), times=2)
        registry = registry_for(server)  # type: ignore[arg-type]  # only its url is read
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError):
            registry.get("GravityEngine").list_models(timeout=0.5)
        assert time.monotonic() - started < 3
        result = run_cli("models", "GravityEngine", env={**env_for(server),
                                                         "CHATPLUG_TIMEOUT": "1"})
        registry.close()
    assert result.returncode == 0
    assert "gpt-3.5-turbo-0613" in result.stdout


class Listing:
    """A provider whose list_models hook returns whatever the test says."""

    url = "http://127.0.0.1:9"
    model: ClassVar[list[str]] = ["own-1"]
    supports_stream = False
    needs_auth = False

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    @hookimpl
    def create_completion(self, model: str, messages: list[Any], stream: bool) -> Iterator[str]:
        yield "unused"

    @hookimpl
    def list_models(self) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_a_hook_that_misbehaves_is_reported_as_the_plugins_bug() -> None:
    registry = Registry(entry_points=())
    odd = registry.register(Listing({"not": "a list"}), name="Odd")
    with pytest.raises(ProviderResponseError, match=r"list_models returned dict.*bug in"):
        odd.list_models()
    broken = registry.register(Listing(KeyError("models")), name="Broken")
    with pytest.raises(ProviderResponseError, match=r"KeyError.*bug in"):
        broken.list_models()
    good = registry.register(Listing(["a", " b ", "a"]), name="Good")
    assert good.list_models() == ["a", "b"]


def test_a_provider_without_the_hook_gives_its_declared_models() -> None:
    class Plain(Listing):
        list_models = None  # type: ignore[assignment]

    registry = Registry(entry_points=())
    plain = registry.register(Plain(None), name="Plain")
    assert (plain.lists_models, plain.list_models()) == (False, ["own-1"])


def test_the_models_command_live_and_on_failure(chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(method="GET", body=MODELS.encode())
    live = run_cli("models", "GravityEngine", env=env_for(chatplug_server))
    assert (live.returncode, live.stderr) == (0, "")
    assert live.stdout.splitlines() == [
        "PROVIDER       MODEL               LISTED",
        "GravityEngine  gpt-3.5-turbo-16k   declared, server",
        "GravityEngine  gpt-3.5-turbo-0613  declared",
        "GravityEngine  gpt-4o              server",
    ]
    chatplug_server.add(method="GET", status=503, text="busy")
    failed = run_cli("models", "GravityEngine", "--json", env=env_for(chatplug_server))
    assert failed.returncode == 0
    [note] = failed.stderr.splitlines()
    assert note.startswith("chatplug: could not ask GravityEngine's server for its models (503")
    assert note.endswith("showing the declared list")
    assert json.loads(failed.stdout)["models"] == [{
        "provider": "GravityEngine", "declared": ["gpt-3.5-turbo-16k", "gpt-3.5-turbo-0613"],
        "live": None, "error": note.split("(", 1)[1].rsplit(");", 1)[0]}]


def test_the_models_command_for_every_provider(chatplug_server: ScriptedServer,
                                               tmp_path: Path) -> None:
    env = env_for(chatplug_server, CHATPLUG_OPENAI_URL=f"http://127.0.0.1:{free_port()}",
                  OPENAI_API_KEY=PLANTED_KEY)
    result = run_cli("models", env=env)
    assert result.returncode == 0
    rows = [line.split(None, 2) for line in result.stdout.splitlines()[1:]]
    assert ["GravityEngine", "gpt-3.5-turbo-16k", "declared, server"] in rows
    assert ["OpenAI", "(any;", "name one with -m)  -"] in rows
    assert ["Ollama", "llama3.2:latest", "server"] in rows
    notes = result.stderr.splitlines()
    [note] = [line for line in notes if "OpenAI" in line]
    assert "could not ask OpenAI's server" in note
    # Anthropic and Gemini have no key here: their servers are not asked, and that is said.
    for name in ("Anthropic", "Gemini"):
        [said] = [line for line in notes if name in line]
        assert "key" in said.lower()
    assert len(notes) == 3
    assert PLANTED_KEY not in result.stdout + result.stderr


def test_a_misspelled_list_models_hook_gets_a_hint() -> None:
    class Misspelled(Listing):
        list_models = None  # type: ignore[assignment]

        @hookimpl
        def list_model(self) -> list[str]:
            return []

    with pytest.raises(PluginLoadError, match=r"did you mean 'list_models'"):
        Registry(entry_points=()).register(Misspelled(None), name="Misspelled")
