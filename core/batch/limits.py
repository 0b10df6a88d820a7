"""How much a batch may send: requests in flight (``concurrency``) and requests started
per second across all workers (``qps``, :class:`RateLimiter`)."""

from __future__ import annotations

import math
import threading
import time

from ..errors import InvalidRequestError

__all__ = ["MAX_CONCURRENCY", "RateLimiter", "check_concurrency", "check_qps"]

MAX_CONCURRENCY = 1024


def check_concurrency(concurrency: object) -> int:
    """``concurrency`` as a number of requests in flight.

    :raises InvalidRequestError: not a whole number from 1 to :data:`MAX_CONCURRENCY`.
    """
    if (isinstance(concurrency, bool) or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_CONCURRENCY):
        raise InvalidRequestError(f"concurrency must be a whole number from 1 to "
                                  f"{MAX_CONCURRENCY}, not {concurrency!r}.")
    return concurrency


def check_qps(qps: object) -> float | None:
    """``qps`` as a positive number of requests per second, or ``None`` for no limit.

    :raises InvalidRequestError: not a positive finite number.
    """
    if qps is None:
        return None
    if (isinstance(qps, bool) or not isinstance(qps, (int, float))
            or not math.isfinite(qps) or qps <= 0):
        raise InvalidRequestError(f"qps must be a positive number of requests per second, "
                                  f"not {qps!r}.")
    return float(qps)


class RateLimiter:
    """At most ``qps`` requests start per second, spaced evenly (no bursts).

    Each :meth:`wait` reserves the next free start time under a lock and sleeps
    until it outside the lock, so waiting workers never hold one another up
    and the starts of all of them together keep the rate.
    """

    def __init__(self, qps: float) -> None:
        self.qps = qps
        self._interval = 1.0 / qps
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        """Block until this worker may start a request; False if ``stop`` was set meanwhile."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        delay = start - now
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()
