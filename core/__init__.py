"""chatplug: a pluggable multi-provider chat-completion framework.

::

    from chatplug import registry
    text = registry.get("GravityEngine").create(messages=[{"role": "user", "content": "Hi"}])

Providers are pluggy plugins found through the ``chatplug.providers`` entry
points.  Importing chatplug is cheap: requests and pydantic are imported only
when a request or a setting needs them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .calls.completion import Completion, ToolCall
from .calls.params import Parameter, Range
from .calls.provider import Provider
from .calls.stream import Stream
from .errors import (
    AmbiguousModelError,
    AuthenticationError,
    ChatplugError,
    ConfigurationError,
    ContentFilteredError,
    InvalidRequestError,
    ModelNotSupportedError,
    PluginLoadError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderNotFoundError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    RouteFailedError,
    StorageError,
    StreamInterruptedError,
    UntrustedDotenvError,
)
from .events import (
    Finish,
    Meta,
    Reasoning,
    ReasoningSignature,
    RedactedReasoning,
    ToolCallDelta,
    Usage,
)
from .hooks import hookimpl, hookspec
from .plugins.registry import ENTRY_POINT_GROUP, Registry

if TYPE_CHECKING:
    from .calls.aio import AsyncStream
    from .routes.route import Route
    from .settings import Settings
    from .transport.client import HTTPClient, Transport
    from .transport.reply import Reply

__version__ = "0.1.0"

__all__ = [
    "ENTRY_POINT_GROUP",
    "AmbiguousModelError",
    "AsyncStream",
    "AuthenticationError",
    "ChatplugError",
    "Completion",
    "ConfigurationError",
    "ContentFilteredError",
    "Finish",
    "HTTPClient",
    "InvalidRequestError",
    "Meta",
    "ModelNotSupportedError",
    "Parameter",
    "PluginLoadError",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderNotFoundError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "Range",
    "RateLimitError",
    "Reasoning",
    "ReasoningSignature",
    "RedactedReasoning",
    "Registry",
    "Reply",
    "Route",
    "RouteFailedError",
    "Settings",
    "StorageError",
    "Stream",
    "StreamInterruptedError",
    "ToolCall",
    "ToolCallDelta",
    "Transport",
    "UntrustedDotenvError",
    "Usage",
    "__version__",
    "hookimpl",
    "hookspec",
    "registry",
]

# A library never prints: without the application's own logging setup, warnings
# (a plugin that failed to load) stay silent instead of reaching stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())

#: The default registry: reads the installed entry points once, on first use.
registry = Registry()

_LAZY = {
    "Route": "routes.route",
    "AsyncStream": "calls.aio",
    "HTTPClient": "transport.client",
    "Reply": "transport.reply",
    "Transport": "transport.client",
    "Settings": "settings",
}


def __getattr__(name: str) -> Any:
    # These pull in requests or pydantic; import them only when asked for.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'chatplug' has no attribute {name!r}")
