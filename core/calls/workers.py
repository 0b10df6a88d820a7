"""A bounded pool of worker threads that leave when idle: :class:`WorkerPool`.

The async API runs calls on it (never on the event loop's default
executor), and observers run on one so that a blocking observer cannot hold
a call past its deadline.  Unlike ``concurrent.futures.ThreadPoolExecutor``
its threads exit after :data:`IDLE_EXIT` seconds without work, so a process
that stopped making calls keeps no thread of chatplug's.

``Thread.start()`` waits until the new thread has run, which under load (other
threads holding the GIL) takes milliseconds; called from an event loop that
would stall it.  So :meth:`WorkerPool.submit` never starts a worker itself: a
small spawner thread does, and submit only queues and notifies.
"""

from __future__ import annotations

import _thread
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
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._tasks: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = deque()
        self._spawn = threading.Condition(lock)
        self._threads = 0
        self._waiting = 0
        self._busy = 0
        self._serial = 0
        #: Workers asked of the spawner and not started yet.
        self._pending = 0
        self._spawner = False

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
            if (len(self._tasks) > self._waiting + self._pending
                    and self._threads + self._pending < self.max_workers):
                self._pending += 1
                if self._spawner:
                    self._spawn.notify()
                else:
                    self._spawner = True
                    # The low-level start returns at once (the spawner is short-lived).
                    _thread.start_new_thread(self._spawn_workers, ())
        return future

    def _spawn_workers(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if not self._spawn.wait(self._idle_exit) and not self._pending:
                        self._spawner = False
                        return
                count = self._pending
            for _ in range(count):
                with self._cond:
                    self._serial += 1
                    name = f"{self.name}-{self._serial}"
                thread = threading.Thread(target=self._work, daemon=True, name=name)
                with self._cond:
                    self._threads += 1
                    self._pending -= 1
                thread.start()

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
