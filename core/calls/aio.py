"""The async API: a prepared call driven by the event loop itself, or by a worker thread.

Providers are sync generators.  A provider that declares ``native_async = True``
(its IO goes only through :mod:`chatplug.wire`) is driven *on the loop*: the
same :class:`~chatplug.calls.run.Call` generator, whose transport reads
(:mod:`chatplug.transport.native`, aiohttp) yield a
:class:`~chatplug.transport.pending.Pending` where they would block; the loop
awaits it and goes on.  No thread, no hand-over per piece.  Proxies
(``HTTP(S)_PROXY``, ``NO_PROXY``) are honoured on the loop too.

Any other call (a provider without the flag, an observer installed,
``CHATPLUG_NATIVE_ASYNC=0``, aiohttp not installed) runs on the runtime's
:class:`~chatplug.calls.workers.WorkerPool` (``CHATPLUG_ASYNC_WORKERS`` threads,
never the loop's default executor).  A stream's worker pushes what the
provider yields into a bounded buffer (:data:`BUFFER_LIMIT` items: a slow
consumer slows the worker, memory stays bounded) and wakes the loop only when
the consumer is waiting for more.

Either way, cancelling the task, :meth:`AsyncStream.aclose`, leaving
``async with`` or the stream being garbage-collected cancels the call
(:meth:`Call.cancel`): its connection is shut, so the server sees it close at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Generator, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from ..errors import InvalidRequestError, ProviderTimeoutError
from ..transport.pending import Pending
from .caller import _drain
from .view import CallView

if TYPE_CHECKING:
    from ..events import Event
    from .caller import Caller, Prepared
    from .caller import Running as Call
    from .completion import Completion

__all__ = ["BUFFER_LIMIT", "AsyncStream", "acomplete", "acreate"]

#: The most pieces and events a stream buffers for a consumer that is behind.
BUFFER_LIMIT = 256
#: Seconds past a call's deadline the loop waits for its worker to report the timeout.
_GRACE = 0.5


def _pool_timeout(call: Call) -> ProviderTimeoutError:
    return ProviderTimeoutError(
        "no async worker became free before the call's deadline: all "
        f"{call.runtime.async_pool.max_workers} are busy. Raise CHATPLUG_ASYNC_WORKERS, "
        "or lower the number of calls in flight.",
        provider=call.provider, model=call.model,
    )


def _left(call: Call) -> float | None:
    deadline = call.context.deadline
    return None if deadline is None else max(0.0, deadline - time.monotonic()) + _GRACE


class _Expired(Exception):
    """The loop's own deadline timer fired; never leaves this module."""


def _settle(waiter: asyncio.Future[Any], future: Future[Any]) -> None:
    if waiter.done():
        return
    if future.cancelled():
        waiter.set_exception(_Expired())
        return
    error = future.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(future.result())


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


