"""One thread that runs a callback when a deadline passes: the deadline of calls.

A socket timeout bounds one read; a server that sends a byte just before each
timeout (a proxy's CONNECT answer, headers one line at a time, a body one byte
at a time) never trips it.  A call's :class:`~chatplug.transport.context.CallContext`
asks the watchdog to expire it at its deadline while it holds a connection;
expiring shuts the sockets the call holds, so the blocked read fails at once
and the transport reports "the call's deadline passed".

The watchdog knows nothing of sockets or connections: it runs callbacks, outside
its lock, so a callback may take other locks.  The thread exists only while
something is watched, and leaves a quarter of a second after the last watch ends.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable

__all__ = ["IDLE_EXIT", "unwatch", "watch"]

#: Seconds the thread waits at most before looking again; also how long it outlives
#: the last watch.
IDLE_EXIT = 0.25

_lock = threading.Lock()
_wake = threading.Condition(_lock)
_heap: list[tuple[float, int]] = []
_watched: dict[int, Callable[[], None]] = {}
_keys = itertools.count()
_thread: threading.Thread | None = None


def watch(deadline: float, callback: Callable[[], None]) -> int:
    """Run ``callback`` (fast, non-blocking) at ``deadline`` (``time.monotonic()``) unless
    :func:`unwatch` comes first; returns the key for :func:`unwatch`."""
    global _thread
    with _lock:
        key = next(_keys)
        _watched[key] = callback
        heapq.heappush(_heap, (deadline, key))
        if len(_heap) > 2 * len(_watched) + 64:
            # Finished watches are dropped lazily; keep the heap from growing with them.
            _heap[:] = [entry for entry in _heap if entry[1] in _watched]
            heapq.heapify(_heap)
        if _thread is None:
            _thread = threading.Thread(target=_run, name="chatplug-deadline", daemon=True)
            _thread.start()
        elif _heap[0][1] == key and deadline - time.monotonic() < IDLE_EXIT:
            # Only a deadline sooner than the thread's next look needs waking it; the
            # rest costs a call no thread switch.
            _wake.notify()
    return key


def unwatch(key: int) -> bool:
    """Stop watching; False if the deadline had already passed (the callback ran or runs)."""
    with _lock:
        return _watched.pop(key, None) is not None


def _run() -> None:
    global _thread
    idle_since: float | None = None
    while True:
        with _lock:
            now = time.monotonic()
            due: list[Callable[[], None]] = []
            while _heap and (_heap[0][1] not in _watched or _heap[0][0] <= now):
                _, key = heapq.heappop(_heap)
                callback = _watched.pop(key, None)
                if callback is not None:
                    due.append(callback)
            if not due:
                if _heap:
                    idle_since = None
                    _wake.wait(min(_heap[0][0] - now, IDLE_EXIT))
                    continue
                idle_since = idle_since or now
                if now - idle_since >= IDLE_EXIT:
                    _thread = None
                    return
                _wake.wait(IDLE_EXIT)
                continue
        idle_since = None
        for callback in due:  # outside the lock: a callback takes its call's lock
            with contextlib.suppress(Exception):
                callback()
