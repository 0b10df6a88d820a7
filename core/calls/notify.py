"""What observers hear, as notifications: a bounded queue that no call ever waits on.

A call posts each observer hook (request, retry, error, response) and goes on
at once; one thread delivers them in the order they were posted, so each
call's hooks arrive in order, and an observer that blocks delays only the
observers, never a completion (nor the event loop driving one).  A full queue
(observers far behind) drops the newest notification and counts it in
:attr:`Notifications.dropped`; the first drop is logged.

Each registry's :class:`~chatplug.calls.runtime.Runtime` has its own queue
(``registry.runtime.notifications``), so one registry's slow observer never
delays another's.  What is still queued when the process ends is delivered
first, for at most :data:`FLUSH_AT_EXIT` seconds in all (an ``atexit``
handler), so a log observer records every call of a short program.
:meth:`Notifications.flush` (:meth:`chatplug.Registry.flush_observers`) waits
for the same thing at any time, e.g. before reading a log right after a call.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Any

from .workers import WorkerPool

__all__ = ["FLUSH_AT_EXIT", "QUEUE_LIMIT", "Notifications", "flush_all"]

logger = logging.getLogger("chatplug.provider")

#: Notifications waiting for delivery at most; beyond it new ones are dropped.
QUEUE_LIMIT = 10_000
#: Seconds the process waits at exit for observers to hear what is queued.
FLUSH_AT_EXIT = 2.0


class Notifications:
    """A bounded queue of observer hook calls and the one thread that makes them."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self.limit = limit
        #: Notifications dropped because the queue was full.
        self.dropped = 0
        # One worker: delivery in posting order (and it leaves when idle).
        self._pool = WorkerPool(1, name="chatplug-observer")
        self._cond = threading.Condition(threading.Lock())
        self._queued = 0
        _live.add(self)

    @property
    def queued(self) -> int:
        """Notifications posted and not delivered yet."""
        return self._queued

    def post(self, hook: Any, name: str, details: dict[str, Any]) -> None:
        """Queue ``hook.<name>(**details)``; never blocks, never raises."""
        with self._cond:
            full = self._queued >= self.limit
            if full:
                self.dropped += 1
            else:
                self._queued += 1
            first_drop = full and self.dropped == 1
        if not full:
            self._pool.submit(self._deliver, hook, name, details)
        elif first_drop:
            logger.warning("observers are %d notifications behind; %s and later ones are "
                           "dropped (counted in registry.runtime.notifications.dropped)",
                           self.limit, name)

    def _deliver(self, hook: Any, name: str, details: dict[str, Any]) -> None:
        try:
            getattr(hook, name)(**details)
        except Exception as exc:
            # An observer is never allowed to break a completion, nor the others.
            logger.warning("observer hook %s failed: %s: %s", name, type(exc).__name__, exc)
        except BaseException as exc:  # SystemExit from an observer's code
            logger.warning("observer hook %s failed: %s", name, type(exc).__name__)
        finally:
            with self._cond:
                self._queued -= 1
                if not self._queued:
                    self._cond.notify_all()

    def flush(self, timeout: float = FLUSH_AT_EXIT) -> bool:
        """Wait until every queued notification was delivered, at most ``timeout``
        seconds; whether they all were."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._queued:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


#: Every queue alive, for the flush at exit.
_live: weakref.WeakSet[Notifications] = weakref.WeakSet()


def flush_all(timeout: float = FLUSH_AT_EXIT) -> bool:
    """Flush every queue of the process within ``timeout`` seconds in all; whether
    every notification was delivered."""
    end = time.monotonic() + timeout
    return all([queue.flush(max(0.0, end - time.monotonic())) for queue in list(_live)])


atexit.register(flush_all)