async def _run(call: Call, function: Any) -> Any:
    """Run ``function(call)`` on a worker; cancel the call if the awaiting task is cancelled.

    One hop each way: the worker settles a loop future with ``call_soon_threadsafe``
    (no ``wrap_future``/``wait_for`` machinery on the hot path).
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Any] = loop.create_future()
    future: Future[Any] = call.runtime.async_pool.submit(function, call)

    def done(finished: Future[Any]) -> None:
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, waiter, finished)

    future.add_done_callback(done)
    left = _left(call)
    timer = loop.call_later(left, _expire, waiter) if left is not None else None
    try:
        return await waiter
    except _Expired:
        call.cancel()
        if future.cancel():  # never started: the pool was full the whole time
            raise _pool_timeout(call) from None
        raise ProviderTimeoutError(
            "the call's deadline passed before the reply was complete. "
            "Raise CHATPLUG_TIMEOUT or pass a larger timeout=.",
            provider=call.provider, model=call.model,
        ) from None
    except BaseException:
        call.cancel()  # the task was cancelled: the worker's read ends now
        future.cancel()
        raise
    finally:
        if timer is not None:
            timer.cancel()


def _loop_drives(call: Call) -> bool:
    """Whether the loop drives ``call`` itself (see the module's text)."""
    runtime = call.runtime
    return (call.native_io and runtime.settings.native_async
            and runtime.transport.native)


async def _drain_here(call: Call) -> Call:
    """:func:`_drain` on the running loop: awaits what the call waits for."""
    call.text_only = True
    call.context.loop = asyncio.get_running_loop()
    events = cast("Generator[Any, None, None]", call.events())
    try:
        for item in events:
            if type(item) is Pending:
                await item.run()
    except BaseException:
        call.cancel()  # the task was cancelled (or the call failed): shut what it holds
        raise
    finally:
        events.close()
    return call


async def _finished(call: Call) -> Call:
    if _loop_drives(call):
        return await _drain_here(call)
    finished: Call = await _run(call, _drain)
    return finished


async def acreate(caller: Caller, prepared: Prepared, *,
                  keep_text: bool = True) -> str | AsyncStream:
    """Run ``prepared``: its text, or an :class:`AsyncStream` when it streams.

    :param keep_text: ``False``: a stream passes its pieces on without keeping them
        (its ``completion`` has no text), for a relay.
    """
    if prepared.stream:
        whole = not prepared.supports_stream
        call = caller.start(prepared, buffered=whole)
        if not whole:  # a whole reply is one piece, which its reader is handed from here
            call.keep_text = keep_text
        return AsyncStream(call, whole=whole)
    call = await _finished(caller.start(prepared, buffered=True))
    text: str = call.builder.text
    return text


async def acomplete(caller: Caller, prepared: Prepared) -> Completion:
    """Run ``prepared`` and return its :class:`Completion`."""
    call = await _finished(caller.start(prepared, buffered=True))
    completion: Completion = call.completion
    return completion


class _Closed(Exception):
    """The consumer went away; raised in the worker to stop it.  Never leaves this module."""


class _Buffer:
    """Items handed from one worker thread to one event loop, at most ``limit`` at a time."""

    __slots__ = ("_done", "_error", "_items", "_limit", "_lock", "_loop", "_space",
                 "_waiter", "closed", "local", "started")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = BUFFER_LIMIT) -> None:
        self._loop = loop
        self._limit = limit
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._waiter: asyncio.Future[None] | None = None
        #: Items the loop already took out of the shared buffer in one batch.
        self.local: deque[Any] = deque()
        self._done = False
        self._error: BaseException | None = None
        self.closed = False
        self.started = False

    # -- the worker's side -------------------------------------------------------------

    def put(self, item: Any) -> None:
        """Hand on one item; blocks while the buffer is full.

        :raises _Closed: the consumer closed the stream.
        """
        with self._lock:
            # What the loop took in its last batch counts too: at most ``limit`` in all.
            while len(self._items) + len(self.local) >= self._limit and not self.closed:
                self._space.wait()
            if self.closed:
                raise _Closed
            self._items.append(item)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    def finish(self, error: BaseException | None = None) -> None:
        with self._lock:
            self._done = True
            self._error = error
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_wake, waiter)

    # -- the loop's side ---------------------------------------------------------------

    async def get(self, call: Call) -> Any:
        """The next item.

        :raises StopAsyncIteration: the reply ended.
        """
        if self.local:
            return self.local.popleft()
        while True:
            with self._lock:
                self._space.notify()  # the batch is consumed: a blocked worker may go on
                if self._items:
                    # Take everything there is at once: one lock per batch, not per piece.
                    items, self._items = self._items, self.local
                    self.local = items
                    return items.popleft()
                if self._done:
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    raise StopAsyncIteration
                waiter: asyncio.Future[None] = self._loop.create_future()
                self._waiter = waiter
                started = self.started
            if started:
                await waiter
                continue
            # Not started yet: the worker pool may be full; wait within the deadline.  A
            # timer of our own, not asyncio.wait_for: before Python 3.12, wait_for swallows
            # a cancellation that comes as the waiter completes, and the task would read on.
            left = _left(call)
            timer = self._loop.call_later(left, _expire, waiter) if left is not None else None
            try:
                await waiter
            except _Expired:
                if not self.started:
                    raise _pool_timeout(call) from None
            finally:
                if timer is not None:
                    timer.cancel()

    async def batch(self, call: Call) -> list[Any]:
        """The next item and every other one the worker had handed on by then.

        :raises StopAsyncIteration: the reply ended.
        """
        first = await self.get(call)
        local = self.local
        if not local:
            return [first]
        batch = [first, *local]
        local.clear()
        return batch

    @property
    def finished(self) -> bool:
        """The reply ended and everything in it was taken."""
        return self._done and not self._items and not self.local

    def close(self) -> None:
        """The consumer is gone: a worker blocked on a full buffer stops."""
        with self._lock:
            self.closed = True
            self._items.clear()
            self.local.clear()
            self._space.notify_all()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _items(call: Call, whole: bool) -> Generator[Any, None, None]:
    """What a stream hands its reader, in order: the call's items as they come, or for a
    provider that cannot stream (``whole``) the text first, then the events.  A native
    call's :class:`Pending` waits pass through to the loop driving it."""
    items: Iterator[Any] = call.events()
    try:
        if not whole:
            yield from items
            return
        collected = []
        for item in items:
            if type(item) is Pending:
                yield item
            elif type(item) is not str:
                collected.append(item)
        if call.builder.text:
            yield call.builder.text
        yield from collected
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # a plugin's cleanup bug raises here, already a chatplug error


