"""OpenTelemetry traces of chatplug's calls, with the GenAI semantic conventions.

:class:`OTelObserver` is an observer (register it like any other) that makes one span
per upstream attempt; the gateway uses it under a span per request
(:mod:`chatplug.server.traces`).  Nothing here imports OpenTelemetry until it is used:
``pip install ".[otel]"`` brings the API and the SDK.  :func:`configured_provider` says
which tracer provider the gateway uses, if any (see its rules)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .semconv import ATTRIBUTES

if TYPE_CHECKING:
    from .observer import OTelObserver
    from .setup import configured_provider

__all__ = ["ATTRIBUTES", "OTelObserver", "configured_provider"]


def __getattr__(name: str) -> Any:
    # Lazily: importing chatplug.telemetry must not import opentelemetry.
    if name == "OTelObserver":
        from .observer import OTelObserver

        return OTelObserver
    if name == "configured_provider":
        from .setup import configured_provider

        return configured_provider
    raise AttributeError(f"module 'chatplug.telemetry' has no attribute {name!r}")
