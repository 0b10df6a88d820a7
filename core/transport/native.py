"""HTTP on the event loop itself, through aiohttp: the transport of calls an event loop drives.

The async API and the gateway run a call whose provider declares
``native_async = True`` on the loop (:mod:`chatplug.calls.aio`); its requests
come here instead of to ``requests`` on a worker thread, which saves the
thread hop each way.  aiohttp owns the connections, the pool and the HTTP/1.1
framing; everything above the socket is chatplug's and shared with the sync
transport: the same :class:`~chatplug.transport.reply.Reply` (size limit,
bounded content decoding, deadline checks), the same status checks and error
texts (:mod:`.failures`), the same call context (its deadline watchdog and
``cancel()`` shut these connections too).  Where a read would wait, the reply
yields a :class:`~chatplug.transport.pending.Pending` that the loop driving the
call awaits.

aiohttp comes with ``chatplug[async]`` (and ``chatplug[server]``).  Without it,
or with ``CHATPLUG_NATIVE_ASYNC=0``, async calls run on worker threads.

One ``aiohttp.ClientSession`` per transport and event loop (a connection
belongs to the loop that opened it), kept alive, closed when the loop shuts
down.  aiohttp decompresses nothing (chatplug's bounded decoder is the one
decoder), follows no redirect, always verifies TLS, and refuses what
``http.client`` refuses: header lines over 64 KiB, more than 100 headers.
Proxies come from ``HTTP(S)_PROXY``/``NO_PROXY`` (:meth:`Transport.loop_proxy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import re
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .decoding import ACCEPT_ENCODING
from .failures import ConnectCut, InvalidHeader, MalformedReply
from .pending import NeverAwaited, Pending, wait
from .reply import DRAIN_BYTES, DRAIN_SECONDS, STREAM_READ_SIZE, Reply

if TYPE_CHECKING:
    import aiohttp

    from .client import HTTPClient, Transport

__all__ = ["MAX_FRAMING", "MAX_HEADERS", "MAX_LINE", "NativeReply", "available",
           "close_sessions", "prepare", "send"]

#: http.client's bounds, so that both transports refuse the same replies.
MAX_LINE = 65536
MAX_HEADERS = 100
#: Bytes in a row that bring a body no data (an endless trailer or chunk-size line)
#: after which a reply is refused; below the ~64 KiB at which aiohttp stops reading.
MAX_FRAMING = 16 * 1024
#: RFC 9110's token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_available: bool | None = None


def available() -> bool:
    """Whether aiohttp is installed (``chatplug[async]``); looked up, not imported."""
    global _available
    if _available is None:
        try:
            _available = importlib.util.find_spec("aiohttp") is not None
        except (ImportError, ValueError):  # hidden (sys.modules["aiohttp"] = None)
            _available = False
    return _available


def prepare() -> None:
    """Import aiohttp (and its parser) now rather than on a loop's first call."""
    import aiohttp
    import aiohttp.client_proto  # noqa: F401

    _watched_protocol()


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
    """Response headers; names lower-cased, looked up in any case, repeated ones joined
    with ``", "`` as ``requests`` joins them (two ``Content-Encoding`` lines are a chain)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


def _headers(raw: Any) -> Headers:
    headers = Headers()
    known = dict.get  # not Headers.get: the key is lower-cased already
    for name, value in raw.items():
        key = name.lower()
        before = known(headers, key)
        dict.__setitem__(headers, key, value if before is None else f"{before}, {value}")
    return headers


#: Header names already found to be tokens: the next request naming one skips the match.
_good_names: set[str] = set()


def _check(headers: Mapping[str, str]) -> None:
    """Refuse what ``requests`` refuses before anything is sent.

    :raises InvalidHeader: a name that is not a token, a value with a line break, NUL or
        leading whitespace; ``UnicodeEncodeError`` for a value that is not Latin-1.
    """
    for name, value in headers.items():
        if type(value) is not str or (name not in _good_names and not _good_name(name)) or (
                "\n" in value or "\r" in value or "\0" in value) or value[:1] in (" ", "\t"):
            raise InvalidHeader(f"invalid header {name!r}: a header name is a token and a "
                                "value a string without leading whitespace, line breaks or NUL")
        value.encode("latin-1")


def _good_name(name: str) -> bool:
    if _TOKEN.fullmatch(name) is None:
        return False
    if len(_good_names) < 256:
        _good_names.add(name)
    return True


#: Closes and drains running on their own: referenced until done (a task nobody
#: references may be collected mid-way).
_tasks: set[asyncio.Future[Any]] = set()


def _background(work: Any) -> None:
    task = asyncio.ensure_future(work)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


_contexts: dict[str, ssl.SSLContext] = {}


def _tls(verify: str | bool) -> ssl.SSLContext | bool:
    """What the connector verifies TLS with: aiohttp's own verifying context (made when
    aiohttp is imported), or one for a CA bundle, made once (loading a bundle takes tens
    of milliseconds, which a new loop's first call must not stall)."""
    if not isinstance(verify, str):
        return True
    context = _contexts.get(verify)
    if context is None:
        context = _contexts[verify] = ssl.create_default_context(cafile=verify)
    return context


@functools.cache
def _watched_protocol() -> type[Any]:
    """aiohttp's connection protocol, watching the bytes of a body's framing.

    aiohttp's parser bounds header lines but buffers a chunked body's trailer (and a
    chunk-size line) without limit: a server sending one endless trailer line would
    hold the call to its deadline, and its memory.  Once a reply's body is being read
    (:meth:`watch`), :data:`MAX_FRAMING` bytes in a row that bring the body no byte of
    data are such a line, and end the reply at once, as ``http.client`` ends it.
    """
    from aiohttp.client_proto import ResponseHandler

    class Watched(ResponseHandler):
        _content: Any = None
        _seen = 0
        _run = 0

        def watch(self, content: Any) -> None:
            self._content, self._seen, self._run = content, content.total_bytes, 0

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            content = self._content
            if content is None:
                return
            if content.is_eof():
                self._content = None
            elif content.total_bytes != self._seen:
                self._seen, self._run = content.total_bytes, 0
            else:
                self._run += len(data)
                if self._run > MAX_FRAMING:
                    self._content = None
                    content.set_exception(MalformedReply(
                        f"a line of the body's chunked framing (a trailer) ran over "
                        f"{MAX_FRAMING} bytes"))
                    if self.transport is not None:
                        self.transport.abort()

    return Watched


class _Session:
    """One transport's aiohttp session on one event loop."""

    def __init__(self, transport: Transport) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0, ssl=_tls(transport.verify))
        # Private in aiohttp (no public way to give the connector a protocol); a
        # version without it keeps aiohttp's own protocol (tests/test_transport_holes.py).
        if hasattr(connector, "_factory"):
            protocol: Any = _watched_protocol()
            connector._factory = functools.partial(protocol, loop=asyncio.get_running_loop())
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False, trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            max_line_size=MAX_LINE, max_field_size=MAX_LINE, max_headers=MAX_HEADERS)
        self._guard: AsyncGenerator[None, None] | None = None

    @property
    def unguarded(self) -> bool:
        """Whether :meth:`guard` is still to be awaited."""
        return self._guard is None

    async def guard(self) -> None:
        """Have the session closed when the loop shuts down.

        ``asyncio.run`` (uvicorn, ``asyncio.Runner``) finalizes the async generators
        still suspended on its loop before closing it; this one's ``finally`` closes
        the session, so no connection outlives its loop unclosed.
        """
        if self._guard is None:
            self._guard = self._closing()
            await self._guard.__anext__()

    async def _closing(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self.session.close()

    def close(self) -> None:
        """Close the session soon (on its loop)."""
        _background(self.session.close())


_sessions: weakref.WeakKeyDictionary[Any, dict[Any, _Session]] = weakref.WeakKeyDictionary()
_sessions_lock = threading.Lock()


def session_for(transport: Transport, loop: asyncio.AbstractEventLoop) -> _Session:
    """``transport``'s session on ``loop`` (created on first use, on that loop)."""
    sessions = _sessions.get(transport)
    found = sessions.get(loop) if sessions is not None else None
    if found is None:
        with _sessions_lock:
            sessions = _sessions.setdefault(transport, {})
            for other in [known for known in sessions if known.is_closed()]:
                del sessions[other]
            found = sessions.get(loop)
            if found is None:
                found = sessions[loop] = _Session(transport)
    return found


def close_sessions(transport: Transport) -> None:
    """Close ``transport``'s sessions on every loop (their idle and open connections)."""
    with _sessions_lock:
        sessions = _sessions.pop(transport, {})
    for loop, session in sessions.items():
        if not loop.is_closed():
            on_loop(loop, session.close)


class _Exchange:
    """One request on the loop, as the call's context holds it: :meth:`shut` (any thread)
    ends it at once, whether it is connecting, waiting for headers or reading the body."""

    __slots__ = ("connecting", "cut", "driver", "loop", "response", "stopped")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: The task awaiting the request while it is being sent (no task of its own:
        #: that would cost every request a task and a turn of the loop).
        self.driver: asyncio.Task[Any] | None = None
        self.connecting = False
        self.response: aiohttp.ClientResponse | None = None
        self.cut = False
        self.stopped = False

    def shut(self) -> None:
        on_loop(self.loop, self._abort)

    def was_cut(self) -> bool:
        return self.cut

    def _abort(self) -> None:
        self.cut = True
        response = self.response
        if response is not None:
            abort(response)
        elif self.connecting and self.driver is not None and not self.stopped:
            # The driver is suspended in the request (this runs on the loop, between
            # its steps): cancelling it there is what ends the connect or the wait.
            self.stopped = True
            self.driver.cancel()


def abort(response: aiohttp.ClientResponse) -> None:
    """Close ``response``'s connection now, unsent bytes and all (never reused)."""
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is not None:
        transport.abort()
    response.close()


#: The timeouts of requests far from their deadline, by (connect, read) seconds.
_timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}


async def _exchange(client: HTTPClient, exchange: _Exchange, method: str, url: str,
                    data: bytes | None, headers: Mapping[str, str]) -> aiohttp.ClientResponse:
    """The response to one request, once its headers came.

    A request is sent once: aiohttp never sends a request again, even on a pooled
    connection the server closed meanwhile.
    """
    import aiohttp

    context = client.context
    transport = client.transport
    session = session_for(transport, exchange.loop)
    if session.unguarded:
        await session.guard()
    left = context.remaining()
    connect, read = transport.connect_timeout, client.read_timeout
    if left >= connect and left >= read:
        # The usual case, far from the deadline: one timeout object per pair of bounds.
        timeout = _timeouts.get((connect, read))
        if timeout is None:
            timeout = _timeouts[(connect, read)] = aiohttp.ClientTimeout(
                total=None, sock_connect=connect, sock_read=read)
            if len(_timeouts) > 64:
                _timeouts.clear()
    else:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(connect, left),
                                        sock_read=min(read, left))
    exchange.driver = asyncio.current_task()
    context.attach(exchange)
    if exchange.cut:  # cancelled, or past the deadline, before anything was sent
        raise ConnectCut("the request was cut before it was sent")
    exchange.connecting = True
    try:
        response: aiohttp.ClientResponse = await session.session.request(
            method, url, data=data, headers=headers, allow_redirects=False, timeout=timeout,
            proxy=transport.loop_proxy(url))
    except asyncio.CancelledError:
        if exchange.stopped:
            # Ours (the cut), unless the task was cancelled besides: then that goes on.
            uncancel = getattr(exchange.driver, "uncancel", None)
            if uncancel is None or uncancel() == 0:
                raise ConnectCut("the request was cut before its answer came") from None
        raise
    finally:
        exchange.connecting = False
    exchange.response = response
    protocol = response.connection.protocol if response.connection is not None else None
    watch = getattr(protocol, "watch", None)
    if watch is not None:
        watch(response.content)
    if exchange.was_cut():  # as it completed: its reads fail now
        abort(response)
    return response