def _pump(call: Call, buffer: _Buffer, whole: bool) -> None:
    """The worker: drive the call, hand each item to the loop."""
    buffer.started = True
    if buffer.closed:
        buffer.finish()
        return
    items = _items(call, whole)
    try:
        for item in items:
            buffer.put(item)
    except _Closed:
        pass
    except BaseException as exc:
        buffer.finish(exc)
        return
    finally:
        try:
            items.close()
        except Exception as exc:
            buffer.finish(exc)
            return
    buffer.finish()


class _Here:
    """A stream's items taken on the loop itself: the call's generator, advanced by the
    reader's task, awaiting what it waits for.  The worker-free counterpart of
    :class:`_Buffer` (same ``get``/``close``/``finished``)."""

    __slots__ = ("_done", "_error", "_items", "_pending", "closed", "local")

    def __init__(self, call: Call, whole: bool) -> None:
        call.context.loop = asyncio.get_running_loop()
        self._items = _items(call, whole)
        self._done = False
        #: What :meth:`batch` met after the items it returned: the wait to await first,
        #: or the failure to raise, before anything more is read.
        self._pending: Pending[Any] | None = None
        self._error: Exception | None = None
        self.closed = False
        #: Never anything here: no batch is taken ahead of the reader.
        self.local: deque[Any] = deque()

    async def get(self, call: Call) -> Any:
        error, self._error = self._error, None
        if error is not None:  # met by a batch(), after the items it returned
            raise error
        items = self._items
        pending, self._pending = self._pending, None
        try:
            if pending is not None:  # left by a batch(): awaited before reading on
                await pending.run()
            while True:
                item = next(items)
                if type(item) is not Pending:
                    return item
                await item.run()
        except StopIteration:
            self._done = True
            raise StopAsyncIteration from None
        except BaseException:
            self._done = True
            raise

    async def batch(self, call: Call) -> list[Any]:
        """The items the call yields until it has to wait (what one read brought), at
        least one.

        :raises StopAsyncIteration: the reply ended.
        """
        error, self._error = self._error, None
        if error is not None:
            raise error
        items = self._items
        batch: list[Any] = []
        pending, self._pending = self._pending, None
        try:
            while True:
                if pending is not None:
                    await pending.run()  # nothing is held: the batch is empty here
                    pending = None
                item = next(items)
                if type(item) is not Pending:
                    batch.append(item)
                elif batch:
                    self._pending = item
                    return batch
                else:
                    pending = item
        except StopIteration:
            self._done = True
            if batch:
                return batch
            raise StopAsyncIteration from None
        except Exception as exc:
            self._done = True
            if batch:  # the items before the failure go out first
                self._error = exc
                return batch
            raise
        except BaseException:
            self._done = True
            raise

    @property
    def finished(self) -> bool:
        return self._done and self._error is None

    def close(self) -> None:
        """The reader is gone: the call's generators close, and its connection with them."""
        if not self.closed:
            self.closed = True
            pending, self._pending = self._pending, None
            close = getattr(pending and pending.awaitable, "close", None)
            if close is not None:
                close()  # a read a batch() left and nobody will await: no warning
            with contextlib.suppress(Exception):  # a cleanup bug has nobody to report to
                self._items.close()


