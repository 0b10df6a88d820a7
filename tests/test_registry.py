"""Discovery from really installed distributions, tolerant loading, the plugin contract."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from chatplug import (
    PluginLoadError,
    ProviderNotFoundError,
    Registry,
    hookimpl,
    registry,
)
from chatplug.testing import ScriptedServer

from .conftest import run_cli
from .distributions import PROVIDER_GROUP, make_distribution

GOOD_PROVIDER = '''
from chatplug import hookimpl
url = "http://127.0.0.1:9"
model = ["echo-1"]
supports_stream = True
needs_auth = False

@hookimpl
def create_completion(model, messages, stream, url, http, shout: bool = False):
    from chatplug.wire import openai
    for piece in openai.chat(http, url + "/v1/chat/completions", model=model,
                             messages=messages, stream=stream):
        yield piece.upper() if shout else piece
'''

BROKEN = {
    "ImportFails": "import chatplug_no_such_module_xyz\n",
    "RaisesAtImport": "raise RuntimeError('boom at import')\n",
    "ExitsAtImport": "import sys\nsys.exit(3)\n",
    "NoMetadata": "from chatplug import hookimpl\n@hookimpl\n"
                  "def create_completion(model, messages, stream):\n    yield 'x'\n",
    "BadMetadata": GOOD_PROVIDER.replace('model = ["echo-1"]', 'model = "echo-1"'),
    "MisspelledHook": GOOD_PROVIDER.replace("def create_completion", "def create_completon"),
    "UnknownArgument": GOOD_PROVIDER.replace("stream, url,", "stream, mystery, url,"),
}


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """A site directory with one good and several broken third-party distributions."""
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "chatplug-echo", {"chatplug_echo": GOOD_PROVIDER},
                      {PROVIDER_GROUP: {"Echo": "chatplug_echo"}})
    for index, (name, source) in enumerate(BROKEN.items()):
        module = f"broken_{index}"
        make_distribution(site, f"broken-{name.lower()}", {module: source},
                          {PROVIDER_GROUP: {name: module}})
    # Another distribution claiming a built-in's name (any case) must not take it over.
    make_distribution(site, "chatplug-impostor", {"impostor": GOOD_PROVIDER},
                      {PROVIDER_GROUP: {"gravityengine": "impostor"}})
    return site


def test_builtins_are_discovered_through_entry_points() -> None:
    names = [p.name for p in registry.providers()]
    assert {"GravityEngine", "OpenAI"} <= set(names)
    assert names == sorted(names, key=str.lower)
    gravity = registry.get("GravityEngine")
    assert (gravity.distribution, gravity.module_name) == (
        "chatplug", "chatplug.providers.gravityengine")
    assert gravity.models == ["gpt-3.5-turbo-16k", "gpt-3.5-turbo-0613"]
    assert (gravity.supports_stream, gravity.needs_auth) == (True, False)
    openai = registry.get("openai")
    assert (openai.models, openai.needs_auth) == ([], True)


def test_installed_example_package_is_discovered_and_works(
    chatplug_registry: Registry,
) -> None:
    """examples/chatplug-llamacpp is pip-installed by .ci/run, like any third party."""
    provider = chatplug_registry.get("LlamaCpp")
    assert provider.distribution == "chatplug-llamacpp"
    assert provider.params == (
        "chatplug_llamacpp supports: (model: str, messages: list, stream: bool, "
        "temperature: float, top_k: int, repeat_penalty: float)")
    assert list(provider.create(messages=[{"role": "user", "content": "hi"}], model="local",
                                stream=True, top_k=5)) == ["You", " said:", " hi"]


def test_unknown_name_suggests_the_closest_and_lists_the_installed() -> None:
    with pytest.raises(ProviderNotFoundError,
                       match=r"no provider, route, alias or model named 'GravityEngin'\. "
                             r"Did you mean 'GravityEngine'.*Installed providers: .*OpenAI"):
        registry.get("GravityEngin")


def test_broken_plugins_are_recorded_and_the_rest_still_work(
    plugin_path: Path, chatplug_server: ScriptedServer
) -> None:
    env = {"PYTHONPATH": str(plugin_path),
           "CHATPLUG_GRAVITYENGINE_URL": chatplug_server.url,
           "CHATPLUG_ECHO_URL": chatplug_server.url}
    result = run_cli("providers", "--json", env=env)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    names = {p["name"] for p in listing["providers"]}
    assert {"GravityEngine", "OpenAI", "Echo"} <= names
    echo = next(p for p in listing["providers"] if p["name"] == "Echo")
    assert (echo["distribution"], echo["version"]) == ("chatplug-echo", "1.2.3")
    assert echo["parameters"][-1] == {"name": "shout", "type": "bool", "default": False,
                                      "required": False}
    errors = listing["errors"]
    assert set(errors) == {*BROKEN, "gravityengine"}
    assert "No module named 'chatplug_no_such_module_xyz'" in errors["ImportFails"]
    assert "RuntimeError: boom at import" in errors["RaisesAtImport"]
    assert "SystemExit" in errors["ExitsAtImport"]
    assert "missing metadata attribute(s) url, model" in errors["NoMetadata"]
    assert "model must be a list" in errors["BadMetadata"]
    assert "'create_completon' is not a chatplug hook (did you mean 'create_completion'" \
        in errors["MisspelledHook"]
    assert "mystery" in errors["UnknownArgument"]
    assert "already taken by chatplug" in errors["gravityengine"]
    gravity = next(p for p in listing["providers"] if p["name"] == "GravityEngine")
    assert gravity["distribution"] == "chatplug"  # the built-in kept its name

    table = run_cli("providers", env=env)
    assert table.returncode == 0
    assert "Failed to load:" in table.stdout
    assert "  ImportFails: importing broken_0 failed" in table.stdout
    assert "Traceback" not in table.stdout + table.stderr

    chat = run_cli("chat", "-p", "GravityEngine", "hello", env=env)
    assert (chat.returncode, chat.stdout) == (0, "You said: hello\n")
    shout = run_cli("chat", "-p", "echo", "-o", "shout=true", "hello", env=env)
    assert (shout.returncode, shout.stdout) == (0, "YOU SAID: HELLO\n")
    failed = run_cli("chat", "-p", "RaisesAtImport", "hello", env=env)
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "chatplug: error: provider 'RaisesAtImport' is installed but failed to load: "
        "importing broken_1 failed: RuntimeError: boom at import. "
        "Run `chatplug providers` for details.")


def test_strict_mode_raises_on_a_broken_plugin(plugin_path: Path) -> None:
    env = {"PYTHONPATH": str(plugin_path), "CHATPLUG_STRICT_PLUGINS": "1"}
    result = run_cli("providers", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("chatplug: error: provider plugin ")
    assert "CHATPLUG_STRICT_PLUGINS is on" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_strict_mode_in_process(plugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    monkeypatch.syspath_prepend(str(plugin_path))
    monkeypatch.setenv("CHATPLUG_STRICT_PLUGINS", "1")
    strict = Registry(entry_points=[EntryPoint("RaisesAtImport", "broken_1",
                                               "chatplug.providers")])
    with pytest.raises(PluginLoadError, match="boom at import") as info:
        strict.get("GravityEngine")
    assert info.value.entry_point == "RaisesAtImport"
    with pytest.raises(PluginLoadError):  # every later use says so too
        strict.providers()


def make_plugin(**overrides: object) -> SimpleNamespace:
    @hookimpl
    def create_completion(model, messages, stream):  # type: ignore[no-untyped-def]
        yield "ok"

    fields: dict[str, object] = {"url": "http://127.0.0.1:9", "model": ["m"],
                                 "supports_stream": True, "needs_auth": False,
                                 "create_completion": create_completion}
    fields.update(overrides)
    return SimpleNamespace(**{k: v for k, v in fields.items() if v is not ...})


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"url": ...}, "missing metadata attribute(s) url"),
    ({"url": "ftp://x"}, "url must be an http(s) URL"),
    ({"model": [1]}, "model must be a list"),
    ({"supports_stream": "yes"}, "supports_stream must be True or False"),
    ({"needs_auth": 1}, "needs_auth must be True or False"),
    ({"create_completion": lambda model, messages, stream: iter(())}, "no @hookimpl"),
])
def test_register_rejects_bad_metadata(overrides: dict[str, object], fragment: str) -> None:
    fresh = Registry(entry_points=())
    with pytest.raises(PluginLoadError) as info:
        fresh.register(make_plugin(**overrides), "Bad")
    assert fragment in str(info.value)
    assert fresh.providers() == []


def test_register_refuses_a_taken_name_in_any_case() -> None:
    fresh = Registry(entry_points=())
    fresh.register(make_plugin(), "Mine")
    with pytest.raises(PluginLoadError, match="already taken"):
        fresh.register(make_plugin(), "MINE")
    assert fresh.get("mine").create(messages=[{"role": "user", "content": "x"}]) == "ok"


def test_a_name_sharing_a_providers_settings_is_refused() -> None:
    """``OpenAI-`` would read CHATPLUG_OPENAI_API_KEY: it must never load beside OpenAI."""
    fresh = Registry(entry_points=())
    fresh.register(make_plugin(), "OpenAI")
    for alias in ("OpenAI-", "_openai", "OPENAI!"):
        with pytest.raises(PluginLoadError, match="CHATPLUG_OPENAI_API_KEY"):
            fresh.register(make_plugin(), alias)
    fresh.register(make_plugin(), "Open.AI")  # CHATPLUG_OPEN_AI_*: its own key
    assert [p.name for p in fresh.providers()] == ["Open.AI", "OpenAI"]


class PluginAbort(BaseException):
    """A plugin's own BaseException subclass (issue 8, hole 13)."""


