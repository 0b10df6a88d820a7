"""One call as the transport sees it: :class:`CallContext`.

Who is calling (provider, model), which key to keep out of every text, the
deadline, the caller's extra headers and body fields, and cancellation.  A
call is cancelled from outside (``Stream.close()`` on another thread, an
async task cancelled, a gateway client gone): :meth:`CallContext.cancel`
shuts the sockets the call is reading, so a blocked read ends at once
instead of running its course.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ProviderTimeoutError

__all__ = ["CURRENT_CALL", "CallContext", "call_scope"]

#: The call whose request is being sent in this context (connections attach to it).
CURRENT_CALL: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "chatplug_current_call", default=None
)

DEADLINE_MESSAGE = ("the call's deadline passed before the reply was complete. "
                    "Raise CHATPLUG_TIMEOUT or pass a larger timeout= to create().")


class CallContext:
    """The transport's view of one call.

    :param deadline: on ``time.monotonic()``; ``None`` for no deadline.
    :param headers: extra request headers for every request of the call.
    :param extra_body: fields merged into every JSON body of the call.
    """

    __slots__ = ("_cancelled", "_lock", "_sockets", "api_key", "deadline", "extra_body",
                 "headers", "model", "provider")

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
        self._cancelled = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"<CallContext provider={self.provider!r} model={self.model!r}>"

    def remaining(self) -> float:
        """Seconds left before the deadline (infinite without one).

        :raises ProviderTimeoutError: the deadline has passed.
        """
        if self.deadline is None:
            return float("inf")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ProviderTimeoutError(DEADLINE_MESSAGE, provider=self.provider,
                                       model=self.model)
        return left

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def cancel(self) -> None:
        """End the call from any thread: every socket it reads is shut at once.

        Idempotent.  The thread running the call sees its read fail and ends the
        call; nothing more is sent for it.
        """
        with self._lock:
            self._cancelled = True
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def attach(self, sock: socket.socket) -> None:
        """Shut ``sock`` if the call is (or gets) cancelled while it is attached."""
        with self._lock:
            self._sockets.add(sock)
            cancelled = self._cancelled
        if cancelled:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def detach(self, sock: socket.socket) -> None:
        """The call no longer reads ``sock`` (it went back to the pool, or was closed)."""
        with self._lock:
            self._sockets.discard(sock)


@contextlib.contextmanager
def call_scope(context: CallContext) -> Iterator[None]:
    """Make ``context`` the current call for the connections used inside."""
    token = CURRENT_CALL.set(context)
    try:
        yield
    finally:
        CURRENT_CALL.reset(token)
