"""Ending requests early: a client that went away, and the grace period of a shutdown.

:class:`Interruption` watches one request: when its client disconnects or the
shutdown's grace period ends, it cancels the task serving the request.  The
disconnect is told by ``chatplug serve``'s protocol through the scope's
:data:`ON_DISCONNECT` entry, the connection's :class:`Hangup` (no task per
request); under another ASGI server the ``http.disconnect`` message is read
concurrently with the upstream call.
chatplug's async calls turn that cancellation into a cross-thread close of
the upstream response, so the upstream server sees its connection closed at
once, also while the gateway is still waiting for the first piece.

:class:`Drain` is the shutdown.  On SIGTERM (or SIGINT) the server stops
accepting connections; the drain lets the requests in flight run on for
``grace`` seconds, then interrupts them: a stream gets the in-band error and
ends without ``[DONE]``, a request still waiting gets 503.  It hooks the
signal by wrapping the handler the ASGI server installed (uvicorn's, also
under gunicorn), from the application's lifespan, so it works under any
server that handles SIGTERM by shutting down gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import Receive, Scope

__all__ = ["DISCONNECT", "ON_DISCONNECT", "SHUTDOWN", "Drain", "Hangup", "Interruption"]

DISCONNECT = "disconnect"
SHUTDOWN = "shutdown"
#: The scope entry (a :class:`Hangup`) through which chatplug serve's protocol tells the
#: requests of a connection that its client is gone (:mod:`chatplug.server.protocol`).
ON_DISCONNECT = "chatplug.on_disconnect"


class Hangup:
    """One connection's "the client is gone", told once to whoever listens, before or
    after it happened."""

    __slots__ = ("_callbacks", "gone")

    def __init__(self) -> None:
        self.gone = False
        self._callbacks: list[Callable[[], None]] = []

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the client goes (now, if it went already)."""
        if self.gone:
            callback()
        else:
            self._callbacks.append(callback)

    def forget(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):  # told already, or never listening
            self._callbacks.remove(callback)

    def hang_up(self) -> None:
        """The client is gone: tell every listener, once."""
        if not self.gone:
            self.gone = True
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Drain:
    """The shutdown of one worker: ``begin()`` starts the grace period, then every
    request still running is interrupted."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.draining = False
        self.expired = False
        self._watchers: set[Callable[[str], None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Any] = {}

    def begin(self) -> None:
        """Stop being ready and interrupt what still runs ``grace`` seconds from now."""
        if self.draining:
            return
        self.draining = True
        asyncio.get_running_loop().call_later(self.grace, self.expire)

    def expire(self) -> None:
        """Interrupt every request in flight now."""
        self.expired = True
        for watcher in list(self._watchers):
            watcher(SHUTDOWN)

    def watch(self, watcher: Callable[[str], None]) -> None:
        if self.expired:
            watcher(SHUTDOWN)
        self._watchers.add(watcher)

    def unwatch(self, watcher: Callable[[str], None]) -> None:
        self._watchers.discard(watcher)

    # -- the signals --------------------------------------------------------------------

    def install(self) -> None:
        """Hear SIGTERM/SIGINT before the server's own handler (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; that thread's server handles them
        self._loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue  # nobody shuts down on it: leave the default behaviour alone
            self._previous[signum] = previous
            signal.signal(signum, self._heard)

    def _heard(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.begin)
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)

    def uninstall(self) -> None:
        """Put the server's handlers back."""
        for signum, previous in self._previous.items():
            # Only if still ours: the server may have restored its own already.
            if signal.getsignal(signum) == self._heard:
                signal.signal(signum, previous)
        self._previous.clear()


class Interruption:
    """While active, cancels the current task when the client disconnects or the drain
    expires; :attr:`reason` says which (``None``: not interrupted).

    ``async with Interruption(scope, receive, drain) as interruption:`` swallows
    what the interrupted call raises; check :attr:`reason` after the block.  Enter
    it after the request body was read: from then on the request's ASGI
    ``receive`` only reports the disconnect.
    """

    __slots__ = ("_active", "_drain", "_hangup", "_receive", "_scope", "_task",
                 "_watcher", "reason")

    def __init__(self, scope: Scope, receive: Receive, drain: Drain) -> None:
        self._scope = scope
        self._receive = receive
        self._drain = drain
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._hangup: Hangup | None = None
        self._active = False
        self.reason: str | None = None

    async def __aenter__(self) -> Interruption:
        self._task = asyncio.current_task()
        self._active = True
        hangup = self._scope.get(ON_DISCONNECT)
        if hangup is not None:
            self._hangup = hangup
            hangup.listen(self._gone)  # a client gone already: interrupted at once
        else:
            self._watcher = asyncio.get_running_loop().create_task(self._listen())
        self._drain.watch(self.interrupt)
        return self

    def _gone(self) -> None:
        self.interrupt(DISCONNECT)

    async def _listen(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.interrupt(DISCONNECT)
                return

    def interrupt(self, reason: str) -> None:
        if self._active and self.reason is None and self._task is not None:
            self.reason = reason
            self._task.cancel()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> bool:
        self._active = False
        self._drain.unwatch(self.interrupt)
        if self._watcher is not None:
            self._watcher.cancel()
        elif self._hangup is not None:
            self._hangup.forget(self._gone)
        if self.reason is None:
            return False
        if not isinstance(error, asyncio.CancelledError):
            # The call ended some other way before our cancellation landed: absorb it.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
        task = self._task
        if task is not None and hasattr(task, "uncancel"):
            task.uncancel()  # the cancellation was ours: the request ends, the task goes on
        # Interrupted: whatever the call raised meanwhile has no one to go to.
        return error is None or isinstance(error, (Exception, asyncio.CancelledError))

    def settled(self) -> None:
        """Stop interrupting (the reply is complete); idempotent."""
        self._active = False