@pytest.mark.parametrize("error", [RuntimeError, PluginAbort])
def test_metadata_that_raises_when_read_is_a_load_error(error: type[BaseException]) -> None:
    class Exploding:
        url = "http://127.0.0.1:9"
        supports_stream = True
        needs_auth = False

        @property
        def model(self) -> list[str]:
            raise error("config file missing")

    fresh = Registry(entry_points=())
    with pytest.raises(PluginLoadError, match=f"{error.__name__}: config file missing"):
        fresh.register(Exploding(), "Exploding")
    fresh.register(make_plugin(), "Fine")
    assert [p.name for p in fresh.providers()] == ["Fine"]


def test_reserved_parameter_names_are_rejected() -> None:
    @hookimpl
    def create_completion(model, messages, stream, timeout: float = 1.0):  # type: ignore[no-untyped-def]
        yield "x"

    with pytest.raises(PluginLoadError, match="reserved"):
        Registry(entry_points=()).register(make_plugin(create_completion=create_completion), "R")


def test_completion_goes_to_one_provider_only() -> None:
    calls: list[str] = []

    def plugin(tag: str) -> SimpleNamespace:
        @hookimpl
        def create_completion(model, messages, stream):  # type: ignore[no-untyped-def]
            calls.append(tag)
            yield tag

        return make_plugin(create_completion=create_completion)

    fresh = Registry(entry_points=())
    fresh.register(plugin("a"), "A")
    fresh.register(plugin("b"), "B")
    assert fresh.get("B").create(messages=[{"role": "user", "content": "x"}]) == "b"
    assert calls == ["b"]
    fresh.plugin_manager.check_pending()


def test_only_declared_injected_arguments_are_passed(chatplug_server: ScriptedServer) -> None:
    seen: dict[str, object] = {}

    @hookimpl
    def create_completion(model, messages, stream, api_key):  # type: ignore[no-untyped-def]
        seen.update(model=model, stream=stream, api_key=api_key)
        yield "x"

    fresh = Registry(entry_points=())
    fresh.register(make_plugin(create_completion=create_completion), "Keyed")
    fresh.get("Keyed").create(messages=[{"role": "user", "content": "x"}])
    assert seen == {"model": "m", "stream": False, "api_key": None}
