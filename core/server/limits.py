"""The gateway's limits: request body size and completions in flight per worker.

Both refuse before anything is sent upstream: a body over the limit is 413
(declared by ``Content-Length`` or counted as it arrives, never buffered past
the limit); a request beyond ``max_concurrency`` completions in flight is 429
with ``Retry-After``, so a full gateway sheds load instead of queueing it
without bound.  The per-call deadline is chatplug's own ``CHATPLUG_TIMEOUT``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import GatewayError

if TYPE_CHECKING:
    from starlette.types import Receive, Scope

__all__ = ["Disconnected", "InFlight", "read_body"]

#: Seconds a client refused for a full gateway is asked to wait.
FULL_RETRY_AFTER = 1


class Disconnected(Exception):
    """The client went away before its request body arrived."""


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"the request body is larger than the gateway's limit of {limit} "
                             "bytes (CHATPLUG_SERVER_MAX_BODY_BYTES).",
                        code="request_too_large", retry=False)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes.

    :raises GatewayError: 413 beyond the limit.
    :raises Disconnected: the client disconnected first.
    """
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise GatewayError(400, "the Content-Length header is not a number.",
                                   code="invalid_request", retry=False) from None
            if declared > limit:
                raise _too_large(limit)
            break
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        data = message.get("body", b"")
        if data:
            size += len(data)
            if size > limit:
                raise _too_large(limit)
            parts.append(data)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


class InFlight:
    """Counts the completions in flight in this worker and refuses those beyond ``limit``."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def enter(self) -> None:
        """Take a slot.

        :raises GatewayError: 429 with ``Retry-After`` when all slots are taken.
        """
        if self.count >= self.limit:
            raise GatewayError(
                429, f"the gateway is at its limit of {self.limit} completions in flight; "
                     "retry shortly.",
                code="gateway_busy", retry_after=FULL_RETRY_AFTER)
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
