"""chatplug-llamacpp runs chatplug's conformance suite against itself."""

from __future__ import annotations

from chatplug.testing.conformance import ALL_EVENTS, ProviderConformance


class TestLlamaCppConformance(ProviderConformance):
    provider_name = "LlamaCpp"
    model = "local"  # llama-server accepts any name for the model it loaded
    reports = ALL_EVENTS
