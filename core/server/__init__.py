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
    from .app import Gateway, create_app
    from .settings import ServerSettings, load_server_settings

__all__ = ["PREFIX", "Gateway", "ServerSettings", "create_app", "load_server_settings"]

#: The prefix of the gateway's own settings (``CHATPLUG_SERVER_API_KEYS``...).
PREFIX = "CHATPLUG_SERVER_"

_LAZY = {"Gateway": "app", "create_app": "app", "ServerSettings": "settings",
         "load_server_settings": "settings"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'chatplug.server' has no attribute {name!r}")
