"""The gateway's HTTP/1.1 connections: uvicorn's httptools protocol, bounded.

uvicorn bounds neither the request head a client sends nor the time it takes
to send it, nor the number of connections: one connection sending endless
headers grows memory without bound, and a thousand that dribble their
headers hold every file the process may open.  :class:`GatewayProtocol` adds,
per worker (:class:`Limits`, from the gateway's settings):

- **the head**: at most ``max_header_bytes`` (request line and headers) and
  ``max_headers`` header lines; beyond, 431.  Bytes are counted as they
  arrive, so an unfinished head is refused as soon as it is too long;
- **the time**: a request (head and body) must arrive within
  ``request_timeout`` seconds of its first byte (of the connection, for the
  first request); then 408.  An idle connection between requests is
  uvicorn's keep-alive timeout's;
- **connections**: at most ``max_connections`` open; the next one is answered
  503 at once, before its request is read.

Two savings on every request, for the gateway's hot path (docs/performance.md):

- **one write per whole reply**: a response framed by ``Content-Length`` leaves in
  one write, head and body together (:class:`OneWrite`), so its client is woken
  once, not once for the head and again for the body;
- **the disconnect is told, not polled**: every request's scope holds the
  connection's :class:`~.shutdown.Hangup` (:data:`ON_DISCONNECT`); an endpoint that
  must stop when its client goes away listens there instead of running a task per
  request that awaits ``receive()``.  It is told when the connection is lost, also
  the requests queued behind another (pipelined), which uvicorn's own
  ``http.disconnect`` never reaches.  Under another ASGI server the entry is absent
  and the endpoint listens as ASGI says.

A request refused while an earlier one on the same connection is still being
answered (a pipelined head too large, a next request that dribbles) is answered
after that reply is complete, never inside it, and the earlier request goes on.

Each refusal is written here, in OpenAI's error envelope with
``Connection: close``; then the connection is half-closed and whatever the
client still sends is read and dropped for up to :data:`LINGER` seconds, so
that the client reads the answer rather than a reset.

``chatplug serve`` runs it (``http="chatplug.server.protocol:GatewayProtocol"``,
limits from ``CHATPLUG_SERVER_*``); :func:`protocol_for` makes one with the
limits of given settings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import GatewayError
from .shutdown import ON_DISCONNECT, Hangup

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from ..gateway_settings import ServerSettings

__all__ = ["LINGER", "ON_DISCONNECT", "GatewayProtocol", "Limits", "OneWrite",
           "protocol_for"]

#: Seconds a refused connection is read and drained before it is closed.
LINGER = 1.0


@dataclass(frozen=True)
class Limits:
    """What one client may hold of a worker."""

    max_connections: int
    max_header_bytes: int
    max_headers: int
    request_timeout: float

    @classmethod
    def of(cls, settings: ServerSettings) -> Limits:
        return cls(max_connections=settings.max_connections,
                   max_header_bytes=settings.max_header_bytes,
                   max_headers=settings.max_headers,
                   request_timeout=settings.request_timeout)


def _process_limits() -> Limits:
    from ..gateway_settings import load_server_settings

    return Limits.of(load_server_settings())


def _response(error: GatewayError) -> bytes:
    body = error.encoded()
    lines = [STATUS_LINE[error.status]]
    lines.extend(name + b": " + value + b"\r\n" for name, value in error.headers)
    lines.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    lines.append(body)
    return b"".join(lines)


class OneWrite:
    """The transport a request's cycle writes to until its head is out: a head framed by
    ``Content-Length`` is held until the body's first write and leaves with it.

    Once the head is out (with its body, or a chunked head at once) the cycle is handed
    the socket's transport back, so a stream's pieces pay nothing here.  ``100 Continue``
    is written at once; :meth:`flush` writes a head still held (a ``HEAD`` request's, a
    response without body), and the protocol calls it when each response completes.
    """

    __slots__ = ("_cycle", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._cycle: Any = None

    def arm(self, cycle: Any) -> None:
        """Stand between ``cycle`` and the socket until its head is out."""
        self._cycle = cycle
        cycle.transport = self

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._release()
            self._transport.write(held + data)
        elif data[:5] == b"HTTP/" and b"\r\ncontent-length: " in data:
            # uvicorn writes a head in one piece, its names lower-cased.
            self._held = data
        else:
            if not data.startswith(b"HTTP/1.1 100 "):
                self._release()  # a chunked head: the pieces go straight to the socket
            self._transport.write(data)

    def _release(self) -> None:
        cycle = self._cycle
        if cycle is not None:
            self._cycle = None
            cycle.transport = self._transport

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)
        self._release()

    def close(self) -> None:
        cycle = self._cycle
        if cycle is not None and not cycle.response_complete:
            # The app failed after its head: better no answer than a head without its
            # body (the client sees the connection end, not a truncated reply).
            self._held = None
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`Limits` on head size, time and connections."""

    #: This class's limits; ``None``: read from the environment once per process.
    limits: ClassVar[Limits | None] = None
    _from_environment: ClassVar[Limits | None] = None

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = self.limits
        if limits is None:
            limits = GatewayProtocol._from_environment
            if limits is None:
                limits = GatewayProtocol._from_environment = _process_limits()
        self._limits = limits
        #: Bytes received since the current request's head began (counted while in it).
        self._received = 0
        self._in_head = True
        self._refused = False
        #: A request ended inside the current read: a head after it was not counted.
        self._ended_in_read = False
        self._timer: asyncio.TimerHandle | None = None
        self._writer: OneWrite | None = None
        self._hangup = Hangup()
        #: A refusal waiting for the reply being written to complete.
        self._deferred: GatewayError | None = None

    # -- the connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._writer = OneWrite(transport)
        if len(self.connections) > self._limits.max_connections:
            self._refuse(GatewayError(
                503, f"the gateway is at its limit of {self._limits.max_connections} open "
                     "connections (CHATPLUG_SERVER_MAX_CONNECTIONS); retry shortly.",
                code="too_many_connections", retry_after=1))
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        self._hangup.hang_up()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the answer is out: what still comes is dropped
        if self._in_head:
            self._received += len(data)
        self._ended_in_read = False
        super().data_received(data)
        if self._in_head and self._received > self._limits.max_header_bytes:
            self._head_too_large()

    # -- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        limits = self._limits
        if len(self.headers) > limits.max_headers:
            self._head_too_large()
            return
        if self._received > limits.max_header_bytes or self._ended_in_read:
            # The count included body bytes that came in the same read, or missed this
            # head's first bytes (they came with the end of the request before): measure.
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > limits.max_header_bytes:
                self._head_too_large()
                return
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # not an upgrade
            self.scope[ON_DISCONNECT] = self._hangup  # type: ignore[literal-required]
            # A request queued behind another (pipelined) goes as uvicorn sends it.
            if not self.pipeline and self._writer is not None:
                self._writer.arm(cycle)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._disarm()
        self._in_head = True
        self._received = 0
        self._ended_in_read = True

    def on_response_complete(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        super().on_response_complete()
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            self._answer(deferred)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a parse error after a refusal has been answered already
            super().send_400_response(msg)

    # -- limits ------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(self._limits.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._refused:
            return
        cycle = self.cycle
        if not self._in_head and cycle is not None and cycle.response_started:
            self.transport.close()  # the app answered already: nothing more can be said
            return
        self._refuse(GatewayError(
            408, f"the request did not arrive in full within "
                 f"{self._limits.request_timeout:g} seconds "
                 "(CHATPLUG_SERVER_REQUEST_TIMEOUT); send it at once.",
            code="request_timeout", type="invalid_request_error", retry=False))

    def _head_too_large(self) -> None:
        limits = self._limits
        self._refuse(GatewayError(
            431, f"the request head is larger than the gateway's limit of "
                 f"{limits.max_header_bytes} bytes and {limits.max_headers} header lines "
                 "(CHATPLUG_SERVER_MAX_HEADER_BYTES, CHATPLUG_SERVER_MAX_HEADERS).",
            code="request_header_too_large", type="invalid_request_error", retry=False))

    def _refuse(self, error: GatewayError) -> None:
        """Answer ``error``, stop serving this connection, drain it, then close it.

        A refused request that follows one still being answered (pipelined, or sent
        while the reply streams) is answered once that reply is complete; the earlier
        request goes on.  Requests queued behind the refused one get no answer: the
        connection ends.
        """
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self._disarm()
        self.pipeline.clear()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.scope is not self.scope:  # an earlier request's, still being answered
                self._deferred = error
                return
            # The app still reading this request hears a disconnect and answers nothing.
            cycle.disconnected = True
            cycle.message_event.set()
            self._hangup.hang_up()
        self._answer(error)

    def _answer(self, error: GatewayError) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(_response(error))
        if transport.can_write_eof():
            transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER, transport.close)


def protocol_for(settings: ServerSettings) -> type[GatewayProtocol]:
    """A :class:`GatewayProtocol` with the limits of ``settings``, for ``uvicorn.Config(http=)``."""
    return type("GatewayProtocol", (GatewayProtocol,), {"limits": Limits.of(settings)})
