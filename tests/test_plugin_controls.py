"""CHATPLUG_PLUGINS (allow-list), CHATPLUG_DISABLED_PROVIDERS (block list): effects, timing."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatplug import PluginLoadError, ProviderNotFoundError, Registry
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

BUILTINS = {"GravityEngine", "OpenAI"}


@dataclass(frozen=True)
class Site:
    root: Path
    modules: dict[str, str]  # entry-point name -> module


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    """Two third-party providers and an observer, each in its own distribution."""
    root = tmp_path / "site"
    modules = {"Echo": unique("echo"), "Other": unique("other"), "spy": unique("spy")}
    make_distribution(root, "chatplug-echo", {modules["Echo"]: PROVIDER},
                      {PROVIDER_GROUP: {"Echo": modules["Echo"]}})
    make_distribution(root, "other-dist", {modules["Other"]: PROVIDER},
                      {PROVIDER_GROUP: {"Other": modules["Other"]}})
    make_distribution(root, "chatplug-spy", {modules["spy"]: OBSERVER},
                      {OBSERVER_GROUP: {"spy": modules["spy"]}})
    monkeypatch.syspath_prepend(str(root))
    return Site(root, modules)


def registry_over(site_root: Path, **settings: object) -> Registry:
    """The built-ins plus the site's plugins, as an installed environment would have them."""
    from importlib.metadata import entry_points

    builtins = [ep for ep in entry_points(group=PROVIDER_GROUP) if ep.name in BUILTINS]
    return Registry(
        settings=load_settings(**settings) if settings else None,
        entry_points=[*builtins, *installed(site_root, PROVIDER_GROUP)],
        observer_entry_points=installed(site_root, OBSERVER_GROUP),
    )


def names(registry: Registry) -> set[str]:
    return {p.name for p in registry.providers()}


def test_unset_allows_every_plugin(site: Site) -> None:
    registry = registry_over(site.root)
    assert names(registry) == BUILTINS | {"Echo", "Other"}
    assert [o.name for o in registry.observers()] == ["spy"]
    assert registry.not_allowed == {}
    assert registry.disabled == {}


