"""What a call's generator hands its event-loop driver while it waits: :class:`Pending`.

The whole call path (provider, wire decoders, retries, routes) is written as
sync generators.  Run on a worker thread they block in their reads.  Run on an
event loop (the async API's native mode, the gateway) the transport's reads do
not block: where a read would wait, the innermost generator yields a
:class:`Pending`, every layer above passes it up unchanged, and the driver at
the top awaits it and resumes the chain, which picks up the result with
:meth:`Pending.result`.  One path for both; only the transport knows which
kind of IO it does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ["NeverAwaited", "Pending", "Sleeper", "text_only", "wait"]

T = TypeVar("T")


class NeverAwaited(RuntimeError):
    """A generator was resumed past a :class:`Pending` nobody awaited: some layer between
    it and the driver dropped the wait (a text filter keeping only ``str``).  Going on
    would start the next read without yielding to the loop, forever; the transport
    reports it as the plugin's bug instead (:mod:`.failures`)."""


class Pending(Generic[T]):
    """An awaitable the driver awaits before it resumes the generator that yielded it.

    Failures of the awaitable are kept and raised by :meth:`result` inside the
    generator that waits (so its own error handling sees them); a cancellation
    of the driving task is not: it ends the driver, which closes the generators.
    """

    __slots__ = ("_error", "_ran", "_value", "awaitable")

    def __init__(self, awaitable: Awaitable[T]) -> None:
        self.awaitable = awaitable
        self._value: Any = None
        self._error: Exception | None = None
        self._ran = False

    async def run(self) -> None:
        """Await the awaitable (the driver calls this)."""
        self._ran = True
        try:
            self._value = await self.awaitable
        except Exception as exc:  # asyncio.CancelledError is not an Exception: it propagates
            self._error = exc

    def result(self) -> T:
        """The awaitable's result; raises what it raised.

        :raises NeverAwaited: :meth:`run` was never called: a layer above dropped this.
        """
        if not self._ran:
            close = getattr(self.awaitable, "close", None)
            if close is not None:
                close()  # a coroutine nobody will await: no "never awaited" warning
            raise NeverAwaited("a wait of the transport (chatplug.transport.pending.Pending) "
                               "was dropped before the event loop awaited it")
        error = self._error
        if error is not None:
            self._error = None
            raise error
        value: T = self._value
        return value


def text_only(items: Iterable[Any]) -> Iterator[Any]:
    """The text pieces of ``items`` and the transport's waits among them, in order;
    everything else (the :mod:`chatplug.events`) is left out.

    The one text filter of the call path: a filter that kept only ``str`` would drop
    the :class:`Pending` waits of a call an event loop drives (:class:`NeverAwaited`).
    """
    for item in items:
        kind = type(item)
        if kind is str or kind is Pending:
            yield item


def wait(awaitable: Awaitable[T]) -> Generator[Pending[T], None, T]:
    """``value = yield from wait(awaitable)`` inside a call's generator."""
    pending = Pending(awaitable)
    yield pending
    return pending.result()


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Sleeper:
    """A wait between attempts on an event loop's timer, which :meth:`wake` (any thread)
    cuts short: the loop-driven form of ``threading.Event().wait(seconds)``."""

    __slots__ = ("_future", "_loop")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def sleep(self, loop: asyncio.AbstractEventLoop,
              seconds: float) -> Generator[Pending[None], None, None]:
        """``yield from sleeper.sleep(loop, seconds)`` inside a call's generator."""
        future: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _done, future)
        self._future, self._loop = future, loop
        try:
            yield from wait(future)
        finally:
            timer.cancel()
            self._future = None

    def wake(self) -> None:
        future, loop = self._future, self._loop
        if future is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_done, future)
