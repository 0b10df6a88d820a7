"""pytest fixtures for chatplug, registered through the ``pytest11`` entry point.

- ``chatplug_server``: a started :class:`ScriptedServer` on 127.0.0.1 that
  stops after the test (and by itself after two minutes at most).
- ``chatplug_registry``: a fresh :class:`chatplug.Registry` whose every
  installed provider points at ``chatplug_server``, with settings that ignore
  the environment's URLs and keys; every provider gets ``TEST_API_KEY``.
- ``chatplug_isolated``: no ``CHATPLUG_*``/``OPENAI_*`` variable of the
  developer's, a fresh temporary working directory (no ``.env``; an
  installed observer writing files writes there), and chatplug's own files
  (the keys file, the CLI's logs) in a temporary ``CHATPLUG_HOME`` (and XDG
  directories, for subprocesses that drop ``CHATPLUG_*``), never the developer's.
  Make it autouse in a conftest: ``def _isolated(chatplug_isolated): ...`` (see
  the example packages).

Provider authors: subclass :class:`chatplug.testing.conformance.ProviderConformance`
in a test module to run the conformance suite against your provider.  This
module stays light (no chatplug settings, no requests) because pytest imports
it in every test session of an environment where chatplug is installed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from .server import ScriptedServer

if TYPE_CHECKING:
    from chatplug import Registry

__all__ = ["SERVER_LIFETIME", "TEST_API_KEY", "chatplug_isolated", "chatplug_registry",
           "chatplug_server", "registry_for"]

#: Variables a developer's shell may hold that would leak into a test's settings.
DEVELOPER_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL")

#: A placeholder key for tests; it looks like no real provider's key.
TEST_API_KEY = "tk-test0-key-0000-chatplug"
SERVER_LIFETIME = 120.0


def registry_for(
    server: ScriptedServer,
    *,
    urls: Mapping[str, str] | None = None,
    api_keys: Mapping[str, str | None] | None = None,
    **settings: Any,
) -> Registry:
    """A fresh registry with every installed provider pointed at ``server``.

    The ``OpenAI`` provider gets ``server.url + "/v1"``, every other one
    ``server.url``, and every one the key :data:`TEST_API_KEY`.

    :param urls: ``{provider name: URL}`` for providers whose URL is not the
        server's root (``{"Acme": server.url + "/v1"}``); any provider name, any case.
    :param api_keys: ``{provider name: key}``; ``None`` removes that provider's key.
    :param settings: any other setting (``read_timeout=1``...).
    :raises ConfigurationError: a URL or setting is invalid.
    """
    from importlib.metadata import entry_points

    from chatplug import Registry
    from chatplug.naming import provider_slug
    from chatplug.settings import load_settings

    slugs = [provider_slug(ep.name) for ep in entry_points(group="chatplug.providers")]
    provider_urls = {slug: server.url for slug in slugs}
    provider_urls["openai"] = server.url + "/v1"
    keys: dict[str, str] = {slug: TEST_API_KEY for slug in slugs}
    for name, url in (urls or {}).items():
        provider_urls[provider_slug(name)] = url
    for name, key in (api_keys or {}).items():
        if key is None:
            keys.pop(provider_slug(name), None)
        else:
            keys[provider_slug(name)] = key
    values: dict[str, Any] = {"provider_urls": provider_urls, "provider_api_keys": keys}
    values.update(settings)
    return Registry(settings=load_settings(**values))


@pytest.fixture
def chatplug_server() -> Iterator[ScriptedServer]:
    """A scripted chat-completions server on 127.0.0.1."""
    with ScriptedServer(lifetime=SERVER_LIFETIME) as server:
        yield server


@pytest.fixture
def chatplug_registry(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    """A registry whose providers all talk to ``chatplug_server``."""
    registry = registry_for(chatplug_server)
    yield registry
    registry.close()


@pytest.fixture
def chatplug_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Tests never see the developer's keys, URLs or ``.env`` file."""
    import os

    for key in list(os.environ):
        if key.startswith("CHATPLUG_") or key in DEVELOPER_VARIABLES:
            monkeypatch.delenv(key)
    # Created only when something writes there (nothing does in the working directory).
    home = tmp_path.parent / f"{tmp_path.name}-home"
    monkeypatch.setenv("CHATPLUG_HOME", str(home / "chatplug"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.chdir(tmp_path)
