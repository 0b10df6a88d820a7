"""A broken third-party plugin (provider or observer) never stops anything else:
not ``chatplug providers``, not ``chatplug chat`` with another provider, not
``registry.get`` of another provider."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import pytest

from chatplug import PluginLoadError, ProviderNotFoundError, ProviderResponseError, Registry
from chatplug import hookimpl as chatplug_hookimpl
from chatplug.settings import load_settings
from chatplug.testing import ScriptedServer

from .conftest import run_cli
from .distributions import (
    OBSERVER,
    OBSERVER_GROUP,
    PROVIDER,
    PROVIDER_GROUP,
    installed,
    make_distribution,
    unique,
)

MESSAGES = [{"role": "user", "content": "hello"}]

BROKEN_PROVIDERS = {
    "ImportFails": "import chatplug_no_such_module_xyz\n",
    "BadMetadata": PROVIDER.replace('supports_stream = True', 'supports_stream = "yes"'),
    "RaisesInHook": PROVIDER.replace("    from chatplug.wire import openai\n",
                                     "    raise RuntimeError('boom in the hook')\n"),
}
BROKEN_OBSERVERS = {
    "obs-import": "raise ImportError('observer cannot import')\n",
    "obs-misspelled": OBSERVER.replace("def chatplug_on_request", "def chatplug_on_reqest"),
    "obs-provider-hook": OBSERVER + "\n@hookimpl\ndef create_completion(model):\n    yield ''\n",
    "obs-nothing": "x = 1\n",
    "obs-raises": OBSERVER.replace('    EVENTS.append(("request", provider, model, stream))',
                                   "    raise RuntimeError('observer exploded')"),
}


@dataclass(frozen=True)
class Site:
    root: Path
    good_observer: str  # module name of the working observer


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    root = tmp_path / "site"
    good = unique("good_observer")
    make_distribution(root, "chatplug-echo", {"chatplug_echo_ok": PROVIDER},
                      {PROVIDER_GROUP: {"Echo": "chatplug_echo_ok"},
                       OBSERVER_GROUP: {"watcher": good}})
    (root / f"{good}.py").write_text(OBSERVER)
    for name, source in BROKEN_PROVIDERS.items():
        module = unique(name.lower())
        make_distribution(root, f"broken-{name.lower()}", {module: source},
                          {PROVIDER_GROUP: {name: module}})
    for name, source in BROKEN_OBSERVERS.items():
        module = unique(name.replace("-", "_"))
        make_distribution(root, f"broken-{name}", {module: source},
                          {OBSERVER_GROUP: {name: module}})
    monkeypatch.syspath_prepend(str(root))
    return Site(root, good)


def test_the_cli_lists_every_failure_and_still_chats(
    site: Site, chatplug_server: ScriptedServer
) -> None:
    env = {"PYTHONPATH": str(site.root), "CHATPLUG_GRAVITYENGINE_URL": chatplug_server.url,
           "CHATPLUG_RAISESINHOOK_URL": chatplug_server.url}
    listing = run_cli("providers", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    payload = json.loads(listing.stdout)
    assert {"GravityEngine", "OpenAI", "Echo", "RaisesInHook"} <= {
        p["name"] for p in payload["providers"]}
    assert {"watcher", "obs-raises"} <= {o["name"] for o in payload["observers"]}
    errors = payload["errors"]
    assert {"ImportFails", "BadMetadata", "obs-import", "obs-misspelled", "obs-provider-hook",
            "obs-nothing"} <= set(errors)
    assert "supports_stream must be True or False" in errors["BadMetadata"]
    assert errors["obs-import"].startswith("observer: importing ")
    assert errors["obs-import"].endswith("failed: ImportError: observer cannot import")
    assert "'chatplug_on_reqest' is not a chatplug hook (did you mean 'chatplug_on_request'" \
        in errors["obs-misspelled"]
    assert "must not implement create_completion" in errors["obs-provider-hook"]
    assert "implements no observer hook" in errors["obs-nothing"]

    table = run_cli("providers", env=env)
    assert table.returncode == 0
    assert "Failed to load:\n" in table.stdout
    assert "  obs-nothing: observer: implements no observer hook" in table.stdout
    assert "Traceback" not in table.stdout + table.stderr

    # The observer that raises on every request is logged and ignored; chat goes on.
    chat = run_cli("chat", "-p", "GravityEngine", "hello", env=env)
    assert (chat.returncode, chat.stdout) == (0, "You said: hello\n")
    assert "Traceback" not in chat.stderr
    failing = run_cli("chat", "-p", "RaisesInHook", "hello", env=env)
    assert failing.returncode == 1
    assert failing.stderr.startswith("chatplug: error: RaisesInHook: the provider failed with "
                                     "RuntimeError: boom in the hook.")
    assert "This is a bug in the plugin broken-raisesinhook 1.2.3" in failing.stderr


def test_in_process_other_providers_work_and_observers_hear_them(
    site: Site, chatplug_server: ScriptedServer
) -> None:
    builtins = [ep for ep in entry_points(group=PROVIDER_GROUP) if ep.name == "GravityEngine"]
    settings = load_settings(provider_urls={"gravityengine": chatplug_server.url,
                                            "echo": chatplug_server.url})
    registry = Registry(settings=settings,
                        entry_points=[*builtins, *installed(site.root, PROVIDER_GROUP)],
                        observer_entry_points=installed(site.root, OBSERVER_GROUP))
    assert registry.get("GravityEngine").create(messages=MESSAGES) == "You said: hello"
    assert registry.get("echo").create(messages=MESSAGES, stream=True).__next__() == "You"
    with pytest.raises(ProviderNotFoundError, match="'ImportFails' is installed but failed"):
        registry.get("ImportFails")
    with pytest.raises(ProviderResponseError, match="boom in the hook"):
        registry.get("RaisesInHook").create(messages=MESSAGES)
    watcher = __import__(site.good_observer)
    assert ("request", "GravityEngine", "gpt-3.5-turbo-16k", False) in watcher.EVENTS
    assert ("response", "GravityEngine", 1, "complete") in watcher.EVENTS
    registry.close()


def test_register_observer_checks_the_contract() -> None:
    @chatplug_hookimpl
    def chatplug_on_error(provider, error):  # type: ignore[no-untyped-def]
        pass

    @chatplug_hookimpl
    def chatplug_on_requst(provider):  # type: ignore[no-untyped-def]
        pass

    registry = Registry(entry_points=())
    good = registry.register_observer(SimpleNamespace(chatplug_on_error=chatplug_on_error),
                                      "errors-only")
    assert good.hooks == ("chatplug_on_error",)
    assert [o.name for o in registry.observers()] == ["errors-only"]
    with pytest.raises(PluginLoadError, match="already taken"):
        registry.register_observer(SimpleNamespace(chatplug_on_error=chatplug_on_error),
                                   "ERRORS-ONLY")
    with pytest.raises(PluginLoadError, match="did you mean 'chatplug_on_request'"):
        registry.register_observer(SimpleNamespace(chatplug_on_requst=chatplug_on_requst), "m")
    assert [o.name for o in registry.observers()] == ["errors-only"]
    # An observer may share a provider's name: pluggy knows it as "observer:<name>".
    assert registry.plugin_manager.get_plugin("observer:errors-only") is not None


def test_a_module_getattr_that_raises_never_stops_the_cli(tmp_path: Path,
                                                          chatplug_server: ScriptedServer) -> None:
    site = tmp_path / "site"
    source = PROVIDER.replace('url = "http://127.0.0.1:9"\n', "") + (
        "\ndef __getattr__(name):\n    raise RuntimeError('config file missing')\n")
    module = unique("getattr_bomb")
    make_distribution(site, "chatplug-bomb", {module: source},
                      {PROVIDER_GROUP: {"Bomb": module}})
    env = {"PYTHONPATH": str(site), "CHATPLUG_GRAVITYENGINE_URL": chatplug_server.url}
    listing = run_cli("providers", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "Bomb: reading its metadata failed: RuntimeError: config file missing" in listing.stdout
    chat = run_cli("chat", "hi", env=env)
    assert (chat.returncode, chat.stdout) == (0, "You said: hi\n")
