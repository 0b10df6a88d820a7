"""HTTP/1.1 on the event loop itself: the transport of calls an event loop drives.

The async API and the gateway run a call whose provider declares
``native_async = True`` on the loop (:mod:`chatplug.calls.aio`); its requests
come here instead of to ``requests`` on a worker thread, which saves the
thread hop each way and most of the client's CPU per request.  Everything
above the socket is shared with the sync transport: the same
:class:`~chatplug.transport.reply.Reply` (limits, content decoding, deadline
checks), the same status checks and error texts (:mod:`.failures`), the same
call context (its deadline watchdog and ``cancel()`` shut these connections
too).

httptools (llhttp, the parser uvicorn uses) parses the responses; it comes
with ``chatplug[server]``.  Without it, or with a proxy configured, or with
``CHATPLUG_NATIVE_ASYNC=0``, async calls run on worker threads as before.

Connections are pooled per event loop and host.  A pooled connection the
server closed while idle is replaced once, transparently, when it fails
before any byte of the response came (nothing was processed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import select
import socket
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

from .connections import MAX_INFORMATIONAL
from .decoding import ACCEPT_ENCODING
from .failures import (
    ConnectFailed,
    ConnectTimeout,
    IncompleteBody,
    InvalidHeader,
    InvalidURL,
    MalformedReply,
)
from .pending import Pending, wait
from .reply import DRAIN_BYTES, DRAIN_SECONDS, Reply

if TYPE_CHECKING:
    from .client import HTTPClient, Transport

__all__ = ["NativeReply", "available", "send"]

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


def _on_loop(loop: asyncio.AbstractEventLoop, function: Any, *args: Any) -> None:
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
        if not self.headers_done:
            self._line_bytes += len(data)
            if self._line_bytes > MAX_LINE:
                self._fail(ConnectFailed(f"got more than {MAX_LINE} bytes when reading "
                                         "header line"))
                return
            if self._timer is not None:
                self._rearm()  # the server is sending its headers: not silent
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
        self._line_bytes = 0
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
        _on_loop(self.loop, self.abort)

    def release(self) -> None:
        """The reply is done with: back to the pool, drained first, or closed (any thread)."""
        _on_loop(self.loop, self._release)

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


class Pool:
    """The idle connections of one transport on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: Transport) -> None:
        self.loop = loop
        self.limit = transport.pool_size
        self.idle: dict[tuple[str, str, int], list[Connection]] = {}
        #: Every open connection: idle, in use, or draining (all closed with the loop).
        self.open: weakref.WeakSet[Connection] = weakref.WeakSet()
        verify = transport.verify
        self._verify = verify
        self._tls: ssl.SSLContext | None = None
        self._guard: AsyncGenerator[None, None] | None = None

    async def guard(self) -> None:
        """Have the idle connections closed when the loop shuts down.

        ``asyncio.run`` (uvicorn, ``asyncio.Runner``) finalizes the async generators
        still suspended on its loop before closing it; this pool keeps one, whose
        ``finally`` closes the connections, so none outlives its loop unclosed.
        """
        if self._guard is None:
            self._guard = self._closing()
            await self._guard.__anext__()

    async def _closing(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self.close()

    def tls(self) -> ssl.SSLContext:
        if self._tls is None:
            cafile = self._verify if isinstance(self._verify, str) else None
            self._tls = ssl.create_default_context(cafile=cafile)
        return self._tls

    def take(self, key: tuple[str, str, int]) -> Connection | None:
        """An idle connection to ``key`` that is still open.

        One the server closed (or wrote to) while idle but whose news the loop has not
        processed yet is readable now: it is dropped here, as urllib3 does, because a
        request sent on it could not be told apart from one the server saw and dropped.
        """
        idle = self.idle.get(key)
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if connection.lost or transport is None or transport.is_closing():
                continue
            if _readable(transport):
                connection.abort()
                continue
            return connection
        return None

    def put(self, connection: Connection) -> None:
        idle = self.idle.setdefault(connection.key, [])
        keep = connection.keep_alive and not connection.lost
        if keep and len(idle) < self.limit:
            idle.append(connection)
        else:
            connection.abort()

    def forget(self, connection: Connection) -> None:
        self.open.discard(connection)
        idle = self.idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def close(self, *, idle_only: bool = False) -> None:
        """Close the idle connections, or (the loop is shutting down) every one."""
        every = [c for idle in self.idle.values() for c in idle] if idle_only else self.open
        for connection in list(every):
            connection.abort()
        self.idle.clear()

    async def connect(self, key: tuple[str, str, int], timeout: float) -> Connection:
        scheme, host, port = key
        loop = self.loop
        opening = asyncio.ensure_future(loop.create_connection(
            lambda: Connection(self, key), host, port,
            ssl=self.tls() if scheme == "https" else None))
        fired = False

        def expire() -> None:
            nonlocal fired
            fired = True
            opening.cancel()

        timer = loop.call_later(timeout, expire)
        failure: Exception | None = None
        try:
            _, protocol = await opening
        except asyncio.CancelledError:
            if not fired:
                raise
            failure = ConnectTimeout(f"connecting took more than {timeout:g} s")
        except ssl.SSLError:
            raise
        except socket.gaierror as exc:
            raise ConnectFailed(str(exc)) from exc  # the resolver's error stays in the chain
        except OSError as exc:
            # The socket's own words ("Connection refused"), as the sync transport says
            # them, raised outside this block so asyncio's wording is not in the chain.
            failure = ConnectFailed(f"[Errno {exc.errno}] {os.strerror(exc.errno)}"
                                    if exc.errno else str(exc) or type(exc).__name__)
        finally:
            timer.cancel()
        if failure is not None:
            raise failure
        self.open.add(protocol)
        return protocol


def _readable(transport: Any) -> bool:
    """Whether an idle connection's socket has something to read (its close, say)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        ready, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


_pools: weakref.WeakKeyDictionary[Any, dict[Any, Pool]] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def pool_for(transport: Transport, loop: asyncio.AbstractEventLoop) -> Pool:
    """``transport``'s pool on ``loop`` (created on first use)."""
    pools = _pools.get(transport)
    pool = pools.get(loop) if pools is not None else None
    if pool is None:
        with _pools_lock:
            pools = _pools.setdefault(transport, {})
            for other in [known for known in pools if known.is_closed()]:
                del pools[other]
            pool = pools.setdefault(loop, Pool(loop, transport))
    return pool


def close_pools(transport: Transport) -> None:
    """Close ``transport``'s idle connections on every loop."""
    with _pools_lock:
        pools = _pools.pop(transport, {})
    for loop, pool in pools.items():
        if not loop.is_closed():
            _on_loop(loop, functools.partial(pool.close, idle_only=True))


#: RFC 9110's token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: What requests' requote_uri leaves unquoted in a request target.
_SAFE = "!#$%&'()*+,/:;=?@[]~"
#: Parsed URLs: a process talks to a few endpoints, each parsed once.
_targets: dict[str, tuple[tuple[str, str, int], str, str]] = {}


def _header_line(name: str, value: str) -> bytes:
    if type(value) is not str or not _TOKEN.fullmatch(name) or (
            "\n" in value or "\r" in value or "\0" in value) or value[:1] in (" ", "\t"):
        raise InvalidHeader(f"invalid header {name!r}: a header name is a token and a value "
                            "a string without leading whitespace, line breaks or NUL")
    # Encoded on its own, so a character that is not Latin-1 is reported at its place
    # in the value (UnicodeEncodeError), as the sync transport reports it.
    return b"%s: %s\r\n" % (name.encode("ascii"), value.encode("latin-1"))


def _target(url: str) -> tuple[tuple[str, str, int], str, str]:
    """``((scheme, host, port), request target, Host header)`` of ``url``."""
    known = _targets.get(url)
    if known is not None:
        return known
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host:
        raise InvalidURL(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        explicit = parts.port
    except ValueError as exc:
        raise InvalidURL(f"{url!r} has an invalid port") from exc
    # Quoted as requests quotes it (requote_uri): spaces, non-ASCII and control characters
    # percent-encoded, existing escapes and reserved characters left alone.
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                   safe=_SAFE)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURL(f"{url!r} has a host name that cannot be encoded") from exc
    authority = f"[{host}]" if ":" in host else host
    if explicit:
        authority += f":{explicit}"
    known = ((scheme, host, explicit or (443 if scheme == "https" else 80)), target, authority)
    if len(_targets) < 1024:
        _targets[url] = known
    return known


def request_bytes(method: str, url: str, data: bytes | None,
                  headers: Mapping[str, str]) -> tuple[tuple[str, str, int], bytes]:
    """The connection key and the bytes of one request.

    :raises InvalidURL: not an http(s) URL with a host.
    :raises InvalidHeader: a header cannot be sent; ``UnicodeEncodeError`` for one that
        is not Latin-1.
    """
    from .client import USER_AGENT

    key, target, authority = _target(url)
    fields = {"host": ("Host", authority), "user-agent": ("User-Agent", USER_AGENT),
              "accept-encoding": ("Accept-Encoding", ACCEPT_ENCODING),
              "accept": ("Accept", "*/*"), "connection": ("Connection", "keep-alive")}
    for name, value in headers.items():
        fields[name.lower()] = (name, value)
    if data is not None:
        fields["content-length"] = ("Content-Length", str(len(data)))
    head = b"".join([_header_line(name, value) for name, value in fields.values()])
    payload = f"{method} {target} HTTP/1.1\r\n".encode("ascii") + head + b"\r\n"
    return key, payload + data if data is not None else payload


async def _exchange(client: HTTPClient, pool: Pool, key: tuple[str, str, int],
                    payload: bytes) -> Connection:
    """A connection whose response headers have arrived.

    A request is sent once: a connection that fails before any answer is reported as
    the sync transport reports it, never sent again (it may have reached the server).
    """
    context = client.context
    await pool.guard()
    connection = pool.take(key)
    if connection is None:
        connection = await pool.connect(key, min(client.transport.connect_timeout,
                                                 context.remaining()))
    context.attach(connection)
    connection.start(payload)
    while not connection.headers_done and connection.error is None:
        await connection.wait(min(client.read_timeout, context.remaining()))
    if connection.headers_done:
        return connection
    context.detach(connection)
    error = connection.error
    assert error is not None
    raise error


def send(client: HTTPClient, method: str, url: str, data: bytes | None,
         headers: Mapping[str, str]) -> Generator[Pending[Any], None, NativeReply]:
    """Send one request on the running loop; the :class:`NativeReply` once its headers came.

    Raises what the socket, the parser or the URL raise (the caller translates).
    """
    loop = client.context.loop
    assert loop is not None
    key, payload = request_bytes(method, url, data, headers)
    started = time.perf_counter()
    connection = yield from wait(_exchange(client, pool_for(client.transport, loop), key,
                                           payload))
    return NativeReply(connection, client, url, started)


class NativeReply(Reply):
    """A :class:`Reply` read from a native connection: where it would wait it yields a
    :class:`Pending` (through :meth:`Reply.iter_bytes` and every generator above)."""

    def __init__(self, connection: Connection, client: HTTPClient, url: str,
                 started: float) -> None:
        self._connection = connection
        self._client = client
        self._chunks = None
        self._complete = False
        self._received = 0
        self._released = False
        self.status_code = connection.status
        self.reason = connection.reason
        self.headers = connection.headers
        self.url = url
        self.started = started

    def _raw_chunks(self) -> Iterator[bytes]:
        connection = self._connection
        timeout = self._client.read_timeout
        while True:
            if connection.chunks:
                yield connection.take()
                continue
            if connection.complete:
                return
            if connection.error is not None:
                raise connection.error
            pending: Pending[None] = Pending(connection.wait(timeout))
            yield pending  # type: ignore[misc]  # passed up to the loop driving the call
            pending.result()

    def prefetch(self, limit: int) -> Generator[Pending[Any], None, None]:
        """Wait until the body is complete or ``limit`` bytes are buffered (an error body,
        read in full before its status becomes an error)."""
        connection = self._connection
        while not connection.complete and connection.error is None and not connection.lost \
                and connection.buffered < limit:
            pending: Pending[None] = Pending(connection.wait(self._client.read_timeout,
                                                             more=True))
            yield pending
            pending.result()

    def read(self, *, limit: int | None = None, fail: bool = True) -> bytes:
        """What has arrived of the body (all of it after :meth:`prefetch`)."""
        from ..errors import ChatplugError

        parts: list[bytes] = []
        try:
            for data in cast("Iterator[Any]", self.iter_bytes()):
                if type(data) is Pending:
                    break
                parts.append(data)
        except ChatplugError:
            if fail:
                raise
        body = b"".join(parts)
        return body[:limit] if limit is not None else body

    def drain(self, *, limit: int = DRAIN_BYTES, wait: float = DRAIN_SECONDS) -> None:
        """Nothing to wait for here: :meth:`close` drains without waiting."""

    def _set_read_timeout(self, seconds: float) -> None:
        pass

    def close(self) -> None:
        if self._released:
            return
        self._released = True
        connection = self._connection
        self._client.context.detach(connection)
        connection.release()
