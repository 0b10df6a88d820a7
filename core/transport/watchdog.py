"""Ends a call's blocking socket reads when its deadline passes.

A socket timeout bounds one read; a server that sends a byte just before each
timeout (headers one line at a time, a body one byte at a time) never trips it.
The watchdog, one thread for the whole process, shuts a watched socket down at
its deadline, so the blocked read fails at once and the transport reports
"the call's deadline passed".  The thread exists only while something is
watched, and leaves a quarter of a second after the last watch ends.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from .context import CURRENT_CALL

__all__ = ["CALL_DEADLINE", "connection_pool_classes", "deadline_scope", "unwatch", "watch"]

#: The deadline (``time.monotonic()``) of the call running in this context, if any.
CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "chatplug_call_deadline", default=None
)
IDLE_EXIT = 0.25

_lock = threading.Lock()
_wake = threading.Condition(_lock)
_heap: list[tuple[float, int]] = []
_watched: dict[int, socket.socket] = {}
_keys = itertools.count()
_thread: threading.Thread | None = None


def watch(sock: socket.socket, deadline: float) -> int:
    """Shut ``sock`` down at ``deadline`` unless :func:`unwatch` comes first; returns a key."""
    global _thread
    with _lock:
        key = next(_keys)
        _watched[key] = sock
        heapq.heappush(_heap, (deadline, key))
        if len(_heap) > 2 * len(_watched) + 64:
            # Finished watches are dropped lazily; keep the heap from growing with them.
            _heap[:] = [entry for entry in _heap if entry[1] in _watched]
            heapq.heapify(_heap)
        if _thread is None:
            _thread = threading.Thread(target=_run, name="chatplug-deadline", daemon=True)
            _thread.start()
        elif _heap[0][1] == key:
            _wake.notify()
    return key


def unwatch(key: int) -> bool:
    """Stop watching; False if the deadline had already passed and the socket was shut."""
    with _lock:
        # No notify: waking the thread on every call would cost each call a thread
        # switch; it notices finished watches within IDLE_EXIT by itself.
        return _watched.pop(key, None) is not None


@contextlib.contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Make ``deadline`` the current call's, for the connections opened inside."""
    token = CALL_DEADLINE.set(deadline)
    try:
        yield
    finally:
        CALL_DEADLINE.reset(token)


def _run() -> None:
    global _thread
    with _lock:
        idle_since: float | None = None
        while True:
            while _heap and _heap[0][1] not in _watched:
                heapq.heappop(_heap)
            now = time.monotonic()
            if not _heap:
                idle_since = idle_since or now
                if now - idle_since >= IDLE_EXIT:
                    _thread = None
                    return
                _wake.wait(IDLE_EXIT)
                continue
            idle_since = None
            deadline, key = _heap[0]
            if deadline > now:
                _wake.wait(min(deadline - now, IDLE_EXIT))
                continue
            heapq.heappop(_heap)
            sock = _watched.pop(key)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def connection_pool_classes() -> dict[str, Any]:
    """urllib3 pool classes whose connections watch the header read of a call.

    The body is watched by the reply itself; this covers the time between
    sending the request and having the status line and headers.
    """
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def watched_getresponse(connection: Any, getresponse: Any) -> Any:
        deadline = CALL_DEADLINE.get()
        sock = getattr(connection, "sock", None)
        call = CURRENT_CALL.get()
        if sock is None or (deadline is None and call is None):
            return getresponse()
        key = watch(sock, deadline) if deadline is not None else None
        if call is not None:
            call.attach(sock)  # a cancelled call ends its wait for the headers at once
        try:
            response = getresponse()
        finally:
            fired = key is not None and not unwatch(key)
            if call is not None:
                call.detach(sock)
        if fired:
            # The headers were cut by the watchdog: what arrived is not a response.
            response.close()
            raise TimeoutError("the call's deadline passed while reading the headers")
        return response

    class WatchedHTTPConnection(HTTPConnection):
        def getresponse(self) -> Any:
            return watched_getresponse(self, super().getresponse)

    class WatchedHTTPSConnection(HTTPSConnection):
        def getresponse(self) -> Any:
            return watched_getresponse(self, super().getresponse)

    class WatchedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    return {"http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool}
