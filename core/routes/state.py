"""What a route remembers across calls: health, cooldowns, latency, the round-robin turn.

One :class:`RouteState` per :class:`~chatplug.routes.Route`, shared by every
caller of it, sync or async (async calls run on worker threads), behind one
lock.  Within one call every usable entry is tried once per round; what the
state decides is the *order*: healthy entries first, in the strategy's order,
then the entries cooling down, the one whose cooldown ends first first.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["STRATEGIES", "EntryHealth", "RouteState"]

STRATEGIES = ("ordered", "shuffle", "round_robin", "latency")
#: Weight of the newest measurement in the latency average.
LATENCY_WEIGHT = 0.3


@dataclass
class EntryHealth:
    """One entry's record: failures in a row, cooldown end, average time to first piece."""

    failures_in_a_row: int = 0
    cooling_until: float = 0.0
    latency_s: float | None = None
    calls: int = 0
    failures: int = 0


class RouteState:
    """Thread-safe health of a route's entries (by index)."""

    def __init__(self, size: int, *, strategy: str, cooldown: float, allowed_fails: int) -> None:
        self.strategy = strategy
        self.cooldown = cooldown
        self.allowed_fails = allowed_fails
        self._health = [EntryHealth() for _ in range(size)]
        self._turn = 0
        self._lock = threading.Lock()

    def health(self, index: int) -> EntryHealth:
        """A copy of one entry's record."""
        with self._lock:
            record = self._health[index]
            return EntryHealth(record.failures_in_a_row, record.cooling_until,
                               record.latency_s, record.calls, record.failures)

    def order(self, usable: Sequence[int]) -> list[int]:
        """The order to try ``usable`` entries in for one call."""
        now = time.monotonic()
        with self._lock:
            if self.strategy == "shuffle":
                ranked = random.sample(list(usable), len(usable))
            elif self.strategy == "round_robin":
                turn = self._turn % len(usable) if usable else 0
                self._turn += 1
                ranked = [*usable[turn:], *usable[:turn]]
            elif self.strategy == "latency":
                # Not measured yet counts as fastest, so that it gets measured.
                ranked = sorted(usable, key=lambda i: self._health[i].latency_s or 0.0)
            else:
                ranked = list(usable)
            healthy = [i for i in ranked if self._health[i].cooling_until <= now]
            cooling = sorted((i for i in ranked if self._health[i].cooling_until > now),
                             key=lambda i: self._health[i].cooling_until)
        return healthy + cooling

    def failed(self, index: int, retry_after: float | None = None) -> None:
        """An attempt on entry ``index`` failed in a way that is the provider's fault."""
        now = time.monotonic()
        with self._lock:
            record = self._health[index]
            record.calls += 1
            record.failures += 1
            record.failures_in_a_row += 1
            if record.failures_in_a_row >= self.allowed_fails:
                wait = max(self.cooldown, retry_after or 0.0)
                # A new failure never shortens a cooldown already running.
                record.cooling_until = max(record.cooling_until, now + wait)

    def cool(self, index: int, until: float) -> None:
        """Entry ``index`` cools down until ``until`` (``time.monotonic()``) at least: a
        cooldown another replica saw (the gateway shares them through Redis)."""
        with self._lock:
            record = self._health[index]
            record.cooling_until = max(record.cooling_until, until)

    def succeeded(self, index: int, first_piece_s: float | None) -> None:
        """Entry ``index`` answered: its cooldown ends, its latency is measured."""
        with self._lock:
            record = self._health[index]
            record.calls += 1
            record.failures_in_a_row = 0
            record.cooling_until = 0.0
            if first_piece_s is not None:
                record.latency_s = (first_piece_s if record.latency_s is None else
                                    LATENCY_WEIGHT * first_piece_s
                                    + (1 - LATENCY_WEIGHT) * record.latency_s)
