"""The SSE response of one streamed completion, written piece by piece as pieces arrive.

**The status is committed at the first piece.**  Until the first text, tool
call, reasoning or finish arrives (a ``Meta`` or ``Usage`` event does not
commit), nothing is sent, so a failure is still a real error status and a
route can still fail over.  After it, a failure is sent in-band, in the wire's
own form (chat completions: ``data: {"error": {...}}`` and no ``[DONE]``;
Anthropic: an ``error`` event; Responses: ``response.failed``), never a clean end.

The pieces that arrived together (one read of the upstream reply) go out in one
ASGI send, as soon as they are decoded; nothing is held back waiting for more; ``Cache-Control:
no-cache`` and ``X-Accel-Buffering: no`` keep proxies such as nginx from
buffering the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from ..calls.run import COMMITTING

if TYPE_CHECKING:
    from starlette.types import Send

    from ..events import Event
    from .errors import GatewayError

__all__ = ["STREAM_HEADERS", "Encoder", "EventStream"]


class Encoder(Protocol):
    """A wire's stream writer (:class:`chatplug.wire.encode.ChunkEncoder`, the Messages
    and Responses encoders): bytes for the start, each item, a good end, a failure."""

    def start(self) -> bytes: ...

    def content(self, text: str) -> bytes: ...

    def encode(self, item: object) -> bytes: ...

    def end(self) -> bytes: ...

    def failure(self, error: GatewayError) -> bytes: ...

STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class EventStream:
    """Relays one reply's events to the client as ``chat.completion.chunk`` events.

    :param headers: called once, at the commit, for the response's extra headers.
    :param before_end: awaited once the reply is whole, before its last bytes are sent.
    """

    __slots__ = ("_before_end", "_encoder", "_headers", "_pinger", "_send", "_sent",
                 "committed", "ended", "failed")

    def __init__(self, send: Send, encoder: Encoder,
                 headers: Callable[[], list[tuple[bytes, bytes]]],
                 before_end: Callable[[], Awaitable[None]] | None = None) -> None:
        self._send = send
        self._encoder = encoder
        self._headers = headers
        #: Runs when the reply is whole, before its last bytes go out (a stored response
        #: is written here, so that a client that saw the end can follow it up).
        self._before_end = before_end
        self.committed = False
        self.ended = False
        self.failed = False
        #: Sends so far, for the pinger: a wire whose encoder has ``ping()`` (Anthropic's)
        #: gets one after every ``PING_SECONDS`` in which nothing was sent.
        self._sent = 0
        self._pinger: asyncio.Task[None] | None = None

    async def _commit(self, first: bytes) -> None:
        self.committed = True
        await self._send({"type": "http.response.start", "status": 200,
                          "headers": STREAM_HEADERS + self._headers()})
        await self._send({"type": "http.response.body", "body": first, "more_body": True})
        ping = getattr(self._encoder, "ping", None)
        if ping is not None:
            self._pinger = asyncio.get_running_loop().create_task(
                self._ping(ping(), float(getattr(self._encoder, "PING_SECONDS", 10.0))))

    async def _ping(self, ping: bytes, interval: float) -> None:
        seen = self._sent
        with contextlib.suppress(OSError, RuntimeError):  # the client is gone: the relay ends
            while True:
                await asyncio.sleep(interval)
                if self.ended:
                    return
                if self._sent == seen:
                    await self._send({"type": "http.response.body", "body": ping,
                                      "more_body": True})
                seen = self._sent

    async def _end(self, last: bytes) -> None:
        self.ended = True
        if self._pinger is not None:
            self._pinger.cancel()
        await self._send({"type": "http.response.body", "body": last, "more_body": False})

    def close(self) -> None:
        """Stop the pinger (the relay is over, whether or not its end was sent)."""
        if self._pinger is not None:
            self._pinger.cancel()

    async def relay(self, batches: AsyncIterator[list[str | Event]]) -> None:
        """Send every event, then the end (usage, ``[DONE]``).

        :param batches: the reply's events in lists of those that came together
            (:meth:`chatplug.AsyncStream.batches`): each list goes out in one send.
        :raises ChatplugError: whatever the call raised; :attr:`committed` tells the
            caller whether to answer with a status or :meth:`fail` in-band.
        """
        encoder = self._encoder
        send = self._send
        content = encoder.content
        encode = encoder.encode
        async for batch in batches:
            if not self.committed:
                first = self._before_commit(batch)
                if first is not None:
                    await self._commit(first)
                continue  # Meta or Usage only: remembered, nothing to send yet
            # The hot path: the pieces one read brought, one send.
            data = b"".join([content(item) if type(item) is str and item else encode(item)
                             for item in batch])
            if data:
                self._sent += 1
                await send({"type": "http.response.body", "body": data, "more_body": True})
        if not self.committed:
            await self._commit(encoder.start())  # an empty reply is still a reply
        last = encoder.end()
        if self._before_end is not None:
            await self._before_end()
        await self._end(last)

    def _before_commit(self, batch: list[str | Event]) -> bytes | None:
        """What a batch sends before the status is committed: nothing (None) until its
        first text, tool call, reasoning or finish, then the start and everything from it."""
        encoder = self._encoder
        for index, item in enumerate(batch):
            if (type(item) is str and item) or isinstance(item, COMMITTING):
                parts = [encoder.start()]
                for later in batch[index:]:
                    parts.append(encoder.content(later) if type(later) is str and later
                                 else encoder.encode(later))
                return b"".join(parts)
            encoder.encode(item)  # Meta or Usage: remembered, nothing to send yet
        return None

    async def fail(self, error: GatewayError) -> None:
        """End a committed stream with the wire's in-band error (never a clean end)."""
        if not self.ended:
            self.failed = True
            await self._end(self._encoder.failure(error))
