"""One keep-alive connection and the response being read on it: :class:`Connection`.

An asyncio protocol feeding httptools' response parser.  It keeps http.client's
limits (the sync transport's, with its words), never reads bytes after the end
of a reply as the next one, and wakes the one reader waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any

from ..connections import MAX_INFORMATIONAL
from ..failures import ConnectFailed, IncompleteBody, MalformedReply
from ..reply import DRAIN_BYTES, DRAIN_SECONDS

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["HIGH_WATER", "MAX_HEADERS", "MAX_LINE", "Connection", "Headers", "available",
           "on_loop"]

#: Body bytes buffered for a reader that is behind before the socket stops being read.
HIGH_WATER = 256 * 1024
#: http.client's limits (the sync transport's), with its words when they are passed.
MAX_HEADERS = 100
MAX_LINE = 65536


class _Stray(Exception):
    """Bytes of a second response after the reply ended; never leaves this module."""


class _TooMany(Exception):
    """More headers (or interim answers) than allowed; never leaves this module."""

_available: bool | None = None


def available() -> bool:
    """Whether the parser is installed (``chatplug[server]``)."""
    global _available
    if _available is None:
        try:
            import httptools  # noqa: F401
        except ImportError:
            _available = False
        else:
            _available = True
    return _available


def on_loop(loop: asyncio.AbstractEventLoop, function: Any, *args: Any) -> None:
    """Run ``function`` on ``loop``: now if this is its thread, else as soon as it can."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        function(*args)
    else:
        with contextlib.suppress(RuntimeError):  # a closed loop: its connections are gone
            loop.call_soon_threadsafe(function, *args)


