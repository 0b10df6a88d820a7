"""chatplug's OpenAI-compatible gateway (from the chatplug checkout: ``pip install ".[server]"``).

Every installed provider and route behind ``/v1/chat/completions`` and
``/v1/models``, for any OpenAI client::

    chatplug serve --port 8000
    uvicorn --factory chatplug.server:create_app   # or any ASGI server

See docs/gateway.md.  ``chatplug`` itself never imports this package, and the
package imports Starlette only when the app is asked for (so ``chatplug serve
--help`` works without the extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..gateway_settings import ServerSettings, load_server_settings
    from .app import Gateway, create_app

__all__ = ["PREFIX", "Gateway", "ServerSettings", "create_app", "load_server_settings"]

# The settings are declared beside the library's (chatplug.gateway_settings), so that
# chatplug.settings knows them without importing this package.
_LAZY = {"Gateway": ".server.app", "create_app": ".server.app",
         "ServerSettings": ".gateway_settings", "load_server_settings": ".gateway_settings",
         "PREFIX": ".gateway_settings"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], "chatplug"), name)
    raise AttributeError(f"module 'chatplug.server' has no attribute {name!r}")
