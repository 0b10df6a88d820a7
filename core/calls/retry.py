"""When and how long to wait before trying a failed call again.

Retried: connection failures, timeouts, 408/409/429/5xx, and a stream that
broke before its first piece reached the caller.  Never retried: 400/401/403/
404/422, bodies that break the wire format, or anything after a piece was
delivered (that would duplicate text).  Delays grow exponentially with jitter;
a server's ``Retry-After``/``retry-after-ms`` (with any retried status, as RFC
9110 has it, not only 429) replaces the backoff up to :data:`MAX_RETRY_AFTER`
seconds, and a larger hint means "give up now".  A hint the transport could not
read (``nan``, words, absurd dates) is no hint: the normal backoff applies.
Sleeps count against the call's deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import ChatplugError

__all__ = ["MAX_RETRY_AFTER", "RetryPolicy"]

#: The longest server hint (seconds) worth waiting for; beyond it the error is raised.
MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` tries after the first; delays ``initial * 2**n`` capped at ``cap``."""

    max_retries: int = 2
    initial: float = 0.5
    cap: float = 8.0

    def delay(self, error: ChatplugError, failures: int, remaining: float) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up.

        :param failures: attempts that failed so far (1 after the first).
        :param remaining: seconds left before the call's deadline.
        """
        if failures > self.max_retries or not error.retryable:
            return None
        hint = getattr(error, "retry_after", None)
        if hint is not None:
            if not 0 <= hint <= MAX_RETRY_AFTER:  # a longer wait than is worth it: raise now
                return None
            wait = float(hint)
        else:
            wait = self.backoff(failures)
        return wait if wait < remaining else None

    def backoff(self, failures: int) -> float:
        """The jittered wait after ``failures`` failed attempts (or rounds), no hint given."""
        backoff = min(self.cap, self.initial * 2.0 ** (failures - 1))
        # "Equal jitter": never less than half the backoff, so retries stay spread out.
        return backoff / 2 + random.uniform(0, backoff / 2)
