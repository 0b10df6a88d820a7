"""The built-in providers pass the same conformance suite third-party packages run."""

from __future__ import annotations

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
