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

__all__ = ["SCOPE_KEY", "AccessLog", "LineFormatter", "note"]

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
            if logger.isEnabledFor(logging.INFO):
                # Formatted here, and handed to the handlers as a record: a record made by
                # logger.info() looks up the caller's frame, which no access line shows.
                line = (f"{scope['method']} {_shown(scope['path'])} {status or '-'} "
                        f"provider={_shown(info['provider'])} model={_shown(info['model'])} "
                        f"{(time.perf_counter() - started) * 1000:.1f}ms "
                        f"request_id={request_id}")
                logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, line,
                                                (), None))


class LineFormatter(logging.Formatter):
    """A :class:`logging.Formatter` that formats each second's time once: an access line
    per request otherwise pays ``time.strftime`` every time (``chatplug serve`` uses it)."""

    _second = -1
    _formatted = ""

    def formatTime(self, record: logging.LogRecord,
                   datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._formatted = time.strftime(self.default_time_format,
                                            self.converter(record.created))
            self._second = second
        return f"{self._formatted},{int(record.msecs):03d}"
