"""Registries pointed at a test server, closed together when a test ends."""

from __future__ import annotations

from types import TracebackType

from pydantic import SecretStr

from chatplug import Registry
from chatplug.settings import load_settings

from .conftest import PLANTED_KEY

#: Short waits, so that faults end in seconds.
FAST = {"retry_backoff": 0.05, "read_timeout": 2.0, "timeout": 10.0}


class Registries:
    """``connect(url, **settings)``: a registry whose GravityEngine uses ``url`` and OpenAI
    ``url + "/v1"`` with the planted key; :data:`FAST` unless ``settings`` say otherwise.
    Leaving the ``with`` block closes every registry made."""

    def __init__(self) -> None:
        self._made: list[Registry] = []

    def __call__(self, url: str, **settings: object) -> Registry:
        values: dict[str, object] = {
            "provider_urls": {"gravityengine": url, "openai": url + "/v1"},
            "provider_api_keys": {"openai": SecretStr(PLANTED_KEY)},
            **FAST,
        }
        values.update(settings)
        registry = Registry(settings=load_settings(**values))
        self._made.append(registry)
        return registry

    def __enter__(self) -> Registries:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        for registry in self._made:
            registry.close()
