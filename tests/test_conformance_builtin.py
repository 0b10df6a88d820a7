"""The built-in providers pass the same conformance suite third-party packages run."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from chatplug import hookimpl
from chatplug.providers import gravityengine
from chatplug.testing.conformance import ALL_EVENTS, ProviderConformance


class TestGravityEngineConformance(ProviderConformance):
    provider_name = "GravityEngine"
    reports = ALL_EVENTS


class TestOpenAIConformance(ProviderConformance):
    provider_name = "OpenAI"
    model = "gpt-4o-mini"
    url_suffix = "/v1"
    reports = ALL_EVENTS


class TestUninstalledProviderConformance(ProviderConformance):
    """A package can run the suite before it is installed: ``plugin`` is registered directly."""

    provider_name = "NotInstalled"
    plugin = gravityengine


@hookimpl
def _text_only(model: str, messages: list, stream: bool, url: str,  # type: ignore[type-arg]
               http: Any) -> Iterator[str]:
    """A provider written for chatplug 0.1: it yields text and nothing else."""
    from chatplug.wire import openai

    for piece in openai.chat(http, url + "/v1/chat/completions", model=model,
                             messages=messages, stream=stream):
        assert isinstance(piece, str)
        yield piece


class TestTextOnlyProviderConformance(ProviderConformance):
    """A provider that reports no events still passes (``reports`` left empty)."""

    provider_name = "TextOnly"
    plugin = SimpleNamespace(url="http://127.0.0.1:9", model=["text-1"], supports_stream=True,
                             needs_auth=False, create_completion=_text_only)
