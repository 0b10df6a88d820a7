"""A bounded pool of worker threads that leave when idle: :class:`WorkerPool`.

The async API runs calls on it (never on the event loop's default
executor), and observers run on one so that a blocking observer cannot hold
a call past its deadline.  Unlike ``concurrent.futures.ThreadPoolExecutor``
its threads exit after :data:`IDLE_EXIT` seconds without work, so a process
that stopped making calls keeps no thread of chatplug's.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["IDLE_EXIT", "WorkerPool"]

T = TypeVar("T")
IDLE_EXIT = 0.5


class WorkerPool:
    """At most ``max_workers`` threads running submitted functions, first come first served.

    Work beyond that waits in order; a waiting :class:`~concurrent.futures.Future`
    that is cancelled is skipped.
    """

    def __init__(self, max_workers: int, *, name: str, idle_exit: float = IDLE_EXIT) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.name = name
        self._idle_exit = idle_exit
        self._cond = threading.Condition(threading.Lock())
        self._tasks: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = deque()
        self._threads = 0
        self._waiting = 0
        self._busy = 0
        self._serial = 0

    @property
    def busy(self) -> int:
        """Workers running a function now."""
        return self._busy

    @property
    def threads(self) -> int:
        """Worker threads alive now (busy or idle)."""
        return self._threads

    def submit(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``function(*args)`` on a worker; its future."""
        future: Future[T] = Future()
        with self._cond:
            self._tasks.append((future, function, args))
            self._cond.notify()
            if len(self._tasks) > self._waiting and self._threads < self.max_workers:
                self._threads += 1
                self._serial += 1
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self.name}-{self._serial}")
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._tasks:
                    self._waiting += 1
                    notified = self._cond.wait(self._idle_exit)
                    self._waiting -= 1
                    if not notified and not self._tasks:
                        self._threads -= 1
                        return
                future, function, args = self._tasks.popleft()
                self._busy += 1
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = function(*args)
                    except BaseException as exc:
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._cond:
                    self._busy -= 1
            del future, function, args
