"""The request id and the access log: one pure ASGI middleware, outermost.

Every response carries ``x-request-id`` (the client's, when it sent a sane
one, else a new one), and every request leaves one line on the
``chatplug.server.access`` logger: method, path, status, provider, model,
duration and request id.  Never a key, never message text: the endpoints
report only the provider and model through :data:`SCOPE_KEY`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SCOPE_KEY", "AccessLog", "note"]

logger = logging.getLogger("chatplug.server.access")

#: The scope entry endpoints fill with what the access line names.
SCOPE_KEY = "chatplug.request"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_SHOWN = 100


def note(scope: Scope, **fields: str | None) -> None:
    """Record ``provider``/``model`` of this request for its access line."""
    info = scope.get(SCOPE_KEY)
    if info is not None:
        info.update(fields)


def _shown(value: str | None) -> str:
    if value is None:
        return "-"
    # A client's text: no line breaks or control characters into the log.
    return repr(value[:_SHOWN])[1:-1].replace(" ", "\\x20") or "-"


class AccessLog:
    """Adds ``x-request-id`` and logs one line per HTTP request when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
                request_id = value.decode()
        if request_id is None:
            request_id = os.urandom(8).hex()
        info: dict[str, Any] = {"request_id": request_id, "provider": None, "model": None}
        scope[SCOPE_KEY] = info
        header = (b"x-request-id", request_id.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logger.info("%s %s %s provider=%s model=%s %.1fms request_id=%s",
                        scope["method"], _shown(scope["path"]), status or "-",
                        _shown(info["provider"]), _shown(info["model"]),
                        (time.perf_counter() - started) * 1000, request_id)