def send(client: HTTPClient, method: str, url: str, data: bytes | None,
         headers: Mapping[str, str]) -> Generator[Pending[Any], None, NativeReply]:
    """Send one request on the running loop; the :class:`NativeReply` once its headers came.

    Raises what aiohttp, the socket or the checks raise (the caller translates).
    """
    from .client import USER_AGENT

    loop = client.context.loop
    assert loop is not None
    _check(headers)
    all_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING,
                   "Accept": "*/*", **headers}
    started = time.perf_counter()
    exchange = _Exchange(loop)
    try:
        response = yield from wait(_exchange(client, exchange, method, url, data, all_headers))
    except BaseException:
        client.context.detach(exchange)
        raise
    return NativeReply(response, exchange, client, url, started)


class NativeReply(Reply):
    """A :class:`Reply` read from an aiohttp response: where it would wait it yields a
    :class:`Pending` (through :meth:`Reply.iter_bytes` and every generator above)."""

    def __init__(self, response: aiohttp.ClientResponse, exchange: _Exchange,
                 client: HTTPClient, url: str, started: float) -> None:
        self._answer = response
        self._exchange = exchange
        self._client = client
        self._chunks = None
        self._complete = False
        self._received = 0
        self._released = False
        #: Body bytes read ahead (an error body), and what ended that read.
        self._early: list[bytes] = []
        self._early_error: Exception | None = None
        self.status_code = response.status
        self.reason = response.reason or ""
        self.headers = _headers(response.headers)
        self.url = url
        self.started = started

    def _raw_chunks(self) -> Iterator[bytes]:
        yield from self._early
        self._early = []
        if self._early_error is not None:
            raise self._early_error
        content = self._answer.content
        read = content.read_nowait
        while True:
            data = read(STREAM_READ_SIZE)
            if not data:
                if content.at_eof():
                    return
                pending: Pending[bytes] = Pending(content.readany())
                yield pending  # type: ignore[misc]  # passed up to the loop driving the call
                data = pending.result()
                if not data:
                    return
                # readany hands one network chunk; what came with it goes along.
                data += read(STREAM_READ_SIZE)
            yield data

    def prefetch(self, limit: int) -> Generator[Pending[Any], None, None]:
        """Read up to ``limit`` bytes of the body ahead (an error body, read before its
        status becomes an error); what ends the read early is raised by the reads after."""
        content = self._answer.content
        size = 0
        try:
            while size < limit:
                data = content.read_nowait(STREAM_READ_SIZE)
                if not data:
                    if content.at_eof():
                        return
                    pending: Pending[bytes] = Pending(content.readany())
                    yield pending
                    data = pending.result()
                    if not data:
                        return
                self._early.append(data)
                size += len(data)
        except NeverAwaited:
            raise
        except Exception as exc:
            self._early_error = exc

    def drain(self, *, limit: int = DRAIN_BYTES, wait: float = DRAIN_SECONDS) -> None:
        """Nothing to wait for here: :meth:`close` drains without waiting."""

    def _set_read_timeout(self, seconds: float) -> None:
        pass

    def close(self) -> None:
        """Back to the pool if the body ended (aiohttp never reuses a connection with
        bytes left over); else the rest is read in the background within
        :data:`DRAIN_BYTES` and :data:`DRAIN_SECONDS`, or the connection is closed."""
        if self._released:
            return
        self._released = True
        self._client.context.detach(self._exchange)
        on_loop(self._exchange.loop, _finish, self._answer)


def _finish(response: aiohttp.ClientResponse) -> None:
    if response.content.at_eof() or response.closed:
        response.release()
    else:
        _background(_drain(response))


async def _drain(response: aiohttp.ClientResponse) -> None:
    content = response.content
    left = DRAIN_BYTES
    ends = time.monotonic() + DRAIN_SECONDS
    try:
        while not content.at_eof():
            left -= len(await asyncio.wait_for(content.readany(),
                                               max(0.0, ends - time.monotonic())))
            if left < 0:
                break
    except asyncio.CancelledError:  # the loop shuts down
        abort(response)
        raise
    except Exception:  # silence, a break: the connection is simply not reused
        abort(response)
        return
    if content.at_eof():
        response.release()
    else:
        abort(response)
