"""Which tracer provider the gateway traces with: :func:`configured_provider`.

chatplug configures no exporter of its own.  In order:

1. The application (or ``opentelemetry-instrument``) installed an SDK tracer provider
   as OpenTelemetry's global one: the gateway uses it.
2. Else, with ``OTEL_TRACES_EXPORTER`` set (and not ``none``) and the SDK installed, it
   builds one from the SDK's standard variables as the SDK's own auto-configuration
   does: the resource from ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` (service
   name ``chatplug-gateway`` by default), the exporters ``OTEL_TRACES_EXPORTER`` names
   (the SDK's ``opentelemetry_traces_exporter`` entry points: ``console``, ``otlp`` with
   ``opentelemetry-exporter-otlp``...; each reads its own ``OTEL_EXPORTER_*``), a batch
   processor each (``OTEL_BSP_*``), and installs it as the global provider.
3. Else no tracing, and nothing of OpenTelemetry is imported.

``OTEL_SDK_DISABLED=true`` turns it all off.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["DEFAULT_SERVICE", "configured_provider"]

#: ``service.name`` when ``OTEL_SERVICE_NAME`` does not say.
DEFAULT_SERVICE = "chatplug-gateway"
_GROUP = "opentelemetry_traces_exporter"


def configured_provider() -> TracerProvider | None:
    """The SDK tracer provider to trace with, or ``None`` (see the module's rules).

    :raises ConfigurationError: ``OTEL_TRACES_EXPORTER`` is set but the SDK is not
        installed, or it names an exporter that is not installed.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [name.strip() for name in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")
             if name.strip() and name.strip().lower() != "none"]
    if not names and "opentelemetry.trace" not in sys.modules:
        return None  # nobody set up tracing: not even the API is imported
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        if not names:
            return None
        raise ConfigurationError(
            "OTEL_TRACES_EXPORTER is set but the OpenTelemetry SDK is not installed: "
            "pip install \".[otel]\" (or unset OTEL_TRACES_EXPORTER).") from None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    if not names:
        return None
    available = {point.name: point for point in entry_points(group=_GROUP)}
    missing = [name for name in names if name not in available]
    if missing:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER names {', '.join(missing)}, not installed (installed: "
            f"{', '.join(sorted(available)) or 'none'}); install its exporter package, "
            "e.g. opentelemetry-exporter-otlp for otlp.")
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", "")
    attributes = {} if named else {"service.name": DEFAULT_SERVICE}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(available[name].load()()))
    trace.set_tracer_provider(provider)
    return provider