def test_empty_allows_only_the_builtins_and_imports_nothing_else(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATPLUG_PLUGINS", "")
    registry = registry_over(site.root)
    assert names(registry) == BUILTINS
    assert registry.observers() == []
    assert registry.not_allowed == {"Echo": "chatplug-echo", "Other": "other-dist",
                                    "spy": "chatplug-spy"}
    assert registry.errors == {}
    assert not set(site.modules.values()) & set(sys.modules), "a plugin left out was imported"
    with pytest.raises(ProviderNotFoundError,
                       match="'Echo' is installed \\(chatplug-echo\\) but not allowed by "
                             "CHATPLUG_PLUGINS; add 'Echo' or 'chatplug-echo' to it"):
        registry.get("echo")


@pytest.mark.parametrize("allowed", ["echo", " ECHO , spy", "chatplug_echo,chatplug-spy",
                                     "Chatplug.Echo"])
def test_names_match_entry_point_or_distribution_in_any_spelling(
    site: Site, monkeypatch: pytest.MonkeyPatch, allowed: str
) -> None:
    monkeypatch.setenv("CHATPLUG_PLUGINS", allowed)
    registry = registry_over(site.root)
    assert names(registry) == BUILTINS | {"Echo"}
    assert "Other" in registry.not_allowed
    assert site.modules["Other"] not in sys.modules
    assert ("spy" in [o.name for o in registry.observers()]) == ("spy" in allowed.lower())


def test_a_disabled_builtin_is_blocked_in_pluggy(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATPLUG_DISABLED_PROVIDERS", "gravityengine, Other,SPY")
    registry = registry_over(site.root)
    assert names(registry) == {"OpenAI", "Echo"}
    assert registry.disabled == {"GravityEngine": "chatplug", "Other": "other-dist",
                                 "spy": "chatplug-spy"}
    assert registry.plugin_manager.is_blocked("GravityEngine")
    assert registry.plugin_manager.is_blocked("observer:spy")
    assert site.modules["Other"] not in sys.modules
    assert site.modules["spy"] not in sys.modules
    with pytest.raises(ProviderNotFoundError, match="'GravityEngine' is disabled by "
                                                   "CHATPLUG_DISABLED_PROVIDERS; remove it"):
        registry.get("GravityEngine")
    with pytest.raises(PluginLoadError, match="disabled by CHATPLUG_DISABLED_PROVIDERS"):
        registry.register(object(), "gravityengine")
    assert registry.errors == {}


def test_explicit_settings_are_honoured(site: Site) -> None:
    registry = registry_over(site.root, disabled_providers="openai", plugins="other-dist")
    assert names(registry) == {"GravityEngine", "Other"}


def test_a_disabled_builtin_module_is_never_imported() -> None:
    probe = ("import sys\nfrom chatplug import registry\n"
             "print(sorted(p.name for p in registry.providers()))\n"
             "print('chatplug.providers.gravityengine' in sys.modules)")
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True,
        env={"PATH": "/usr/bin:/bin", "CHATPLUG_DISABLED_PROVIDERS": "GravityEngine"})
    listed, imported = result.stdout.splitlines()
    assert "GravityEngine" not in listed
    assert "OpenAI" in listed
    assert imported == "False"


def test_a_dotenv_file_sets_the_controls_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CHATPLUG_DISABLED_PROVIDERS=openai\n")  # cwd is tmp_path
    assert "OpenAI" not in {p.name for p in Registry().providers()}


def test_without_any_control_no_settings_are_read() -> None:
    code = ("import sys\nfrom chatplug import registry\nregistry.get('GravityEngine')\n"
            "print('pydantic' in sys.modules, registry._settings is None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True, env={"PATH": "/usr/bin:/bin"})
    assert result.stdout.split() == ["False", "True"]


def test_strict_mode_ignores_what_the_allow_list_keeps_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "strict-site"
    broken = unique("broken")
    make_distribution(root, "broken-dist", {broken: "raise RuntimeError('boom')\n"},
                      {PROVIDER_GROUP: {"Broken": broken}})
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("CHATPLUG_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="provider plugin 'Broken' failed to load"):
        registry_over(root).providers()
    monkeypatch.setenv("CHATPLUG_PLUGINS", "")
    assert names(registry_over(root)) == BUILTINS


def test_the_cli_lists_what_the_controls_kept_out(
    site: Site, chatplug_server: ScriptedServer
) -> None:
    env = {"PYTHONPATH": str(site.root), "CHATPLUG_DISABLED_PROVIDERS": "GravityEngine",
           "CHATPLUG_PLUGINS": "echo,chatplug-spy", "CHATPLUG_ECHO_URL": chatplug_server.url}
    table = run_cli("providers", env=env)
    assert table.returncode == 0, table.stderr
    assert "\nObservers: spy (chatplug-spy 1.2.3)\n" in table.stdout
    assert "\nDisabled (CHATPLUG_DISABLED_PROVIDERS): GravityEngine (chatplug)\n" in table.stdout
    skipped = next(line for line in table.stdout.splitlines() if line.startswith("Not in "))
    assert "Other (other-dist)" in skipped  # (and any example packages installed here)
    assert "Echo" not in skipped
    assert "Failed to load" not in table.stdout
    default = run_cli("chat", "hi", env=env)
    assert (default.returncode, default.stdout) == (1, "")
    assert default.stderr == ("chatplug: error: provider 'GravityEngine' is disabled by "
                              "CHATPLUG_DISABLED_PROVIDERS; remove it from that list to use it.\n")
    echo = run_cli("chat", "-p", "echo", "hi", env=env)
    assert (echo.returncode, echo.stdout) == (0, "You said: hi\n")
