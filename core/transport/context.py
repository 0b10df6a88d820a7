"""One call as the transport sees it: :class:`CallContext`, and the one deadline mechanism.

Who is calling (provider, model), which key to keep out of every text, the
deadline, the caller's extra headers and body fields, and the connections the
call holds right now.  A connection belongs to a call from the moment the call
takes it from the pool until it goes back (or is closed): never longer, so
nothing done to one call (its deadline passing, a ``cancel()``) can reach a
pooled connection another call is using.

While a call holds a connection, the watchdog expires it at its deadline:
:meth:`CallContext.expire` shuts the sockets it holds, so a read blocked on a
server that dribbles (a proxy's CONNECT answer, headers, body bytes) ends at
once.  :meth:`CallContext.cancel` does the same from outside, any thread
(``Stream.close()`` on another thread, an async task cancelled, a gateway
client gone).
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ADVICE, ChatplugError, ProviderTimeoutError, StreamInterruptedError
from . import watchdog

if TYPE_CHECKING:
    import asyncio

__all__ = ["CURRENT_CALL", "DEADLINE_MESSAGE", "CallContext", "call_scope"]

#: The call whose request is being sent in this context (connections taken from the
#: pool meanwhile belong to it).
CURRENT_CALL: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "chatplug_current_call", default=None
)

DEADLINE_MESSAGE = f"the call's deadline passed before the reply was complete. {ADVICE['timeout']}"
CANCELLED_MESSAGE = "the call was cancelled (closed from another thread) before the reply ended."


def _shut(connection: Any) -> None:
    """Shut the socket of a connection (or a socket) so that a blocked read fails now."""
    shut = getattr(connection, "shut", None)
    if shut is not None:  # a native connection: it ends itself on its event loop
        shut()
        return
    sock = connection if isinstance(connection, socket.socket) else getattr(
        connection, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError, ValueError):
            # socket.socket's own shutdown, also for a TLS socket: SSLSocket.shutdown would
            # drop its TLS state under the feet of the thread reading it.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class CallContext:
    """The transport's view of one call.

    :param deadline: on ``time.monotonic()``; ``None`` for no deadline.
    :param headers: extra request headers for every request of the call.
    :param extra_body: fields merged into every JSON body of the call.
    """

    __slots__ = ("_cancelled", "_connections", "_expired", "_lock", "_watch", "api_key",
                 "deadline", "extra_body", "headers", "loop", "model", "provider")

    def __init__(
        self,
        *,
        provider: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.api_key = api_key
        self.deadline = deadline
        self.headers: dict[str, str] = dict(headers or {})
        self.extra_body: dict[str, Any] = dict(extra_body or {})
        #: The event loop driving the call's IO natively (:mod:`.native`), else ``None``.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._cancelled = False
        self._expired = False
        self._connections: set[Any] = set()
        self._watch: int | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"<CallContext provider={self.provider!r} model={self.model!r}>"

    # -- the deadline ------------------------------------------------------------------

    def remaining(self) -> float:
        """Seconds left before the deadline (infinite without one).

        :raises ProviderTimeoutError: the deadline has passed.
        """
        if self.deadline is None:
            return float("inf")
        left = self.deadline - time.monotonic()
        if left <= 0 or self._expired:
            raise self.timeout_error()
        return left

    def past_deadline(self, slack: float = 0.0) -> bool:
        """Whether the deadline has passed (the watchdog may not have acted yet), or
        passes within ``slack`` seconds."""
        return self._expired or (self.deadline is not None
                                 and time.monotonic() >= self.deadline - slack)

    def timeout_error(self) -> ProviderTimeoutError:
        """The error for a call whose deadline passed."""
        return ProviderTimeoutError(DEADLINE_MESSAGE, provider=self.provider, model=self.model)

    def check(self) -> None:
        """Raise if the call must not go on.

        :raises StreamInterruptedError: the call was cancelled.
        :raises ProviderTimeoutError: its deadline passed.
        """
        error = self.failure()
        if error is not None:
            raise error

    def failure(self, slack: float = 0.0) -> ChatplugError | None:
        """Why the call cannot go on (cancelled, or past its deadline, or within
        ``slack`` seconds of it), else ``None``.  A read that failed then was cut by
        the call itself, whatever exception the shut socket raised."""
        if self._cancelled:
            return StreamInterruptedError(CANCELLED_MESSAGE, provider=self.provider,
                                          model=self.model)
        if self.past_deadline(slack):
            return self.timeout_error()
        return None

    @property
    def expired(self) -> bool:
        """Whether the watchdog expired the call (its deadline passed while it held a
        connection)."""
        return self._expired

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    # -- the connections the call holds ------------------------------------------------

    def attach(self, connection: Any) -> None:
        """The call now holds ``connection`` (a urllib3 connection, or a socket).

        It is shut at once if the call is cancelled or expired, or gets so while
        attached; the first connection arms the deadline watch.
        """
        with self._lock:
            self._connections.add(connection)
            stopped = self._cancelled or self._expired
            if self._watch is None and self.deadline is not None and not stopped:
                self._watch = watchdog.watch(self.deadline, self.expire)
            if stopped:
                _shut(connection)

    def detach(self, connection: Any) -> None:
        """The call no longer holds ``connection`` (it went back to the pool, or was
        closed); the last one disarms the deadline watch."""
        with self._lock:
            self._connections.discard(connection)
            if not self._connections and self._watch is not None:
                watchdog.unwatch(self._watch)
                self._watch = None

    def expire(self) -> None:
        """The deadline passed: shut what the call holds (the watchdog calls this)."""
        with self._lock:
            self._expired = True
            self._watch = None
            self._shut_all()

    def cancel(self) -> None:
        """End the call from any thread: every connection it holds is shut at once.

        Idempotent.  The thread running the call sees its read fail and ends the
        call; nothing more is sent for it.
        """
        with self._lock:
            self._cancelled = True
            self._shut_all()

    def interrupt(self) -> None:
        """Shut what the call holds now, without ending the call (a bounded drain)."""
        with self._lock:
            self._shut_all()

    @contextlib.contextmanager
    def cut_off_after(self, seconds: float) -> Iterator[None]:
        """Within the block, reads of the call's connections end after ``seconds``
        at most, all of them together (not each)."""
        key = watchdog.watch(time.monotonic() + seconds, self.interrupt)
        try:
            yield
        finally:
            watchdog.unwatch(key)

    def _shut_all(self) -> None:
        # Under the lock: a connection cannot be detached and handed to another call
        # between being picked here and being shut.
        for connection in self._connections:
            _shut(connection)


@contextlib.contextmanager
def call_scope(context: CallContext) -> Iterator[None]:
    """Make ``context`` the current call: connections taken from the pool inside
    belong to it."""
    token = CURRENT_CALL.set(context)
    try:
        yield
    finally:
        CURRENT_CALL.reset(token)