class AsyncStream(CallView):
    """The pieces of a streamed reply for asyncio, as :class:`chatplug.Stream` has them.

    ``async for piece in stream`` gives the text pieces as they arrive;
    :meth:`events` (an async iterator) everything the provider yielded;
    :attr:`completion` the :class:`Completion` so far.  Cancelling the task,
    :meth:`aclose` or leaving ``async with`` closes the HTTP response.

    :raises StreamInterruptedError: while iterating, when the reply was cut.
    """

    def __init__(self, call: Call, *, whole: bool = False) -> None:
        self._call = call
        self._whole = whole
        self._buffer: _Buffer | _Here | None = None
        self._reading = False

    def _start(self, *, text_only: bool) -> _Buffer | _Here:
        if self._buffer is None:
            call = self._call
            call.text_only = text_only
            if _loop_drives(call):
                self._buffer = _Here(call, self._whole)
            else:
                self._buffer = buffer = _Buffer(asyncio.get_running_loop())
                call.runtime.async_pool.submit(_pump, call, buffer, self._whole)
        elif not text_only:
            self._call.text_only = False
        return self._buffer

    async def _next(self, *, text_only: bool) -> Any:
        buffer = self._start(text_only=text_only)
        if self._reading:
            raise InvalidRequestError("this stream is being read by another task; read a "
                                      "stream from one task at a time.",
                                      provider=self.provider, model=self.model)
        self._reading = True
        try:
            while True:
                item = await buffer.get(self._call)
                if not text_only or type(item) is str:
                    return item
        except StopAsyncIteration:
            raise
        except BaseException:
            self._cancel()  # cancelled task, or the call failed: nothing more is read
            raise
        finally:
            self._reading = False

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> str:
        buffer = self._buffer
        if buffer is not None and self._call.text_only and not self._reading:
            local = buffer.local
            if local:  # the hot path: a piece already taken from the worker
                item: str = local.popleft()
                return item
        item = await self._next(text_only=True)
        return item

    async def events(self) -> AsyncIterator[str | Event]:
        """Everything the provider yielded, in order: text and :mod:`chatplug.events`."""
        try:
            while True:
                try:
                    yield await self._next(text_only=False)
                except StopAsyncIteration:
                    return
        finally:
            if not self._finished:
                self._cancel()

    async def batches(self) -> AsyncIterator[list[str | Event]]:
        """What :meth:`events` gives, in lists: each holds the items at hand together (on
        the loop, what one read of the reply brought), so that a relay writes them at
        once; nothing is held back waiting for more.
        """
        buffer = self._start(text_only=False)
        try:
            while True:
                if self._reading:
                    raise InvalidRequestError(
                        "this stream is being read by another task; read a stream from "
                        "one task at a time.", provider=self.provider, model=self.model)
                self._reading = True
                try:
                    batch = await buffer.batch(self._call)
                except StopAsyncIteration:
                    return
                except BaseException:
                    self._cancel()
                    raise
                finally:
                    self._reading = False
                yield batch
        finally:
            if not self._finished:
                self._cancel()

    @property
    def _finished(self) -> bool:
        buffer = self._buffer
        return buffer is not None and buffer.finished

    def _cancel(self) -> None:
        self._call.cancel()
        if self._buffer is not None:
            self._buffer.close()

    async def aclose(self) -> None:
        """Close the reply; the worker and the connection are free within milliseconds."""
        self._cancel()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Garbage-collected without aclose(): the upstream request must not run on.
        if self._buffer is not None and not self._finished:
            self._cancel()

    def __repr__(self) -> str:
        return f"<chatplug.AsyncStream provider={self.provider!r} model={self.model!r}>"