class Headers(dict[str, str]):
    """Response headers; names lower-cased, looked up in any case."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class Connection(asyncio.Protocol):
    """One keep-alive connection and the response being read on it."""

    def __init__(self, pool: Pool, key: tuple[str, str, int]) -> None:
        import httptools

        self.pool = pool
        self.loop = pool.loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self._parser_class = httptools.HttpResponseParser
        self._parse_errors = (httptools.HttpParserError,)
        self._upgrade = httptools.HttpParserUpgrade
        self.parser: Any = None
        self.waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = 0.0
        self.lost = False
        self._reset()

    def _reset(self) -> None:
        parser = self.parser = self._parser_class(self)
        # As lenient as http.client (the sync transport) where that is safe for a client:
        # bare LF line ends, and chunked winning over a Content-Length sent beside it (such
        # a connection is not reused).
        parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True,
                                        lenient_chunked_length=True)
        self.status = 0
        self.reason = ""
        self.headers = Headers()
        self._fields: dict[str, list[str]] = {}
        self._header_count = 0
        self._line_bytes = 0
        self._interim = 0
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.framed = True
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.got_bytes = False
        self.error: Exception | None = None
        self.draining = -1  # bytes a closed reply may still discard before it is reusable
        self._paused = False

    # -- asyncio's side ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they behave as one.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.complete and self.draining < 0:
            # Bytes after the end of the reply (a second response, junk): nothing was asked
            # for them, and the connection can no longer be trusted to frame the next one.
            self.keep_alive = False
            self.abort()
            return
        self.got_bytes = True
        heading = not self.headers_done
        if heading and self._timer is not None:
            self._rearm()  # the server is sending its headers: not silent
        headers_before = self._header_count
        try:
            self.parser.feed_data(data)
        except self._upgrade:
            # 101 Switching Protocols: no body follows that chatplug could read.
            self.keep_alive = False
            self.complete = True
            self._wake()
        except self._parse_errors as exc:
            if not self.complete:
                self._broken(exc, data)
            else:
                self.keep_alive = False
                self.abort()
            return
        if heading and not self.headers_done and self.error is None:
            # The parser holds an unfinished header line: bound it as http.client does
            # (counted from the read that last completed a header, so never over).
            self._line_bytes = 0 if self._header_count != headers_before else (
                self._line_bytes + len(data))
            if self._line_bytes > MAX_LINE:
                self._fail(ConnectFailed(f"got more than {MAX_LINE} bytes when reading "
                                         "header line"))

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        if not self.complete and self.error is None:
            if self.headers_done and not self.framed:
                self.complete = True  # a close-delimited body ends with the connection
            elif self.headers_done:
                self.error = exc if isinstance(exc, OSError) else IncompleteBody(
                    "the server closed the connection before the reply ended")
            else:
                # http.client's words, so both transports report it alike.
                self.error = ConnectFailed("Remote end closed connection without response")
        self._wake()

    def pause_writing(self) -> None:  # a request body is small; nothing to throttle
        pass

    def resume_writing(self) -> None:
        pass

    # -- the parser's side -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Stray  # a second response on the same bytes: stop parsing here

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            raise _TooMany
        self._fields.setdefault(name.decode("latin-1").lower(), []).append(
            value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim answer (100, 103): the real one follows on the same message stream.
            self._interim += 1
            if self._interim > MAX_INFORMATIONAL:
                raise _TooMany
            self.reason = ""
            self._fields = {}
            self._header_count = 0
            return
        self.status = status
        # Asked now: llhttp answers it for the message being parsed, not after its end.
        self.keep_alive = bool(self.parser.should_keep_alive())
        headers = self.headers
        for key, values in self._fields.items():
            headers[key] = values[0] if len(values) == 1 else ", ".join(values)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if chunked and "content-length" in headers:
            self.keep_alive = False  # framed two ways: read it, never reuse the connection
        self.framed = chunked or "content-length" in headers
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.draining >= 0:
            self.draining -= len(body)
            if self.draining < 0:
                self.abort()
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.headers_done:
            return  # the end of an interim answer
        self.complete = True
        if self.draining >= 0:
            self.draining = -1
            self.pool.put(self)
        self._wake()

    # -- the reader's side -------------------------------------------------------------

    def start(self, payload: bytes) -> None:
        """Send one request on this (idle) connection."""
        self._reset()
        assert self.transport is not None
        self.transport.write(payload)

    def wait(self, timeout: float, *, more: bool = False) -> asyncio.Future[None]:
        """A future done at the next change (headers, body, end, failure; with ``more``,
        body bytes already buffered do not count); after
        ``timeout`` seconds of nothing the connection fails with :class:`TimeoutError`
        (in :attr:`error`: the future itself never fails, so none is left unretrieved)."""
        future = self.loop.create_future()
        if self.error is not None or self.lost or self.complete or (self.chunks and not more):
            future.set_result(None)
            return future
        self.waiter = future
        self._timeout = timeout
        self._timer = self.loop.call_later(timeout, self._timed_out, future, timeout)
        return future

    def _rearm(self) -> None:
        waiter, timer = self.waiter, self._timer
        if waiter is not None and timer is not None:
            timer.cancel()
            self._timer = self.loop.call_later(self._timeout, self._timed_out, waiter,
                                               self._timeout)

    def take(self) -> bytes:
        """Everything buffered, as one piece."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None and not self.lost:
            self._paused = False
            self.transport.resume_reading()
        return data

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not waiter.done():
                waiter.set_result(None)

    def _timed_out(self, future: asyncio.Future[None], timeout: float) -> None:
        self._timer = None
        if self.error is None and not self.complete:
            self.error = TimeoutError(f"nothing came for {timeout:g} s")
        self._wake()
        if not future.done():
            future.set_result(None)
        self.abort()  # a half-read response cannot be reused

    def _broken(self, exc: Exception, data: bytes) -> None:
        cause = exc.__context__
        if isinstance(cause, _TooMany):
            error: Exception = ConnectFailed(
                f"got more than {MAX_HEADERS} headers" if self._interim <= MAX_INFORMATIONAL
                else f"the server sent more than {MAX_INFORMATIONAL} informational (1xx) answers")
        elif self.headers_done:
            error = IncompleteBody(f"the reply's framing is broken ({exc})")
        elif not self.reason and not self._fields:
            import http.client

            # Not even a status line: not an HTTP server (an SSH banner, a database).
            first = data.split(b"\n", 1)[0].decode("latin-1", "replace").strip()
            error = http.client.BadStatusLine(first)
        else:
            error = MalformedReply(f"the reply's headers are malformed ({exc})")
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        self.error = error
        self.abort()
        self._wake()

    # -- ending ------------------------------------------------------------------------

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def shut(self) -> None:
        """End the connection from any thread (a deadline, a cancel)."""
        on_loop(self.loop, self.abort)

    def release(self) -> None:
        """The reply is done with: back to the pool, drained first, or closed (any thread)."""
        on_loop(self.loop, self._release)

    def _release(self) -> None:
        if self.lost or self.error is not None or not self.headers_done:
            self.abort()
        elif self.complete:
            self.pool.put(self)
        else:
            # The rest of a body nobody reads (after [DONE], say): discarded as it comes,
            # within limits, then the connection is reused.
            self.chunks.clear()
            self.buffered = 0
            self.draining = DRAIN_BYTES
            if self._paused and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            self.loop.call_later(DRAIN_SECONDS, self._drain_expired)

    def _drain_expired(self) -> None:
        if self.draining >= 0:
            self.abort()
